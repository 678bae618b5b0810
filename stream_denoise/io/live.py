"""Live sources that outlive their connection: reconnect with backoff, keep time moving.

A camera that drops off the network, or a stream that stalls past the read timeout,
ends the current connection. :class:`LiveSource` then waits (exponential backoff),
reopens the URL and carries on numbering frames; timestamps continue from where they
stopped plus the wall-clock time the stream was away, so the output shows a gap, never
a jump back to zero. Files are not live: a file that ends, ends.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

from ..errors import InputError
from ..frame import Frame
from .base import Source
from .sources import VideoSource
from .urls import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnect attempts: ``initial`` doubling up to ``maximum`` seconds;
    ``attempts`` in a row before giving up (0: never give up)."""

    initial: float = 1.0
    maximum: float = 30.0
    attempts: int = 0

    def delays(self) -> Iterator[float]:
        n = 0
        while self.attempts == 0 or n < self.attempts:
            yield min(self.maximum, self.initial * 2 ** n)
            n += 1


class LiveSource(Source):
    """Frames from a stream URL across any number of reconnects.

    ``index`` counts every frame delivered; ``pts`` is in the first connection's time
    base and strictly increasing. ``reconnects`` counts successful reconnects and
    ``corrupt_frames`` sums over connections. When ``cancelled()`` turns true (or on
    close) the waiting between attempts ends, so a stop is not held up by a dead camera.
    """

    def __init__(
        self,
        spec: str,
        backoff: Backoff,
        *,
        threads: int = 0,
        timeout: float | tuple[float, float] | None = None,
        options: Mapping[str, str] | None = None,
        format: str | None = None,
        hwaccel: str | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self._spec, self._name, self._backoff = spec, redact(spec), backoff
        self._open_kw = {"threads": threads, "timeout": timeout, "options": options,
                         "format": format, "hwaccel": hwaccel}
        self._cancelled = cancelled or (lambda: False)
        self._current: VideoSource | None = VideoSource(spec, **self._open_kw)  # type: ignore[arg-type]
        self.info = self._current.info
        self.reconnects = 0
        self._done_corrupt = 0
        self._closed = False

    @property
    def corrupt_frames(self) -> int:  # type: ignore[override]
        current = self._current.corrupt_frames if self._current else 0
        return self._done_corrupt + current

    def __iter__(self) -> Iterator[Frame]:
        tb = self.info.time_base or Fraction(1, 90_000)
        step = self.info.frame_step(tb)
        index, last = 0, None  # last pts delivered, in tb
        lost_at = None  # monotonic time the previous connection ended
        while self._current is not None:
            base_in = base_out = None
            try:
                for frame in self._current:
                    src_tb = frame.time_base or tb
                    if base_in is None:
                        base_in = frame.pts
                        gap = 0 if lost_at is None else round((time.monotonic() - lost_at) / tb)
                        base_out = frame.pts if last is None else last + max(step, gap)
                    pts = base_out + round((frame.pts - base_in) * src_tb / tb)
                    if last is not None and pts <= last:
                        pts = last + 1
                    last = pts
                    yield Frame(index, frame.image, pts, tb)
                    index += 1
            except InputError:  # a connection that delivered nothing before dropping
                pass
            if self._closed or self._cancelled():
                break
            lost_at = time.monotonic()
            self._done_corrupt += self._current.corrupt_frames
            self._current.close()
            self._current = self._reopen()
        if index == 0:
            raise InputError(f"no decodable video frames in {self._name}")

    def _reopen(self) -> VideoSource | None:
        log.warning("%s: stream ended or stalled; reconnecting", self._name)
        for delay in self._backoff.delays():
            if self._wait(delay):
                return None
            try:
                source = VideoSource(self._spec, **self._open_kw)  # type: ignore[arg-type]
            except InputError as e:
                log.warning("%s (retrying in up to %.0f s)", e, self._backoff.maximum)
                continue
            self.reconnects += 1
            log.warning("%s: reconnected (%d so far)", self._name, self.reconnects)
            return source
        if not self._stopping():
            log.warning("%s: gave up after %d reconnect attempts", self._name, self._backoff.attempts)
        return None

    def _stopping(self) -> bool:
        return self._closed or self._cancelled()

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless asked to stop first; True when stopping."""
        end = time.monotonic() + seconds
        while not self._stopping() and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        return self._stopping()

    def close(self) -> None:
        self._closed = True
        if self._current is not None:
            self._current.close()
