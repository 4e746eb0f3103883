"""Sentence normalization for the synthesized corpus: numbers, code and symbols, commas."""

import pytest

from navai_jax.speech import sentences


@pytest.mark.parametrize('n, words', [
    (0, 'zero'), (7, 'seven'), (15, 'fifteen'), (40, 'forty'), (42, 'forty two'),
    (100, 'one hundred'), (305, 'three hundred five'), (1000, 'one thousand'),
    (2024, 'two thousand twenty four'), (9999, 'nine thousand nine hundred ninety nine')])
def test_number_to_words(n, words):
  assert sentences.number_to_words(n) == words


@pytest.mark.parametrize('sentence, expected', [
    ("Don't stop: it's 25 degrees -- fine.", "don't stop it's twenty five degrees fine"),
    ('A built-in function (see below) is *always* available.',
     'a built in function is always available'),
    ('The "quoted" words stay.', 'the quoted words stay'),
    ('Call os.path.join here now.', None),  # dots inside a word
    ('Set the max_size value now.', None),  # underscore
    ('Return len(x) for the list.', None),  # brackets
    ('Use the fooBar method now.', None),  # camelCase
    ('An HTTP server runs here.', None),  # acronym
    ('Use str for this value.', None),  # no vowel
    ('It costs 1.5 dollars today.', None),  # not an integer
    ('There are 12000 of them.', None),  # too large to spell
    ('See the notes etc. below.', None),  # abbreviation
    ('Too short.', None),
    (' '.join(['word'] * (sentences.MAX_WORDS + 1)) + '.', None),
    ('Caf\u00e9 is not ASCII text.', None),
])
def test_normalize_text(sentence, expected):
  assert sentences.normalize_text(sentence) == expected


def test_normalize_text_keeps_commas_for_pauses():
  assert sentences.normalize_text('First, read it; then, 2 more.', keep_commas=True) == (
      'first, read it, then, two more')


def test_load_sentences_is_clean_and_sorted():
  loaded = sentences.load_sentences(('pydoc_topics',))
  assert len(loaded) > 300
  assert loaded == sorted(set(loaded))
  for s in loaded:
    assert sentences.normalize_text(s) == s.replace(',', '')


def _fake_wordnet(folder, examples_by_file):
  """Writes WordNet-format data files: an indented licence header, then one synset per line."""
  for pos in ('noun', 'verb', 'adj', 'adv'):
    lines = ['  1 This software and database is "provided as is" by Princeton University.']
    for i, gloss in enumerate(examples_by_file.get(pos, [])):
      lines.append(f'{i:08d} 29 n 01 word 0 000 | {gloss}  ')
    (folder / f'data.{pos}').write_text('\n'.join(lines) + '\n', encoding='latin-1')


def test_wordnet_examples_are_the_glosses_quoted_examples(tmp_path):
  _fake_wordnet(tmp_path, {
      'noun': ['a domestic animal; "the dog barked all night"; "She walks 2 dogs daily"',
               'a definition without any example'],
      'verb': ['move fast; "run to the store" - a saying; "he ran the os.path code"'],
      'adv': ['so; "the dog barked all night"']})  # a repeated example is kept once
  loaded = sentences.load_sentences(('wordnet_examples',), wordnet_dir=tmp_path)
  # Not the licence's quoted words, the definitions, the attribution after a quote or code.
  assert loaded == ['run to the store', 'she walks two dogs daily', 'the dog barked all night']


def test_text_sources_are_named_when_wrong_or_missing(tmp_path):
  with pytest.raises(ValueError, match="'poems'.*wordnet_examples"):
    sentences.load_sentences(('pydoc_topics', 'poems'))
  (tmp_path / 'data.noun').write_text('')
  with pytest.raises(FileNotFoundError,
                     match=r'data\.verb, data\.adj, data\.adv missing.*wordnet-base'):
    sentences.load_sentences(('wordnet_examples',), wordnet_dir=tmp_path)
