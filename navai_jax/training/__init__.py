"""Training and evaluating the recognizer: augmentation, checkpoints (orbax), the device mesh
(`parallel`), the training loop and its schedule, error rates and evaluation of a run.

May import: core, configs, recognizer, speech.
"""
