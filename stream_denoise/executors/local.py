"""In-process executor: runs batches through one model in the caller's thread."""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from ..frame import Batch, BatchResult
from . import Executor, ModelFactory


class LocalExecutor(Executor):
    """Ordered map of batches through one model (the default executor).

    It starts no threads: PyTorch's intra-op threads do the parallel work. Several
    pipelines may share it (a folder of files); a lock lets one batch through at a time,
    while their decoders and encoders still overlap.
    """

    def __init__(self, factory: ModelFactory) -> None:
        self.model = factory()
        self._lock = threading.Lock()

    def map(self, batches: Iterable[Batch], *, attention: bool = False) -> Iterator[BatchResult]:
        for batch in batches:
            with self._lock:
                result = self.model.process(batch.images, attention=attention)
            yield BatchResult(batch, result.images, result.attention)
