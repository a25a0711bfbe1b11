"""keras_yt: Keras 3 layers and models for the YouTube recommender (Covington et al., 2016).

Submodules: `layers`, `losses`, `models`, `optimizers`, `metrics`, `data`, `datasets`,
`evaluation` (the leave-last-out protocol and baselines), `training` (the training recipe),
`serving`, `distribution` (data and model parallelism with `keras.distribution` on JAX). They
load on first use (`keras_yt.models`, `from keras_yt.models import ...`), so
`import keras_yt` and the `keras-yt` command line start without loading TensorFlow. Loading a
submodule registers its classes with Keras' serialisation: import `keras_yt.models` (which loads
the layers, losses and optimizers it uses) before `keras.saving.load_model("model.keras")`.
"""

import importlib

from keras_yt._quiet import quiet_keras_import

quiet_keras_import()  # TensorFlow's start-up log lines are dropped when Keras loads

__version__ = "0.1.0"

__all__ = [
    "data", "datasets", "distribution", "evaluation", "layers", "losses", "metrics", "models",
    "optimizers", "serving", "training",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"keras_yt.{name}")
    raise AttributeError(f"module 'keras_yt' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
