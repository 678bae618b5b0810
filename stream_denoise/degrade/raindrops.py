"""Raindrops on the lens or on the glass in front of it (the rain of Qian et al.).

Each drop is a tiny fisheye lens: inside a soft, slightly irregular blob it shows an
inverted, shrunken view of a wider region around it (so a drop low in the frame shows the
bright sky upside down at its bottom), with a darker rim where light is refracted away
and a small specular highlight. The camera focuses on the scene, not on the glass, so the
whole drop layer is then defocused (``focus_blur``): the translucent blobs of real photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import cv2
import numpy as np
from pydantic import Field

from .base import (
    Degradation,
    Stage,
    blur,
    box_pixels,
    integers,
    log_uniform,
    over,
    sample_bilinear,
    span,
    to_uint8,
    uniform,
)

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]


@dataclass(frozen=True, slots=True)
class _Drops:
    """Per-drop parameters in pixels, laid out once per seed (a struct of arrays)."""

    x: np.ndarray  # position at t = 0
    y: np.ndarray
    vx: np.ndarray  # px / s
    vy: np.ndarray
    wobble: np.ndarray  # stick-slip: relative speed modulation of sliding drops
    phase: np.ndarray
    r: np.ndarray  # radius
    aspect: np.ndarray  # height / width before rotation
    angle: np.ndarray
    harm: np.ndarray  # (n, 4): amplitude and phase of the 2nd and 3rd shape harmonic
    zoom: np.ndarray  # how many times larger the region a drop shows is than the drop
    hl: np.ndarray  # (n, 2) highlight position in radii
    margin: float  # how far outside the frame a drop may wander before wrapping
    blur: float  # defocus sigma


class Raindrops(Degradation):
    """Drops on the glass: refracted, rimmed, highlighted, defocused, slowly drifting.

    Sizes and speeds are fractions of the image's shorter side (``min(H, W)``) so one
    config looks the same at any resolution; speeds are per second at ``fps``.

    ``count`` drops with radii in ``radius`` (log-uniform: many small, few large), shaped
    by ``elongation`` and ``irregularity``; ``clustering`` is the share gathered in
    patches. Each shows a region ``zoom`` times its size, inverted, looking ``look_up``
    (of the frame height) higher; its lower part turns to a bright ``sky`` colour and
    ``haze`` (light scattered in the water) lowers its contrast. ``rim_darkness`` and
    ``highlight`` set the dark rim and the specular spot. ``focus_blur`` is the defocus
    sigma range; below half a pixel drops are drawn as sharp beads. Drops creep at up
    to ``drift_speed`` per second, mostly downward; about ``slide_fraction`` of them
    (larger ones more often) slide down at ``slide_speed``, sticking and slipping.
    """

    name: ClassVar[str] = "raindrops"
    stage: ClassVar[Stage] = Stage.LENS

    count: Annotated[tuple[int, int], span(0, 5000)] = (80, 200)
    radius: Annotated[tuple[float, float], span(0.002, 0.3)] = (0.008, 0.035)
    elongation: Annotated[float, Field(ge=0.0, le=2.0)] = 0.3
    irregularity: Annotated[float, Field(ge=0.0, le=0.3)] = 0.1
    zoom: Annotated[tuple[float, float], span(1.0, 50.0)] = (4.0, 12.0)
    focus_blur: Annotated[tuple[float, float], span(0.0, 0.05)] = (0.002, 0.008)
    rim_darkness: Fraction01 = 0.3
    highlight: Fraction01 = 0.5
    haze: Fraction01 = 0.2
    look_up: Fraction01 = 0.15
    sky: Fraction01 = 0.75
    clustering: Fraction01 = 0.5
    drift_speed: Annotated[float, Field(ge=0.0, le=1.0)] = 0.012
    slide_fraction: Fraction01 = 0.15
    slide_speed: Annotated[tuple[float, float], span(0.0, 5.0)] = (0.04, 0.15)
    fps: Annotated[float, Field(gt=0.0, le=1000.0)] = 25.0

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        drops = self._layout(seed, h, w)
        cx, cy = _positions(drops, t / self.fps, w, h)
        # A defocused layer has no detail finer than its blur: paint and blur it at half
        # resolution (4x fewer pixels) and upsample; sharp beads are painted at full size.
        scale = 0.5 if drops.blur >= 0.5 else 1.0
        hs, ws = round(h * scale), round(w * scale)
        pix, alpha, src_x, src_y, sky, shade, light = self._paint(drops, cx, cy, h, w, scale)
        # The view inside a drop is minified several times: a quarter-size copy is both
        # the anti-aliasing prefilter and a cheap source. Replicating the border makes
        # drops that look above the frame see the top rows (usually sky).
        hq, wq = max(h // 4, 2), max(w // 4, 2)
        small = cv2.resize(clean, (wq, hq), interpolation=cv2.INTER_AREA)
        refr = sample_bilinear(small, (src_x + 0.5) * (wq / w) - 0.5, (src_y + 0.5) * (hq / h) - 0.5)
        pixels = small.reshape(-1, 3).astype(np.float32)
        haze_colour = 0.5 * pixels.mean(0) + 0.5 * 235.0
        luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
        sky_colour = 0.5 * pixels[luma >= np.percentile(luma, 95)].mean(0) + 0.5 * 240.0
        colour = refr * (1.0 - self.haze) + self.haze * haze_colour
        colour += sky[:, None] * (sky_colour - colour)
        colour = colour * shade[:, None] + light[:, None]
        if scale == 1.0:
            # Sharp: only drop pixels change, so blend just those.
            out = clean.reshape(-1, 3).copy()
            a = alpha[:, None]
            out[pix] = to_uint8(colour * a + out[pix] * (1.0 - a))
            return out.reshape(clean.shape)
        # Premultiplied layer blurred together with its coverage: a defocused drop both
        # spreads its own light and lets the scene behind it through at its edges.
        layer = np.zeros((hs * ws, 4), np.float32)
        layer[pix, :3] = colour * alpha[:, None]
        layer[pix, 3] = alpha
        layer = blur(layer.reshape(hs, ws, 4), drops.blur * scale)
        return over(clean, layer[..., :3], layer[..., 3])

    def _layout(self, seed: int, h: int, w: int) -> _Drops:
        rng = self.layout_rng(seed)
        side = min(h, w)
        n = integers(rng, self.count)
        r = log_uniform(rng, (self.radius[0] * side, self.radius[1] * side), n)
        # Bigger drops are heavier and the likelier to slide.
        slide_p = self.slide_fraction * r / max(r.mean(), 1e-6) if n else r
        sliding = rng.random(n) < np.clip(slide_p, 0.0, 1.0)
        heading = rng.normal(np.pi / 2, 0.7, n)  # creep is mostly downward
        speed = self.drift_speed * side * rng.uniform(0.3, 1.0, n)
        vx, vy = speed * np.cos(heading), speed * np.abs(np.sin(heading))
        slide = uniform(rng, self.slide_speed, n) * side
        vx = np.where(sliding, slide * rng.normal(0.0, 0.1, n), vx)
        vy = np.where(sliding, slide, vy)
        e = self.elongation * rng.random(n)
        aspect = np.where(sliding, 1.0 + self.elongation * rng.uniform(0.6, 1.4, n), 1.0 + 0.5 * e)
        angle = np.where(sliding, 0.0, rng.uniform(0.0, np.pi, n))
        amp = self.irregularity * rng.random((n, 2))
        harm = np.column_stack(
            [amp[:, 0], rng.uniform(0, 2 * np.pi, n), amp[:, 1], rng.uniform(0, 2 * np.pi, n)]
        )
        hl = np.column_stack([rng.normal(-0.3, 0.08, n), rng.normal(-0.45, 0.08, n)])
        margin = (
            float(r.max() * (1 + self.elongation) * 1.5 + 3 * self.focus_blur[1] * side + 2) if n else 0.0
        )
        # Real drops gather in patches: part of them around a few cluster centres.
        x = rng.uniform(-margin, w + margin, n)
        y = rng.uniform(-margin, h + margin, n)
        clustered = rng.random(n) < self.clustering
        centre = rng.integers(0, 4, n)
        cxy = rng.uniform(0.0, 1.0, (4, 2)) * (w, h)
        spread = rng.uniform(0.12, 0.3, 4) * max(h, w)
        x = np.where(clustered, cxy[centre, 0] + rng.normal(0.0, 1.0, n) * spread[centre], x)
        y = np.where(clustered, cxy[centre, 1] + rng.normal(0.0, 1.0, n) * spread[centre], y)
        wobble = np.where(sliding, rng.uniform(0.3, 0.9, n), 0.0)
        return _Drops(
            x=x, y=y, vx=vx, vy=vy, wobble=wobble, phase=rng.uniform(0, 2 * np.pi, n),
            r=r, aspect=aspect, angle=angle, harm=harm, zoom=uniform(rng, self.zoom, n), hl=hl, margin=margin,
            blur=float(uniform(rng, self.focus_blur)) * side,
        )  # fmt: skip

    def _paint(
        self, d: _Drops, cx: np.ndarray, cy: np.ndarray, h: int, w: int, scale: float
    ) -> tuple[np.ndarray, ...]:
        """Rasterise all drops at ``scale`` into flat per-pixel arrays: the pixel index
        (row-major at that scale), coverage, source coordinates (full-size pixels) of the
        refracted view, sky weight, rim shade and specular light.

        All drops are done in one pass over their bounding boxes (:func:`box_pixels`),
        and only pixels inside a drop are returned, so later steps cost what the drops cover.
        """
        hs, ws = round(h * scale), round(w * scale)
        # Drop centres and radii in layer pixels.
        lx, ly = (cx + 0.5) * scale - 0.5, (cy + 0.5) * scale - 0.5
        r = (d.r * scale).astype(np.float32)
        boxes = box_pixels(lx, ly, r * d.aspect * (1.0 + 2.0 * self.irregularity) + 2.0, hs, ws)
        if boxes is None:
            return (np.zeros(0, np.int64),) + tuple(np.zeros(0, np.float32) for _ in range(6))
        i, px, py = boxes
        dx = (px - lx[i]).astype(np.float32)
        dy = (py - ly[i]).astype(np.float32)
        ri = r[i]
        c, s = np.cos(d.angle).astype(np.float32)[i], np.sin(d.angle).astype(np.float32)[i]
        u = (dx * c + dy * s) / ri
        v = (dy * c - dx * s) / (ri * d.aspect.astype(np.float32)[i])
        theta = np.arctan2(v, u)
        hm = d.harm.astype(np.float32)[i]
        rho = 1.0 + hm[:, 0] * np.cos(2 * theta + hm[:, 1]) + hm[:, 2] * np.cos(3 * theta + hm[:, 3])
        dist = np.sqrt(u * u + v * v) / rho
        a = np.clip((1.0 - dist) * ri + 0.5, 0.0, 1.0)
        # One drop per pixel: the most opaque, and among equals the smaller one, which
        # sits on top of a larger drop it touches.
        inside = np.flatnonzero(a > 0)
        pix = (py * ws + px)[inside]
        order = np.lexsort((-ri[inside], a[inside], pix))
        last = np.append(pix[order][1:] != pix[order][:-1], True)
        keep = inside[order[last]]
        pix = pix[order[last]]
        i, dx, dy, dist = i[keep], dx[keep], dy[keep], dist[keep]
        # Inverted and minified like a fisheye: the edge shows more of the world. The
        # view is also tilted up: a drop on upright glass sees much of the sky.
        k = -d.zoom.astype(np.float32)[i] * (1.0 + 0.6 * dist * dist) / scale
        src_x = (cx[i] + k * dx).astype(np.float32)
        src_y = (cy[i] + k * dy - self.look_up * h).astype(np.float32)
        # The drop's lower part shows the bright sky above the camera's field of view
        # (which the frame itself may not contain), its upper part the darker ground.
        down = np.clip((dy / r[i] + 0.4) / 1.2, 0.0, 1.0)
        sky = self.sky * down * down * (3.0 - 2.0 * down)
        # Light leaving near the edge is refracted away from the camera: a dark rim,
        # except at the bottom where the sky is seen.
        edge = np.clip((dist - 0.7) / 0.3, 0.0, 1.0)
        shade = 1.0 - self.rim_darkness * edge * edge * (1.0 - down)
        hx = dx / r[i] - d.hl[i, 0]
        hy = dy / r[i] - d.hl[i, 1]
        light = 255.0 * self.highlight * np.exp(-(hx * hx + hy * hy) / 0.06)
        return pix, a[keep], src_x, src_y, sky, shade, light


def _positions(d: _Drops, secs: float, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop centres at time ``secs``; a drop leaving the frame re-enters on the other side."""
    # Sliding drops stick and slip: their speed swings around its mean (never negative).
    f = 0.5
    slip = secs + d.wobble * np.sin(2 * np.pi * f * secs + d.phase) / (2 * np.pi * f)
    m = d.margin
    x = np.mod(d.x + d.vx * secs + m, w + 2 * m) - m
    y = np.mod(d.y + d.vy * slip + m, h + 2 * m) - m
    return x, y
