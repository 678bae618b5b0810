"""Training batches made ahead of the model: on one helper thread, or in worker processes.

Synthesis (NumPy/OpenCV, ~11 ms per 128 px sample on one core) is cheap next to a CPU
training step but is what a GPU waits on, so a GPU run hands it to processes. A batch is a
pure function of its seeds, so who makes it never changes what it holds: a run with 0
workers and one with 8 see the same data.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from ..errors import UsageError
from .data import Sample

Seed = tuple[int, ...]


class SampleSource(Protocol):
    def sample(self, seed: Sequence[int]) -> Sample: ...


# One per worker process, set by its initializer: the footage is sent once, not per batch.
_worker_source: SampleSource | None = None


def _init_worker(source: SampleSource) -> None:
    import cv2
    import torch

    global _worker_source
    cv2.setNumThreads(1)  # the parallelism is the processes
    torch.set_num_threads(1)
    _worker_source = source


def _make_in_worker(seeds: list[Seed]) -> list[Sample]:
    assert _worker_source is not None
    return [_worker_source.sample(s) for s in seeds]


class BatchMaker:
    """``get(step)`` returns the batch of ``step`` and keeps the next ones in the making.

    ``seeds_for(step)`` lists the sample seeds of a step's batch. With ``workers`` = 0 one
    helper thread makes one batch ahead (synthesis releases the GIL, so it overlaps a CPU
    step); with N > 0, N spawned processes keep 2N batches in flight.
    """

    def __init__(self, source: SampleSource, seeds_for: Callable[[int], list[Seed]],
                 workers: int = 0) -> None:
        if workers < 0:
            raise UsageError(f"data workers must be >= 0, got {workers}")
        self._seeds_for = seeds_for
        self._pending: dict[int, Future[list[Sample]]] = {}
        self._pool: Executor
        if workers:
            # spawn, not fork: the parent holds CUDA and thread pools a forked child must not inherit
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(source,))
            self._submit = lambda seeds: self._pool.submit(_make_in_worker, seeds)
            self.ahead = 2 * workers
        else:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sd-batches")
            self._submit = lambda seeds: self._pool.submit(lambda: [source.sample(s) for s in seeds])
            self.ahead = 1

    def get(self, step: int, end: int) -> list[Sample]:
        """The batch of ``step``; batches up to ``end`` (exclusive) are started ahead."""
        for s in range(step, min(step + 1 + self.ahead, end)):
            if s not in self._pending:
                self._pending[s] = self._submit(self._seeds_for(s))
        future = self._pending.pop(step)
        for stale in [s for s in self._pending if s < step]:
            self._pending.pop(stale).cancel()
        try:
            return future.result()
        except BrokenProcessPool:
            raise UsageError("a data worker process died (out of memory?); "
                             "retry with fewer data.workers") from None

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
