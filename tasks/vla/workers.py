"""Jobs in this process or in spawned worker processes, results in job order (reproducible
whatever the number of workers). Spawn, not fork: a forked child would inherit the
parent's GL and OpenMP state."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Iterable, Iterator


def run_jobs(fn: Callable[[Any], Any], jobs: Iterable, workers: int = 1,
             initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[Any]:
    """fn(job) for every job; `initializer(*initargs)` runs once in each process first."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for job in jobs:
            yield fn(job)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer, initargs) as pool:
        yield from pool.imap(fn, jobs)
