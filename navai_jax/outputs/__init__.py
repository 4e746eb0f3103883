"""What a person looks at or listens to: figures (`figures`, `layer_figures`, drawn in worker
processes by `drawing`), sonified patterns (`sonify`), a recording of one's own explained
(`recording`) and the run's HTML report (`report`).

May import: core, configs, recognizer, speech, training, introspection, faithfulness.
"""
