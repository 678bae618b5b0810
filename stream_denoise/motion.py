"""Global camera motion between two frames: the translation that best aligns the scene.

Phase correlation finds every shift the two frames share as a peak. Behind wet or dirty
glass there are two: the scene's, where the camera moved, and the lens's, at zero, because
drops and dust move with the camera. OpenCV's ``phaseCorrelate`` takes one weighted peak,
so when the two lie within a few pixels it reports a shift between them. Here each of the
three strongest peaks is a candidate, and the one that aligns the most pixels wins: the
median absolute deviation of its grey-level differences (the *misfit*) is the least. The
misfit also says whether one translation explains the frames at all (parallax, zoom and
rotation leave it high).

Measured over 1 to 8 frames of a 2 px a frame pan behind held-out drops: at most 0.42 px
off, where ``phaseCorrelate`` reads the first step as 0.94 px (``tests/test_motion.py``);
at 0.76 px a frame, 0.73 px off (the first step's two peaks merge). The search runs at a
short side of about 96 px and is refined on a full-resolution crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_COARSE_SIDE = 96  # px of the short side where the shift is searched
_CROP = 256  # px square of the full-resolution crop where it is refined
_CANDIDATES = 3  # strongest peaks tried
_REFINE = 4  # px around the coarse shift searched at full resolution


@dataclass(frozen=True, slots=True)
class Shift:
    """``dx, dy``: the frame shows the reference's scene moved by them (``frame(p) ~
    reference(p + (dx, dy))``); ``misfit``: the grey-level differences' median absolute
    deviation once aligned."""

    dx: float
    dy: float
    misfit: float


def coarse(grey: np.ndarray) -> np.ndarray:
    """float32 copy of a grey frame at a short side of about ``_COARSE_SIDE``, cut to a size
    the FFT is fast at (136 rows took 3x as long as 135)."""
    h, w = grey.shape
    f = factor(grey.shape)
    small = cv2.resize(grey, (w // f, h // f), interpolation=cv2.INTER_AREA)
    ch, cw = _fast_size(small.shape[0]), _fast_size(small.shape[1])
    y0, x0 = (small.shape[0] - ch) // 2, (small.shape[1] - cw) // 2
    return small[y0:y0 + ch, x0:x0 + cw].astype(np.float32)


def factor(shape: tuple[int, ...]) -> int:
    """The whole factor a frame is shrunk by for the coarse search."""
    return max(1, min(shape[:2]) // _COARSE_SIDE)


def _fast_size(n: int) -> int:
    """The largest size up to ``n`` whose only prime factors are 2, 3 and 5."""
    while n > 1:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n -= 1
    return 1


def global_shift(reference: np.ndarray, frame: np.ndarray, reference_small: np.ndarray | None = None,
                 frame_small: np.ndarray | None = None, settle: float = 0.0) -> Shift:
    """The translation from ``reference`` to ``frame`` (uint8 grey, same shape). The
    ``coarse`` copies may be passed when already made. A coarse shift under ``settle`` px
    is returned unrefined, with the coarse misfit: a still camera needs no sub-pixel
    alignment, and the refinement is two thirds of the time."""
    a = coarse(reference) if reference_small is None else reference_small
    b = coarse(frame) if frame_small is None else frame_small
    shift = coarse_shift(a, b, factor(reference.shape))
    return shift if float(np.hypot(shift.dx, shift.dy)) < settle else refine(reference, frame, shift)


def coarse_shift(reference_small: np.ndarray, frame_small: np.ndarray, factor: int) -> Shift:
    """The shift between two ``coarse`` copies of frames shrunk by ``factor``, in full-size
    px, with the misfit at the coarse size."""
    d, misfit = _best_peak(reference_small, frame_small, None)
    return Shift(d[0] * factor, d[1] * factor, misfit)


def refine(reference: np.ndarray, frame: np.ndarray, start: Shift) -> Shift:
    """``start`` (a coarse shift) made sub-pixel on a full-resolution crop, with its misfit there."""
    ix, iy = round(start.dx), round(start.dy)
    # the same scene in both: the frame's crop at p, the reference's at p + (ix, iy)
    h, w = reference.shape
    ch, cw = _fast_size(min(_CROP, h - abs(iy))), _fast_size(min(_CROP, w - abs(ix)))
    if ch < 16 or cw < 16:
        return Shift(start.dx, start.dy, float("inf"))
    y0 = max(0, -iy) + (h - abs(iy) - ch) // 2
    x0 = max(0, -ix) + (w - abs(ix) - cw) // 2
    pa = reference[y0 + iy:y0 + iy + ch, x0 + ix:x0 + ix + cw].astype(np.float32)
    pb = frame[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
    fine, misfit = _best_peak(pa, pb, _REFINE)
    return Shift(ix + fine[0], iy + fine[1], misfit)


def _best_peak(a: np.ndarray, b: np.ndarray, within: int | None) -> tuple[np.ndarray, float]:
    """Of the strongest phase-correlation peaks (within ``within`` px of zero, if given), the
    sub-pixel shift that aligns ``b`` with ``a`` best, and its misfit."""
    s = _surface(a, b)
    cy, cx = s.shape[0] // 2, s.shape[1] // 2
    if within is not None:
        keep = np.full_like(s, -1.0)
        box = (slice(cy - within, cy + within + 1), slice(cx - within, cx + within + 1))
        keep[box] = s[box]
        s_peaks = keep
    else:
        s_peaks = s
    local = (s_peaks == cv2.dilate(s_peaks, np.ones((3, 3), np.uint8))) & (s_peaks > 0)
    ys, xs = np.nonzero(local)
    if len(ys) == 0:
        return np.zeros(2), float("inf")
    strongest = np.argsort(s_peaks[ys, xs])[::-1][:_CANDIDATES]
    candidates = [_centroid(s, ys[i], xs[i]) - (cx, cy) for i in strongest]
    fits = [_misfit(a, b, c) for c in candidates]
    best = int(np.argmin(fits))
    return candidates[best], fits[best]


def _surface(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The phase-correlation surface, zero shift at the centre: a peak at centre + (dx, dy)
    where ``b(p) ~ a(p + (dx, dy))``."""
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    fa = cv2.dft(a * window, flags=cv2.DFT_COMPLEX_OUTPUT)
    fb = cv2.dft(b * window, flags=cv2.DFT_COMPLEX_OUTPUT)
    cross = cv2.mulSpectrums(fa, fb, 0, conjB=True)
    cross /= cv2.magnitude(cross[..., 0], cross[..., 1])[..., None] + 1e-9
    return np.fft.fftshift(cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE))


def _centroid(s: np.ndarray, y: int, x: int) -> np.ndarray:
    """Sub-pixel ``(x, y)`` of the peak at ``(y, x)``: the centroid of its 3x3 neighbourhood
    (a wider one would take in the lens's peak 2 px away)."""
    y0, x0 = max(0, y - 1), max(0, x - 1)
    patch = np.clip(s[y0:y + 2, x0:x + 2], 0, None)
    total = float(patch.sum()) + 1e-12
    yy, xx = np.mgrid[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]]
    return np.array([(patch * xx).sum() / total, (patch * yy).sum() / total])


def _misfit(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> float:
    """Median absolute deviation of ``a(p + d) - b(p)`` over every third pixel both frames
    see: a change of exposure or of the model's veil shifts every difference alike."""
    h, w = a.shape
    m = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
    moved = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    seen = moved[::3, ::3] >= 0
    if seen.sum() < 0.25 * seen.size:
        return float("inf")
    diff = moved[::3, ::3][seen] - b[::3, ::3][seen]
    return float(np.median(np.abs(diff - np.median(diff))))
