"""Executors: ordered maps of frame batches through a model, in process or on Ray actors.

Both take a model *factory* rather than a model, so the Ray pool can build one model per
actor where the actor runs; both are used as ``with executor: executor.map(batches)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np

from ..closeable import Closeable
from ..frame import Batch, BatchResult


class BatchModel(Protocol):
    """What an executor runs: the Denoiser, or a stand-in with the same ``process``."""

    def process(self, frames: np.ndarray, *, attention: bool = False): ...


ModelFactory = Callable[[], BatchModel]


class Executor(Closeable):
    def map(self, batches: Iterable[Batch], *, attention: bool = False) -> Iterator[BatchResult]:
        """Results in the order of ``batches``; safe to call from several threads at once."""
        raise NotImplementedError
