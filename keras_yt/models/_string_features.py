"""Lets `fit/evaluate/predict/predict_on_batch` take numpy string features (search queries)."""

from keras_yt import backend


class StringFeaturesMixin:
    """Keras' data adapters reject numpy string arrays; convert them to tf.string tensors first."""

    def fit(self, x=None, *args, **kwargs):
        return super().fit(backend.strings_to_tensors(x), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(backend.strings_to_tensors(x), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(backend.strings_to_tensors(x), *args, **kwargs)

    def predict_on_batch(self, x):
        return super().predict_on_batch(backend.strings_to_tensors(x))
