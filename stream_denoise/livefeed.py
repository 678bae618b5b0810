"""Frames of a live source on their way to batches: bounded, with a drop policy.

A camera does not wait for the model. When frames arrive faster than they are cleaned,
something has to give, and it should be a stated choice rather than an unbounded queue:
``oldest`` drops the longest-waiting frame (lowest latency, the usual choice for live
video), ``newest`` drops the frame that just arrived, ``none`` blocks the decoder (the
network or FFmpeg then buffers or drops). When frames arrive slowly, a batch leaves
after ``timeout`` seconds with what it has instead of waiting to fill.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from .frame import Batch, Batcher, Frame

DropPolicy = Literal["oldest", "newest", "none"]


class LiveFeed:
    """A bounded frame buffer between a decoding thread (:meth:`fill`) and a batching
    thread (:meth:`batches`); ``dropped`` counts frames the policy discarded.

    ``stopped()`` true: both give up at once. ``draining()`` true: the batches end with
    the frames buffered, without waiting for the decoder, which may be blocked for a
    while on a camera that went quiet.
    """

    def __init__(self, capacity: int, policy: DropPolicy, stopped: Callable[[], bool],
                 draining: Callable[[], bool] = lambda: False) -> None:
        self.capacity, self.policy = capacity, policy
        self.dropped = 0
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self._stopped, self._draining = stopped, draining

    def fill(self, frames: Iterable[Frame]) -> None:
        """Run on the decoding thread until ``frames`` ends or the run stops."""
        try:
            for frame in frames:
                with self._cond:
                    while (self.policy == "none" and len(self._frames) >= self.capacity
                           and not self._stopped()):
                        self._cond.wait(0.1)
                    if self._stopped():
                        return
                    if len(self._frames) >= self.capacity:
                        self.dropped += 1
                        if self.policy == "newest":
                            continue
                        self._frames.popleft()
                    self._frames.append(frame)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def batches(self, size: int, timeout: float) -> Iterator[Batch]:
        """Batches of up to ``size`` frames of one shape; a batch leaves ``timeout`` seconds
        after its first frame arrived even if not full."""
        batcher = Batcher(size)
        while True:
            deadline = None
            with self._cond:
                while not batcher.full and not self._stopped():
                    if self._frames:
                        if not batcher.fits(self._frames[0]):
                            break
                        batcher.frames.append(self._frames.popleft())
                        self._cond.notify_all()
                        deadline = deadline or time.monotonic() + timeout
                        continue
                    if self._ended or self._draining():
                        break
                    wait = 0.1 if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(min(wait, 0.1))
            if batcher.frames:
                yield batcher.take()
            elif self._ended or self._stopped() or self._draining():
                return
