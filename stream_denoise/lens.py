"""Drops and dust on the lens of a panning camera: the scene they hide, taken from the
frames where the camera looked past them.

Whatever sits on the glass moves with the camera, while the scene moves under it. So where
a frame, aligned by the camera's motion with frames the camera looked elsewhere from,
disagrees with all of them at the same place in the frame, frame after frame, something on
the lens hides the scene there. That does not depend on what a drop looks like: a drop
that shows a sharp, vivid view of the scene (which the single-frame model mostly misses)
disagrees with the scene behind it all the same.

Evidence: each frame is compared with up to three frames of the window that the camera
moved at least ``_APART`` px from. A pixel off one of them, once aligned, by more than
``tolerance`` grey levels, and nearer to it as it is (unaligned) than aligned, votes for
the lens; one that the alignment explains (within ``tolerance``) and staying put does not,
against; and against wins. Pixels that both explain (flat ones) do not vote. The evidence
is an average of the votes over frames (each weighs ``_RATE``) in the frame's own
coordinates.
Where it passes ``_LENS``, opened and grown a little, a region is the lens's if the chain
also took it for weather (see ``_SHARE``).

Fill: a canvas of the scene, in the coordinates of the history's first frame, takes each
frame's output outside the lens regions; a lens pixel is taken from it where the scene
there was seen in the last ``_MAX_AGE`` frames. A still camera gathers no evidence, so
nothing here runs for it.

Measured with lite v12 (one-off sweeps over ``eval --video``'s clips, seeds 2026 and
2027, and over 40-frame pans of bikes.mp4 at 1 and 2 px a frame; ``benchmarks/temporal.py``
for the table): behind held-out drops +0.8 to +2.3 dB over the stage without it (the
table's pan: 23.07 -> 24.81), behind vivid wet glass up to +2.8; clean and snowy real
footage, and panned snow, within 0.02 dB. Through ``stream-denoise run`` (a 48-frame pan,
seed 2031, lossless output): 21.71 -> 23.48 dB.

What it cannot tell, and why it is off by default (``temporal.lens``): an object crossing
the pan covers a place in the frame for several frames and can be taken for the lens's (a
64 px object at 6 px a frame in light snow: -3.3 dB in its box, -1.3 dB over the clip; at
3 and 1 px a frame -0.2 and 0 dB); and where drops cross an object the camera follows, the
object there is replaced by the scene around it (-7.6 dB in its box; filling only near
what the chain touched halved that and cost up to 1 dB on the drops). Dense drops (a third
of the frame and more) hide the scene's motion itself: the stage then starts over every
frame and this never runs.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

_APART = 3.0  # px the camera must have moved between two frames for them to tell lens from scene
_PAIRS = 3  # frames each frame is compared with
_RATE = 0.3  # weight of one frame in the evidence (about 4 frames in a row flag a new drop)
_LENS = 0.5  # evidence over which a pixel is the lens's
# What tells the lens's regions from an object the camera follows (or a caption), which
# stay in place too: the chain took them for weather. A region is kept where the chain
# touched at least _SHARE of it and _CONTRAST times the share it touched elsewhere; and
# only in a frame it found weather in (the temporal stage's rule, its ``_WEATHER``). Measured on
# the held-out clips of eval --video and one-off pans: without the frame rule, clean
# bikes.mp4 lost 6.9 dB; without the contrast, an object followed through snow 13.8 dB.
_SHARE = 0.05
_CONTRAST = 2.0
_MAX_AGE = 50  # frames a scene pixel on the canvas stays usable (2 s at 25 fps)
_OPEN = np.ones((3, 3), np.uint8)  # drops a lone pixel of evidence
_GROW = np.ones((5, 5), np.uint8)  # takes in a drop's rim
_UNSEEN = -1e9  # a canvas pixel never painted

Position = tuple[float, float]


class LensMemory:
    """Per-history memory of what sits on the lens and of the scene behind it; call it on
    each fused frame of one history, in order.

    >>> lens = LensMemory(tolerance=12)
    >>> out = lens(fused, source_grey, position, [(grey, pos) for grey, pos in window], touched)  # doctest: +SKIP
    """

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.evidence: np.ndarray | None = None  # (H, W) float32 in [-1, 1], frame coordinates
        self.canvas: np.ndarray | None = None  # (Hc, Wc, 3) uint8 scene; painted once the camera moved
        self.stamp: np.ndarray | None = None  # (Hc, Wc) float32: the frame that last painted a pixel
        self.origin = (0, 0)  # the canvas's top left, in the first frame's coordinates
        self.frames = 0
        self.filled = 0  # pixels taken from the canvas, over the history

    def __call__(self, image: np.ndarray, grey: np.ndarray, position: Position,
                 window: Sequence[tuple[np.ndarray, Position]],
                 touched: Callable[[], np.ndarray | None]) -> np.ndarray:
        """``image`` (the stage's output, uint8 RGB) with its lens regions taken from the
        scene seen before. ``grey``: the camera's frame in grey levels; ``position``: where it
        looks (px since the history began); ``window``: the other frames' grey levels and
        positions; ``touched``: makes the ``(H, W)`` uint8 map of what the chain changed, or
        None for a frame the chain found almost clean (nothing is filled there)."""
        self.frames += 1
        self._observe(grey, position, window)
        if self.evidence is None:  # the camera has not moved yet
            return image
        lens = self._regions(touched)
        out = image if lens is None else self._fill(image, position, lens)
        self._paint(out, position, lens)
        return out

    def _observe(self, grey: np.ndarray, position: Position,
                 window: Sequence[tuple[np.ndarray, Position]]) -> None:
        apart = sorted(((math.hypot(position[0] - p[0], position[1] - p[1]), g, p) for g, p in window),
                       key=lambda item: item[0])
        apart = [(g, p) for d, g, p in apart if d >= _APART]
        if not apart:
            return
        picks = {len(apart) - 1 - i * len(apart) // _PAIRS for i in range(_PAIRS)}
        lens = scene = None  # pixels some pair takes for the lens's, for the scene's
        for i in picks:
            other, where = apart[i]
            moved = _aligned_diff(grey, other, position[0] - where[0], position[1] - where[1])
            stayed = cv2.blur(cv2.absdiff(grey, other), (3, 3))
            reached = moved < 255
            for_lens = reached & (moved > self.tolerance) & (stayed < moved)
            for_scene = reached & (moved <= self.tolerance) & (stayed > self.tolerance)
            lens = for_lens if lens is None else lens | for_lens
            scene = for_scene if scene is None else scene | for_scene
        assert lens is not None and scene is not None
        informative = (lens | scene).astype(np.uint8)
        vote = np.where(scene, np.float32(-1.0), np.float32(1.0))
        if self.evidence is None:
            self.evidence = np.zeros(grey.shape, np.float32)
        cv2.accumulateWeighted(vote, self.evidence, _RATE, mask=informative)

    def _regions(self, touched: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        """``(H, W)`` uint8, 1 on the lens's regions; None when there are none."""
        assert self.evidence is not None
        lens = cv2.morphologyEx((self.evidence > _LENS).astype(np.uint8), cv2.MORPH_OPEN, _OPEN)
        if not cv2.countNonZero(lens):
            return None
        changed = touched()
        if changed is None:
            return None
        weather = changed > 0
        lens = cv2.dilate(lens, _GROW)
        count, labels = cv2.connectedComponents(lens)
        sizes = np.bincount(labels.ravel(), minlength=count)
        hits = np.bincount(labels.ravel(), weights=weather.ravel(), minlength=count)
        kept = hits >= max(_SHARE, _CONTRAST * hits[0] / max(1, sizes[0])) * sizes
        kept[0] = False
        if not kept.any():
            return None
        return kept[labels].astype(np.uint8)

    def _fill(self, image: np.ndarray, position: Position, lens: np.ndarray) -> np.ndarray:
        if self.canvas is None or self.stamp is None:
            return image
        h, w = image.shape[:2]
        shift = np.float32([[1, 0, position[0] - self.origin[0]], [0, 1, position[1] - self.origin[1]]])
        scene = cv2.warpAffine(self.canvas, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        stamp = cv2.warpAffine(self.stamp, shift, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=_UNSEEN)
        # a pixel whose bilinear neighbours were not all painted reads black in part: the
        # nearest stamp, eroded by one pixel, keeps those out
        fresh = cv2.erode((stamp >= self.frames - _MAX_AGE).astype(np.uint8), _OPEN)
        chosen = lens & fresh
        if not cv2.countNonZero(chosen):
            return image
        self.filled += cv2.countNonZero(chosen)
        return cv2.copyTo(scene, chosen, image.copy())

    def _paint(self, image: np.ndarray, position: Position, lens: np.ndarray | None) -> None:
        """The canvas takes ``image`` outside the lens regions (grown by a pixel)."""
        h, w = image.shape[:2]
        self._cover(position, h, w)
        assert self.canvas is not None and self.stamp is not None
        keep = np.ones((h, w), np.uint8) if lens is None else cv2.erode(1 - lens, _OPEN)
        x0 = math.floor(position[0]) - self.origin[0]
        y0 = math.floor(position[1]) - self.origin[1]
        rows, cols = slice(y0, y0 + h + 1), slice(x0, x0 + w + 1)
        size = (w + 1, h + 1)
        shift = np.float32([[1, 0, x0 + self.origin[0] - position[0]], [0, 1, y0 + self.origin[1] - position[1]]])
        scene = cv2.warpAffine(image, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        inside = cv2.warpAffine(keep, shift, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        inside = cv2.erode(inside, _OPEN)  # bilinear reads past the frame's edge at the rim
        self.canvas[rows, cols] = cv2.copyTo(scene, inside, self.canvas[rows, cols])
        self.stamp[rows, cols][inside > 0] = self.frames

    def _cover(self, position: Position, h: int, w: int) -> None:
        """Makes the canvas reach the frame at ``position`` (and a pixel past it): a new
        one, half a frame wider on each side and centred on it, keeps what they share."""
        x, y = math.floor(position[0]), math.floor(position[1])
        if self.canvas is not None:
            ox, oy = self.origin
            ch, cw = self.canvas.shape[:2]
            if ox <= x and oy <= y and x + w + 1 <= ox + cw and y + h + 1 <= oy + ch:
                return
        canvas = np.zeros((2 * h + 1, 2 * w + 1, 3), np.uint8)
        stamp = np.full((2 * h + 1, 2 * w + 1), _UNSEEN, np.float32)
        origin = (x - w // 2, y - h // 2)
        if self.canvas is not None and self.stamp is not None:
            ox, oy = self.origin
            ch, cw = self.canvas.shape[:2]
            # the shared rectangle, in scene coordinates
            left, top = max(ox, origin[0]), max(oy, origin[1])
            right, bottom = min(ox + cw, origin[0] + 2 * w + 1), min(oy + ch, origin[1] + 2 * h + 1)
            if left < right and top < bottom:
                new = (slice(top - origin[1], bottom - origin[1]), slice(left - origin[0], right - origin[0]))
                old = (slice(top - oy, bottom - oy), slice(left - ox, right - ox))
                canvas[new] = self.canvas[old]
                stamp[new] = self.stamp[old]
        self.canvas, self.stamp, self.origin = canvas, stamp, origin


def _aligned_diff(grey: np.ndarray, other: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``(H, W)`` uint8: how far ``grey`` is from ``other`` moved by the camera's ``(dx,
    dy)``, box-averaged over 3x3 and at most 254; 255 where ``other`` does not reach."""
    h, w = grey.shape
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    aligned = cv2.warpAffine(other, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    diff = cv2.min(cv2.blur(cv2.absdiff(grey, aligned), (3, 3)), 254)
    # where p + (dx, dy) falls outside the other frame, with a pixel of margin for the blur
    x0, x1 = max(0, math.ceil(-dx) + 1), min(w, math.floor(w - 1 - dx) - 1)
    y0, y1 = max(0, math.ceil(-dy) + 1), min(h, math.floor(h - 1 - dy) - 1)
    out = np.full_like(diff, 255)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = diff[y0:y1, x0:x1]
    return out
