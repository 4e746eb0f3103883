"""The recognizer itself: tokens (`vocab`), log-mel features (`features`), Wav2Letter as a Linen
module with its layer table (`model`), the same network as explicit layers for introspection
(`network`), and the CTC loss (`ctc`).

May import: core.
"""
