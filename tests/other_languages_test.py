"""Recorded people in other languages, on files made here in Debian's layouts: texts written in
the recognizer's letters, every rate resampled to 16 kHz at its own length, one speaker per
character, what is left out counted, the split trained on beside a corpus's own, and a missing
package named."""

import gzip

import G722
import numpy as np
import pytest
import soundfile as sf

from navai_jax.configs import default
from navai_jax.speech import data
from navai_jax.speech import librispeech
from navai_jax.speech import other_languages


@pytest.mark.parametrize('text, want', [
    ('Vous êtes maintenant en ligne.', 'vous etes maintenant en ligne'),
    ("Composez votre numéro d'agent.", "composez votre numero d'agent"),
    ('Добавлено. Введите номер!', 'dobavleno vvedite nomer'),
    ('Přítel? Ó, to už víš, Šárko.', 'pritel o to uz vis sarko'),
    ("'t Is een „schip” – of niet?", 't is een schip of niet'),
    ('Heiß, Œuvre, Ærø', 'heiss oeuvre aero'),
    ('Zadejte 5 číslic.', None), ('...', None), ('', None),
])
def test_letters(text, want):
  assert other_languages.letters(text) == want


def _tone(seconds, rate, hz=440.0):
  return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def _fabricate(root):
  """Asterisk's French prompts and Fish Fillets' Dutch dialogue, in Debian's layout."""
  sounds = root / 'sounds' / 'fr_CA_f_June'
  sounds.mkdir(parents=True)
  for name, seconds in (('added', 0.6), ('vm-intro', 3.0), ('digits/5', 1.0),
                        ('too-long', 17.0)):
    (sounds / f'{name}.g722').parent.mkdir(parents=True, exist_ok=True)
    samples = (32767 * _tone(seconds, 16000)).astype(np.int16)
    (sounds / f'{name}.g722').write_bytes(bytes(G722.G722(16000, 64000).encode(samples)))
  docs = root / 'doc' / 'asterisk-core-sounds-fr'
  docs.mkdir(parents=True)
  with gzip.open(docs / 'core-sounds-fr.txt.gz', 'wt') as f:
    f.write('; Core Asterisk Sounds in French\n\nadded: ajouté\n'
            'vm-intro: Veuillez laisser un message après le bip.\ndigits/5: 5\n'
            'too-long: Un très long message.\nno-audio: Rien.\n')
  fillets = root / 'fillets'
  script, sound = fillets / 'script' / 'boat', fillets / 'sound' / 'boat' / 'nl'
  script.mkdir(parents=True)
  sound.mkdir(parents=True)
  (script / 'dialogs_nl.lua').write_text(
      '\ndialogId("bo-m-kijk", "font_small", "Look.")\ndialogStr("Kijk daar!")\n\n'
      '\ndialogId("bo-v-ja", "font_big", "Yes, said \\"he\\".")\n'
      'dialogStr("Ja, zei \\"hij\\" tegen de vis.")\n\n'
      '\ndialogId("bo-m-nee", "font_small", "No.")\ndialogStr("Nee, nooit meer.")\n\n'
      '\ndialogId("bo-x-geen", "font_white", "Unvoiced.")\ndialogStr("Zonder geluid.")\n',
      encoding='utf-8')
  # Vorbis at 22,050 Hz, one line in stereo at 44,100 Hz: each keeps its length at 16 kHz.
  sf.write(sound / 'bo-m-kijk.ogg', _tone(2.0, 22050), 22050, format='OGG', subtype='VORBIS')
  sf.write(sound / 'bo-v-ja.ogg', np.stack([_tone(2.5, 44100)] * 2, axis=1), 44100,
           format='OGG', subtype='VORBIS')
  sf.write(sound / 'bo-m-nee.ogg', _tone(2.2, 22050, 300.0), 22050, format='OGG',
           subtype='VORBIS')
  return {'asterisk_sounds': root / 'sounds', 'asterisk_docs': root / 'doc',
          'fillets': fillets}


def test_make_split_writes_a_split_the_corpus_trains_on_beside_its_own(tmp_path, write_split):
  roots = _fabricate(tmp_path / 'debian')
  corpus = tmp_path / 'corpus'
  write_split(corpus, 'train', ['a cat', 'the dog'])
  summary = other_languages.make_split(corpus, ('fr', 'nl'), **roots)
  assert summary['fr'] == {'kept': 2, 'hours': pytest.approx((librispeech.MIN_SAMPLES / 16000
                                                              + 3.0) / 3600, abs=1e-3),
                           'speakers': 1, 'digits or no letters': 1,
                           'longer than data.max_seconds': 1, 'too short for its text': 0}
  assert summary['nl']['kept'] == 3 and summary['nl']['speakers'] == 2
  split = corpus / other_languages.SPLIT
  transcripts = librispeech.read_transcripts(split)
  said = {utt_id: (text.lower(), sf.info(str(audio))) for audio, (utt_id, text, _)
          in transcripts.items()}
  by_text = {text: (utt_id, info) for utt_id, (text, info) in said.items()}
  assert sorted(by_text) == ['ajoute', 'ja zei hij tegen de vis', 'kijk daar', 'nee nooit meer',
                             'veuillez laisser un message apres le bip']
  # One speaker per character: the small fish's two lines share one, the big fish has another.
  speaker = lambda text: by_text[text][0].split('-')[0]
  assert speaker('kijk daar') == speaker('nee nooit meer') != speaker('ja zei hij tegen de vis')
  assert speaker('ajoute') == str(other_languages.SOURCES['fr'].first_speaker)
  for text, seconds in (('kijk daar', 2.0), ('ja zei hij tegen de vis', 2.5),
                        ('veuillez laisser un message apres le bip', 3.0)):
    info = by_text[text][1]
    assert info.samplerate == 16000 and info.channels == 1
    assert info.frames == pytest.approx(16000 * seconds, abs=2), text
  # The 300 Hz line is still a 300 Hz tone after resampling from 22,050 Hz.
  utt_id = by_text['nee nooit meer'][0]
  audio, _ = sf.read(str(split / utt_id.split('-')[0] / '1' / f'{utt_id}.flac'))
  assert np.argmax(np.abs(np.fft.rfft(audio))) * 16000 / len(audio) == pytest.approx(300, abs=1)
  # 'ajouté' (0.6 s) is padded with silence to one receptive field.
  assert by_text['ajoute'][1].frames == librispeech.MIN_SAMPLES

  config = default.get_config('tiny')
  config.data.source, config.data.reader = f'folder:{corpus}', 'direct'
  config.data.train_split = 'train+other_languages'
  both = data.load_split(config, config.data.train_split)
  assert sorted(both.texts) == sorted(['a cat', 'the dog', *by_text])
  # Each row's language (`train.language_heads`): 0 for the corpus's own, 1 French, 4 Dutch.
  want = {'a cat': 0, 'the dog': 0, 'ajoute': 1, 'veuillez laisser un message apres le bip': 1,
          'kijk daar': 4, 'ja zei hij tegen de vis': 4, 'nee nooit meer': 4}
  got = {}
  for batch in data.batches(config, config.data.train_split, train=False):
    got.update((t, k) for t, k, w in zip(batch['text'], batch['language'], batch['weights']) if w)
  assert got == want
  assert not other_languages.language_ids(config, 'train', data.load_split(config, 'train')).any()
  assert other_languages.language_of_speakers([5001, 5002, 5003, 5099, 5100, 5199, 5200]).tolist(
      ) == [1, 2, 3, 3, 4, 4, 5]
  # Made again with one language, nothing of the other is left; asked for one that is not
  # installed, it names its packages and keeps what it made before.
  other_languages.make_split(corpus, ('nl',), **roots)
  dutch = ['ja zei hij tegen de vis', 'kijk daar', 'nee nooit meer']
  spoken = lambda: sorted(t.lower() for _, t, _ in librispeech.read_transcripts(split).values())
  assert spoken() == dutch
  with pytest.raises(librispeech.DataError, match='asterisk-core-sounds-ru-g722'):
    other_languages.make_split(corpus, ('fr', 'ru'), **roots)
  assert spoken() == dutch


def test_missing_packages_and_unknown_languages_are_named(tmp_path):
  (tmp_path / 'corpus').mkdir()
  roots = {'asterisk_sounds': tmp_path / 'none', 'asterisk_docs': tmp_path / 'none',
           'fillets': tmp_path / 'none'}
  with pytest.raises(librispeech.DataError, match='asterisk-core-sounds-it-g722 and '
                                                  'asterisk-core-sounds-it'):
    other_languages.make_split(tmp_path / 'corpus', ('it',), **roots)
  with pytest.raises(librispeech.DataError, match="dialogue in 'cs'.*fillets-ng-data-cs"):
    other_languages.make_split(tmp_path / 'corpus', ('cs',), **roots)
  with pytest.raises(librispeech.DataError, match='Corpus folder .*nowhere does not exist'):
    other_languages.make_split(tmp_path / 'nowhere', ('fr',), **roots)
  assert not (tmp_path / 'nowhere').exists()
  with pytest.raises(ValueError, match="No recordings in 'es'"):
    next(other_languages.lines('es'))
