"""The temporal stage: weather that passes, replaced from the frames around it.

Falling snow and rain cross a pixel in a frame or two while the scene behind them stays;
a model that sees one frame at a time cannot use that. While the camera holds still, this
stage replaces each pixel by a median over the last ``frames`` frames, taken over both what
the camera gave and what the chain made of it (this frame's result counted twice, so the
count is odd). Weather that passes is outvoted in both; a repair the model makes in every
frame (a drop fixed on the lens) wins by the extra vote. The camera's own frames matter:
the model shifts a still background a little, differently in every frame, and a median of
its results alone keeps both the shift and the flicker.

Something moves where the camera's frame differs from that median in a solid region: one
where an ``object_size`` square fits and the change darkens somewhere, or any change that
a square 2.5 times as large fits in (snow and rain add light, and wind-driven flakes
cluster into blotches of a few object sizes). A region counts whole once part of it moves,
and pixels that half the window departs from (where an object stood) count with it.
Those pixels, and every pixel that darkens, keep the single-frame result, so a moving
object is not smeared or erased.

When the camera moves (global shift over the window above ``still``), the scene cuts, the
size changes or the timestamps jump (a reconnect), the history starts again: a moving
camera gets the single-frame result, bit for bit. Fusion starts once the window holds
``_SETTLE`` frames: fewer cannot tell a slow object from the background. Motion-compensated
fusion for moving cameras is not built.

State is per stream and lives where a stream's results come back in order (the pipeline's
writer), not in the workers: batches may run on any actor, and a retried batch changes
nothing here.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from .config import TemporalConfig
from .frame import BatchResult, Frame

_SMALL_SIDE = 96  # px of the short side at which camera motion and cuts are measured
_CUT = 40.0  # mean grey-level change between consecutive frames that counts as a new scene
_MARGIN = np.ones((5, 5), np.uint8)  # closes gaps in an object's change mask and keeps its outline
_BRIGHT_ONLY = 2.5  # a change that only brightens is motion when this many object sizes fit in it
# Fusing from 3 frames lost a 64 px object's leading edge at 1 px a frame (up to 72 grey
# levels off); from 6 it stayed within 28 (tests/test_temporal.py).
_SETTLE = 6


@cache
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for ``n`` inputs: the comparators of the network for
    the next power of two that touch only the first ``n`` (the rest would hold +inf)."""
    size = 1 << max(0, n - 1).bit_length()
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def sort_frames(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Same-shape uint8 arrays sorted per element: the i-th holds each element's i-th
    smallest value. OpenCV's elementwise min and max over a sorting network: about 25x
    faster than ``np.sort(axis=0)`` at 640x360x9."""
    a = list(frames)
    for i, j in _sorting_network(len(a)):
        a[i], a[j] = cv2.min(a[i], a[j]), cv2.max(a[i], a[j])
    return a


def joint_median(results: list[np.ndarray], sources: list[np.ndarray]) -> np.ndarray:
    """Per-element median of ``results`` and ``sources`` together (an odd count in all).

    Each list is sorted by a network; the k-th smallest of two sorted lists is the least,
    over the ways of taking i from one and k - i from the other, of the larger of the two
    i-th and (k - i)-th values.

    >>> joint_median([np.full(2, v, np.uint8) for v in (9, 1)], [np.full(2, 5, np.uint8)])
    array([5, 5], dtype=uint8)
    """
    n = len(results) + len(sources)
    if n % 2 == 0:
        raise ValueError(f"the median of {n} frames needs an odd count")
    a, b = sort_frames(results), sort_frames(sources)
    k = n // 2 + 1  # the median's rank, from 1
    best = None
    for i in range(max(0, k - len(b)), min(k, len(a)) + 1):  # i from a, k - i from b
        j = k - i
        top = a[i - 1] if j == 0 else b[j - 1] if i == 0 else cv2.max(a[i - 1], b[j - 1])
        best = top if best is None else cv2.min(best, top)
    return best


@dataclass(frozen=True, slots=True)
class _Seen:
    image: np.ndarray  # the chain's single-frame result, uint8 RGB
    source: np.ndarray  # what the camera gave, uint8 RGB: the weather is in it, the model's shift is not
    grey: np.ndarray  # the source's grey levels: how stable each pixel's history is
    small: np.ndarray  # float32 grey of the result, short side ~_SMALL_SIDE: motion and cut measurement


class TemporalFilter:
    """Per-stream temporal median with motion guards; call it on each frame in order.

    >>> stage = TemporalFilter(TemporalConfig(mode="on"))
    >>> fused = [stage(result, frame) for result, frame in zip(chain_results, source_frames)]  # doctest: +SKIP
    """

    def __init__(self, config: TemporalConfig) -> None:
        self.config = config
        self.history: deque[_Seen] = deque(maxlen=config.frames)  # this frame's included
        self.last_time: float | None = None
        self.fused = 0  # frames that came out of the median (the rest passed through)
        self._window: np.ndarray | None = None

    def reset(self) -> None:
        self.history.clear()

    def apply(self, result: BatchResult) -> BatchResult:
        """``result`` with every frame through the stage, in order (the frames' own times)."""
        images = np.stack([self(image, frame) for image, frame in zip(result.images, result.batch.frames)])
        return BatchResult(result.batch, images, result.attention)

    def __call__(self, image: np.ndarray, frame: Frame | None = None) -> np.ndarray:
        """The fused ``(H, W, 3)`` uint8 frame for the chain's result ``image``; ``frame`` is
        the source frame the chain was given: its picture, and its time for gaps and for
        ``mode: auto`` (untimed: pass). Without ``frame`` the result stands for the source."""
        time = frame.time if frame is not None else None
        if self.config.mode == "off" or (self.config.mode == "auto" and time is None):
            return image
        source = frame.image if frame is not None else image
        # camera motion is measured on the result: sliding drops in the source pull the
        # phase correlation off a still scene
        result_grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        seen = _Seen(image, source, cv2.cvtColor(source, cv2.COLOR_RGB2GRAY), self._small(result_grey))
        if self._starts_over(seen, time):
            self.reset()
        self.last_time = time
        self.history.append(seen)
        if len(self.history) < min(_SETTLE, self.config.frames):
            return image
        window = list(self.history)
        background = joint_median([s.image for s in window] + [image], [s.source for s in window])
        moving = self._moving(source, background, window)
        self.fused += 1
        # into a copy: the median may be one of the history's own arrays; 40x faster than np.where
        return cv2.copyTo(image, moving, background.copy())

    def _starts_over(self, seen: _Seen, time: float | None) -> bool:
        """A cut, a jump in time, a new size or a moving camera: the history no longer shows
        this frame's scene."""
        if not self.history:
            return False
        last = self.history[-1]
        if last.image.shape != seen.image.shape:
            return True
        if time is not None and self.last_time is not None and not 0 <= time - self.last_time <= self.config.gap:
            return True
        if float(cv2.absdiff(last.small, seen.small).mean()) > _CUT:
            return True
        if self._window is None or self._window.shape != seen.small.shape:
            self._window = cv2.createHanningWindow(seen.small.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(self.history[0].small, seen.small, self._window)
        scale = seen.image.shape[0] / seen.small.shape[0]
        return float(np.hypot(dx, dy)) * scale > self.config.still

    def _moving(self, source: np.ndarray, background: np.ndarray, window: list[_Seen]) -> np.ndarray:
        """``(H, W)`` uint8, 1 where something moves: those pixels keep this frame's result.

        Judged on the camera's frames, which the model's repair does not touch. A change is
        a pixel off the background by more than ``tolerance``; an unsettled pixel is one
        that half the window departs from (where an object stood, the background is stale).
        Together they form regions; a region moves whole when an ``object_size`` square fits
        in it somewhere near a darkening, or a square ``_BRIGHT_ONLY`` times as large fits
        anywhere in it. Every darkening moves too: snow and rain only add light.
        """
        tol = self.config.tolerance
        changed = (_channel_max(cv2.absdiff(source, background)) > tol).astype(np.uint8)
        darker = changed & (_channel_max(cv2.subtract(background, source)) > tol // 2).astype(np.uint8)
        grey = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY)
        departs = np.zeros(grey.shape, np.uint8)
        for seen in window:
            departs += cv2.absdiff(seen.grey, grey) > tol
        unsettled = (departs >= max(2, len(window) // 2)).astype(np.uint8)
        region = cv2.morphologyEx(changed | unsettled, cv2.MORPH_CLOSE, _MARGIN)
        short = min(source.shape[:2])
        side = max(3, round(self.config.object_size * short) | 1)
        large = max(3, round(self.config.object_size * _BRIGHT_ONLY * short) | 1)
        square = np.ones((side, side), np.uint8)
        core = (cv2.morphologyEx(region, cv2.MORPH_OPEN, square) & cv2.dilate(darker, square)) \
            | cv2.morphologyEx(region, cv2.MORPH_OPEN, np.ones((large, large), np.uint8))
        count, labels = cv2.connectedComponents(region)
        hit = np.zeros(count, np.uint8)
        hit[labels[core > 0]] = 1
        hit[0] = 0  # the background label
        return cv2.dilate(hit[labels], _MARGIN) | darker

    @staticmethod
    def _small(grey: np.ndarray) -> np.ndarray:
        h, w = grey.shape
        f = max(1, min(h, w) // _SMALL_SIDE)
        return cv2.resize(grey, (w // f, h // f), interpolation=cv2.INTER_AREA).astype(np.float32)


def _channel_max(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(H, W)``: the largest of the three channels (faster than ``max(axis=2)``)."""
    return cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])
