"""`keras-yt prepare` then `keras-yt train --examples`: the run folder holds the same data as
`keras-yt train --log`, and evaluate / recommend work on it."""

import h5py
import numpy as np

from keras_yt.cli import main
from tests.test_cli import write_log


def stored(path):
    out = {}
    with h5py.File(path / "run.h5") as f:
        f.visititems(lambda name, item: out.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return out


def test_prepare_then_train_on_examples_equals_train_on_the_log(tmp_path, capsys):
    log = tmp_path / "watches.csv"
    write_log(log)
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "ex"),
                 "--max-history", "10", "--memory-limit", "500MB", "--threads", "1"]) == 0
    common = ["--epochs", "2", "--preset", "tiny_candidate"]
    assert main(["train", "--examples", str(tmp_path / "ex"), "--out", str(tmp_path / "run"),
                 *common]) == 0
    assert main(["train", "--log", str(log), "--out", str(tmp_path / "ref"),
                 "--max-history", "10", *common]) == 0
    mine, ref = stored(tmp_path / "run"), stored(tmp_path / "ref")
    assert set(mine) == set(ref)
    for name in ref:
        if not name.startswith("serving/"):
            np.testing.assert_array_equal(mine[name], ref[name], err_msg=name)
    assert main(["evaluate", "--run", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["recommend", "--run", str(tmp_path / "run"), "--user", "3", "--k", "3"]) == 0
    assert "user 3: top 3" in capsys.readouterr().out


def test_prepare_and_train_errors_are_one_line(tmp_path, capsys):
    log = tmp_path / "bad.csv"
    log.write_text("user,video,timestamp\n1,2,3\n1,2\n")
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "ex")]) == 2
    err = capsys.readouterr().err
    assert "keras-yt prepare: error:" in err and "line 3" in err and len(err.splitlines()) == 1
    assert main(["train", "--examples", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "not a prepared examples folder" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "exactly one of --log" in capsys.readouterr().err


def test_train_on_prepared_examples_defaults_to_the_bag_preset(tmp_path):
    """Prepared examples hold one next watch each: without --preset they train the bag preset
    (`keras-yt train --log` defaults to the attention preset, which trains on whole sequences)."""
    from keras_yt.models.presets import load_preset
    from keras_yt.run_folder import RunFolder

    log = tmp_path / "watches.csv"
    write_log(log)
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "ex"),
                 "--max-history", "10", "--threads", "1"]) == 0
    assert main(["train", "--examples", str(tmp_path / "ex"), "--out", str(tmp_path / "run"),
                 "--epochs", "1"]) == 0
    model = RunFolder(tmp_path / "run").load_model()
    bag = load_preset("movielens_candidate")["config"]
    assert model.history_encoder == "bag" and model.recent_history == bag["recent_history"]
    assert model.max_history == 10


def test_prepare_sequences_then_train_equals_train_on_the_log(tmp_path, capsys):
    """`prepare --sequences` then `train --examples` trains the default (attention) preset on
    streamed windows, and the run folder holds what `train --log` stores for it."""
    from keras_yt.models.presets import load_preset
    from keras_yt.run_folder import RunFolder

    log = tmp_path / "watches.csv"
    write_log(log)
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "seq"), "--sequences",
                 "--max-history", "12", "--threads", "1"]) == 0
    assert "sequence windows" in capsys.readouterr().out
    assert main(["train", "--examples", str(tmp_path / "seq"), "--out", str(tmp_path / "run"),
                 "--epochs", "2"]) == 0
    assert main(["train", "--log", str(log), "--out", str(tmp_path / "ref"), "--epochs", "2",
                 "--max-history", "12"]) == 0
    mine, ref = stored(tmp_path / "run"), stored(tmp_path / "ref")
    assert set(mine) == set(ref)
    for name in ref:
        if not name.startswith("serving/"):
            np.testing.assert_array_equal(mine[name], ref[name], err_msg=name)
    model = RunFolder(tmp_path / "run").load_model()
    sequential = load_preset("movielens_sequential")["config"]
    assert model.history_encoder == "attention" == sequential["history_encoder"]
    assert model.max_history == 12
    capsys.readouterr()
    assert main(["recommend", "--run", str(tmp_path / "run"), "--user", "3", "--k", "3"]) == 0
    assert "user 3: top 3" in capsys.readouterr().out


def test_a_preset_that_does_not_train_on_the_folder_fails_naming_both(tmp_path, capsys):
    log = tmp_path / "watches.csv"
    write_log(log)
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "seq"), "--sequences",
                 "--max-history", "8", "--threads", "1"]) == 0
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "ex"),
                 "--max-history", "8", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--examples", str(tmp_path / "seq"), "--out", str(tmp_path / "r1"),
                 "--preset", "movielens_candidate"]) == 2
    err = capsys.readouterr().err
    assert "movielens_candidate is a bag model" in err and "holds sequence windows" in err
    assert main(["train", "--examples", str(tmp_path / "ex"), "--out", str(tmp_path / "r2"),
                 "--preset", "movielens_sequential"]) == 2
    assert "prepare the log with --sequences" in capsys.readouterr().err
    assert main(["prepare", "--log", str(log), "--out", str(tmp_path / "s2"), "--sequences",
                 "--max-examples-per-user", "3"]) == 2
    assert "--max-examples-per-user caps next-watch examples" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "s2"))
