"""In-process executor: runs batches through one model in the caller's thread."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from ..frame import Batch, BatchResult


class BatchModel(Protocol):
    """What an executor runs: the Denoiser, or a stand-in with the same ``process``."""

    def process(self, frames: np.ndarray, *, attention: bool = False): ...


class LocalExecutor:
    """Ordered map of batches through ``model`` (the default executor).

    It starts no threads: the pipeline calls :meth:`map` from its inference thread, and
    PyTorch's own intra-op threads do the parallel work.
    """

    def __init__(self, model: BatchModel, *, attention: bool = False) -> None:
        self.model = model
        self.attention = attention

    def map(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        for batch in batches:
            result = self.model.process(batch.images, attention=self.attention)
            yield BatchResult(batch, result.images, result.attention)

    def close(self) -> None:
        """Nothing to release; present so every executor is closed the same way."""
