"""What every floor uses: safe writes and folder locks (`files`), one format for the allowed
values of a config section and one message for what breaks them (`rules`), and a folder per
processor where a job's processes keep what XLA compiled (`xla_cache`).

May import: nothing of navai_jax.
"""
