"""Micro-batching of the service's requests by user id (private; see docs/serving.md).

Requests wait in a list; each batch answers up to `max_batch` of them with one
`Recommender.recommend_users` call in a worker thread: one user-row lookup, one gather of the
stored user vectors and one index query for the batch, instead of one thread per request, all
contending for the GIL. `concurrent_batches` batches run at once (one computes while the other's
search, which releases the GIL, runs); the event loop keeps reading, parsing and answering HTTP
meanwhile. A request alone is answered at once (a batch of one). Each answer is the one
`recommend` gives for that request alone (`Recommender.recommend_users`).

On the 1M-video run at 32 clients (`bench_service.py`, 2 cores, three interleaved rounds): one
batch of up to 64 at a time 720 / 817 / 738 requests/s (2.1-2.3 ms of server CPU per request),
two of up to 16 at a time 952 / 746 / 917 (1.5-2.0 ms).
"""

from __future__ import annotations

import asyncio
from typing import Any

MAX_BATCH = 16
CONCURRENT_BATCHES = 2


class UserRequestBatcher:
    """Answers concurrent `{"user": ...}` requests in batches.

    Args:
        max_batch: most requests answered by one `recommend_users` call.
        concurrent_batches: most batches answered at once (each in a worker thread).
    """

    def __init__(self, max_batch: int = MAX_BATCH,
                 concurrent_batches: int = CONCURRENT_BATCHES):
        for name, value in (("max_batch", max_batch), ("concurrent_batches", concurrent_batches)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.max_batch = max_batch
        self.concurrent_batches = concurrent_batches
        self._pending: list = []
        self._drains: set[asyncio.Task] = set()

    async def recommend(self, recommender: Any, user: Any, k: int, exclude: Any,
                        keep_watched: bool) -> tuple[list[dict], str | None]:
        """`(recommender.recommend(user=...), recommender.fallback(user=...))`, batched with the
        requests that arrive meanwhile; raises what `recommend` raises for this request."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(((recommender, k, keep_watched), user, exclude, future))
        if len(self._drains) < self.concurrent_batches:
            # kept referenced (a task only the loop refers to can be collected mid-run)
            self._drains.add(asyncio.get_running_loop().create_task(self._drain()))
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                try:
                    answers = await asyncio.to_thread(_answer, batch)
                except Exception as exc:  # every request of the batch gets it (500)
                    answers = [exc] * len(batch)
                for (*_, future), answer in zip(batch, answers):
                    if future.done():  # cancelled: the client went away
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            # In the step that found nothing pending: a request appended after it starts a
            # drain of its own (a done-callback would run later and could strand it).
            self._drains.discard(asyncio.current_task())


def _answer(batch: list) -> list:
    """One answer (or exception) per request; one `recommend_users` call per (run, k,
    keep_watched), after the users are looked up one by one (an unknown user fails alone)."""
    answers: list = [None] * len(batch)
    groups: dict = {}
    for i, (key, user, _, _) in enumerate(batch):
        recommender = key[0]
        try:
            recommender.run.user_rows([user])
        except ValueError as exc:
            answers[i] = exc
            continue
        groups.setdefault((id(recommender), key[1], key[2]), (key, []))[1].append(i)
    for (recommender, k, keep_watched), members in groups.values():
        users = [batch[i][1] for i in members]
        exclude = [batch[i][2] for i in members]
        try:
            items = recommender.recommend_users(
                users, k, None if all(e is None for e in exclude) else exclude, keep_watched)
        except ValueError:  # e.g. a bad exclude list: answer each alone for its own error
            for i in members:
                answers[i] = _alone(recommender, batch[i], k, keep_watched)
            continue
        for i, answer, fallback in zip(members, items, recommender.fallback_users(users)):
            answers[i] = (answer, fallback)
    return answers


def _alone(recommender: Any, request: tuple, k: int, keep_watched: bool) -> Any:
    _, user, exclude, _ = request
    try:
        return (recommender.recommend(user=user, k=k, exclude=exclude,
                                      keep_watched=keep_watched),
                recommender.fallback(user=user))
    except ValueError as exc:
        return exc
