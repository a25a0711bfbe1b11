"""Lets `fit/evaluate/predict/predict_on_batch` take numpy string features (search queries)."""

import keras
import numpy as np

from keras_yt import backend
from keras_yt.layers.token_bag import TokenBag


class StringFeaturesMixin:
    """Keras' data adapters reject numpy string arrays: on TensorFlow they become `tf.string`
    tensors, on the other backends the model's `TokenBag` turns them into token ids first (also
    inside a `tf.data.Dataset`, and in a direct call)."""

    def _query_token_ids(self, name, queries):
        if name != "search_history":
            raise ValueError(
                f"feature {name!r} must hold int32 values, got a string tensor (only "
                "'search_history' takes strings)"
            )
        bags = [layer for layer in self._flatten_layers() if isinstance(layer, TokenBag)]
        if len(bags) != 1:
            raise ValueError(
                f"Feature {name!r} holds strings, but the model has {len(bags)} TokenBag layers "
                "(expected 1): pass token ids (TokenBag.token_ids) instead"
            )
        return bags[0].token_ids(queries)

    def _convert_strings(self, x):
        return backend.strings_to_tensors(x, tokenize=self._query_token_ids)

    def __call__(self, inputs, *args, **kwargs):
        inputs = self._convert_strings(inputs)  # query strings → token ids on JAX
        if isinstance(inputs, dict) and hasattr(self, "_check_features"):
            self._check_features(inputs)  # direct calls: numpy values checked as in predict
        if isinstance(inputs, dict):  # Keras refuses a dict that mixes tensors and numpy arrays
            inputs = {
                name: keras.ops.convert_to_tensor(value) if isinstance(value, np.ndarray) else value
                for name, value in inputs.items()
            }
        return super().__call__(inputs, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        validation = kwargs.get("validation_data")
        if isinstance(validation, tuple) and validation:
            kwargs["validation_data"] = (self._convert_strings(validation[0]), *validation[1:])
        return super().fit(self._convert_strings(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(self._convert_strings(x), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(self._convert_strings(x), *args, **kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        return super().train_on_batch(self._convert_strings(x), *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        return super().test_on_batch(self._convert_strings(x), *args, **kwargs)

    def predict_on_batch(self, x):
        return super().predict_on_batch(self._convert_strings(x))
