"""`keras-yt serve`: a real server on 127.0.0.1 and a real HTTP client (short, bounded loops)."""

import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tiny_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_yt.cli", "serve", "--run", str(tiny_run), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()  # printed once the model is loaded and warmed
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, f"no address in {line!r}; stderr: {process.stderr.read()[-2000:]}"
        url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 60
        while True:  # listening, then the user tower loaded in the background
            try:
                health = httpx.get(f"{url}/health", timeout=5)
                health.raise_for_status()
                if health.json()["tower"] == "ready":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server was not ready within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_health_and_recommendations_in_raw_ids(server, tiny_run):
    from keras_yt.run_folder import RunFolder

    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["videos"] == 30 and health["users"] == 40
    response = httpx.post(f"{server}/recommend", json={"user": "u3", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == health["model"] and len(body["items"]) == 5
    run = RunFolder(tiny_run)
    watched = set(run.videos.raw_ids(run.watched(run.user_rows(["u3"]))[0]).tolist())
    assert all(item["id"].startswith("v") and item["id"] not in watched for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    body = httpx.post(f"{server}/recommend", json={
        "watch_history": ["v1", "v2"], "k": 100, "exclude": ["v3"]}).json()
    ids = [item["id"] for item in body["items"]]
    assert len(ids) == 27 and not {"v1", "v2", "v3"} & set(ids)  # 30 videos - 3 excluded


@pytest.mark.parametrize("content, status, field", [
    (b'{"user": "u3", ', 400, None),
    (b'{"user": "u3", "kk": 3}', 422, "kk"),
    (b'{"user": "u3", "k": "3"}', 422, "k"),
    (b'{"user": "u3", "k": 0}', 422, "k"),
    (b'{"user": "u3", "k": -2}', 422, "k"),
    (b'{"user": ["u3"]}', 422, "user"),
    (b'{"watch_history": "v1"}', 422, "watch_history"),
    (b'{"user": "nobody"}', 404, "user"),
    (b'{"k": 3}', 422, "watch_history"),
    (b'[1, 2]', 422, None),
])
def test_bad_requests_get_a_json_error_naming_the_field(server, content, status, field):
    response = httpx.post(f"{server}/recommend", content=content,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field and body["error"]
    if field:
        assert field in body["error"] or field == "watch_history"


def test_concurrent_requests_equal_serial_answers(server):
    requests = [{"user": f"u{i % 40}", "k": 1 + i % 5} for i in range(24)] + [
        {"watch_history": [f"v{(i + j) % 30}" for j in range(i % 6)], "k": 4} for i in range(24)]
    with httpx.Client(timeout=30) as client:
        serial = [client.post(f"{server}/recommend", json=r).json() for r in requests]

    def post(r):
        with httpx.Client(timeout=30) as client:
            return client.post(f"{server}/recommend", json=r).json()

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(post, requests * 2))
    assert parallel == serial * 2


def test_an_empty_or_unknown_history_is_answered_with_a_fallback_sign(server):
    """Popular videos for want of a known watch: the response says so, and only then."""
    for history in ([], ["not-a-video", "neither"]):
        body = httpx.post(f"{server}/recommend", json={"watch_history": history, "k": 3}).json()
        assert body["fallback"] == "popular" and len(body["items"]) == 3, body
    for request in ({"watch_history": ["v1", "unknown"], "k": 3}, {"user": "u3", "k": 3}):
        body = httpx.post(f"{server}/recommend", json=request).json()
        assert body["fallback"] is None and len(body["items"]) == 3, body
def start_server(run, *extra_args, python_serve=None):
    """A server subprocess on 127.0.0.1 and a free port: `(process, url)`."""
    if python_serve is None:
        command = [sys.executable, "-m", "keras_yt.cli", "serve", "--run", str(run),
                   "--port", "0", *extra_args]
    else:
        command = [sys.executable, "-c",
                   "from keras_yt._quiet import load_tensorflow; load_tensorflow(); "
                   "from keras_yt.serving.service import serve; "
                   f"serve({str(run)!r}, port=0, {python_serve})"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"no address in {line!r}; stderr: {process.stderr.read()[-2000:]}")
    url = f"http://127.0.0.1:{match.group(1)}"
    try:
        _wait_for_the_tower(url)
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        raise
    return process, url


def _wait_for_the_tower(url: str) -> None:
    """Waits until `/health` says the user tower (loaded in the background) is ready."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).json()["tower"] == "ready":
                return
        except httpx.TransportError:  # not listening yet
            pass
        assert time.monotonic() < deadline, "the server was not ready within 60 s"
        time.sleep(0.2)


def test_http_errors_have_the_documented_body_and_cut_long_ids(server):
    for method, path, status in [("GET", "/nothing", 404), ("GET", "/recommend", 405),
                                 ("POST", "/health", 405)]:
        response = httpx.request(method, f"{server}{path}")
        assert response.status_code == status
        body = response.json()
        assert set(body) == {"error", "field"} and body["field"] is None, body
        assert "/recommend" in body["error"]
    # a non-ASCII digit is no id: not Python's int() message, and the field is named
    response = httpx.post(f"{server}/recommend", json={"watch_history": ["²"], "k": 3})
    if response.status_code != 200:
        body = response.json()
        assert body["field"] == "watch_history" and "invalid literal" not in body["error"], body
    # a 1 MB user id is not echoed back whole
    response = httpx.post(f"{server}/recommend", json={"user": "x" * 1_000_000}, timeout=30)
    assert response.status_code == 404 and response.json()["field"] == "user"
    assert len(response.content) < 1000 and "1,000,0" in response.json()["error"]


def test_bodies_over_the_limit_are_refused_unread(server):
    big = b'{"watch_history": [' + b'"v1", ' * 1_000_000 + b'"v2"]}'  # 6 MB
    response = httpx.post(f"{server}/recommend", content=big, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] is None

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 65536

    response = httpx.post(f"{server}/recommend", content=chunks(), timeout=30,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert httpx.post(f"{server}/recommend", json={"user": "u3", "k": 2}).status_code == 200


def test_slow_partial_and_idle_connections_are_closed(tiny_run):
    import socket

    process, url = start_server(tiny_run, python_serve="request_timeout=1.0")
    try:
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client() as client:  # a whole request in time is answered
            assert client.post(f"{url}/recommend", json={"user": "u3"}).status_code == 200
        partial = [
            b"",  # connects, sends nothing
            b"POST /recommend HTTP/1.1\r\nHost: x\r\n",  # headers never end
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"user\":",  # body never ends
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",  # answered, then idle (keep-alive)
        ]
        sockets = []
        for data in partial:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(data)
            sockets.append(s)
        start = time.monotonic()
        for s, data in zip(sockets, partial):
            received = b""
            while True:  # read until the server closes (bounded by the 10 s socket timeout)
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            s.close()
            assert received.startswith(b"HTTP/1.1 200") == data.startswith(b"GET"), received
        assert time.monotonic() - start < 4  # closed after about 1 s, not left open
        # request line and headers over 64 KiB: 431
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 431")
        s.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_served_run_is_frozen_and_a_replaced_one_collected(tiny_run):
    """The run's objects leave the collector's walks (a full collection over a large run held
    the GIL for 0.45 s); on reload the replaced run is unfrozen and collected, not leaked."""
    import gc
    import weakref

    from keras_yt.serving import service
    from keras_yt.serving.swappable import SwappableRecommender

    gc.collect()
    served = SwappableRecommender(tiny_run, warm=True, tower_in_background=True)
    try:
        before = gc.get_freeze_count()
        service._freeze_when_loaded(served.current)
        assert gc.get_freeze_count() > before
        served.current.tower_thread.join(timeout=60)
        freezer = [t for t in threading.enumerate() if t.name == "keras-yt-freeze"]
        for thread in freezer:
            thread.join(timeout=60)
        assert served.current._model is not None
        assert gc.get_freeze_count() > before
        old_model = weakref.ref(served.current._model)  # a Keras model holds reference cycles
        service._reload_and_freeze(served)
        assert old_model() is None
        assert served.current._model is not None and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
