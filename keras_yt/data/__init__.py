"""Streaming training-example generation from watch and impression logs.

Watch logs are numpy structured arrays with the fields of `WATCH_DTYPE` (``user``, ``video``,
``timestamp`` in seconds, ``watch_time``); video ids are in ``[1, num_videos)``, 0 is padding.
"""

from keras_yt.data.candidate import candidate_examples, leave_last_out_split
from keras_yt.data.example_shards import ExampleShards
from keras_yt.data.impression_log import read_raw_impressions
from keras_yt.data.io import (
    WATCH_DTYPE,
    iter_watch_log,
    read_raw_watch_log,
    read_watch_log,
    to_unix_seconds,
    to_watch_log,
)
from keras_yt.data.prepare import prepare_examples, prepare_sequences
from keras_yt.data.ranking import ranking_examples, to_impressions
from keras_yt.data.sequence import sequence_examples
from keras_yt.data.summary import watch_log_summary
from keras_yt.data.vocabulary import Vocabulary

__all__ = [
    "WATCH_DTYPE",
    "ExampleShards",
    "Vocabulary",
    "candidate_examples",
    "iter_watch_log",
    "leave_last_out_split",
    "prepare_examples",
    "prepare_sequences",
    "ranking_examples",
    "read_raw_impressions",
    "read_raw_watch_log",
    "read_watch_log",
    "sequence_examples",
    "to_impressions",
    "to_unix_seconds",
    "to_watch_log",
    "watch_log_summary",
]
