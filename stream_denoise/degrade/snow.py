"""Falling snow in front of the camera.

Flakes are laid out once per seed with a depth each: near flakes are big, fast, faint
and out of focus, far ones small, slow and sharp. Their positions at frame ``t`` follow
from constant fall and wind speeds plus a gentle sideways sway, wrapping round the
frame, so a flake at ``t + 1`` is the same flake moved on. During the exposure a flake
moves, so it is drawn as a streak along its velocity. Scattered light in the snowy air
adds a veil that brightens the scene and lowers its contrast.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import cv2
import numpy as np
from pydantic import Field

from ..models.heads import AIR_LIGHT as MODEL_AIR_LIGHT
from .base import Degradation, Stage, blur, span, tint, uniform

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]

_LAYERS = 5  # depth bins: each is drawn in one call with one width, opacity and blur
AIR_LIGHT = 255 * MODEL_AIR_LIGHT  # the grey level the veil mixes in: the one the model's veil head inverts


class Snow(Degradation):
    """Snowfall: depth-layered motion-blurred flakes plus a light veil.

    Sizes and speeds are fractions of the image's shorter side (``min(H, W)``), speeds
    per second at ``fps``; ``density`` is flakes per megapixel. ``bokeh`` adds that many
    flakes per megapixel right in front of the lens: large (``bokeh_size``), faint,
    defocused discs that cross the frame in a few frames.
    """

    name: ClassVar[str] = "snow"
    stage: ClassVar[Stage] = Stage.SCENE

    density: Annotated[tuple[float, float], span(0.0, 50000.0)] = (1000.0, 3000.0)
    size: Annotated[tuple[float, float], span(0.0005, 0.05)] = (0.0015, 0.012)
    fall_speed: Annotated[tuple[float, float], span(0.0, 10.0)] = (0.04, 0.8)
    wind: Annotated[tuple[float, float], span(-3.0, 3.0)] = (-0.4, 0.4)
    sway: Annotated[float, Field(ge=0.0, le=0.1)] = 0.01
    exposure: Fraction01 = 0.5
    near_blur: Annotated[float, Field(ge=0.0, le=0.05)] = 0.006
    opacity: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.5, 0.95)
    veil: Annotated[tuple[float, float], span(0.0, 0.8)] = (0.0, 0.05)
    bokeh: Annotated[tuple[float, float], span(0.0, 500.0)] = (0.0, 0.0)
    bokeh_size: Annotated[tuple[float, float], span(0.005, 0.3)] = (0.02, 0.08)
    fps: Annotated[float, Field(gt=0.0, le=1000.0)] = 25.0

    def veil_share(self, seed: int) -> float:
        return self._draw_density_veil(self.layout_rng(seed))[1]

    def _draw_density_veil(self, rng: np.random.Generator) -> tuple[float, float]:
        """The layout's first two draws, so :meth:`veil_share` reads them without drawing flakes."""
        return float(uniform(rng, self.density)), float(uniform(rng, self.veil))

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        side = min(h, w)
        rng = self.layout_rng(seed)
        density, veil = self._draw_density_veil(rng)
        n = int(density * h * w / 1e6)
        wind = float(uniform(rng, self.wind))
        z = rng.random(n) ** 2  # depth 0 (far) .. 1 (near): most flakes are far
        x0, y0 = rng.random(n), rng.random(n)
        jitter = rng.uniform(0.8, 1.2, n)
        sway_f = rng.uniform(0.3, 1.0, n)
        sway_p = rng.uniform(0.0, 2 * np.pi, n)
        vy = (self.fall_speed[0] + (self.fall_speed[1] - self.fall_speed[0]) * z) * jitter * side
        vx = wind * vy

        secs = t / self.fps
        streak = self.exposure / self.fps  # seconds the shutter is open
        margin = float(
            np.hypot(vx, vy).max(initial=0.0) * streak + self.size[1] * side + 3 * self.near_blur * side + 2
        )
        sway = self.sway * side * z * np.sin(2 * np.pi * sway_f * secs + sway_p)
        x = np.mod(x0 * (w + 2 * margin) + vx * secs + sway, w + 2 * margin) - margin
        y = np.mod(y0 * (h + 2 * margin) + vy * secs, h + 2 * margin) - margin

        alpha = np.zeros((h, w), np.uint8)
        edges = np.quantile(z, np.linspace(0.0, 1.0, _LAYERS + 1)) if n else np.zeros(_LAYERS + 1)
        for k in range(_LAYERS):
            sel = (z >= edges[k]) & ((z < edges[k + 1]) | (k == _LAYERS - 1))
            if not sel.any():
                continue
            zk = float(z[sel].mean())
            radius = (self.size[0] + (self.size[1] - self.size[0]) * zk**1.5) * side
            length = float(np.hypot(vx[sel], vy[sel]).mean()) * streak
            # A moving flake covers each pixel of its streak for only part of the
            # exposure: longer streaks are fainter.
            opacity = self.opacity[0] + (self.opacity[1] - self.opacity[0]) * zk
            opacity *= 2 * radius / (2 * radius + length)
            tail = np.stack([x[sel] - vx[sel] * streak, y[sel] - vy[sel] * streak], -1)
            head = np.stack([x[sel], y[sel]], -1)
            pts = np.round(np.stack([tail, head], 1) * 16).astype(np.int32)  # 4 bits subpixel
            layer = np.zeros((h, w), np.uint8)
            cv2.polylines(
                layer, list(pts), False, int(255 * opacity), max(1, round(2 * radius)), cv2.LINE_AA, 4
            )
            layer = blur(layer, self.near_blur * side * zk * zk)
            cv2.add(alpha, layer, dst=alpha)

        # Veil: a share of every pixel becomes light grey air light.
        if self.bokeh[1] > 0:
            cv2.add(alpha, self._bokeh(seed, t, h, w), dst=alpha)
        veiled = cv2.convertScaleAbs(clean, alpha=1.0 - veil, beta=veil * AIR_LIGHT)
        return tint(veiled, (242.0, 245.0, 252.0), alpha.astype(np.float32) * (1.0 / 255.0))

    def _bokeh(self, seed: int, t: int, h: int, w: int) -> np.ndarray:
        """Coverage ``(h, w)`` uint8 of the flakes next to the lens (their own stream, so
        layouts without them draw as before)."""
        side = min(h, w)
        rng = self.layout_rng(seed, part=1)
        n = int(uniform(rng, self.bokeh) * h * w / 1e6)
        r = uniform(rng, self.bokeh_size, n) * side
        x0, y0 = rng.random(n), rng.random(n)
        v = rng.uniform(1.0, 4.0, n) * side  # px / s: near flakes sweep through fast
        heading = np.pi / 2 + rng.normal(0.0, 0.5, n)
        opacity = rng.uniform(0.15, 0.5, n)
        secs = t / self.fps
        span_x, span_y = w + 4 * r.max(initial=0.0), h + 4 * r.max(initial=0.0)
        x = np.mod(x0 * span_x + v * np.cos(heading) * secs, span_x) - 2 * r.max(initial=0.0)
        y = np.mod(y0 * span_y + v * np.sin(heading) * secs, span_y) - 2 * r.max(initial=0.0)
        layer = np.zeros((h, w), np.uint8)
        for xi, yi, ri, oi in zip(x, y, r, opacity):
            cv2.circle(layer, (round(xi * 16), round(yi * 16)), round(ri * 16), int(255 * oi), -1, cv2.LINE_AA, 4)
        return blur(layer, 0.4 * float(r.mean()) if n else 0.0)
