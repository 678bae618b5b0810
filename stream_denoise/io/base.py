"""What the layers above see of any input or output: ``Source`` and ``Sink``.

Their own module so that every kind of source (files, live streams, salvaged recordings)
builds on it without importing the others.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..closeable import Closeable
from ..frame import Frame, VideoInfo


class Source(Closeable):
    """A context manager and one-shot iterable of ``Frame`` in decode order.

    ``info`` is valid right after opening; ``corrupt_frames`` counts what was skipped
    (or concealed) while iterating.
    """

    info: VideoInfo
    corrupt_frames: int = 0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError


class Sink(Closeable):
    """A context manager that consumes ``Frame``s; ``close()`` flushes and is idempotent."""

    def write(self, frame: Frame) -> None:
        raise NotImplementedError
