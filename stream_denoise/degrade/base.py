"""What every degradation kind shares: the parameter-model base, ranges, seeding.

Each kind is a frozen pydantic model (its parameters) with ``apply(clean, seed, t)``.
Randomness never comes from global state: a kind draws what persists on the lens or
sensor from :meth:`Degradation.layout_rng` (``seed`` only) and what changes per frame from
:meth:`Degradation.frame_rng` (``seed`` and ``t``), so the output depends only on
``(params, clean, seed, t)``.
"""

from __future__ import annotations

import zlib
from enum import IntEnum
from typing import ClassVar, TypeVar

import cv2
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict

N = TypeVar("N", int, float)


def span(lo: float, hi: float) -> AfterValidator:
    """Validator for a ``(low, high)`` field: ``lo <= low <= high <= hi``.

    Used as ``Annotated[tuple[float, float], span(0, 1)]`` so YAML can say ``[0.1, 0.3]``
    and a bad value is reported under the field's own name.
    """

    def check(value: tuple[N, N]) -> tuple[N, N]:
        a, b = value
        if not lo <= a <= b <= hi:
            raise ValueError(f"need {lo} <= low <= high <= {hi}, got ({a}, {b})")
        return value

    return AfterValidator(check)


class Stage(IntEnum):
    """Where a degradation happens on the way from scene to file; mixtures apply in this order."""

    SCENE = 0  # in front of the camera: snow
    LENS = 1  # on the glass / lens: raindrops, dust
    SENSOR = 2  # defects, noise, line noise
    CODEC = 3  # compression


class Degradation(BaseModel):
    """Base of all kinds: parameters plus a deterministic ``apply``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    stage: ClassVar[Stage]

    def apply(self, clean: np.ndarray, seed: int, t: int = 0) -> np.ndarray:
        """Degrade one ``(H, W, 3)`` uint8 RGB image; same inputs give the same output.

        ``t`` is the frame index (time = ``t / fps`` for kinds that move). Raises
        ``ValueError`` for a wrong image shape/dtype or a negative seed/t.
        """
        check_image(clean)
        if seed < 0 or t < 0:
            raise ValueError(f"seed and t must be >= 0, got seed={seed}, t={t}")
        # Crops and flips arrive as strided views, which OpenCV refuses.
        out = self._apply(np.ascontiguousarray(clean), int(seed), int(t))
        assert out.shape == clean.shape and out.dtype == np.uint8
        return out

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        raise NotImplementedError

    def veil_share(self, seed: int) -> float:
        """The share of every pixel this kind turns into air light for ``seed``, the same
        at every ``t``; 0 for the kinds that add none. A veil lifts pixels below the
        attention mask's threshold, so a model is told it rather than shown it."""
        return 0.0

    def layout_rng(self, seed: int, part: int = 0) -> np.random.Generator:
        """Generator for what persists over time (same for every ``t``).

        Salted with the kind's name so two kinds given the same seed do not lay out
        correlated patterns (dust specks on top of raindrops). ``part`` > 0 gives an
        independent stream for a layer added later, so older layouts keep their draws.
        """
        return np.random.default_rng([seed, _salt(self.name), 0] + ([part] if part else []))

    def frame_rng(self, seed: int, t: int) -> np.random.Generator:
        """Generator for what changes every frame."""
        return np.random.default_rng([seed, _salt(self.name), 1, t])


def _salt(name: str) -> int:
    return zlib.crc32(name.encode())


def check_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is an ``(H, W, 3)`` uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {desc}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image too small to degrade: {image.shape[1]}x{image.shape[0]}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image back to uint8."""
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int | None = None) -> np.ndarray:
    """Uniform draw within ``bounds`` (a degenerate range returns its value)."""
    return rng.uniform(bounds[0], bounds[1], size)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> np.ndarray:
    """Log-uniform draw: many small, few large, like drop and speck sizes in real photos."""
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(lo, hi, size))


def integers(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Integer in the closed range ``bounds``."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with sigma in pixels; a no-op below a third of a pixel."""
    if sigma < 0.33:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def over(clean: np.ndarray, premult: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite a premultiplied layer over ``clean``; the layer may be smaller.

    ``premult`` is ``(h, w, 3)`` float32 colour already multiplied by its coverage
    ``alpha`` ``(h, w)`` float32 in [0, 1]; a layer smaller than ``clean`` (a blurred one,
    with no fine detail) is upsampled. Unpremultiplying at the layer's size and letting
    ``cv2.blendLinear`` mix uint8 images keeps full-size float temporaries out: those
    cost ~5 ms at 640x360, mostly in page faults.
    """
    colour = np.zeros_like(premult)
    np.divide(premult, alpha[..., None], out=colour, where=alpha[..., None] > 1e-6)
    colour = np.clip(colour, 0.0, 255.0).astype(np.uint8)
    h, w = clean.shape[:2]
    if alpha.shape != (h, w):
        colour = cv2.resize(colour, (w, h), interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = np.clip(alpha, 0.0, 1.0)
    return cv2.blendLinear(colour, clean, alpha, 1.0 - alpha)


def tint(image: np.ndarray, colour: tuple[float, float, float], alpha: np.ndarray) -> np.ndarray:
    """Mix a constant ``colour`` into ``image`` with per-pixel weight ``alpha`` (H, W)
    float32 in [0, 1]; uint8 in, uint8 out, in one OpenCV call (numpy broadcasting
    over a full frame cost ~3 ms per operation here)."""
    w = image.shape[1]
    # Broadcasting a 3-vector over the frame is slow (1 ms); copying a ready row is not.
    row = np.tile(np.asarray(colour, np.float32).round().astype(np.uint8), w).reshape(1, w, 3)
    flat = np.broadcast_to(row, image.shape).copy()
    return cv2.blendLinear(flat, image, alpha, 1.0 - alpha)


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Bilinear samples ``(N, 3)`` float32 of ``image`` at points ``x, y``; outside the
    image, ``border`` (an OpenCV border mode) decides what is seen."""
    n = len(x)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    # cv2.remap wants a 2-D map under 32767 on a side: fold the list into rows.
    cols = 1024
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = x, y
    out = cv2.remap(image, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=border)
    return out.reshape(-1, 3)[:n].astype(np.float32)


def box_pixels(
    x: np.ndarray, y: np.ndarray, extent: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every pixel of the boxes ``centre +- extent`` clipped to an ``(h, w)`` image, as flat
    arrays ``(owner, px, py)``: which box (index into ``x``) and where; None when all boxes
    miss the image. One vectorised pass over the concatenated boxes lets a kind rasterise
    thousands of blobs at once (a Python loop over them cost ~0.1-0.2 ms each)."""
    x0 = np.clip(np.floor(x - extent), 0, w).astype(np.int64)
    x1 = np.clip(np.ceil(x + extent) + 1, 0, w).astype(np.int64)
    y0 = np.clip(np.floor(y - extent), 0, h).astype(np.int64)
    y1 = np.clip(np.ceil(y + extent) + 1, 0, h).astype(np.int64)
    pw, ph = x1 - x0, y1 - y0
    size = pw * ph
    total = int(size.sum())
    if total == 0:
        return None
    owner = np.repeat(np.arange(len(x)), size)
    local = np.arange(total) - np.repeat(np.cumsum(size) - size, size)
    return owner, x0[owner] + local % pw[owner], y0[owner] + local // pw[owner]
