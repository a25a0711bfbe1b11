import json

import numpy as np
import pytest

from keras_yt.models import CandidateGenerator, Ranker, load_preset, preset_names

SHIPPED = {
    "youtube_paper_candidate", "youtube_paper_ranker", "movielens_candidate",
    "movielens_sequential", "tiny_candidate", "tiny_ranker",
}
# The paper-scale presets hold 1M-row tables; in the default run they are built with the
# vocabularies shrunk (every other setting as shipped). The slow test builds them at full size.
SMALL = {"num_videos": 1000}


def model_class(name):
    return {"CandidateGenerator": CandidateGenerator, "Ranker": Ranker}[
        load_preset(name)["class_name"]
    ]


def test_shipped_presets_are_listed():
    assert SHIPPED <= set(preset_names())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_preset_builds(name):
    cls = model_class(name)
    overrides = dict(SMALL) if name.startswith("youtube_paper") else {}
    if name == "youtube_paper_candidate":
        overrides["num_sampled"] = 500
    if name == "youtube_paper_candidate":
        overrides["search_num_bins"] = 1000
    model = cls.from_preset(name, **overrides)
    model.build()
    config = load_preset(name)["config"]
    for key, value in config.items():
        expected = overrides.get(key, value)
        got = model.get_config()[key]
        assert json.loads(json.dumps(got)) == expected, key
    assert model.count_params() > 0


def test_paper_candidate_preset_matches_the_paper():
    config = load_preset("youtube_paper_candidate")["config"]
    assert config["num_videos"] == 1_000_000 and config["search_num_bins"] == 1_000_000
    assert config["hidden_units"] == [1024, 512, 256]
    assert config["max_history"] == 50 and config["max_queries"] == 50
    assert 1000 <= config["num_sampled"] < 10_000


@pytest.mark.slow
def test_paper_candidate_preset_builds_at_full_size():
    model = CandidateGenerator.from_preset("youtube_paper_candidate")
    model.build()
    W, b = model.get_output_embeddings()
    assert W.shape == (1_000_000, 256) and b.shape == (1_000_000,)
    u = model.user_model()(
        {
            "watch_history": np.array([[1, 2] + [0] * 48]),
            "search_history": np.array([["cat videos"] * 50]),
            "geography": np.array([3]), "device": np.array([1]),
            "gender": np.array([1.0]), "logged_in": np.array([1.0]), "user_age": np.array([0.3]),
        }
    )
    assert u.shape == (1, 256)


def test_the_sequential_preset_samples_negatives_beyond_ten_thousand_videos():
    """`keras-yt train`'s default trains every position of 32 windows of 200 at once: the full
    softmax over 1M videos would be 32 x 200 x 1M logits a step (25 GB), so past 10,000 videos
    the preset shares 4,096 sampled negatives across the batch instead."""
    from keras_yt.models.candidate_generator import AUTO_NUM_SAMPLED, FULL_SOFTMAX_MAX_VIDEOS

    small = CandidateGenerator.from_preset("movielens_sequential", num_videos=1683)
    large = CandidateGenerator.from_preset("movielens_sequential",
                                           num_videos=FULL_SOFTMAX_MAX_VIDEOS + 1)
    assert small.softmax.num_sampled is None  # MovieLens: the full softmax, as measured
    assert large.softmax.num_sampled == AUTO_NUM_SAMPLED == 4096
    assert small.get_config()["num_sampled"] == large.get_config()["num_sampled"] == "auto"


def test_overrides_and_errors():
    model = CandidateGenerator.from_preset("tiny_candidate", num_sampled=5)
    assert model.num_sampled == 5
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        CandidateGenerator.from_preset("nope")
    with pytest.raises(ValueError, match="is for 'Ranker', not 'CandidateGenerator'"):
        CandidateGenerator.from_preset("tiny_ranker")


def test_preset_from_a_json_path(tmp_path):
    path = tmp_path / "mine.json"
    preset = load_preset("tiny_ranker")
    preset["config"]["hidden_units"] = [4]
    path.write_text(json.dumps(preset))
    assert Ranker.from_preset(path).hidden_units == (4,)


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"class_name": "Ranker", "config": {', r"preset file '.*bad\.json' is not valid JSON: "),
        (b"\xff\xfe\x00garbage", r"preset file '.*bad\.json' is not valid JSON: "),
        ("[1, 2]", r"preset '.*bad\.json' must be a JSON object with a 'config' object, got list"),
        ('{"class_name": "Ranker", "config": {"nope": 1}}',
         r"preset '.*bad\.json' does not fit Ranker: .*num_videos"),
    ],
)
def test_malformed_preset_files_name_the_file(tmp_path, content, match):
    # Regression (issue 13, item 15): a bare JSONDecodeError without the path.
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=match):
        Ranker.from_preset(path)
