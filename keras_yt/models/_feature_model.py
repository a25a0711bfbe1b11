"""What `CandidateGenerator` and `Ranker` share: building from named features, reloading."""

import keras


class FeatureModelMixin:
    """For models whose inputs are named features listed by `feature_specs()`.

    Subclasses implement `feature_specs() -> {name: (shape_without_batch, dtype)}` and
    `_build_from_features(inputs)`, which calls the sublayers on symbolic inputs.
    """

    def build(self, input_shape=None):
        if self.built:
            return
        self._build_from_features(
            {
                name: keras.KerasTensor((None, *shape), dtype=dtype)
                for name, (shape, dtype) in self.feature_specs().items()
            }
        )
        self.built = True

    def get_build_config(self):
        return {"input_shape": "features"}

    def build_from_config(self, config):
        self.build()

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer (`.keras` files)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(optimizer=config.get("optimizer"))
        if self.built:
            self.optimizer.build(self.trainable_variables)
