"""The checks every public keras_yt layer and model passes, in one call: `run_layer_test`.

Named after keras-hub's `TestCase.run_layer_test`, so readers of both find it. One call checks,
on the backend under test (CI runs the layer and model tests on TensorFlow and JAX):

1. the config is JSON-serialisable, `from_config` rebuilds an object with the same config, and
   `keras.saving.serialize_keras_object` / `deserialize_keras_object` find the registered class;
2. a symbolic call (on `keras.Input`s shaped like the data, batch size `None`) and an eager call
   give the expected output shape (and values, when given), and the expected numbers of weights;
3. `fit` runs one step on the tiny batch: the loss is finite and every trainable weight changes;
4. a `.keras` save / load of a model using it gives the same outputs (to float32 round-off);
5. under `mixed_float16` and `mixed_bfloat16` every variable stays float32, every float
   sublayer takes the policy (built with `dtype=self.dtype_policy`), float outputs are in the
   compute dtype, and they are close to the float32 outputs of the same weights; a model's own
   `fit` and `evaluate` (its metrics included) run under the policy with finite results.

A layer is trained inside a small `keras.Model` whose output is the layer's (the loss: mean
squared distance to `train_targets`, zeros by default). A model (a `keras.Model` subclass) is
trained by its own `fit` on `train_data`, after its own `compile()`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import keras
import numpy as np

__all__ = ["assert_config_round_trip", "assert_saved_model_reproduces", "run_layer_test"]

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def assert_config_round_trip(obj) -> None:
    """The config is JSON-serialisable and `from_config` rebuilds an object with the same config.

    Also checks that `keras.saving` serialises the object under its registered name and
    deserialises it to the same class.
    """
    config = obj.get_config()
    restored = type(obj).from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    registered = keras.saving.get_registered_name(type(obj))
    assert serialized["registered_name"] == registered, (
        f"{type(obj).__name__} is not registered with "
        f"keras.saving.register_keras_serializable: its name is {registered!r}"
    )
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(obj) and clone.get_config() == config


def assert_saved_model_reproduces(model: keras.Model, inputs, tmp_path, atol=1e-6,
                                  predict: bool = True) -> None:
    """A `.keras` save/load of `model` gives the same outputs on `inputs`.

    The outputs are `model.predict(inputs)`, or the eager call `model(inputs)` with
    `predict=False` (no traced function: quicker for a layer test).
    """
    path = os.path.join(tmp_path, "model.keras")

    def outputs(m):
        return m.predict(inputs, verbose=0) if predict else _numpy(m(inputs))

    expected = outputs(model)
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = outputs(restored)
    for e, a in zip(keras.tree.flatten(expected), keras.tree.flatten(actual), strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=1e-5)


# ------------------------------------------------------------------ helpers


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray)


def _symbolic(value, name: str | None = None):
    """`keras.Input`s shaped like the arrays of `value` (batch `None`, named by their dict keys),
    other leaves as they are."""
    if isinstance(value, dict):
        return {key: _symbolic(item, key) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_symbolic(item, f"{name}_{i}" if name else None)
                           for i, item in enumerate(value))
    if not _is_array(value):
        return value
    dtype = "string" if value.dtype.kind in "OUS" else str(value.dtype)
    return keras.Input(shape=value.shape[1:], dtype=dtype, name=name)


def _numpy(value):
    return keras.tree.map_structure(
        lambda v: keras.ops.convert_to_numpy(v) if v is not None else None, value
    )


def _shapes(output):
    """The shape of a tensor, or a dict / list of the shapes of a dict / list of tensors."""
    if isinstance(output, dict):
        return {key: tuple(value.shape) for key, value in output.items()}
    if isinstance(output, (list, tuple)) and not isinstance(output[0], int | None):
        return [tuple(value.shape) for value in output]
    return tuple(output.shape)


def _unbatched(shapes):
    """`shapes` with batch size `None` (same structure as `_shapes`)."""
    if isinstance(shapes, dict):
        return {key: (None, *shape[1:]) for key, shape in shapes.items()}
    if isinstance(shapes, list):
        return [(None, *shape[1:]) for shape in shapes]
    return (None, *shapes[1:])


class LayerModel(keras.Model):
    """`inputs -> layer(inputs["x"], **inputs["kwargs"], **static)`: a layer trained by `fit`."""

    def __init__(self, layer, static_kwargs, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        self.static_kwargs = static_kwargs

    def call(self, inputs, training=None):
        static = {"training": training, **self.static_kwargs}  # a given training= wins
        return self.layer(inputs["x"], **inputs["kwargs"], **static)


def _split_kwargs(call_kwargs: dict) -> tuple[dict, dict]:
    arrays = {k: v for k, v in call_kwargs.items() if _is_array(v)}
    static = {k: v for k, v in call_kwargs.items() if not _is_array(v)}
    return arrays, static


def _assert_trains_and_evaluates(model: keras.Model, train_data: tuple, policy: str) -> None:
    """A model's own `compile()`, `fit` and `evaluate` run under `policy`, all finite."""
    model.compile()
    model.build()
    x, y = train_data
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    results = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    for name, value in {**{k: v[0] for k, v in history.history.items()}, **results}.items():
        assert np.isfinite(value), f"{policy}: {name} = {value} after fit / evaluate"


def _float_outputs(output) -> list:
    return [t for t in keras.tree.flatten(output)
            if "float" in keras.backend.standardize_dtype(t.dtype)]


# ------------------------------------------------------------------ the test


def run_layer_test(
    cls,
    init_kwargs: dict,
    input_data,
    expected_output_shape,
    *,
    call_kwargs: dict | None = None,
    expected_output_data=None,
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    setup=None,
    train_data: tuple | None = None,
    train_targets=None,
    run_training_check: bool = True,
    run_saving_check: bool = True,
    run_precision_checks: bool = True,
    precision_output_dtype: str | None = None,
    precision_rtol: float = 0.05,
    atol: float = 1e-6,
) -> None:
    """Runs the shared checks (module docstring) on `cls(**init_kwargs)`.

    Args:
        cls: the layer or model class.
        init_kwargs: constructor arguments (without `dtype`).
        input_data: the first call argument: a numpy array, or a dict / list of them.
        expected_output_shape: shape of the eager output (a tuple, or a structure of tuples
            matching the output); the symbolic output's is the same with batch size `None`.
        call_kwargs: more call arguments; numpy arrays among them become `keras.Input`s in the
            symbolic call and model inputs in `fit`, the others (`training=...`) pass as they are.
        expected_output_data: the eager output's values, if known.
        expected_num_trainable_weights: number of trainable weights after the call, if checked.
        expected_num_non_trainable_weights: likewise for non-trainable ones.
        setup: called with each new instance before its first call (e.g. `adapt`, or copying
            state that `from_config` does not carry).
        train_data: `(x, y)` for a model's own `fit` (models only; a layer trains on
            `input_data`).
        train_targets: `fit` targets for a layer; zeros shaped like its output by default.
        run_training_check: run check 3.
        run_saving_check: run check 4.
        run_precision_checks: run check 5.
        precision_output_dtype: dtype of the float outputs under a mixed policy, when it is not
            the compute dtype (e.g. a loss computed in float32).
        precision_rtol: tolerance of mixed-precision outputs, relative to the largest float32
            output.
        atol: absolute tolerance of the save/load comparison.
    """
    call_kwargs = dict(call_kwargs or {})
    arrays, static = _split_kwargs(call_kwargs)
    is_model = issubclass(cls, keras.Model)

    def new(**extra):
        obj = cls(**init_kwargs, **extra)
        if setup is not None:
            setup(obj)
        return obj

    # 1. config round trip.
    assert_config_round_trip(new())

    # 2. symbolic and eager calls.
    layer = new()
    symbolic = layer(_symbolic(input_data), **_symbolic(arrays), **static)
    assert _shapes(symbolic) == _unbatched(expected_output_shape), (
        f"symbolic output shape {_shapes(symbolic)}, expected "
        f"{_unbatched(expected_output_shape)}")
    layer = new()
    eager = layer(input_data, **call_kwargs)
    assert _shapes(eager) == expected_output_shape, (
        f"eager output shape {_shapes(eager)}, expected {expected_output_shape}")
    if expected_output_data is not None:
        for actual, expected in zip(keras.tree.flatten(_numpy(eager)),
                                    keras.tree.flatten(expected_output_data), strict=True):
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, (
            f"{len(layer.trainable_weights)} trainable weights, expected "
            f"{expected_num_trainable_weights}")
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
            f"{len(layer.non_trainable_weights)} non-trainable weights, expected "
            f"{expected_num_non_trainable_weights}")

    # 3. one fit step.
    if run_training_check:
        if is_model:
            assert train_data is not None, "a model's training check needs train_data=(x, y)"
            trained = new()
            trained.compile()
            trained.build()  # the keras_yt models build from their feature specs
            x, y = train_data
        else:
            trained = LayerModel(new(), static, name="layer_model")
            x = {"x": input_data, "kwargs": arrays}
            output = _numpy(eager)
            y = (train_targets if train_targets is not None
                 else keras.tree.map_structure(np.zeros_like, output))
            trained.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            trained(x)  # builds the weights before they are recorded
        before = [keras.ops.convert_to_numpy(w) for w in trained.trainable_weights]
        with warnings.catch_warnings():  # a layer without trainable weights still runs in fit
            warnings.filterwarnings("ignore", "The model does not have any trainable weights")
            history = trained.fit(x, y, batch_size=len(keras.tree.flatten(x)[0]), epochs=1,
                                  verbose=0)
        assert np.isfinite(history.history["loss"][0]), history.history
        for weight, old in zip(trained.trainable_weights, before, strict=True):
            assert not np.array_equal(keras.ops.convert_to_numpy(weight), old), (
                f"fit did not change the trainable weight {weight.path}")

    # 4. .keras save / load.
    if run_saving_check:
        with tempfile.TemporaryDirectory() as folder:
            if is_model:
                model = new()
                model(input_data, **call_kwargs)
                inputs = input_data
            else:
                symbolic_inputs = {"x": _symbolic(input_data, "x"), "kwargs": _symbolic(arrays)}
                model = keras.Model(
                    symbolic_inputs,
                    new()(symbolic_inputs["x"], **symbolic_inputs["kwargs"], **static),
                )
                inputs = {"x": input_data, "kwargs": arrays}
            assert_saved_model_reproduces(model, inputs, folder, atol=atol, predict=is_model)

    # 5. mixed precision.
    if run_precision_checks:
        full = new()
        full(input_data, **call_kwargs)
        # The second call of each instance (below too): seeded sampling draws alike in both.
        reference = _numpy(full(input_data, **call_kwargs))
        scale = max([1.0] + [float(np.max(np.abs(r))) for r in keras.tree.flatten(reference)
                             if np.issubdtype(np.asarray(r).dtype, np.floating)])
        for policy in MIXED_POLICIES:
            mixed = new(dtype=policy)
            output = mixed(input_data, **call_kwargs)
            for variable in mixed.weights:
                if "float" in variable.dtype:
                    assert variable.dtype == "float32", (
                        f"{policy}: variable {variable.path} is {variable.dtype}, not float32")
            for sublayer in mixed._flatten_layers(include_self=False):
                if "float" not in sublayer.dtype_policy.compute_dtype:
                    continue  # integer preprocessing (keras.layers.Hashing): no float policy
                assert sublayer.dtype_policy.name == policy, (
                    f"{policy}: sublayer {sublayer.name} has policy {sublayer.dtype_policy.name}"
                    f": build sublayers with dtype=self.dtype_policy")
            compute = precision_output_dtype or keras.dtype_policies.get(policy).compute_dtype
            for tensor in _float_outputs(output):
                assert keras.backend.standardize_dtype(tensor.dtype) == compute, (
                    f"{policy}: output dtype {tensor.dtype}, expected {compute}")
            if is_model and train_data is not None and run_training_check:
                _assert_trains_and_evaluates(new(dtype=policy), train_data, policy)
            mixed.set_weights(full.get_weights())
            output = _numpy(mixed(input_data, **call_kwargs))
            for actual, expected in zip(keras.tree.flatten(output),
                                        keras.tree.flatten(reference), strict=True):
                if np.issubdtype(np.asarray(expected).dtype, np.floating):
                    np.testing.assert_allclose(
                        np.asarray(actual, "float32"), expected, rtol=precision_rtol,
                        atol=precision_rtol * scale, err_msg=f"{policy} vs float32 outputs")
                else:
                    np.testing.assert_array_equal(actual, expected)
