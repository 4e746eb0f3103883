"""The presets (`default.get_config('tiny' | 'small' | 'paper')`). Imports nothing of navai_jax."""
