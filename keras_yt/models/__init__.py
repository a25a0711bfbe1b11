"""Prebuilt models: the candidate generator and the ranker of the paper."""

from keras_yt.models.candidate_generator import CandidateGenerator
from keras_yt.models.presets import load_preset, preset_names
from keras_yt.models.ranker import Ranker
from keras_yt.models.saving import load_model, save_model
from keras_yt.models.user_tower import UserTower

__all__ = [
    "CandidateGenerator", "Ranker", "UserTower", "load_model", "load_preset", "preset_names",
    "save_model",
]
