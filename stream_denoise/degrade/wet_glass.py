"""Water on glass, refracted by Snell's law through its height field.

The drops on a window or lens cover are laid out as bumps of water on the glass; where
they touch, their heights add and they merge into one irregular body. Every pixel's ray
leaves the glass through that water surface and bends by Snell's law (water 1.33 to air
1.0) at the local normal, so what a pixel shows is the far scene in the bent direction:
a convex drop turns the view over (an inverted, minified image of the scene around it),
steep rims totally reflect (dark edges), and neighbours' surfaces merge for free. Sliding
drops leave trails of small beads. The camera focuses on the scene: the water layer is
then defocused as a whole, and the view through each drop is itself out of focus
(``inner_blur``), from none (vivid, sharp refracted content) to strong.

Unlike :class:`~stream_denoise.degrade.raindrops.Raindrops`, whose drops are drawn one by
one with a painted look (sky, haze, rim), here the look follows from the geometry, so its
parameters range over what real wet glass shows: sizes over two orders of magnitude,
round beads to long merged streaks, sparse to dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import cv2
import numpy as np
from pydantic import Field

from .base import Degradation, Stage, blur, box_pixels, over, sample_bilinear, span, to_uint8, uniform

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]

_WATER = 1.33  # refractive index of water (air 1.0)
_MAX_IRREGULARITY = 0.4  # a bent outline reaches at most this far past its radius


@dataclass(frozen=True, slots=True)
class _Bumps:
    """Per-bump parameters in full-size pixels (a struct of arrays), laid out once per seed."""

    x: np.ndarray
    y: np.ndarray
    vy: np.ndarray  # px / s, sliding drops only
    r: np.ndarray  # radius across
    aspect: np.ndarray  # length / width
    angle: np.ndarray
    harm: np.ndarray  # (n, 4): amplitude and phase of the 2nd and 3rd shape harmonic
    height: np.ndarray  # peak height / radius (the contact angle's tangent, roughly)
    power: np.ndarray  # profile exponent: 1 a paraboloid, 0.5 a steep-edged cap


@dataclass(frozen=True, slots=True)
class _Look:
    """Per-layout optical parameters (drawn once per seed)."""

    focal: float  # camera focal length in pixels
    inner_blur: float  # sigma (px) of the view through a drop
    focus_blur: float  # sigma (px) of the water layer
    haze: float
    tint: float
    highlight: float
    margin: float


class WetGlass(Degradation):
    """Drops, merged bodies and trails of water on glass, refracted through their height field.

    Sizes are fractions of the image's shorter side (``min(H, W)``); each layout draws one
    typical ``radius`` (log-uniform over the range) and spreads its drops' sizes around it
    by ``size_spread`` (log-normal sigma), so one frame holds drops of one kind of shower.
    ``coverage`` is the share of the glass the drops would cover unmerged. ``height`` is a
    drop's peak over its radius (flat films 0.1, beads near 1), ``power`` its profile (1 a
    paraboloid, 0.5 a steep-edged cap); ``elongation`` stretches drops up to ``1 +
    elongation`` times their width and ``irregularity`` bends their outline. ``focal`` is
    the camera's focal length over the image width (wide lenses small): it sets how wide a
    view a drop turns over. ``inner_blur`` and ``focus_blur`` are the defocus sigmas of the
    view through a drop and of the water layer; ``haze`` (light scattered in the water)
    and ``tint`` (the bright sky above the frame, mixed into each drop's lower part) wash
    its content; ``highlight`` is the specular reflection. A ``trails`` share of the drops
    slide down at ``slide_speed`` per second, each leaving a trail of small beads.
    """

    name: ClassVar[str] = "wet_glass"
    stage: ClassVar[Stage] = Stage.LENS

    coverage: Annotated[tuple[float, float], span(0.0, 1.5)] = (0.05, 0.6)
    radius: Annotated[tuple[float, float], span(0.001, 0.3)] = (0.003, 0.12)
    size_spread: Annotated[float, Field(ge=0.0, le=2.0)] = 0.45
    height: Annotated[tuple[float, float], span(0.02, 2.0)] = (0.2, 0.9)
    power: Annotated[tuple[float, float], span(0.3, 2.0)] = (0.5, 1.0)
    elongation: Annotated[tuple[float, float], span(0.0, 5.0)] = (0.0, 1.0)
    irregularity: Annotated[float, Field(ge=0.0, le=_MAX_IRREGULARITY)] = 0.15
    focal: Annotated[tuple[float, float], span(0.2, 5.0)] = (0.6, 1.6)
    inner_blur: Annotated[tuple[float, float], span(0.0, 0.05)] = (0.0, 0.015)
    focus_blur: Annotated[tuple[float, float], span(0.0, 0.05)] = (0.0, 0.02)
    haze: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.0, 0.3)
    tint: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.0, 0.5)
    highlight: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.0, 0.5)
    trails: Fraction01 = 0.15
    slide_speed: Annotated[tuple[float, float], span(0.0, 5.0)] = (0.05, 0.3)
    fps: Annotated[float, Field(gt=0.0, le=1000.0)] = 25.0

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        bumps, look = self._layout(seed, h, w)
        # A defocused layer has no detail finer than its blur: render it at half size.
        scale = 0.5 if look.focus_blur >= 1.0 else 1.0
        hs, ws = round(h * scale), round(w * scale)
        y = np.mod(bumps.y + bumps.vy * (t / self.fps) + look.margin, h + 2 * look.margin) - look.margin
        height = _height_field(bumps, bumps.x, y, hs, ws, scale)
        pix = np.flatnonzero(height > 0)
        if len(pix) == 0:
            return clean.copy()
        gy, gx = np.gradient(height)  # slopes (the field is in layer pixels)
        gx, gy, hv = gx.reshape(-1)[pix], gy.reshape(-1)[pix], height.reshape(-1)[pix]
        slope = np.sqrt(gx * gx + gy * gy)
        # Coverage: the height over the slope is the distance to the drop's edge in pixels.
        alpha = np.clip(hv / np.maximum(slope, 1e-3) + 0.5, 0.0, 1.0).astype(np.float32)
        # Snell at the water-air surface, normal n = (-gx, -gy, 1) / |.|, ray (0, 0, 1).
        norm = np.sqrt(1.0 + slope * slope)
        cos_i = 1.0 / norm
        sin2_t = _WATER * _WATER * (1.0 - cos_i * cos_i)
        total = sin2_t >= 1.0  # totally reflected: the rim shows no scene
        cos_t = np.sqrt(np.clip(1.0 - sin2_t, 1e-6, 1.0))
        k = (_WATER * cos_i - cos_t) / norm
        tx, ty, tz = k * gx, k * gy, _WATER - k
        # The scene is far: what a ray shows depends on its direction alone.
        px, py = pix % ws, pix // ws
        src_x = ((px + 0.5) / scale - 0.5 + look.focal * tx / tz).astype(np.float32)
        src_y = ((py + 0.5) / scale - 0.5 + look.focal * ty / tz).astype(np.float32)
        source = blur(clean, look.inner_blur)
        colour = sample_bilinear(source, src_x, src_y, cv2.BORDER_REFLECT)
        mean = clean.reshape(-1, 3).mean(0).astype(np.float32)
        colour = colour * (1.0 - look.haze) + look.haze * (0.5 * mean + 0.5 * 235.0)
        if look.tint > 0:
            # Rays bent upward (ty < 0: the drop's lower part) see the bright sky above.
            up = np.clip(-ty / np.maximum(tz, 1e-3) * 3.0, 0.0, 1.0)
            colour += (look.tint * up)[:, None] * (np.float32(240.0) - colour)
        colour[total] = 0.35 * colour[total]  # a reflected rim: mostly the dark inside
        if look.highlight > 0:
            # A window light up and to the left, mirrored by the surface.
            glint = np.exp(-((gx / norm - 0.45) ** 2 + (gy / norm - 0.55) ** 2) / 0.02)
            colour += (255.0 * look.highlight * glint)[:, None]
        if scale == 1.0 and look.focus_blur < 0.33:
            out = clean.reshape(-1, 3).copy()
            a = alpha[:, None]
            out[pix] = to_uint8(colour * a + out[pix] * (1.0 - a))
            return out.reshape(clean.shape)
        layer = np.zeros((hs * ws, 4), np.float32)
        layer[pix, :3] = np.clip(colour, 0.0, 255.0) * alpha[:, None]
        layer[pix, 3] = alpha
        layer = blur(layer.reshape(hs, ws, 4), look.focus_blur * scale)
        return over(clean, layer[..., :3], layer[..., 3])

    def _layout(self, seed: int, h: int, w: int) -> tuple[_Bumps, _Look]:
        rng = self.layout_rng(seed)
        side = min(h, w)
        typical = float(np.exp(uniform(rng, np.log(self.radius)))) * side
        coverage = float(uniform(rng, self.coverage))
        spread = np.exp(self.size_spread**2)  # E[r^2] / typical^2 of a log-normal
        elong = uniform(rng, self.elongation)
        n = int(min(coverage * h * w / (np.pi * typical * typical * spread * (1 + 0.5 * elong)), 20000))
        lo, hi = self.radius[0] * side * 0.5, self.radius[1] * side * 2.0
        r = np.clip(typical * np.exp(rng.normal(0.0, self.size_spread, n)), max(lo, 0.7), hi)
        aspect = 1.0 + elong * rng.random(n)
        # Elongated drops run mostly downward; round ones have no direction.
        angle = np.pi / 2 + rng.normal(0.0, 0.25, n)
        amp = self.irregularity * rng.random((n, 2))
        harm = np.column_stack([amp[:, 0], rng.uniform(0, 2 * np.pi, n), amp[:, 1], rng.uniform(0, 2 * np.pi, n)])
        height = uniform(rng, self.height, n)
        power = uniform(rng, self.power, n)
        look_focus = float(uniform(rng, self.focus_blur)) * side
        margin = float(r.max(initial=0.0) * (1 + elong) * 1.5 + 2)
        x = rng.uniform(-margin, w + margin, n)
        y = rng.uniform(-margin, h + margin, n)
        # Sliders: larger drops, running down, each leaving a trail of small beads above it.
        sliding = (rng.random(n) < self.trails * r / max(float(r.mean()) if n else 1.0, 1e-6)) & (r > 1.5)
        vy = np.where(sliding, uniform(rng, self.slide_speed, n) * side, 0.0)
        parts = [(x, y, vy, r, aspect, angle, harm, height, power)]
        for i in np.flatnonzero(sliding):
            length = rng.uniform(2.0, 12.0) * r[i]
            m = max(2, int(length / max(r[i] * 0.6, 1.0)))
            ty = y[i] - np.linspace(r[i] * 1.2, length, m)
            tx = x[i] + np.cumsum(rng.normal(0.0, 0.15 * r[i], m))
            tr = r[i] * rng.uniform(0.15, 0.45, m)
            parts.append((tx, ty, np.zeros(m), tr, rng.uniform(1.0, 2.0, m), np.full(m, np.pi / 2),
                          np.zeros((m, 4)), rng.uniform(0.1, 0.4, m), np.full(m, 1.0)))
        cols = [np.concatenate(c) for c in zip(*parts)]
        bumps = _Bumps(*cols)
        look = _Look(
            focal=float(uniform(rng, self.focal)) * w, inner_blur=float(uniform(rng, self.inner_blur)) * side,
            focus_blur=look_focus, haze=float(uniform(rng, self.haze)), tint=float(uniform(rng, self.tint)),
            highlight=float(uniform(rng, self.highlight)), margin=margin,
        )
        return bumps, look


def _height_field(b: _Bumps, x: np.ndarray, y: np.ndarray, hs: int, ws: int, scale: float) -> np.ndarray:
    """The water's height ``(hs, ws)`` float32 in layer pixels: every bump's profile
    ``height * r * (1 - d^2) ** power`` summed, so touching drops merge.

    All bumps are rasterised in one pass over their bounding boxes (:func:`box_pixels`)
    and accumulated with ``np.bincount``: dense glass holds thousands of them."""
    lx, ly = (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5
    r = (b.r * scale).astype(np.float32)
    boxes = box_pixels(lx, ly, r * b.aspect * (1.0 + 2.0 * _MAX_IRREGULARITY) + 1.0, hs, ws)
    if boxes is None:
        return np.zeros((hs, ws), np.float32)
    i, px, py = boxes
    dx = (px - lx[i]).astype(np.float32)
    dy = (py - ly[i]).astype(np.float32)
    ri = r[i]
    c, s = np.cos(b.angle).astype(np.float32)[i], np.sin(b.angle).astype(np.float32)[i]
    u = (dx * c + dy * s) / (ri * b.aspect.astype(np.float32)[i])
    v = (dy * c - dx * s) / ri
    theta = np.arctan2(v, u)
    hm = b.harm.astype(np.float32)[i]
    rho = 1.0 + hm[:, 0] * np.cos(2 * theta + hm[:, 1]) + hm[:, 2] * np.cos(3 * theta + hm[:, 3])
    d2 = (u * u + v * v) / (rho * rho)
    inside = d2 < 1.0
    bump = (b.height.astype(np.float32)[i] * ri)[inside] * (1.0 - d2[inside]) ** b.power.astype(np.float32)[i][inside]
    field = np.bincount((py * ws + px)[inside], weights=bump, minlength=hs * ws)
    return field.astype(np.float32).reshape(hs, ws)
