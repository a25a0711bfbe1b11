"""Backend-specific helpers of `keras_yt`, one module per Keras backend behind one interface.

Every layer does its arithmetic with `keras.ops` and stays backend-agnostic. The few things that
have no `keras.ops` equivalent (ragged ids, strings, row-sparse gradients and row-wise variable
updates) are functions of this package, with the same names and signatures on every backend:

* `keras_yt.backend.tensorflow`: TensorFlow (row-sparse `tf.IndexedSlices` gradients, ragged ids,
  `tf.string` queries);
* `keras_yt.backend.jax`: JAX (row-sparse gradients in keras_yt's own train step, dense padded
  ids only; strings are tokenised in the input pipeline, see `TokenBag`);
* `keras_yt.backend.generic`: any other Keras backend, with `keras.ops` only.

The module is picked once, at import, from `keras.backend.backend()` (the `KERAS_BACKEND`
environment variable or `~/.keras/keras.json`), and its functions are re-exported here:
`from keras_yt import backend; backend.gather_rows(table, ids)`. Importing this package imports
TensorFlow only on the TensorFlow backend (on JAX, TensorFlow's string ops are imported the first
time search queries are tokenised).

Interface: `is_ragged`, `ragged_to_dense`, `tokenize_queries`, `gather_rows`, `bag_sum_rows`,
`row_sparse_parts`, `with_row_values`, `unique_rows`, `scatter_assign_rows`, `scatter_sub_rows`,
`replica_sum`, `rows_where`, `strings_to_tensors`, `bfloat16_storage_dtype`, `load_bfloat16`,
`store_bfloat16` (bfloat16 optimizer slots: their bits on JAX), `table_initializer`
(large tables drawn by blocks of rows on JAX), and `name` (the backend these
functions were picked for).
"""

import keras

name = keras.backend.backend()

if name == "tensorflow":
    from keras_yt.backend import tensorflow as _impl
elif name == "jax":
    from keras_yt.backend import jax as _impl
else:
    from keras_yt.backend import generic as _impl

INTERFACE = (
    "is_ragged",
    "ragged_to_dense",
    "tokenize_queries",
    "gather_rows",
    "bag_sum_rows",
    "row_sparse_parts",
    "with_row_values",
    "unique_rows",
    "scatter_assign_rows",
    "scatter_sub_rows",
    "replica_sum",
    "rows_where",
    "strings_to_tensors",
    "bfloat16_storage_dtype",
    "load_bfloat16",
    "store_bfloat16",
    "table_initializer",
)

is_ragged = _impl.is_ragged
ragged_to_dense = _impl.ragged_to_dense
tokenize_queries = _impl.tokenize_queries
gather_rows = _impl.gather_rows
bag_sum_rows = _impl.bag_sum_rows
row_sparse_parts = _impl.row_sparse_parts
with_row_values = _impl.with_row_values
unique_rows = _impl.unique_rows
scatter_assign_rows = _impl.scatter_assign_rows
scatter_sub_rows = _impl.scatter_sub_rows
replica_sum = _impl.replica_sum
rows_where = _impl.rows_where
strings_to_tensors = _impl.strings_to_tensors
bfloat16_storage_dtype = _impl.bfloat16_storage_dtype
load_bfloat16 = _impl.load_bfloat16
store_bfloat16 = _impl.store_bfloat16
table_initializer = _impl.table_initializer

__all__ = ["INTERFACE", "name", *INTERFACE]
