"""Micro-batching of the service's requests by user id (private; see docs/serving.md).

Requests that arrive while a batch is being answered wait in a list; the next batch answers all
of them (up to `max_batch`) in one `Recommender.recommend_users` call in one worker thread: one
user-row lookup, one gather of the stored user vectors and one loop of searches for the batch,
instead of one thread and one of each per request, all contending for the GIL. The event loop
keeps reading, parsing and answering HTTP meanwhile (the searches release the GIL). A request
alone is answered at once (a batch of one). Each answer is the one `recommend` gives for that
request alone: the searches run one user at a time (`Recommender.recommend_users`).
"""

from __future__ import annotations

import asyncio
from typing import Any

MAX_BATCH = 64


class UserRequestBatcher:
    """Answers concurrent `{"user": ...}` requests in batches (one batch at a time).

    Args:
        max_batch: most requests answered by one `recommend_users` call.
    """

    def __init__(self, max_batch: int = MAX_BATCH):
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.max_batch = max_batch
        self._pending: list = []
        self._drain_task: asyncio.Task | None = None

    async def recommend(self, recommender: Any, user: Any, k: int, exclude: Any,
                        keep_watched: bool) -> tuple[list[dict], str | None]:
        """`(recommender.recommend(user=...), recommender.fallback(user=...))`, batched with the
        requests that arrive meanwhile; raises what `recommend` raises for this request."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(((recommender, k, keep_watched), user, exclude, future))
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                try:
                    answers = await asyncio.to_thread(_answer, batch)
                except BaseException as exc:  # noqa: BLE001  (every waiting request gets it)
                    answers = [exc] * len(batch)
                for (*_, future), answer in zip(batch, answers):
                    if future.done():  # the client went away
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self._drain_task = None


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
        for i, answer in zip(members, items):
            answers[i] = (answer, recommender.fallback(user=batch[i][1]))
    return answers


def _alone(recommender: Any, request: tuple, k: int, keep_watched: bool) -> Any:
    _, user, exclude, _ = request
    try:
        return (recommender.recommend(user=user, k=k, exclude=exclude,
                                      keep_watched=keep_watched),
                recommender.fallback(user=user))
    except ValueError as exc:
        return exc
