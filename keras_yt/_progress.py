"""The progress lines of the commands (`keras-yt train-ranker`, `demo`, ...): a titled step,
then how long it took."""

from __future__ import annotations

import time


def step(title: str) -> float:
    """Prints `==> title` and returns the start time (`time.perf_counter()`) for `done`.

    Example:
    >>> start = step("reading the log")
    <BLANKLINE>
    ==> reading the log
    """
    print(f"\n==> {title}", flush=True)
    return time.perf_counter()


def done(start: float) -> float:
    """Prints how long the step begun at `start` took; returns those seconds.

    Example:
    >>> seconds = done(step("reading the log"))  # doctest: +ELLIPSIS
    <BLANKLINE>
    ==> reading the log
        done in ... s
    """
    seconds = time.perf_counter() - start
    print(f"    done in {seconds:.1f} s", flush=True)
    return seconds
