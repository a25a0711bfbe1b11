"""The functional user tower that `CandidateGenerator.user_model()` returns."""

import keras

from keras_yt.models._string_features import StringFeaturesMixin


@keras.saving.register_keras_serializable(package="keras_yt")
class UserTower(StringFeaturesMixin, keras.Model):
    """A functional model from serving features to the user vector (example age fixed at 0).

    It is a plain Keras functional model (built as `UserTower(inputs, outputs)`), whose `predict`
    also takes numpy arrays of query strings. Get one from `CandidateGenerator.user_model()`.

    Example:

    >>> import numpy as np
    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator.from_preset("tiny_candidate")
    >>> tower = model.user_model()
    >>> u = tower.predict({"watch_history": np.array([[1, 2, 0, 0, 0]]),
    ...                    "search_history": np.array([["cats", "", ""]]),
    ...                    "geography": np.array([1]), "user_age": np.array([0.3])}, verbose=0)
    >>> u.shape
    (1, 8)
    """
