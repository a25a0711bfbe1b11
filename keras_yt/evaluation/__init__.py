"""Offline evaluation: the leave-last-out protocol and the baselines a model is compared with.

`LeaveLastOut` splits a watch log and ranks every item for each user's held-out last watch;
`Popularity`, `ItemKNN`, `EASE` and `ImplicitALS` (through the optional `implicit` package) are the
baselines, each with `fit(watches)` and `score(users) -> (num_users, num_items)`.
`probability_by_upload_age` and `watches_by_upload_age` measure the paper's figure 4 (how much
probability a model gives to fresh videos).
"""

from keras_yt.evaluation.ease import EASE
from keras_yt.evaluation.implicit_als import ImplicitALS
from keras_yt.evaluation.item_knn import ItemKNN
from keras_yt.evaluation.leave_last_out import LeaveLastOut, held_out_ranks, metrics_from_ranks
from keras_yt.evaluation.popularity import Popularity
from keras_yt.evaluation.upload_age import probability_by_upload_age, watches_by_upload_age

__all__ = [
    "EASE", "ImplicitALS", "ItemKNN", "LeaveLastOut", "Popularity", "held_out_ranks",
    "metrics_from_ranks", "probability_by_upload_age", "watches_by_upload_age",
]
