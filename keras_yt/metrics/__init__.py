"""Evaluation metrics (plain numpy): retrieval (recall/hit rate/MRR/MAP/NDCG@k) and ranking (AUC,
weighted per-user loss)."""

from keras_yt.metrics.ranking import auc, weighted_per_user_loss
from keras_yt.metrics.retrieval import (
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_top_k,
    recall_at_k,
)

__all__ = [
    "auc",
    "hit_rate_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "rank_top_k",
    "recall_at_k",
    "weighted_per_user_loss",
]
