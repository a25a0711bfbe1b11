"""Losses of keras_yt."""

from keras_yt.losses.weighted_logistic_loss import WeightedLogisticLoss, watch_time_weights

__all__ = ["WeightedLogisticLoss", "watch_time_weights"]
