"""Each experiment from a trained run to the files it writes, one module each, the same shape
(`common.start`: check the config and the output folder; one library call; write):
`figure1`, `figure2`, `navai_split`, `layer_clusters`, `explain_audio`,
`evaluate_attributions`; and `cli`, the scripts' shared flags.

May import: everything below.
"""
