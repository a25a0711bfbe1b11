"""The functional user tower that `CandidateGenerator.user_model()` returns."""

import keras
import numpy as np

from keras_yt import _checks
from keras_yt.models._feature_model import predict_split_over_replicas, runs_on_several_replicas
from keras_yt.models._string_features import StringFeaturesMixin


@keras.saving.register_keras_serializable(package="keras_yt")
class UserTower(StringFeaturesMixin, keras.Model):
    """A functional model from serving features to the user vector (example age fixed at 0).

    It is a plain Keras functional model (built as `UserTower(inputs, outputs)`), whose `predict`
    also takes numpy arrays of query strings. Get one from `CandidateGenerator.user_model()`.
    Numpy features are checked before `predict`: ids must be whole numbers that fit the input's
    integer dtype (an id >= 2**31 is an error, never wrapped to another id), floats finite.

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

    def _check_features(self, x) -> None:
        if not isinstance(x, dict):
            return
        for name, tensor in self.input.items():
            if name in x:
                dtype = keras.backend.standardize_dtype(tensor.dtype)
                value = x[name]
                if dtype != "string" and isinstance(value, (list, tuple, np.ndarray)) and (
                    np.asarray(value).dtype.kind in "USO"
                ):
                    continue  # query strings: tokenised into ids by the mixin (off TensorFlow)
                _checks.feature_array(name, x[name], tuple(tensor.shape[1:]), dtype)

    def predict(self, x, *args, **kwargs):
        self._check_features(x)
        return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_features(x)
        if runs_on_several_replicas(self):
            return predict_split_over_replicas(self, x)
        return super().predict_on_batch(x)
