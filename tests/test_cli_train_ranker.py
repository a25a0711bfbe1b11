"""`keras-yt train-ranker`: the ranker on a user's own impressions log (issue 24, item 16)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_yt.cli import main


def write_impressions(path, n_users=50, per_user=12, seed=0):
    """A CSV impressions log; videos '007' and '7' are two ids, popular videos are clicked."""
    rng = np.random.default_rng(seed)
    rows = ["user,video,timestamp,clicked,watch_time,device,age"]
    for user in range(n_users):
        for step in range(per_user):
            video = ["007", "7", *[f"v{i}" for i in range(30)]][rng.integers(0, 32)]
            clicked = int(rng.uniform() < (0.6 if video in ("007", "7", "v0", "v1") else 0.08))
            watch = rng.uniform(10, 200) * clicked
            device = ["phone", "tv", "7"][rng.integers(0, 3)]
            rows.append(f"u{user},{video},{1000 * user + 60 * step},{clicked},{watch:.1f},"
                        f"{device},{rng.uniform(0, 5):.2f}")
    path.write_text("\n".join(rows) + "\n")
    return rows[1:]


def brute_force_auc(labels, scores):
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_train_ranker_writes_a_folder_whose_metrics_reproduce(tmp_path, capsys):
    from keras_yt.data import Vocabulary
    from keras_yt.models.saving import load_model

    log, out = tmp_path / "impressions.csv", tmp_path / "ranker"
    rows = [r.split(",") for r in write_impressions(log)]
    assert main(["train-ranker", "--log", str(log), "--out", str(out), "--categorical",
                 "device", "--epochs", "3", "--batch-size", "64", "--hidden-units", "16,8",
                 "--embedding-dim", "8", "--max-history", "5"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "ranker.json").read_text())
    clicked = np.array([int(r[3]) for r in rows])
    times = np.array([float(r[2]) for r in rows])
    assert info["read"]["impressions"] == len(rows) == 600
    assert info["read"]["clicked"] == clicked.sum()
    assert f"{len(rows):,} impressions, 50 users, 32 videos" in printed
    assert "AUC" in printed and "weighted per-user loss" in printed
    test = times >= info["split"]["test_from_timestamp"]
    assert info["split"]["test"] == test.sum() == 120  # the latest 20%
    assert info["continuous_features"] == ["time_since_last_watch", "previous_impressions", "age"]
    videos = Vocabulary.load(out / "videos.h5")
    devices = Vocabulary.load(out / "vocabularies" / "device.h5")
    assert {"007", "7"} <= set(videos.ids.tolist())  # raw ids exact: two videos
    assert sorted(devices.ids.tolist()) == ["7", "phone", "tv"]

    # The held-out metrics, recomputed from the saved model with brute-force features.
    model = load_model(out / "ranker.keras")
    x = {k: [] for k in ("video_id", "watch_history", "time_since_last_watch",
                         "previous_impressions", "device", "age")}
    for i in np.flatnonzero(test):
        user, video, t = rows[i][0], rows[i][1], times[i]
        earlier = [j for j in range(len(rows)) if rows[j][0] == user and times[j] < t]
        clicks = [j for j in earlier if clicked[j]]
        history = [r for r in videos.lookup([rows[j][1] for j in clicks]).tolist()][-5:]
        x["watch_history"].append([0] * (5 - len(history)) + history)
        x["time_since_last_watch"].append(t - times[clicks[-1]] if clicks else -1.0)
        x["previous_impressions"].append(sum(rows[j][1] == video for j in earlier))
        x["video_id"].append(videos.lookup([video])[0])
        x["device"].append(devices.lookup([rows[i][5]])[0])
        x["age"].append(float(rows[i][6]))
    x = {k: np.asarray(v, dtype="float32" if k in ("time_since_last_watch",
                                                    "previous_impressions", "age") else "int32")
         for k, v in x.items()}
    scores = model.predict(x, verbose=0)[:, 0]
    expected = brute_force_auc(clicked[test].astype(bool), scores)
    assert info["metrics"]["model"]["auc"] == pytest.approx(expected, abs=1e-3)
    loss = info["metrics"]["model"]["weighted_per_user_loss"]
    assert 0 <= loss <= 1 and info["history"]["loss"][-1] < info["history"]["loss"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["impressions.csv", "ranker"]


BAD_LOGS = {
    "missing_column": ("user,video,timestamp,clicked\n1,2,3,1\n",
                       "is missing column(s) ['watch_time']"),
    "clicked_2": ("user,video,timestamp,clicked,watch_time\n1,2,3,1,5\n1,2,4,2,0\n",
                  "Column 'clicked' of impressions log '{log}' must hold 0 or 1; got '2' on "
                  "line 3"),
    "nan_watch_time": ("user,video,timestamp,clicked,watch_time\n1,2,3,1,5\n1,3,4,1,nan\n",
                       "Column 'watch_time' of impressions log '{log}' must hold numbers; got "
                       "'nan' on line 3"),
    "negative_watch_time": ("user,video,timestamp,clicked,watch_time\n1,2,3,1,-5\n",
                            "finite numbers >= 0 (seconds watched); got '-5' on line 2"),
    "milliseconds": ("user,video,timestamp,clicked,watch_time\n1,2,1473933600000,1,5\n",
                     "looks like milliseconds"),
    "empty_id": ("user,video,timestamp,clicked,watch_time\n1,,3,1,5\n",
                 "Column 'video' of impressions log '{log}' has an empty id on line 2"),
    "text_feature": ("user,video,timestamp,clicked,watch_time,device\n1,2,3,1,5,tv\n",
                     "got 'tv' on line 2 (a column of ids? name it in --categorical)"),
    "one_time": ("user,video,timestamp,clicked,watch_time\n1,2,3,1,5\n2,2,3,0,0\n",
                 "needs impressions at two times at least"),
}


def test_bad_impression_logs_fail_in_one_line_before_tensorflow_loads(tmp_path):
    cases = {}
    for name, (content, message) in BAD_LOGS.items():
        log = tmp_path / f"{name}.csv"
        log.write_text(content)
        cases[name] = (["train-ranker", "--log", str(log), "--out", str(tmp_path / "out")],
                       message.format(log=log))
    frame = tmp_path / "nan.parquet"
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"user": [1, 2], "video": ["a", "b"], "timestamp": [1.0, 2.0],
                  "clicked": [0, 1], "watch_time": [0.0, np.nan]}).to_parquet(frame)
    cases["parquet_nan"] = (["train-ranker", "--log", str(frame), "--out", str(tmp_path / "o")],
                            "must hold finite numbers; got nan on row 2")
    good = tmp_path / "good.csv"
    write_impressions(good, n_users=3)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    cases["foreign_out"] = (["train-ranker", "--log", str(good), "--out", str(foreign)],
                            "is a non-empty folder that is not a folder of keras-yt train-ranker")
    cases["unknown_categorical"] = (
        ["train-ranker", "--log", str(good), "--out", str(tmp_path / "o"), "--categorical",
         "devise"], "categorical feature(s) ['devise'] are not feature columns")
    script = (
        "import contextlib, io, json, sys\nfrom keras_yt.cli import main\nresults = {}\n"
        f"for name, argv in {json.dumps({k: v[0] for k, v in cases.items()})}.items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        status = main(argv)\n"
        "    results[name] = [status, err.getvalue()]\n"
        "print(json.dumps([results, 'tensorflow' in sys.modules, 'keras' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    results, tensorflow, keras_loaded = json.loads(result.stdout.splitlines()[-1])
    assert not tensorflow and not keras_loaded
    for name, (_, message) in cases.items():
        status, err = results[name]
        assert status == 2, (name, err)
        assert err.startswith("keras-yt train-ranker: error: ") and err.count("\n") == 1, err
        assert message in err, (name, err)
    assert (foreign / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()
