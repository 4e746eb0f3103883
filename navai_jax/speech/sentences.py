"""English text for the synthesized corpus: the Python documentation and WordNet's examples.

Two sources ship with the interpreter (`pydoc_data` topics and the standard library's
docstrings): long, written, technical sentences. A third, `wordnet_examples`, is the everyday
English of WordNet 3.0's usage examples ("she pitied her sister acutely"), read from Debian's
`wordnet-base` (WordNet 3.0 licence, permissive) where it is installed. `normalize_text` turns a
sentence into lower-case words as LibriSpeech writes them, or drops it when eSpeak would read it
differently from its transcript (code, symbols, abbreviations, most numbers).
"""

import ast
from collections.abc import Iterator, Sequence
import os
import pathlib
import re
import sysconfig

TEXT_SOURCES = ('pydoc_topics', 'stdlib_docstrings', 'wordnet_examples')
DEFAULT_TEXT_SOURCES = ('pydoc_topics', 'stdlib_docstrings')
# Debian's wordnet-base puts WordNet 3.0's database here.
WORDNET_DIR = '/usr/share/wordnet'
_WORDNET_FILES = tuple(f'data.{pos}' for pos in ('noun', 'verb', 'adj', 'adv'))
MIN_WORDS = 3
MAX_WORDS = 25


_ONES = ('zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen '
         'fifteen sixteen seventeen eighteen nineteen').split()
_TENS = 'zero ten twenty thirty forty fifty sixty seventy eighty ninety'.split()
# Characters that mark code, markup or symbols eSpeak would read out.
_CODE_CHARS = re.compile(r'[_()\[\]{}<>=/\\*#@$%^|~`+&]')
_TOKEN = re.compile(r"([A-Za-z0-9'-]+?)([.,;:!?]*)")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?(?:-[A-Za-z]+)*")
_TYPOGRAPHIC = {'\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"', '\u2013': ' - ',
                '\u2014': ' - '}
# Abbreviations that eSpeak expands, so the audio would not match the transcript.
_ABBREVIATIONS = frozenset('etc vs cf al mr mrs ms dr st jr sr approx ca ie eg'.split())


def number_to_words(n: int) -> str:
  """Spells out 0 <= n <= 9999 as LibriSpeech writes numbers, e.g. 'two hundred twenty one'."""
  if not 0 <= n <= 9999:
    raise ValueError(f'Can only spell 0..9999, got {n}.')
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10] + (f' {_ONES[n % 10]}' if n % 10 else '')
  if n < 1000:
    return f'{_ONES[n // 100]} hundred' + (f' {number_to_words(n % 100)}' if n % 100 else '')
  return f'{_ONES[n // 1000]} thousand' + (f' {number_to_words(n % 1000)}' if n % 1000 else '')


def normalize_text(s: str, keep_commas: bool = False) -> str | None:
  """Normalizes one English sentence to lower-case words, or returns None to drop it.

  Keeps letters a-z, apostrophes inside words and single spaces; splits hyphenated words; spells
  out integers up to 9999; removes asides in parentheses and *emphasis* marks. Drops sentences
  with code-like tokens (underscores, brackets, dots inside words, camelCase, acronyms, words
  without vowels), other numbers, abbreviations, non-ASCII characters, and fewer than MIN_WORDS
  or more than MAX_WORDS words.

  Args:
    s: a sentence.
    keep_commas: keep a comma after words followed by , ; : or a dash (for pauses in speech).
  """
  for typographic, plain in _TYPOGRAPHIC.items():
    s = s.replace(typographic, plain)
  s = re.sub(r'\s+\([^()]*\)', '', s)  # asides in parentheses; "f(x)" stays and is dropped below
  s = re.sub(r"\*+([A-Za-z][A-Za-z '-]*[A-Za-z])\*+", r'\1', s)  # *emphasis*
  if not s.isascii() or _CODE_CHARS.search(s):
    return None
  words = []
  for token in s.replace('--', ' - ').replace('"', ' ').split():
    if token == '-':
      punctuation, core = ',', ''
    else:
      match = _TOKEN.fullmatch(token)
      if not match:
        return None
      core, punctuation = match.group(1).strip("'"), match.group(2)
    if core.isdigit():
      if int(core) > 9999 or (len(core) > 1 and core[0] == '0'):
        return None
      words.extend(number_to_words(int(core)).split())
    elif core:
      if (not _WORD.fullmatch(core) or re.search(r'[a-z][A-Z]', core)
          or sum(c.isupper() for c in core) > 1):
        return None
      for part in core.lower().split('-'):
        if not re.search('[aeiouy]', part) or part in _ABBREVIATIONS:
          return None
        words.append(part)
    if keep_commas and words and punctuation[:1] in (',', ';', ':'):
      words[-1] = words[-1].rstrip(',') + ','
  if not MIN_WORDS <= len(words) <= MAX_WORDS:
    return None
  return ' '.join(words).rstrip(',')


def _paragraphs(text: str) -> Iterator[str]:
  """Yields flowing-text paragraphs, skipping indented blocks (code), headings and doctests."""
  for block in re.split(r'\n\s*\n', text):
    lines = block.split('\n')
    if (not block.strip() or block[:1].isspace() or '>>>' in block
        or any(re.fullmatch(r'([*=\-~^])\1+', line.strip()) for line in lines)):
      continue
    yield ' '.join(line.strip() for line in lines)


def _sentences(paragraph: str) -> Iterator[str]:
  for candidate in re.split(r'(?<=[.!?])\s+(?=[A-Z])', paragraph):
    if candidate[:1].isupper() and candidate[-1:] in '.!?':
      yield candidate


def _wordnet_examples(wordnet_dir: str | os.PathLike) -> Iterator[str]:
  """Yields the quoted usage examples of WordNet's glosses, in file order."""
  root = pathlib.Path(wordnet_dir)
  if missing := [name for name in _WORDNET_FILES if not (root / name).is_file()]:
    raise FileNotFoundError(
        f'Text source wordnet_examples needs WordNet 3.0\'s database in {root} '
        f'({", ".join(missing)} missing): install Debian\'s wordnet-base (./run.sh does where it '
        'runs as root), or leave wordnet_examples out of the text sources.')
  for name in _WORDNET_FILES:
    for line in (root / name).read_text(encoding='latin-1').splitlines():
      if not line.startswith(' ') and ' | ' in line:  # a synset; the licence lines are indented
        yield from re.findall(r'"([^"]+)"', line.split(' | ', 1)[1])


def _source_sentences(source: str, wordnet_dir: str | os.PathLike) -> Iterator[str]:
  """Yields the candidate sentences of a source (one of TEXT_SOURCES) in a fixed order."""
  if source == 'wordnet_examples':
    yield from _wordnet_examples(wordnet_dir)
    return
  if source == 'pydoc_topics':
    import pydoc_data.topics  # pylint: disable=g-import-not-at-top
    texts = (pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics))
  else:
    texts = _stdlib_docstrings()
  for text in texts:
    for paragraph in _paragraphs(text):
      yield from _sentences(paragraph)


def _stdlib_docstrings() -> Iterator[str]:
  root = pathlib.Path(sysconfig.get_paths()['stdlib'])
  for path in sorted(root.rglob('*.py')):
    if {'site-packages', 'test', 'tests'} & set(path.relative_to(root).parts):
      continue
    try:
      tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
      continue
    for node in ast.walk(tree):
      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        if docstring := ast.get_docstring(node):
          yield docstring


def load_sentences(sources: Sequence[str] = DEFAULT_TEXT_SOURCES,
                   wordnet_dir: str | os.PathLike = WORDNET_DIR) -> list[str]:
  """Returns the sorted unique normalized sentences (with commas) of the given sources.

  Args:
    sources: names among `TEXT_SOURCES`.
    wordnet_dir: where `wordnet_examples` finds WordNet's data.noun, data.verb, data.adj and
      data.adv.
  """
  if unknown := [source for source in sources if source not in TEXT_SOURCES]:
    raise ValueError(f'Unknown text source {", ".join(map(repr, unknown))}; choose from '
                     f'{", ".join(TEXT_SOURCES)}.')
  sentences = set()
  for source in sources:
    for candidate in _source_sentences(source, wordnet_dir):
      if (sentence := normalize_text(candidate, keep_commas=True)) is not None:
        sentences.add(sentence)
  return sorted(sentences)
