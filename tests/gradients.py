"""Gradients on the backend under test (TensorFlow tape or `jax.grad`), as dense numpy arrays."""

import keras
import numpy as np


def gradients(fn, sources) -> list[np.ndarray]:
    """Gradients of the scalar `fn()` with respect to the `keras.Variable`s `sources`.

    On TensorFlow a `tf.GradientTape` (row-sparse gradients are densified); on JAX `jax.grad` of
    `fn` with the variables' values swapped in through a `keras.StatelessScope`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = fn()
        grads = tape.gradient(loss, [s.value for s in sources])
        return [tf.convert_to_tensor(g).numpy() for g in grads]
    if backend == "jax":
        import jax

        def f(values):
            with keras.StatelessScope(state_mapping=list(zip(sources, values))):
                return fn()

        return [np.asarray(g) for g in jax.grad(f)([s.value for s in sources])]
    raise NotImplementedError(f"gradients() for backend {backend!r}")
