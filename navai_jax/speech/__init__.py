"""Speech data: LibriSpeech-layout folders (`librispeech`), sources and TFDS (`sources`,
`tfds_folder`, `tfds_records`), bucketed batches (`data`), the synthesized corpus (`corpus`,
`sentences`) from several engines (`voices`: `espeak`, `flite`, `piper_tts`, `pico`) with its
true word and phoneme times (`phoneme_times`) in one inventory (`phonemes`), and the human voice
to test on (`asterisk`).

May import: core, configs, recognizer (the receptive field and output length decide which
utterances a corpus may hold).
"""
