"""Offline evaluation: the leave-last-out protocol and the baselines a model is compared with.

`LeaveLastOut` splits a watch log and ranks every item for each user's held-out last watch;
`Popularity`, `ItemKNN`, `EASE` and `ImplicitALS` (through the optional `implicit` package) are the
baselines, each with `fit(watches)` and `score(users) -> (num_users, num_items)`.
"""

from keras_yt.evaluation.ease import EASE
from keras_yt.evaluation.implicit_als import ImplicitALS
from keras_yt.evaluation.item_knn import ItemKNN
from keras_yt.evaluation.leave_last_out import LeaveLastOut, held_out_ranks, metrics_from_ranks
from keras_yt.evaluation.popularity import Popularity

__all__ = [
    "EASE", "ImplicitALS", "ItemKNN", "LeaveLastOut", "Popularity", "held_out_ranks",
    "metrics_from_ranks",
]
