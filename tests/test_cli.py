"""The `keras-yt` command line: the demo at tiny size, and the steps on a user's own CSV log."""

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_yt.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "keras_yt.cli", *args],
        capture_output=True, text=True, cwd=cwd, check=False,
    )


def test_demo_tiny_writes_a_consistent_run_folder(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--size", "tiny", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    candidate = metrics["candidate_generator"]
    assert candidate["model"]["recall@100"] > candidate["popularity"]["recall@100"]
    assert 0 <= candidate["model"]["recall@10"] <= candidate["model"]["recall@100"] <= 1
    ranker = metrics["ranker"]
    assert 0.5 < ranker["model"]["auc"] <= 1
    assert 0 <= ranker["model"]["weighted_per_user_loss"] <= 1
    assert ranker["model"]["weighted_per_user_loss"] < ranker["random"]["weighted_per_user_loss"]
    assert metrics["index"]["recall@100_vs_exact"] >= 0.95
    for name in ("training_loss.png", "recall_at_k.png", "model_vs_popularity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "user_tower" / "saved_model.pb").is_file()
    assert (out / "ranker_saved_model" / "saved_model.pb").is_file()
    assert (out / "index.h5").is_file()
    assert "top 10" in result.stdout
    # redirected output: no progress-bar escape codes or carriage returns (issue 24, item 17)
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "\x1b[" not in text, text[-2000:]


def write_log(path, n_users=40, n_videos=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["user,video,timestamp,watch_time"]
    for user in range(1, n_users + 1):
        start = rng.integers(0, 50)
        for step in range(8):  # each user walks through consecutive video ids
            video = 100 + (start + step) % n_videos
            rows.append(f"{user},{video},{1000 * user + step},{rng.uniform(10, 100):.1f}")
    path.write_text("\n".join(rows) + "\n")


def test_train_evaluate_export_index_recommend_on_a_csv(tmp_path):
    log, run = tmp_path / "watches.csv", tmp_path / "run"
    write_log(log)
    assert main(["train", "--log", str(log), "--out", str(run), "--epochs", "2",
                 "--preset", "tiny_candidate"]) == 0
    assert main(["evaluate", "--run", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["candidate_generator"]
    assert metrics["num_test_users"] == 40
    assert main(["export", "--run", str(run)]) == 0
    assert (run / "user_tower" / "saved_model.pb").is_file()
    assert main(["index", "--run", str(run)]) == 0
    result = run_cli("recommend", "--run", str(run), "--user", "3", "--k", "5")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "score" in line]
    assert len(lines) == 5
    videos = [int(line.split("video")[1].split()[0]) for line in lines]
    assert all(100 <= v < 130 for v in videos)  # original ids, not model ids


@pytest.mark.parametrize(
    "content, message",
    [
        ("user,video\n1,2\n", "timestamp"),
        ("user,video,timestamp\n1,abc,yesterday\n", "'yesterday' on line 2"),
        ("user,video,timestamp,video\n1,2,3,4\n", "names column 'video' twice"),
        ("user,video,timestamp\n1,2,3\n1,2,3,4\n", "line 3: 4 values for 3 header columns"),
        # issue 24, item 15
        ("user,video,timestamp\r1,2,3\r2,3,4\r", "line 1: a carriage return"),
        ("user,video,timestamp\r\n1,2,3\r\n2,3\r4\r\n", "line 3: a carriage return"),
        ("user,video,timestamp\n1,2,3\n,3,4\n", "'user' of watch log"),
        ("user,video,timestamp\n1,2,3\n2, ,4\n", "has an empty id on line 3"),
    ],
)
def test_bad_logs_fail_with_a_clear_message_and_no_traceback(tmp_path, content, message):
    log = tmp_path / "bad.csv"
    log.write_bytes(content.encode())
    result = run_cli("train", "--log", str(log), "--out", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "keras-yt train: error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_user_and_missing_run_are_clear_errors(tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "is not a keras-yt run folder" in capsys.readouterr().err
    log, run = tmp_path / "watches.csv", tmp_path / "run"
    write_log(log, n_users=10)
    assert main(["train", "--log", str(log), "--out", str(run), "--epochs", "1",
                 "--preset", "tiny_candidate"]) == 0
    assert main(["recommend", "--run", str(run), "--user", "999"]) == 2
    assert "unknown user '999'" in capsys.readouterr().err


def test_help_is_quick_to_load_and_silent():
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "recommend" in result.stdout and "serve" in result.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, keras_yt.cli; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'jax'}))"],
        capture_output=True, text=True, check=True,
    )
    assert loaded.stdout.strip() == "[]"  # TensorFlow loads inside the commands that need it


def test_recommend_prints_raw_ids_fewer_than_k_and_no_log_lines(tiny_run):
    from keras_yt.run_folder import RunFolder

    run = RunFolder(tiny_run)
    row = run.user_rows(["u3"])
    eligible = len(run.videos) - len(set(run.watched(row)[0]))
    result = run_cli("recommend", "--run", str(tiny_run), "--user", "u3", "--k", "5000")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = [line for line in result.stdout.splitlines() if "score" in line]
    assert len(lines) == eligible and f"only {eligible} eligible" in result.stdout
    assert "-inf" not in result.stdout and "search: exact" in result.stdout
    assert all(line.split("video")[1].split()[0].startswith("v") for line in lines)


def test_every_error_is_one_line_with_status_2(tiny_run, tmp_path):
    import shutil

    log = tmp_path / "watches.csv"
    log.write_text("user,video,timestamp\nu1,v1,1\n")
    (tmp_path / "a_file").write_text("x")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "candidate_generator.keras").write_bytes(b"PK\x03\x04 truncated zip")
    bad_index = tmp_path / "bad_index"
    shutil.copytree(tiny_run, bad_index)
    (bad_index / "index.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "preset.json").write_text("{not json")
    cases = [
        (["train", "--log", str(log), "--out", str(tmp_path / "a_file")], "is an existing file"),
        (["train", "--log", str(log), "--out", str(tmp_path / "r"), "--preset",
          str(tmp_path / "preset.json")], "preset.json' is not valid JSON"),
        (["train", "--log", str(log), "--out", str(tmp_path / "r"), "--epochs", "0"],
         "--epochs: must be an integer >= 1, got 0"),
        (["train", "--log", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")],
         "does not exist"),
        (["evaluate", "--run", str(broken)], "candidate_generator.keras' is not a .keras model"),
        (["recommend", "--run", str(bad_index), "--user", "u1", "--search", "index"],
         "index.h5"),
        (["recommend", "--run", str(tiny_run), "--user", "nobody"], "unknown user 'nobody'"),
        (["recommend", "--run", str(tmp_path), "--user", "1"], "is not a keras-yt run folder"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Traceback" not in result.stderr and message in lines[-1], (args, result.stderr)
        assert lines[-1].startswith("keras-yt") and len(lines) == 1, lines


def test_a_failed_train_leaves_the_previous_run_intact(tiny_run, tmp_path, monkeypatch):
    import shutil

    from keras_yt.run_folder import RunFolder

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    log = tmp_path / "ints.csv"
    write_log(log, n_users=12)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(RunFolder, "save_data", fail)  # after the model is saved in the stage
    assert main(["train", "--log", str(log), "--out", str(run), "--epochs", "1",
                 "--preset", "tiny_candidate"]) == 2
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ints.csv", "run"]


def test_train_and_recommend_on_64_bit_and_zero_ids(tmp_path, capsys):
    from tests.runs import train_run
    from tests.runs import write_log as write_raw_log

    log = write_raw_log(tmp_path / "ints.csv", n_users=12, ids="int")  # users 0.., videos 2**40+j
    run = train_run(log, tmp_path / "run", epochs=1)
    capsys.readouterr()
    assert main(["recommend", "--run", str(run), "--user", "0", "--k", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "score" in line]
    videos = [int(line.split("video")[1].split()[0]) for line in lines]
    assert len(videos) == 3 and all(2**40 <= v < 2**40 + 30 for v in videos)


def test_train_defaults_beat_popularity_twice_on_a_structured_log(tmp_path):
    # A few hundred users and videos from the simulator (topics, sessions): `train` with its
    # defaults must learn the structure, not just popularity.
    from keras_yt.datasets import synthetic

    watches = synthetic.watch_logs(num_users=300, num_videos=500, seed=0).watches
    log, run = tmp_path / "watches.csv", tmp_path / "run"
    rows = ["user,video,timestamp,watch_time"] + [
        f"{w['user']},{w['video']},{w['timestamp']:.3f},{w['watch_time']:.1f}" for w in watches
    ]
    log.write_text("\n".join(rows) + "\n")
    assert main(["train", "--log", str(log), "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["candidate_generator"]
    model, popularity = metrics["model"], metrics["popularity"]
    assert model["recall@10"] >= 2 * popularity["recall@10"], metrics
    assert model["unfiltered"]["recall@10"] > popularity["unfiltered"]["recall@10"], metrics
    # The default is the order-aware preset, trained on sequence windows at its own width.
    from keras_yt.models.presets import load_preset
    from keras_yt.run_folder import RunFolder

    trained = RunFolder(run).load_model()
    expected = load_preset("movielens_sequential")["config"]
    assert trained.history_encoder == "attention"
    assert trained.max_history == expected["max_history"] == 200
    history = json.loads((run / "history.json").read_text())
    assert history["batch_size"] == 32  # the sequence recipe's, not the bag's scaled one


def test_a_flag_the_chosen_model_would_ignore_fails_naming_it(tmp_path, tiny_run, capsys):
    """`--max-examples-per-user` caps a bag preset's examples; the default attention preset
    trains on every position, and `--init-from` keeps the old run's model and width."""
    log = tmp_path / "watches.csv"
    write_log(log)
    assert main(["train", "--log", str(log), "--out", str(tmp_path / "run"),
                 "--max-examples-per-user", "3"]) == 2
    err = capsys.readouterr().err
    assert "--max-examples-per-user" in err and "'movielens_sequential'" in err, err
    assert not (tmp_path / "run").exists()
    for flag, value, shown in (("--preset", "tiny_candidate", "'tiny_candidate'"),
                               ("--max-history", "7", "7")):
        assert main(["train", "--log", str(log), "--out", str(tmp_path / "new"),
                     "--init-from", str(tiny_run), flag, value]) == 2
        err = capsys.readouterr().err
        assert f"leave out {flag} (got {shown})" in err, err
    assert not (tmp_path / "new").exists()


def test_distribute_options_fail_early_naming_the_flag_and_the_backend(tmp_path, capsys):
    import keras

    log = tmp_path / "watches.csv"
    write_log(log)
    base = ["train", "--log", str(log), "--out", str(tmp_path / "run")]
    assert main([*base, "--model-parallel", "2"]) == 2
    assert "--model-parallel needs --distribute model, got --distribute none" in (
        capsys.readouterr().err
    )
    wrong = "data" if keras.backend.backend() == "tensorflow" else "mirrored"
    assert main([*base, "--distribute", wrong]) == 2
    err = capsys.readouterr().err
    assert f"--distribute {wrong} needs the" in err and keras.backend.backend() in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
    result = run_cli(*base, "--distribute", "pipeline")
    assert result.returncode == 2 and "invalid choice: 'pipeline'" in result.stderr


@pytest.mark.tf_only
def test_train_under_mirrored_strategy_writes_a_run_that_recommends(tmp_path, capsys):
    # In a process of its own (one MirroredStrategy per process, see CandidateGenerator), with
    # the CPU split into two logical devices so that there are two replicas.
    log, run = tmp_path / "watches.csv", tmp_path / "run"
    write_log(log)
    code = (
        "import sys, tensorflow as tf\n"
        "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0],"
        " [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from keras_yt.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "train", "--log", str(log), "--out", str(run), "--epochs",
         "2", "--preset", "tiny_candidate", "--distribute", "mirrored"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy: 2 replicas" in result.stdout
    assert main(["recommend", "--run", str(run), "--user", "3", "--k", "5"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if "score" in line]) == 5


@pytest.mark.parametrize("distribute", ["data", "model"])
def test_train_data_and_model_parallel_on_four_jax_cpu_devices(tmp_path, distribute):
    import os

    log, run = tmp_path / "watches.csv", tmp_path / "run"
    write_log(log)  # 30 videos: 31 rows with the padding id, padded to 32 for 2 shards
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_NUM_CPU_DEVICES="4")
    extra = ["--model-parallel", "2"] if distribute == "model" else []
    result = subprocess.run(
        [sys.executable, "-m", "keras_yt.cli", "train", "--log", str(log), "--out", str(run),
         "--epochs", "2", "--preset", "tiny_candidate", "--distribute", distribute, *extra],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = ("ModelParallel: mesh {'batch': 2, 'model': 2}" if distribute == "model"
                else "DataParallel: the batch split over 4 devices")
    assert expected in result.stdout
    # The saved model has the log's videos only (no padding rows), and serves.
    result = run_cli("recommend", "--run", str(run), "--user", "3", "--k", "5")
    assert result.returncode == 0, result.stderr
    videos = [int(line.split("video")[1].split()[0])
              for line in result.stdout.splitlines() if "score" in line]
    assert len(videos) == 5 and all(100 <= v < 130 for v in videos)


def test_a_second_train_into_the_same_out_fails_at_once(tmp_path, capsys):
    """While another process writes --out, `keras-yt train` refuses before reading the log."""
    import os
    import time

    from tests.runs import write_log

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom keras_yt.run_folder import RunFolder\n"
         "with RunFolder.lock(sys.argv[1]):\n    print('locked', flush=True)\n"
         "    sys.stdin.read()\n", str(tmp_path / "run")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        status = main(["train", "--log", str(write_log(tmp_path / "w.csv")), "--out",
                       str(tmp_path / "run"), "--preset", "tiny_candidate", "--epochs", "1"])
        assert status == 2 and time.perf_counter() - start < 5
        captured = capsys.readouterr()
        assert "another keras-yt process is writing the run folder" in captured.err
        assert "reading" not in captured.out
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (tmp_path / "run").exists()


def test_train_reports_duplicate_rows_and_users_too_short_to_train_on(tmp_path, capsys):
    from tests.runs import write_log

    log = write_log(tmp_path / "w.csv", n_users=12)
    lines = log.read_text().splitlines()
    extra = [lines[1], lines[2], "lonely,v1,2016-09-02T10:00:00Z,5", "pair,v1,1473933600,1",
             "pair,v2,1473933601,1"]
    log.write_text("\n".join(lines + extra) + "\n")
    assert main(["train", "--log", str(log), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--preset", "tiny_candidate"]) == 0
    out = capsys.readouterr().out
    assert "2 duplicate rows (same user, video and timestamp as an earlier row)" in out
    assert "2 users with fewer than 3 watches get no training example (1 with a single watch" \
        in out


def test_index_on_a_full_disk_is_a_clear_error_and_keeps_the_old_index(tiny_run, tmp_path):
    # Regression (issue 24, item 9): the HDF5 write error was followed by SIGSEGV (or a hang).
    import resource
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["index", "--run", str(run)]) == 0
    old = (run / "index.h5").read_bytes()

    def file_size_limit():  # a full disk, as far as the writer can tell
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run([sys.executable, "-m", "keras_yt.cli", "index", "--run", str(run)],
                            capture_output=True, text=True, timeout=300,
                            preexec_fn=file_size_limit, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "could not write" in error[0] and "index.h5" in error[0]
    assert "File too large" in error[0]
    assert (run / "index.h5").read_bytes() == old
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


def test_a_bad_log_fails_before_tensorflow_loads(tmp_path):
    # Regression (issue 24, item 14): the log was read after TensorFlow had loaded (5-6 s).
    log = tmp_path / "bad.csv"
    log.write_text("user,video,timestamp\n1,abc,yesterday\n")
    code = ("import sys, time; from keras_yt.cli import main; start = time.perf_counter(); "
            f"status = main(['train', '--log', {str(log)!r}, '--out', {str(tmp_path / 'run')!r}]);"
            " print(status, 'tensorflow' in sys.modules, 'keras' in sys.modules, "
            "time.perf_counter() - start)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    status, tensorflow, keras_loaded, _seconds = result.stdout.splitlines()[-1].split()
    assert (status, tensorflow, keras_loaded) == ("2", "False", "False"), result.stderr
    assert "'yesterday' on line 2" in result.stderr


def test_crafted_or_damaged_run_data_names_the_file_and_the_dataset(tiny_run, tmp_path):
    # Regression (issue 24, item 15): a 2**40-row dataset gave a bare MemoryError, invalid UTF-8
    # ids a codec error without the file.
    import shutil

    import h5py

    from keras_yt.run_folder import RunFolder

    for case in ("huge", "utf8"):
        run = tmp_path / case
        shutil.copytree(tiny_run, run)
        with h5py.File(run / "run.h5", "r+") as f:
            if case == "huge":
                del f["watched/indices"]
                f.create_dataset("watched/indices", shape=(2**40,), dtype="int64",
                                 chunks=(1024,))
            else:
                ids = f["videos/ids"]
                dtype = ids.dtype
                values = ids[()]
                values[0] = b"\xff\xfe"
                del f["videos/ids"]
                f.create_dataset("videos/ids", data=values, dtype=dtype)
        with pytest.raises(ValueError) as error:
            RunFolder(run).videos  # noqa: B018
        message = str(error.value)
        assert "run.h5" in message, message
        assert "checksum" in message or (
            "'watched/indices'" in message if case == "huge" else "utf-8" in message), message


def test_a_crafted_index_dataset_names_the_file_and_the_dataset(tiny_run, tmp_path):
    import shutil

    import h5py

    from keras_yt.serving import CandidateIndex
    from keras_yt.serving._index_file import seal

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["index", "--run", str(run)]) == 0
    path = run / "index.h5"
    with h5py.File(path, "r+") as f:
        del f["b"]
        f.create_dataset("b", shape=(2**40,), dtype="float32", chunks=(1024,))
    seal(path)  # a valid seal: the shape itself is what must be refused
    with pytest.raises(ValueError, match=r"index\.h5'?: dataset 'b' has shape \(1099511627776,\)"):
        CandidateIndex.load(path)


@pytest.mark.parametrize("command", ["evaluate", "export", "index", "warm-up"])
def test_help_says_what_the_command_reads_and_writes(command, capsys):
    # Regression (issue 24, item 16): these commands had a one-line --help, --run unexplained.
    with pytest.raises(SystemExit) as exit_status:
        main([command, "--help"])
    assert exit_status.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    body = text.split("options:")[0]
    assert len(body.split()) > 30, text  # a description, not only the usage line
    if command != "warm-up":
        assert "--run RUN run folder written by keras-yt train" in text


def test_train_a_sequential_preset_then_recommend(tmp_path, capsys):
    """An attention preset trains on sequence windows, at the preset's history width."""
    from keras_yt.models.presets import load_preset
    from tests.runs import write_log as write_raw_log

    preset = load_preset("movielens_sequential")
    preset["config"].update(num_videos=100, video_embedding_dim=8,  # no tower, no bias
                            max_history=7, encoder_blocks=1)
    path = tmp_path / "seq.json"
    path.write_text(json.dumps(preset))
    log = write_raw_log(tmp_path / "ints.csv", n_users=12, ids="int")
    run = tmp_path / "run"
    assert main(["train", "--log", str(log), "--out", str(run), "--epochs", "1",
                 "--preset", str(path)]) == 0
    assert "training examples" in capsys.readouterr().out
    from keras_yt.run_folder import RunFolder

    model = RunFolder(run).load_model()
    assert model.history_encoder == "attention" and model.max_history == 7

    # Each user's last three watches share a second: the held-out last watch of a sequence
    # model reads all seven earlier ones (its training sequences do), not only the five
    # strictly earlier in time (the bag's rollback), and the served history holds all eight.
    rows = ["user,video,timestamp"] + [
        f"u{u},v{(u + s) % 30},{1000 * u + min(s, 5)}" for u in range(12) for s in range(8)]
    tied = tmp_path / "tied.csv"
    tied.write_text("\n".join(rows) + "\n")
    assert main(["train", "--log", str(tied), "--out", str(tmp_path / "tied"), "--epochs", "1",
                 "--preset", str(path)]) == 0
    tied_run = RunFolder(tmp_path / "tied")
    test = tied_run.test_examples()
    for user, history, label in zip(test["user"], test["watch_history"], test["label"]):
        u = int(tied_run.users.raw_ids([user])[0][1:])
        videos = [f"v{(u + s) % 30}" for s in range(8)]
        assert tied_run.videos.raw_ids(history).tolist() == videos[:7], (u, history)
        assert tied_run.videos.raw_ids([label]).tolist() == videos[7:]
        served = tied_run.latest_features(tied_run.user_rows([f"u{u}"]))["watch_history"][0]
        assert tied_run.videos.raw_ids(served).tolist() == videos[1:]
    assert main(["recommend", "--run", str(run), "--user", "0", "--k", "3"]) == 0
