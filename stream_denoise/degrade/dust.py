"""Dust, hairs and scratches on the lens.

Static: everything is laid out from the seed, so every frame shows the same specks.
Specks are small irregular blobs, mostly dark (absorbing) and some light (dust lit from
the side scatters light into the lens); hairs are thin dark curves, scratches thin light
ones. The lens is not in focus, so the whole layer is blurred and semi-transparent.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import cv2
import numpy as np
from pydantic import Field

from .base import Degradation, Stage, blur, integers, log_uniform, span, tint, uniform

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]

_DARK = (30.0, 28.0, 25.0)
_LIGHT = (235.0, 235.0, 230.0)


class Dust(Degradation):
    """Out-of-focus specks, hairs and scratches that stay put.

    Sizes are fractions of the image's shorter side (``min(H, W)``). ``smudges`` adds
    that many large soft blotches (``smudge_size`` across), dark or light, each also
    smearing the scene behind it as grease on glass does.
    """

    name: ClassVar[str] = "dust"
    stage: ClassVar[Stage] = Stage.LENS

    specks: Annotated[tuple[int, int], span(0, 5000)] = (30, 100)
    speck_size: Annotated[tuple[float, float], span(0.0005, 0.1)] = (0.002, 0.02)
    opacity: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.15, 0.6)
    light_fraction: Fraction01 = 0.25
    hairs: Annotated[tuple[int, int], span(0, 100)] = (1, 4)
    hair_length: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.04, 0.2)
    focus_blur: Annotated[tuple[float, float], span(0.0, 0.05)] = (0.002, 0.006)
    smudges: Annotated[tuple[int, int], span(0, 50)] = (0, 0)
    smudge_size: Annotated[tuple[float, float], span(0.01, 1.0)] = (0.05, 0.2)

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        side = min(h, w)
        rng = self.layout_rng(seed)
        dark = np.zeros((h, w), np.uint8)  # coverage, 255 = opaque
        light = np.zeros((h, w), np.uint8)
        n = integers(rng, self.specks)
        radius = log_uniform(rng, (self.speck_size[0] * side, self.speck_size[1] * side), n)
        for r in radius:
            canvas = light if rng.random() < self.light_fraction else dark
            value = int(255 * uniform(rng, self.opacity))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            # A speck is a clump: one blob and a few smaller ones stuck to it.
            for part in range(1 + int(rng.integers(0, 3))):
                pr = r if part == 0 else r * rng.uniform(0.3, 0.7)
                off = 0.0 if part == 0 else r
                px, py = cx + rng.normal(0, off), cy + rng.normal(0, off)
                axes = (max(pr, 0.5), max(pr * rng.uniform(0.5, 1.0), 0.5))
                _ellipse(canvas, (px, py), axes, rng.uniform(0, 180), value)
        for _ in range(integers(rng, self.hairs)):
            scratch = rng.random() < 0.3
            canvas = light if scratch else dark
            length = uniform(rng, self.hair_length) * side
            # Hairs curl (a random walk of heading); scratches run nearly straight.
            steps = 24
            turn = rng.normal(0.0, 0.02 if scratch else 0.15, steps).cumsum()
            heading = rng.uniform(0, 2 * np.pi) + turn
            seg = length / steps
            xy = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], -1) * seg, 0)
            xy += (rng.uniform(0, w), rng.uniform(0, h))
            pts = np.round(xy * 16).astype(np.int32)
            value = int(255 * uniform(rng, (max(self.opacity[0], 0.3), max(self.opacity[1], 0.5))))
            cv2.polylines(canvas, [pts], False, value, 1, cv2.LINE_AA, 4)
        sigma = float(uniform(rng, self.focus_blur)) * side
        if self.smudges[1] > 0:
            clean = self._smudge(clean, seed, dark, light)
        out = tint(clean, _DARK, blur(dark, sigma).astype(np.float32) * (1.0 / 255.0))
        return tint(out, _LIGHT, blur(light, sigma).astype(np.float32) * (1.0 / 255.0))

    def _smudge(self, clean: np.ndarray, seed: int, dark: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Paint the smudges' tint into ``dark``/``light`` (blurred later with the specks)
        and return ``clean`` smeared where the grease lies. Own stream: layouts without
        smudges draw as before."""
        h, w = clean.shape[:2]
        side = min(h, w)
        rng = self.layout_rng(seed, part=1)
        grease = np.zeros((h, w), np.float32)
        for _ in range(integers(rng, self.smudges)):
            size = uniform(rng, self.smudge_size) * side
            blob = np.zeros((h, w), np.float32)
            _ellipse(blob, (rng.uniform(0, w), rng.uniform(0, h)),
                     (size / 2, size / 2 * rng.uniform(0.3, 1.0)), rng.uniform(0, 180), 1)
            blob = blur(blob, size / 4)
            grease = np.maximum(grease, blob)
            tone = light if rng.random() < self.light_fraction else dark
            cv2.add(tone, (blob * 255 * uniform(rng, (0.15, 0.5))).astype(np.uint8), dst=tone)
        smeared = blur(clean, 0.01 * side)
        return cv2.blendLinear(smeared, clean, grease, 1.0 - grease)


def _ellipse(
    canvas: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float, value: int
) -> None:
    """Filled anti-aliased ellipse at sub-pixel position (cv2 fixed point, 4 bits)."""
    c = (round(centre[0] * 16), round(centre[1] * 16))
    a = (round(axes[0] * 16), round(axes[1] * 16))
    cv2.ellipse(canvas, c, a, angle, 0, 360, value, -1, cv2.LINE_AA, 4)
