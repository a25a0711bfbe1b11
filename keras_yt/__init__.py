"""keras_yt: Keras 3 layers and models for the YouTube recommender (Covington et al., 2016).

Importing `keras_yt` registers every layer, loss, model and optimizer with Keras' serialisation,
so `keras.saving.load_model("model.keras")` works after `import keras_yt`. Submodules:
`layers`, `losses`, `models`, `optimizers`, `metrics`, `data`, `datasets`, `evaluation` (the
leave-last-out protocol and baselines), `training` (the training recipe), `serving` (which
imports PyNNDescent / numba only when an approximate index is built or loaded).
"""

from keras_yt import (
    data,
    datasets,
    evaluation,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    serving,
    training,
)

__version__ = "0.1.0"

__all__ = [
    "data", "datasets", "evaluation", "layers", "losses", "metrics", "models", "optimizers",
    "serving", "training",
]
