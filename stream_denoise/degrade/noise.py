"""Per-frame sensor and transmission noise: Gaussian (read + shot), salt-and-pepper,
stripes (line noise and rolling bands).

The noise level of a camera is a property of the camera, so strengths are drawn from
the seed; the noise pattern itself is new every frame (``frame_rng(seed, t)``).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field

from .base import Degradation, Stage, span, uniform

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]


class GaussianNoise(Degradation):
    """Additive Gaussian noise, sigma on the 0-255 scale, optionally signal dependent.

    ``shot`` adds Poisson-like noise: variance ``sigma**2 + shot * value``. ``colour``
    is the share of the variance that is independent per channel (1 = RGB noise,
    0 = grey noise, same in all channels).
    """

    name: ClassVar[str] = "gaussian"
    stage: ClassVar[Stage] = Stage.SENSOR

    sigma: Annotated[tuple[float, float], span(0.0, 128.0)] = (5.0, 25.0)
    shot: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    colour: Fraction01 = 1.0

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        sigma = float(uniform(self.layout_rng(seed), self.sigma))
        rng = self.frame_rng(seed, t)
        noise = rng.standard_normal(clean.shape, dtype=np.float32)
        if self.colour < 1.0:
            grey = rng.standard_normal(clean.shape[:2], dtype=np.float32)
            noise *= np.sqrt(self.colour)
            noise += np.sqrt(1.0 - self.colour) * grey[..., None]
        if self.shot > 0.0:
            noise *= np.sqrt(sigma * sigma + self.shot * clean.astype(np.float32))
        else:
            noise *= sigma
        return cv2.add(clean, noise, dtype=cv2.CV_8U)


class SaltPepper(Degradation):
    """Impulse noise: a fraction ``amount`` of pixels forced to white (salt) or black.

    With ``per_channel`` single channels are hit instead, giving coloured dots.
    """

    name: ClassVar[str] = "salt_pepper"
    stage: ClassVar[Stage] = Stage.SENSOR

    amount: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.002, 0.02)
    salt: Fraction01 = 0.5
    per_channel: bool = False

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        amount = float(uniform(self.layout_rng(seed), self.amount))
        rng = self.frame_rng(seed, t)
        out = clean.copy()
        flat = out.reshape(-1) if self.per_channel else out.reshape(-1, 3)
        k = int(rng.binomial(len(flat), amount))
        idx = rng.integers(0, len(flat), k)
        value = np.where(rng.random(k) < self.salt, 255, 0).astype(np.uint8)
        flat[idx] = value if self.per_channel else value[:, None]
        return out


class Stripes(Degradation):
    """Line noise: random rows (or columns) offset in brightness each frame, plus a
    periodic band that rolls through the picture (interference, mains hum).

    Offsets are on the 0-255 scale; ``lines`` is the fraction of rows/columns hit per
    frame; ``period`` the band's period as a fraction of the image extent across the
    stripes; ``roll`` its speed in periods per second at ``fps``.
    """

    name: ClassVar[str] = "stripes"
    stage: ClassVar[Stage] = Stage.SENSOR

    orientation: Literal["horizontal", "vertical", "any"] = "any"
    lines: Annotated[tuple[float, float], span(0.0, 1.0)] = (0.02, 0.08)
    strength: Annotated[tuple[float, float], span(0.0, 255.0)] = (15.0, 45.0)
    width: Annotated[tuple[int, int], span(1, 64)] = (1, 3)
    banding: Annotated[tuple[float, float], span(0.0, 128.0)] = (0.0, 12.0)
    period: Annotated[tuple[float, float], span(0.001, 10.0)] = (0.03, 0.3)
    roll: Annotated[tuple[float, float], span(-50.0, 50.0)] = (-1.0, 1.0)
    fps: Annotated[float, Field(gt=0.0, le=1000.0)] = 25.0

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        layout = self.layout_rng(seed)
        vertical = layout.random() < 0.5 if self.orientation == "any" else self.orientation == "vertical"
        extent = w if vertical else h
        band = float(uniform(layout, self.banding))
        period = float(uniform(layout, self.period)) * extent
        roll = float(uniform(layout, self.roll))
        phase = float(layout.uniform(0.0, 2 * np.pi))
        fraction = float(uniform(layout, self.lines))

        rng = self.frame_rng(seed, t)
        pos = np.arange(extent, dtype=np.float32)
        profile = band * np.sin(2 * np.pi * (pos / period + roll * t / self.fps) + phase)
        k = round(fraction * extent / ((self.width[0] + self.width[1]) / 2))
        start = rng.integers(0, extent, k)
        width = rng.integers(self.width[0], self.width[1] + 1, k)
        offset = uniform(rng, self.strength, k) * rng.choice((-1.0, 1.0), k)
        # Expand each line to the rows it covers, then add all at once (lines may overlap).
        covered = np.repeat(start, width) + (
            np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width)
        )
        keep = covered < extent
        np.add.at(profile, covered[keep], np.repeat(offset, width)[keep])

        delta = np.rint(profile).astype(np.int16)
        shaped = delta[None, :, None] if vertical else delta[:, None, None]
        return np.clip(clean.astype(np.int16) + shaped, 0, 255).astype(np.uint8)
