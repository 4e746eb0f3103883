"""One phoneme inventory for every engine: the 39 phonemes of CMU's ARPAbet, lower case.

Every engine names its sounds its own way: flite speaks CMU's ARPAbet (`ax`, `hh`, `pau`),
Piper eSpeak NG's IPA one character at a time (`ˈ`, `a`, `ɪ`, `ː`), eSpeak NG its own mnemonics
(`'aI`, `@2`, `t#`). The corpus writes each utterance's phonemes in ARPAbet (the engine's own
symbol beside it), so that phoneme classes, phonetic categories, the alignment-quality table and
the localisation metrics mean the same for every voice. ARPAbet is the inventory of the CMU
pronouncing dictionary and of TIMIT's usual 39-class folding: what an English speech researcher
reads without a key. Where a language distinguishes more (British LOT, START, NEAR), the nearest
US-English class is taken.
"""

from collections.abc import Sequence
import unicodedata

VOWELS = ('aa', 'ae', 'ah', 'ao', 'aw', 'ay', 'eh', 'er', 'ey', 'ih', 'iy', 'ow', 'oy', 'uh',
          'uw')
CONSONANTS = ('b', 'ch', 'd', 'dh', 'f', 'g', 'hh', 'jh', 'k', 'l', 'm', 'n', 'ng', 'p', 'r', 's',
              'sh', 't', 'th', 'v', 'w', 'y', 'z', 'zh')
ARPABET = tuple(sorted(VOWELS + CONSONANTS))

# Manner of articulation (`phoneme_clusters`): affricates count as fricatives (their release is
# a fricative), as in the eSpeak table there.
CATEGORIES = {
    **{p: 'vowel' for p in VOWELS},
    **{p: 'plosive' for p in ('p', 'b', 't', 'd', 'k', 'g')},
    **{p: 'fricative' for p in ('f', 'v', 'th', 'dh', 's', 'z', 'sh', 'zh', 'hh', 'ch', 'jh')},
    **{p: 'nasal' for p in ('m', 'n', 'ng')},
    **{p: 'approximant' for p in ('l', 'r', 'w', 'y')},
}

# eSpeak NG's English phoneme classes (stress and variant marks removed, as
# `phoneme_times.phoneme_class` does). None: no speech sound of its own (';' marks a linking
# transition).
ESPEAK = {
    '0': 'aa', '3': 'er', '3:': 'er', '@': 'ah', 'A:': 'aa', 'A@': 'aa', 'E': 'eh', 'I': 'ih',
    'IR': 'ih', 'O': 'ao', 'O:': 'ao', 'O@': 'ao', 'OI': 'oy', 'U': 'uh', 'U@': 'uh', 'V': 'ah',
    'VR': 'er', 'a': 'ae', 'aI': 'ay', 'aI@': 'ay', 'aU': 'aw', 'aa': 'ae', 'e': 'eh',
    'e@': 'eh', 'eI': 'ey', 'i': 'iy', 'i:': 'iy', 'i@': 'ih', 'o@': 'ao', 'oU': 'ow',
    '@U': 'ow', 'u': 'uw', 'u:': 'uw', 'u@': 'uh', 'aU@': 'aw', 'e#': 'eh', 'a#': 'ae',
    'p': 'p', 'b': 'b', 't': 't', 'd': 'd', 'k': 'k', 'g': 'g', '?': 't', 't[': 't',
    'f': 'f', 'v': 'v', 'T': 'th', 'D': 'dh', 's': 's', 'z': 'z', 'S': 'sh', 'Z': 'zh',
    'h': 'hh', 'x': 'k', 'tS': 'ch', 'dZ': 'jh', 'm': 'm', 'n': 'n', 'N': 'ng', 'l': 'l',
    'r': 'r', 'w': 'w', 'j': 'y', '@L': 'l', 'n-': 'n', 'm-': 'm', 'l-': 'l', 'r-': 'r',
    ';': None,
}

# eSpeak NG's IPA as Piper speaks it, one symbol or a digraph per phoneme. Stress marks and the
# length mark belong to the phoneme after or before them (`from_ipa`).
IPA = {
    'ə': 'ah', 'ɚ': 'er', 'ɜ': 'er', 'ɝ': 'er', 'æ': 'ae', 'ɑ': 'aa', 'ɒ': 'aa', 'ɔ': 'ao',
    'ʌ': 'ah', 'ɛ': 'eh', 'e': 'eh', 'ɪ': 'ih', 'ᵻ': 'ih', 'i': 'iy', 'ʊ': 'uh', 'u': 'uw',
    'ɐ': 'ah', 'a': 'ae', 'o': 'ow', 'aɪ': 'ay', 'aʊ': 'aw', 'eɪ': 'ey', 'oʊ': 'ow',
    'əʊ': 'ow', 'ɔɪ': 'oy', 'ɪə': 'ih', 'ɛə': 'eh', 'ʊə': 'uh', 'ɾ': 't', 'ŋ': 'ng',
    'θ': 'th', 'ð': 'dh', 'ʃ': 'sh', 'ʒ': 'zh', 'tʃ': 'ch', 'dʒ': 'jh', 'h': 'hh', 'j': 'y',
    'ɹ': 'r', 'r': 'r', 'l': 'l', 'ɫ': 'l', 'w': 'w', 'm': 'm', 'n': 'n', 'p': 'p', 'b': 'b',
    't': 't', 'd': 'd', 'k': 'k', 'ɡ': 'g', 'g': 'g', 'f': 'f', 'v': 'v', 's': 's', 'z': 'z',
    'ʔ': 't', 'x': 'k', 'ç': 'hh',
}
IPA_MARKS = {'ˈ', 'ˌ', 'ː', 'ˑ', '\u0329', '\u0303', '\u032f'}  # stress, length, syllabic, ...


def from_espeak(phoneme_class: str) -> str | None:
  """ARPAbet of an eSpeak NG English phoneme class; a ValueError names one not in the table."""
  if phoneme_class not in ESPEAK:
    raise ValueError(f'eSpeak phoneme {phoneme_class!r} has no ARPAbet class in '
                     'phonemes.ESPEAK.')
  return ESPEAK[phoneme_class]


def from_flite(phone: str) -> str | None:
  """ARPAbet of a flite phone: itself, `ax` folded into `ah`; None for the pause `pau`."""
  if phone == 'pau':
    return None
  phone = {'ax': 'ah'}.get(phone, phone)
  if phone not in CATEGORIES:
    raise ValueError(f'flite phone {phone!r} is not ARPAbet.')
  return phone


def from_ipa(symbols: Sequence[str]) -> list[tuple[str, list[int]]]:
  """Groups Piper's IPA symbols into ARPAbet phonemes: [(phoneme, indices of its symbols)].

  A stress mark joins the phoneme after it, a length, syllabic or other modifier mark the one
  before it, two
  symbols that form a diphthong or affricate (`IPA`'s digraphs) one phoneme. Symbols that are no
  phoneme (spaces, punctuation, Piper's start and end marks) are left out; a ValueError names a
  symbol that is neither.
  """
  out: list[tuple[str, list[int]]] = []
  pending: list[int] = []  # stress marks waiting for their vowel
  i = 0
  while i < len(symbols):
    s = symbols[i]
    if s in ('ˈ', 'ˌ'):
      pending.append(i)
    elif s in IPA_MARKS or unicodedata.category(s[:1]) in ('Lm', 'Mn'):  # e.g. ʲ, ʰ
      if out:
        out[-1][1].append(i)
    elif i + 1 < len(symbols) and s + symbols[i + 1] in IPA:
      out.append((IPA[s + symbols[i + 1]], pending + [i, i + 1]))
      pending = []
      i += 1
    elif s in IPA:
      out.append((IPA[s], pending + [i]))
      pending = []
    elif s.isalpha():
      raise ValueError(f'IPA symbol {s!r} has no ARPAbet class in phonemes.IPA.')
    i += 1
  return out
