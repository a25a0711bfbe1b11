"""Pointing a running service at a new run: POST /reload and SIGHUP, no request fails."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.runs import train_run, write_log  # noqa: E402


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """A second run of the same log shape (another seed: other weights, same ids)."""
    folder = tmp_path_factory.mktemp("other_run")
    return train_run(write_log(folder / "watches.csv", seed=1), folder / "run", epochs=1)


def start_server(run):
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_yt.cli", "serve", "--run", str(run), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = process.stdout.readline()  # printed once the run is loaded and warmed
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"no address in {line!r}; stderr: {process.stderr.read()[-2000:]}")
    url = f"http://127.0.0.1:{match.group(1)}"
    deadline = time.monotonic() + 60
    while True:  # listening, then the user tower loaded in the background
        try:
            health = httpx.get(f"{url}/health", timeout=5)
            health.raise_for_status()
            if health.json()["tower"] == "ready":
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server was not ready within 60 s"
        time.sleep(0.2)


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def test_reload_swaps_the_run_while_requests_keep_being_answered(tiny_run, other_run):
    process, url = start_server(tiny_run)
    try:
        old = httpx.get(f"{url}/health").json()["model"]
        # One list per client: the service answers requests concurrently, so only each
        # client's own (sequential) requests have an order to check.
        per_client, errors, stop_flag = [[], []], [], threading.Event()

        def client_loop(answers):
            with httpx.Client(timeout=30) as client:
                for i in range(2000):  # bounded
                    if stop_flag.is_set():
                        return
                    response = client.post(f"{url}/recommend", json={"user": f"u{i % 40}",
                                                                      "k": 3})
                    if response.status_code != 200:
                        errors.append(response.text)
                    else:
                        answers.append(response.json()["model"])

        threads = [threading.Thread(target=client_loop, args=(a,)) for a in per_client]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        response = httpx.post(f"{url}/reload", json={"run": str(other_run)}, timeout=120)
        assert response.status_code == 200, response.text
        info = response.json()
        time.sleep(0.5)
        stop_flag.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors[:3]
        assert info["previous"] == old and info["model"] != old
        assert set(per_client[0] + per_client[1]) == {old, info["model"]}
        for answers in per_client:
            assert answers[-1] == info["model"]
            # Once swapped, never back: each client's answers are old..., new...
            switch = answers.index(info["model"])
            assert set(answers[switch:]) == {info["model"]}
        assert httpx.get(f"{url}/health").json()["model"] == info["model"]

        # A folder that is not a run: 422, and the new run stays served.
        bad = httpx.post(f"{url}/reload", json={"run": str(other_run / "nope")}, timeout=60)
        assert bad.status_code == 422 and bad.json()["field"] == "run"
        assert httpx.get(f"{url}/health").json()["model"] == info["model"]
        assert httpx.post(f"{url}/reload", json={"runs": "x"}).status_code == 422
    finally:
        stop(process)


def test_sighup_reloads_the_served_path(tiny_run, other_run, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(tiny_run)
    process, url = start_server(link)
    try:
        old = httpx.get(f"{url}/health").json()["model"]
        staged = tmp_path / "staged"
        staged.symlink_to(other_run)
        os.replace(staged, link)  # atomically point the served path at the other run
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 90
        while httpx.get(f"{url}/health").json()["model"] == old:
            assert time.monotonic() < deadline, "SIGHUP did not swap the run within 90 s"
            time.sleep(0.2)
        assert httpx.post(f"{url}/recommend", json={"user": "u3", "k": 2}).status_code == 200
    finally:
        stop(process)
