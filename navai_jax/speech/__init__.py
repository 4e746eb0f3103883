"""Speech data: LibriSpeech-layout folders (`librispeech`), sources and TFDS (`sources`,
`tfds_folder`, `tfds_records`), bucketed batches (`data`), and the synthesized corpus (`corpus`,
`espeak`, `sentences`) with its true word and phoneme times (`phoneme_times`).

May import: core, configs, recognizer (the receptive field and output length decide which
utterances a corpus may hold).
"""
