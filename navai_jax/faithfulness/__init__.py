"""Are the attribution maps faithful? The metrics (`metrics`), the frames they score
(`sampling`), the suite over every method (`suite`) and its tables (`summary`).

May import: core, configs, recognizer, speech, training, introspection.
"""
