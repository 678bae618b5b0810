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
cluster into blotches of a few object sizes). A region counts as far as it reaches near
where part of it moves, and pixels that half the window departs from (where an object
stood) count with it.
Those pixels, and every pixel that darkens, keep the single-frame result, so a moving
object is not smeared or erased.

When the camera pans, each frame's position is tracked (:mod:`.motion`: the global
translation, the lens's own peak ignored) and the window is shifted onto the current frame
before its median is taken. Shifted frames are blurred a little by interpolation, and
parallax and sub-pixel error leave edges that do not line up, so there the median replaces
only what the chain itself touched (changed by more than ``_TOUCHED`` levels, grown by a
few pixels) where the window agrees (two thirds of its frames within ``tolerance``) and
nothing moves: falling snow, mostly. Everything else keeps the single-frame result, and so
does a frame the chain touched under ``_WEATHER`` of: there is little to gain. The
history starts again on a cut, a new size, a jump in time (a reconnect) or a motion one
translation does not explain (median misfit above ``_MISFIT`` levels: zoom, rotation,
strong parallax). Fusion starts once the window holds ``_SETTLE`` frames: fewer cannot
tell a slow object from the background. A file's first frames (``wait``) are held until
then and fused with that window, a look-ahead of at most ``_SETTLE - 1`` frames once per
history; a live feed's pass as the chain made them, so it gets no added latency.

State is per stream and lives where a stream's results come back in order (the pipeline's
writer), not in the workers: batches may run on any actor, and a retried batch changes
nothing here.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from functools import cache

import cv2
import numpy as np

from .config import TemporalConfig
from .frame import BatchResult, Frame
from .lens import LensMemory
from .motion import coarse, coarse_shift, factor, refine

_CUT = 40.0  # mean grey-level change between consecutive frames that counts as a new scene
_MARGIN = np.ones((5, 5), np.uint8)  # closes gaps in an object's change mask and keeps its outline
_BRIGHT_ONLY = 2.5  # a change that only brightens is motion when this many object sizes fit in it
# Fusing from 3 frames lost a 64 px object's leading edge at 1 px a frame (up to 72 grey
# levels off); from 6 it stayed within 28 (tests/test_temporal.py).
_SETTLE = 6
# A frame the window's first cannot be aligned with by one shift to within this misfit
# (grey levels, motion.Shift) starts the history again. Measured: pans behind held-out
# drops at most 2.1; bikes.mp4's drifting camera under 1.9 over 8 frames; its last shot,
# a faster move with parallax, 5.9 after 3 frames and 10.8 after 5.
_MISFIT = 6.0
# On a moving camera, a pixel the chain changed by more than this is one it took for
# weather, and the aligned median may replace it: on clean bikes.mp4 frames that kept the
# worst frame at 53 dB, where replacing every pixel the window agreed on cost 19 dB.
_TOUCHED = 4
# A moving camera's frame is fused only when the chain touched at least this share of it.
# Measured with lite v12 (grown by 2 px): held-out snow 35-40 %, held-out drops 6-10 %,
# clean bikes.mp4 under 1 % and Big Buck Bunny 2 %, where fusing cost 1.1 dB and 10 ms a frame.
_WEATHER = 0.05
# In heavy held-out snow the median is off by a flake here and there, and dense snow joins
# into changed regions across the frame: counted whole once any darker pixel touched them,
# they kept 24-54 % of a still camera's pixels as the chain made them (lite v12, seeds
# 2028-2030 of eval --video), and FFmpeg's tmedian beat the stage. So a darkening counts
# once a 2x2 block of it is darker (a 5x5 block erased 12 and 24 px objects), and a region
# moves only within _REACH object sizes (a box) of where it moves (2 let a 64 px object at
# 1 px a frame lose its edge; 4 cost an object crossing a pan 1 dB: tests/test_temporal.py).
_DARK_SOLID = np.ones((2, 2), np.uint8)
_REACH = 3.0
# The median works on strips of rows this many bytes wide, so that the 19 frames and the
# network's intermediates stay in cache: 2.6 ms against 4.7 at once for 640x360 (rows of 60
# to 180 within 0.4 ms of the best).
_STRIP_BYTES = 160_000


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
    """Per-element median of ``results`` and ``sources`` together (an odd count in all),
    taken in strips of rows of ``_STRIP_BYTES``.

    >>> joint_median([np.full(2, v, np.uint8) for v in (9, 1)], [np.full(2, 5, np.uint8)])
    array([5, 5], dtype=uint8)
    """
    n = len(results) + len(sources)
    if n % 2 == 0:
        raise ValueError(f"the median of {n} frames needs an odd count")
    first = (results + sources)[0]
    rows = max(1, _STRIP_BYTES // max(1, first[:1].nbytes))
    if rows >= len(first):
        return _merged_median(results, sources)
    out = np.empty_like(first)
    for y in range(0, len(first), rows):
        out[y:y + rows] = _merged_median([r[y:y + rows] for r in results], [s[y:y + rows] for s in sources])
    return out


def _merged_median(results: list[np.ndarray], sources: list[np.ndarray]) -> np.ndarray:
    """Each list is sorted by a network; the k-th smallest of two sorted lists is the least,
    over the ways of taking i from one and k - i from the other, of the larger of the two
    i-th and (k - i)-th values."""
    n = len(results) + len(sources)
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
    result_grey: np.ndarray  # the result's grey levels: camera motion is measured on them
    small: np.ndarray  # float32 coarse copy of ``result_grey``: cuts and the motion search
    position: tuple[float, float] = (0.0, 0.0)  # where the camera looked, in px since the history began
    touched: np.ndarray | None = None  # (H, W) uint8, what the chain changed (grown): made when needed


class TemporalFilter:
    """Per-stream temporal median with motion guards; call it on each frame in order.

    >>> stage = TemporalFilter(TemporalConfig(mode="on"))
    >>> fused = [stage(result, frame) for result, frame in zip(chain_results, source_frames)]  # doctest: +SKIP
    """

    def __init__(self, config: TemporalConfig, wait: bool = False) -> None:
        self.config = config
        self.wait = wait
        self.history: deque[_Seen] = deque(maxlen=config.frames)  # this frame's included
        self.waiting: list[_Seen] = []  # this history's first frames, held until the window fills
        self.batches: deque[tuple[BatchResult, list[np.ndarray]]] = deque()  # apply(): held, and what is out
        self.last_time: float | None = None
        self.fused = 0  # frames that came out of the median (the rest passed through)
        self.lens = self._lens_memory()

    def reset(self) -> list[np.ndarray]:
        """Start the history again; the frames that waited for it come out as the chain made them."""
        out = [s.image for s in self.waiting]
        self.history.clear()
        self.waiting.clear()
        self.lens = self._lens_memory()
        return out

    def _lens_memory(self) -> LensMemory | None:
        return LensMemory(self.config.tolerance) if self.config.lens else None

    flush = reset  # the stream ended

    def apply(self, result: BatchResult) -> list[BatchResult]:
        """The batches whose every frame is through the stage, in order: none while frames
        wait for the window, the waiting ones with this once it fills."""
        self.batches.append((result, []))
        for image, frame in zip(result.images, result.batch.frames):
            self._deliver(self.push(image, frame))
        return self._complete()

    def finish(self) -> list[BatchResult]:
        """The stream ended: the batches still held, their waiting frames as the chain made them."""
        self._deliver(self.flush())
        return self._complete()

    def _deliver(self, images: list[np.ndarray]) -> None:
        for result, done in self.batches:
            while images and len(done) < len(result.images):
                done.append(images.pop(0))

    def _complete(self) -> list[BatchResult]:
        out = []
        while self.batches and len(self.batches[0][1]) == len(self.batches[0][0].images):
            result, done = self.batches.popleft()
            out.append(BatchResult(result.batch, np.stack(done), result.attention))
        return out

    def __call__(self, image: np.ndarray, frame: Frame | None = None) -> np.ndarray:
        """The fused frame for ``image`` when nothing waits (see :meth:`push`)."""
        out = self.push(image, frame)
        if len(out) != 1:
            raise RuntimeError("frames wait for the window: call push() and flush()")
        return out[0]

    def push(self, image: np.ndarray, frame: Frame | None = None) -> list[np.ndarray]:
        """The fused ``(H, W, 3)`` uint8 frames that are ready, in order, once the chain's
        result ``image`` is in; ``frame`` is the source frame the chain was given: its
        picture, and its time for gaps and for ``mode: auto`` (untimed: pass). Without
        ``frame`` the result stands for the source.

        One frame comes out per frame in, except with ``wait``: a history's first frames
        are held until the window fills and then fused with it (a file's look-ahead; a
        live feed's first frames pass as the chain made them)."""
        time = frame.time if frame is not None else None
        if self.config.mode == "off" or (self.config.mode == "auto" and time is None):
            return [image]
        source = frame.image if frame is not None else image
        # camera motion is measured on the result: drops in the source pull it off the scene
        result_grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        seen = _Seen(image, source, cv2.cvtColor(source, cv2.COLOR_RGB2GRAY), result_grey, coarse(result_grey))
        out: list[np.ndarray] = []
        if self._starts_over(seen, time):
            out += self.reset()
        elif self.history:
            placed = self._position(seen)
            if placed is None:
                out += self.reset()
            else:
                seen = placed
        self.last_time = time
        self.history.append(seen)
        if len(self.history) < min(_SETTLE, self.config.frames):
            if self.wait:
                self.waiting.append(seen)
                return out
            return out + [image]
        out += [self._behind_lens(s, self._fuse(s)) for s in self.waiting + [seen]]
        self.waiting.clear()
        return out

    def _behind_lens(self, seen: _Seen, fused: np.ndarray) -> np.ndarray:
        """``fused`` with what stays on the lens filled from the scene (:mod:`.lens`)."""
        if self.lens is None:
            return fused
        window = [(s.grey, s.position) for s in self.history if s is not seen]

        def weather() -> np.ndarray | None:
            touched = _touched(seen.image, seen.source) if seen.touched is None else seen.touched
            return touched if _weather(touched) else None

        return self.lens(fused, seen.grey, seen.position, window, weather)

    def _fuse(self, seen: _Seen) -> np.ndarray:
        """``seen``'s frame from the median over the window (which holds it)."""
        others = [s for s in self.history if s is not seen]
        offsets = [(seen.position[0] - s.position[0], seen.position[1] - s.position[1]) for s in others]
        self.fused += 1
        if max(np.hypot(*o) for o in offsets) > self.config.still:
            return self._fuse_moving(seen, others, offsets)
        image, source = seen.image, seen.source
        background = joint_median([s.image for s in others] + [image, image], [s.source for s in others] + [source])
        moving = self._moving(source, background, [s.grey for s in self.history])
        # into a copy: the median may be one of the history's own arrays; 40x faster than np.where
        return cv2.copyTo(image, moving, background.copy())

    def _starts_over(self, seen: _Seen, time: float | None) -> bool:
        """A cut, a jump in time or a new size: the history no longer shows this frame's scene."""
        if not self.history:
            return False
        last = self.history[-1]
        if last.image.shape != seen.image.shape:
            return True
        if time is not None and self.last_time is not None and not 0 <= time - self.last_time <= self.config.gap:
            return True
        return float(cv2.absdiff(last.small, seen.small).mean()) > _CUT

    def _position(self, seen: _Seen) -> _Seen | None:
        """``seen`` with where it looks, from the shift since the window's first frame; None
        when one shift does not explain the change, or the camera moved more than ``still``
        and ``align`` is off. The shift is made sub-pixel only for a frame that moved and that
        the chain touched enough to be fused: the rest keep the coarse search's."""
        first = self.history[0]
        shift = coarse_shift(first.small, seen.small, factor(seen.grey.shape))
        if self.config.align and np.hypot(shift.dx, shift.dy) >= self.config.still / 2:
            seen = replace(seen, touched=_touched(seen.image, seen.source))
            if _weather(seen.touched):
                shift = refine(first.result_grey, seen.result_grey, shift)
        position = (first.position[0] + shift.dx, first.position[1] + shift.dy)
        moved = max(np.hypot(position[0] - s.position[0], position[1] - s.position[1]) for s in self.history)
        if shift.misfit > _MISFIT or (not self.config.align and moved > self.config.still):
            return None
        return replace(seen, position=position)

    def _fuse_moving(self, seen: _Seen, window: list[_Seen], offsets: list[tuple[float, float]]) -> np.ndarray:
        """A panning camera's frame: the window shifted onto it (where a shifted frame does
        not reach, this frame stands in), and its median only where the chain touched the
        frame, the window agrees and nothing moves. A frame the chain found almost clean
        passes; otherwise the work is done in the box around what the chain touched, grown
        by the largest square the motion guard fits."""
        image, source = seen.image, seen.source
        touched = _touched(image, source) if seen.touched is None else seen.touched
        if not _weather(touched):
            return image
        grow = round(self.config.object_size * _BRIGHT_ONLY * min(image.shape[:2])) + _MARGIN.shape[0]
        x, y, w, h = cv2.boundingRect(touched)
        x0, y0 = max(0, x - grow), max(0, y - grow)
        box = (slice(y0, min(image.shape[0], y + h + grow)), slice(x0, min(image.shape[1], x + w + grow)))
        image_in, source_in = image[box], source[box]
        moved = [(o[0], o[1], x0, y0) for o in offsets]
        results = [_shifted(s.image, image_in, m) for s, m in zip(window, moved)]
        sources = [_shifted(s.source, source_in, m) for s, m in zip(window, moved)]
        background = joint_median(results + [image_in, image_in], sources + [source_in])
        moving = self._moving(source_in, background,
                              [cv2.cvtColor(s, cv2.COLOR_RGB2GRAY) for s in sources] + [seen.grey[box]],
                              min(image.shape[:2]))
        agree = np.zeros(background.shape[:2], np.uint8)
        for s in sources:
            agree += _channel_max(cv2.absdiff(s, background)) <= self.config.tolerance
        settled = agree.astype(np.int32) * 3 >= 2 * len(sources)
        chosen = (settled & (touched[box] > 0) & (moving == 0)).astype(np.uint8)
        out = image.copy()
        out[box] = cv2.copyTo(background, chosen, image_in.copy())
        return out

    def _moving(self, source: np.ndarray, background: np.ndarray, greys: list[np.ndarray],
                short: int | None = None) -> np.ndarray:
        """``(H, W)`` uint8, 1 where something moves: those pixels keep this frame's result.
        ``short`` is the whole frame's short side when ``source`` is a crop of it (object
        sizes are fractions of the frame, not of the crop).

        Judged on the camera's frames, which the model's repair does not touch. A change is
        a pixel off the background by more than ``tolerance``; an unsettled pixel is one
        that half the window departs from (where an object stood, the background is stale).
        Together they form regions. Motion is where an ``object_size`` square fits in a
        region near a darkening (a 2x2 block of it), or a square ``_BRIGHT_ONLY`` times as
        large fits; the region moves within a box ``_REACH`` object sizes wide around it.
        Every darker pixel moves too: snow and rain only add light.
        """
        tol = self.config.tolerance
        changed = (_channel_max(cv2.absdiff(source, background)) > tol).astype(np.uint8)
        darker = changed & (_channel_max(cv2.subtract(background, source)) > tol // 2).astype(np.uint8)
        grey = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY)
        departs = np.zeros(grey.shape, np.uint8)
        for seen in greys:
            departs += cv2.absdiff(seen, grey) > tol
        unsettled = (departs >= max(2, len(greys) // 2)).astype(np.uint8)
        region = cv2.morphologyEx(changed | unsettled, cv2.MORPH_CLOSE, _MARGIN)
        short = min(source.shape[:2]) if short is None else short
        side = max(3, round(self.config.object_size * short) | 1)
        large = max(3, round(self.config.object_size * _BRIGHT_ONLY * short) | 1)
        square = np.ones((side, side), np.uint8)
        solid = cv2.morphologyEx(darker, cv2.MORPH_OPEN, _DARK_SOLID)
        core = (cv2.morphologyEx(region, cv2.MORPH_OPEN, square) & cv2.dilate(solid, square)) \
            | cv2.morphologyEx(region, cv2.MORPH_OPEN, np.ones((large, large), np.uint8))
        reach = round(_REACH * side) | 1
        core = cv2.dilate(core, np.ones((reach, reach), np.uint8)) & region  # the region near a core
        return cv2.dilate(core, _MARGIN) | darker

def _shifted(image: np.ndarray, base: np.ndarray, move: tuple[float, float, int, int]) -> np.ndarray:
    """The part of ``image`` that ``base`` shows, ``base`` being a crop at ``(x0, y0)`` of a
    frame taken ``(dx, dy)`` px of camera motion later: ``move = (dx, dy, x0, y0)``. Bilinear;
    where ``image`` does not reach, ``base`` stands in."""
    dx, dy, x0, y0 = move
    out = base.copy()
    m = np.float32([[1, 0, dx + x0], [0, 1, dy + y0]])
    cv2.warpAffine(image, m, base.shape[1::-1], dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_TRANSPARENT)
    return out


def _touched(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8, 1 where the chain changed ``source`` by more than ``_TOUCHED`` levels
    to make ``image``, grown by 2 px."""
    return cv2.dilate((_channel_max(cv2.absdiff(image, source)) > _TOUCHED).astype(np.uint8), _MARGIN)


def _weather(touched: np.ndarray) -> bool:
    """Whether the chain touched enough of a frame for a moving camera's frame to be fused."""
    return cv2.countNonZero(touched) >= _WEATHER * touched.size


def _channel_max(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(H, W)``: the largest of the three channels (faster than ``max(axis=2)``)."""
    return cv2.max(cv2.max(image[..., 0], image[..., 1]), image[..., 2])
