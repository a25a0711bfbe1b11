"""The HTTP recommendation service of `keras-yt serve` (FastAPI app, served by uvicorn).

Needs the `serve` extra: `pip install "keras-yt[serve]"` (fastapi, uvicorn with uvloop and
httptools, which uvicorn picks when installed; its pure-Python fallback is about 3x slower).

* `POST /recommend` with `{"user": <raw user id>, "k": 10}` or
  `{"watch_history": [<raw video ids>], "k": 10, "exclude": [<raw video ids>]}` (optional
  `"keep_watched": true`) → `{"items": [{"id", "score", "title"}], "model": <fingerprint>,
  "fallback": null}`; `"fallback": "popular"` when the history is empty or none of its videos
  is known (the answer is the popular videos of a user with no watches, not a personal one);
* `GET /health` → `{"status": "ok", "model", "videos", "users", "search"}`;
* `POST /reload` with `{}` or `{"run": "<run folder>"}` → `{"model", "previous", "run",
  "seconds"}`: loads the run (default: the served path again) and swaps it in without downtime
  (`SwappableRecommender`; requests in flight are answered by the old run); 422 if the run cannot
  be loaded (the old one stays served), 409 while another reload runs. `serve` also reloads the
  `--run` path on SIGHUP.

Errors are JSON `{"error": <message>, "field": <request field or null>}` with status 400
(malformed JSON), 422 (unknown field, wrong type, k <= 0, both or neither of user and
watch_history), 404 (unknown user or path), 405 (wrong method), 413 (body over 4 MiB) or 431
(headers over 64 KiB); messages are cut to 300 characters. Slow or idle connections are closed
(see `serve`). The `Recommender` (vocabularies, stored user vectors, index) is loaded and
warmed before the server accepts connections; its user tower (the model) loads in the
background, and a request that needs it (by watch history) waits for it.
"""

# No `from __future__ import annotations`: FastAPI reads the request model's annotation.
from typing import Any

from keras_yt.serving._limits import (
    KEEP_ALIVE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    REQUEST_TIMEOUT,
    BodyLimit,
    protocol_class,
)

_MAX_MESSAGE = 300  # characters of an error message; longer ones (echoed ids) are cut


def _field_of(text: str, request: Any) -> Any:
    """The request field a `Recommender` ValueError is about."""
    for field in ("exclude", "k"):
        if text.startswith(field) or f"{field} " in text.split(":")[0]:
            return field
    return "user" if request.user is not None else "watch_history"


def _imports():
    try:
        import fastapi
        import pydantic
    except ImportError:
        raise ImportError(
            "the recommendation service needs the serve extra: pip install 'keras-yt[serve]' "
            "(fastapi and uvicorn)"
        ) from None
    return fastapi, pydantic


def create_app(recommender: Any, max_body_bytes: int = MAX_BODY_BYTES):
    """The FastAPI application serving a `Recommender`.

    Args:
        recommender: a loaded `keras_yt.serving.recommender.Recommender`, or a
            `keras_yt.serving.swappable.SwappableRecommender` (`POST /reload` swaps its run).
        max_body_bytes: larger request bodies are refused (413) unread.

    Returns:
        A `fastapi.FastAPI` app (run it with uvicorn, or use `serve`).

    Example:
    >>> from keras_yt.serving.recommender import Recommender
    >>> app = create_app(Recommender("runs/demo"))  # doctest: +SKIP
    """
    fastapi, pydantic = _imports()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from keras_yt.serving._batcher import UserRequestBatcher

    RawId = StrictInt | StrictStr

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        user: RawId | None = None
        watch_history: list[RawId] | None = Field(default=None, max_length=100_000)
        k: StrictInt = Field(default=10, gt=0, le=100_000)
        exclude: list[RawId] | None = Field(default=None, max_length=100_000)
        keep_watched: StrictBool = False

    from keras_yt.serving.swappable import SwappableRecommender

    served = recommender if isinstance(recommender, SwappableRecommender) else \
        SwappableRecommender(recommender)

    class ReloadRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        run: StrictStr | None = None

    app = fastapi.FastAPI(title="keras-yt recommendations", docs_url=None, redoc_url=None)

    def error(status: int, message: str, field: str | None) -> JSONResponse:
        if len(message) > _MAX_MESSAGE:  # a 50 MB id is not echoed back
            message = f"{message[:_MAX_MESSAGE]}... ({len(message):,} characters)"
        return JSONResponse({"error": message, "field": field}, status_code=status)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # 404 unknown path, 405 wrong method, ...
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint {request.url.path!r}; use POST /recommend or GET /health"
        elif exc.status_code == 405:
            message = (f"method {request.method} not allowed on {request.url.path}; use POST "
                       "/recommend or GET /health")
        response = error(exc.status_code, message, None)
        response.headers.update(getattr(exc, "headers", None) or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):  # noqa: ARG001
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return error(400, f"malformed JSON: {first.get('msg', '')}", None)
        if not loc:
            return error(422, "the request body must be a JSON object such as "
                         '{"user": 1, "k": 10} (Content-Type: application/json)', None)
        field = loc[0] if loc else None
        message = first.get("msg", "invalid request")
        if first.get("type") == "extra_forbidden":
            message = f"unknown field {field!r}; expected user or watch_history, k, exclude, " \
                "keep_watched"
        elif field is not None:
            message = f"{'.'.join(loc)}: {message}"
        return error(422, message, field)

    @app.get("/health")
    def health() -> dict:  # a plain function: FastAPI runs it in a worker thread
        return {"status": "ok", **served.describe()}

    batcher = UserRequestBatcher()

    def by_history(current: Any, request: RecommendRequest) -> tuple:
        # "popular" when no watch of the history is known (the answer is not personal)
        return (current.recommend(watch_history=request.watch_history, k=request.k,
                                  exclude=request.exclude, keep_watched=request.keep_watched),
                current.fallback(watch_history=request.watch_history))

    # Nothing is computed on the event loop: requests by user id are answered in batches, two
    # batches at a time in worker threads (`UserRequestBatcher`), requests by watch history
    # (the user tower) in Starlette's worker threads; the search and the tower release the GIL.
    @app.post("/recommend")
    async def recommend(request: RecommendRequest):
        if (request.user is None) == (request.watch_history is None):
            return error(422, "give exactly one of 'user' and 'watch_history'",
                         "user" if request.user is not None else "watch_history")
        current = served.current  # one run answers the whole request, even during a reload
        try:
            if request.user is not None:
                items, fallback = await batcher.recommend(
                    current, request.user, request.k, request.exclude, request.keep_watched)
            else:
                items, fallback = await run_in_threadpool(by_history, current, request)
        except ValueError as exc:
            text = str(exc)
            if text.startswith("unknown user"):
                return error(404, text, "user")
            return error(422, text, _field_of(text, request))
        return JSONResponse({"items": items, "model": current.fingerprint,
                             "fallback": fallback})

    @app.post("/reload")
    async def reload(request: ReloadRequest | None = None):
        import asyncio

        run = request.run if request is not None else None
        try:  # loaded in a worker thread: the event loop keeps answering with the old run
            info = await asyncio.to_thread(_reload_and_freeze, served, run)
        except RuntimeError as exc:
            return error(409, str(exc), None)
        except Exception as exc:  # the old run stays served
            return error(422, f"cannot load the run: {' '.join(str(exc).split())}", "run")
        return JSONResponse(info)

    return app


def serve(run: Any, host: str = "127.0.0.1", port: int = 8000, search: str = "auto",
          request_timeout: float = REQUEST_TIMEOUT, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Loads and warms a run's `Recommender`, then serves it with uvicorn until interrupted.

    Connections are closed when a request (line, headers and body) takes more than
    `request_timeout` seconds to arrive, or when idle for 5 s after a response; request line
    and headers are capped at 64 KiB (431) and bodies at `max_body_bytes` (413).

    Args:
        run: the run folder.
        host: interface to listen on (default: local only).
        port: TCP port (0: any free port; the chosen one is printed).
        search: `"auto"`, `"exact"` or `"index"` (see `Recommender`).
        request_timeout: seconds a client has to send a whole request.
        max_body_bytes: most bytes of a request body.

    Example:
    >>> serve("runs/demo", port=8000)  # doctest: +SKIP
    """
    _imports()
    try:
        import uvicorn
    except ImportError:
        raise ImportError("the recommendation service needs the serve extra: pip install "
                          "'keras-yt[serve]' (fastapi and uvicorn)") from None
    import socket

    from keras_yt.serving.swappable import SwappableRecommender

    # Requests by user id are answered from the stored user vectors as soon as the index is
    # loaded; the user tower (the model: seconds for a large run) loads in the background.
    recommender = SwappableRecommender(run, search=search, warm=True, tower_in_background=True)
    _freeze_when_loaded(recommender.current)
    app = create_app(recommender)
    _reload_on_sighup(recommender)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    # Listening before the line is printed: a client that connects as soon as it reads the line
    # waits in the backlog until uvicorn accepts, instead of being refused.
    sock.listen(2048)
    bound = sock.getsockname()[1]
    info = recommender.describe()
    print(f"serving {info['run']} on http://{host}:{bound} (model {info['model'][:12]}, "
          f"{info['videos']:,} videos, {info['users']:,} users, search: {info['search']}; "
          f"loaded in {recommender.load_seconds:.1f} s)", flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off",
        http=protocol_class(request_timeout, MAX_HEADER_BYTES),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _freeze_when_loaded(recommender: Any) -> None:
    """Takes the objects of a loaded run out of the garbage collector's walks (`gc.freeze`),
    now and again once its user tower has loaded in the background.

    A served run holds about 10^6 Python objects (TensorFlow, Keras, vocabularies); a full
    collection walks them all with the GIL held, 0.45 s for the 1M-video run, and every request
    in flight waited for it (p99 0.55 s at 32 clients). They live as long as the run is served.
    """
    import gc
    import threading

    gc.freeze()
    tower = recommender.tower_thread
    if tower is not None:
        threading.Thread(target=lambda: (tower.join(), gc.freeze()), daemon=True,
                         name="keras-yt-freeze").start()


def _reload_and_freeze(served: Any, run: Any = None) -> dict:
    """`served.reload(run)`, then the replaced run collected (unfrozen first: a Keras model
    holds reference cycles) and the new one frozen (see `_freeze_when_loaded`). The collection
    holds the GIL once per reload (about 0.5 s for a 1M-video run)."""
    import gc

    info = served.reload(run)
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return info


def _reload_on_sighup(served: Any) -> None:
    """SIGHUP reloads the served path (e.g. a symlink pointed at a new run) in a thread."""
    import signal
    import threading

    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return

    def reload() -> None:
        try:
            info = _reload_and_freeze(served)
            print(f"reloaded {info['run']} (model {info['model'][:12]}, was "
                  f"{info['previous'][:12]}; {info['seconds']:.1f} s)", flush=True)
        except Exception as exc:  # the old run stays served
            print(f"reload failed, still serving the previous run: {exc}", flush=True)

    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, daemon=True).start())
