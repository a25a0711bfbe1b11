"""Model presets (JSON configs), installed as `keras_yt.zoo`."""
