"""The service's micro-batching: concurrent requests by user id, each answered as if alone."""

import asyncio

import pytest

from keras_yt.serving._batcher import UserRequestBatcher
from keras_yt.serving.recommender import Recommender


@pytest.fixture(scope="module")
def recommender(tiny_run):
    return Recommender(tiny_run, warm=True)


def _answer_alone(recommender, user, k, exclude, keep_watched):
    try:
        return (recommender.recommend(user=user, k=k, exclude=exclude, keep_watched=keep_watched),
                recommender.fallback(user=user))
    except ValueError as exc:
        return f"ValueError: {exc}"


async def _gather(batcher, recommender, requests):
    async def one(request):
        try:
            return await batcher.recommend(recommender, *request)
        except ValueError as exc:
            return f"ValueError: {exc}"

    return await asyncio.gather(*(one(r) for r in requests))


def test_concurrent_requests_are_batched_and_answered_as_alone(recommender, monkeypatch):
    calls = []
    batch_call = recommender.recommend_users

    def counting(users, *args, **kwargs):
        calls.append(len(users))
        return batch_call(users, *args, **kwargs)

    monkeypatch.setattr(recommender, "recommend_users", counting)
    requests = [(f"u{i % 40}", 1 + i % 3, None if i % 4 else [f"v{i % 30}", "v99"], i % 5 == 0)
                for i in range(60)]
    requests[7] = ("nobody", 3, None, False)  # an unknown user fails alone (404 in the service)
    requests[11] = ("u5", 0, None, False)  # so does a bad k, with a good request of the same k
    requests[12] = ("u6", 0, None, False)
    batcher = UserRequestBatcher(max_batch=16, concurrent_batches=2)
    got = asyncio.run(_gather(batcher, recommender, requests))
    monkeypatch.undo()
    expected = [_answer_alone(recommender, *r) for r in requests]
    assert got == expected
    assert got[7].startswith("ValueError: unknown user") and got[11].startswith("ValueError")
    assert all(isinstance(g, tuple) for i, g in enumerate(got) if i not in (7, 11, 12))
    # 60 requests at once: 4 batches of at most 16, one call per (k, keep_watched) in each
    # (6 at most), plus one per request of the failed k=0 call: not one call per request
    assert max(calls) > 1 and len(calls) <= 4 * 6 + 2


def test_a_request_alone_is_answered_at_once(recommender):
    async def main():
        batcher = UserRequestBatcher()
        first = await batcher.recommend(recommender, "u3", 5, None, False)
        second = await batcher.recommend(recommender, "u3", 5, None, False)
        return first, second, set(batcher._drains)

    first, second, drains = asyncio.run(main())
    assert first == second == _answer_alone(recommender, "u3", 5, None, False)
    assert not drains  # nothing left running between requests


def test_requests_in_waves_are_all_answered_and_no_batch_is_left_running(recommender):
    """Waves of 1-5 requests, each sent as the last wave's batches end: every request is
    answered and no batch outlives its work."""
    async def main():
        batcher = UserRequestBatcher(max_batch=3, concurrent_batches=2)
        answered = []
        for wave in range(20):
            tasks = [asyncio.ensure_future(batcher.recommend(recommender, f"u{(wave + i) % 40}",
                                                             2, None, False))
                     for i in range(wave % 5 + 1)]
            await asyncio.sleep(0)  # let the earlier batches' drains end meanwhile
            answered += await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        return answered, set(batcher._drains)

    answered, drains = asyncio.run(main())
    assert len(answered) == sum(w % 5 + 1 for w in range(20)) and not drains


@pytest.mark.parametrize("name, value", [("max_batch", 0), ("max_batch", -1),
                                         ("max_batch", 2.5), ("max_batch", "8"),
                                         ("concurrent_batches", 0), ("concurrent_batches", True)])
def test_bad_batching_arguments_are_refused(name, value):
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got {value!r}"):
        UserRequestBatcher(**{name: value})
