"""Looking inside a trained recognizer. Single frames: `frames`, sensitivity (eq. 1,
`attribution`), LRP (eqs. 2-5, `lrp`), activation maximization (`activation_max`), the relevance through
chosen channels of a layer (CRP, `concepts`). NAvAI over a
split: `alignment`, `moments`, what one batch contributes (`navai`), the pass over devices and
hosts (`dataset_pass`), `layer_profiles`, `phoneme_clusters`, `alignment_quality`.

May import: core, configs, recognizer, speech, training.
"""
