"""Frames as plain data: what crosses module boundaries (io, executors, pipeline), and the
one rule for grouping them into batches, which files and live feeds share.

Tensors never appear here; they live inside ``denoiser`` and ``models``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture.

    ``image`` is an ``(H, W, 3)`` uint8 RGB array. ``pts`` is in units of ``time_base``
    (presentation time = ``pts * time_base`` seconds); both are ``None`` only for sources
    without timing, such as an image folder. ``index`` counts frames in decode order
    from 0 and is what keeps the output in source order.
    """

    index: int
    image: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None for untimed frames."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    def with_image(self, image: np.ndarray) -> Frame:
        """Same frame (index and timing) carrying a new picture."""
        return Frame(self.index, image, self.pts, self.time_base)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a sink needs to know about the stream it mirrors."""

    width: int
    height: int
    time_base: Fraction | None = None
    rate: Fraction | None = None  # nominal frame rate; None when unknown or variable
    frames: int | None = None  # expected count when the container says, else None
    audio_from: str | None = None  # path/URL whose audio streams the sink may copy

    def frame_step(self, time_base: Fraction | None) -> int:
        """One frame at the nominal rate, in ``time_base`` units (1 when either is unknown):
        how far the pts moves for a frame that comes without one, or after a gap."""
        return round(1 / (self.rate * time_base)) if self.rate and time_base else 1


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive frames of one size, numbered ``seq`` in source order.

    ``images`` is the stacked ``(N, H, W, 3)`` uint8 array that workers receive (one
    contiguous array travels cheaply to a process or a GPU; a list of frames would not).
    """

    seq: int
    frames: tuple[Frame, ...]
    images: np.ndarray

    @classmethod
    def of(cls, seq: int, frames: list[Frame]) -> Batch:
        return cls(seq, tuple(frames), np.stack([f.image for f in frames]))


class Batcher:
    """Frames into batches numbered in order, each at most ``size`` frames of one shape (a
    batch is one array): the rule that files (:func:`batches`) and live feeds share."""

    def __init__(self, size: int) -> None:
        self.size, self.seq = size, 0
        self.frames: list[Frame] = []

    @property
    def full(self) -> bool:
        return len(self.frames) >= self.size

    def fits(self, frame: Frame) -> bool:
        """Whether ``frame`` may join the batch being filled; if not, :meth:`take` that first."""
        return not self.full and (not self.frames or frame.image.shape == self.frames[0].image.shape)

    def take(self) -> Batch:
        batch = Batch.of(self.seq, self.frames)
        self.seq, self.frames = self.seq + 1, []
        return batch


def batches(frames: Iterable[Frame], size: int) -> Iterator[Batch]:
    """Group frames into batches of ``size``; a change of frame size closes a batch early."""
    batcher = Batcher(size)
    for frame in frames:
        if not batcher.fits(frame):
            yield batcher.take()
        batcher.frames.append(frame)
    if batcher.frames:
        yield batcher.take()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A processed batch: ``images`` (N, H, W, 3) uint8, ``attention`` (N, H, W) uint8 or None."""

    batch: Batch
    images: np.ndarray
    attention: np.ndarray | None = None
