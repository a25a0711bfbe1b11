"""Small trained run folders shared by the CLI, run-folder, recommender, export, service tests."""

from pathlib import Path

import numpy as np
import pytest


def write_log(path: Path, n_users: int = 40, n_videos: int = 30, seed: int = 0,
              ids: str = "string") -> Path:
    """A CSV watch log: each user walks through consecutive videos, 8 watches each.

    `ids="string"`: users `u<i>`, videos `v<j>`, ISO-8601 timestamps; `ids="int"`: users 0..,
    videos 2**40 + j (64-bit), Unix seconds.
    """
    rng = np.random.default_rng(seed)
    rows = ["user,video,timestamp,watch_time"]
    for user in range(n_users):
        start = rng.integers(0, 50)
        for step in range(8):
            video = (start + step) % n_videos
            if ids == "string":
                row = f"u{user},v{video},2016-09-{1 + user % 28:02d}T10:{step:02d}:00Z"
            else:
                row = f"{user},{2**40 + video},{1473933600 + 1000 * user + step}"
            rows.append(f"{row},{rng.uniform(10, 100):.1f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def train_run(log: Path, out: Path, epochs: int = 2) -> Path:
    from keras_yt.cli import main

    status = main(["train", "--log", str(log), "--out", str(out), "--epochs", str(epochs),
                   "--preset", "tiny_candidate"])
    assert status == 0
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run trained on a CSV of string ids (read only: copy it before changing it)."""
    folder = tmp_path_factory.mktemp("tiny_run")
    return train_run(write_log(folder / "watches.csv"), folder / "run")
