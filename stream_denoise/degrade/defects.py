"""Sensor defects: hot, stuck and dead pixels, dead or stuck rows and columns, and
fixed-pattern noise (column/row offsets, per-pixel gain spread).

All of it belongs to the sensor, so everything is laid out from the seed and every
frame shows the same defects at the same places.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from .base import Degradation, Stage, integers, span

Rate = Annotated[float, Field(ge=0.0, le=0.1)]


class Defects(Degradation):
    """Persistent sensor defects on top of the picture.

    ``hot``/``stuck``/``dead`` are fractions of pixels: hot pixels add a bright, often
    coloured, value (one Bayer channel leaks), stuck ones show a fixed colour, dead
    ones are black; a fifth of the defects are 2-3 pixel clusters. ``lines`` is the
    count of defective rows plus columns (dead, stuck bright or half gain, full or
    partial). Fixed-pattern noise: ``column_fpn`` and ``row_fpn`` are offset sigmas on
    the 0-255 scale, ``prnu`` the per-pixel gain sigma.
    """

    name: ClassVar[str] = "defects"
    stage: ClassVar[Stage] = Stage.SENSOR

    hot: Rate = 3e-4
    stuck: Rate = 5e-5
    dead: Rate = 1e-4
    lines: Annotated[tuple[int, int], span(0, 100)] = (0, 2)
    column_fpn: Annotated[float, Field(ge=0.0, le=64.0)] = 2.5
    row_fpn: Annotated[float, Field(ge=0.0, le=64.0)] = 1.0
    prnu: Annotated[float, Field(ge=0.0, le=0.5)] = 0.01

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        rng = self.layout_rng(seed)
        img = clean.astype(np.float32)
        if self.prnu > 0:
            img *= (1.0 + self.prnu * rng.standard_normal((h, w), dtype=np.float32))[..., None]
        if self.column_fpn > 0 or self.row_fpn > 0:
            col = self.column_fpn * rng.standard_normal((w,), dtype=np.float32)
            row = self.row_fpn * rng.standard_normal((h,), dtype=np.float32)
            img += (row[:, None] + col[None, :])[..., None]
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)

        flat = out.reshape(-1, 3)
        for rate, kind in ((self.hot, "hot"), (self.stuck, "stuck"), (self.dead, "dead")):
            k = int(rng.binomial(h * w, rate))
            idx = _clustered(rng, k, h, w)
            if kind == "hot":
                # Mostly one channel leaking (the Bayer site), sometimes all three.
                add = rng.uniform(80, 255, (len(idx), 1)) * np.where(
                    rng.random((len(idx), 1)) < 0.3, 1.0, np.eye(3)[rng.integers(0, 3, len(idx))]
                )
                flat[idx] = np.clip(flat[idx] + add, 0, 255).astype(np.uint8)
            elif kind == "stuck":
                flat[idx] = rng.integers(0, 256, (len(idx), 3), dtype=np.uint8)
            else:
                flat[idx] = 0

        for _ in range(integers(rng, self.lines)):
            vertical = rng.random() < 0.5
            extent, across = (h, w) if vertical else (w, h)
            at = int(rng.integers(0, across))
            start = 0 if rng.random() < 0.6 else int(rng.integers(0, extent // 2))
            stop = extent if rng.random() < 0.6 else int(rng.integers(start + 1, extent + 1))
            line = out[start:stop, at] if vertical else out[at, start:stop]
            mode = rng.random()
            if mode < 0.5:
                line[:] = 0
            elif mode < 0.75:
                line[:] = rng.integers(180, 256, 3, dtype=np.uint8)
            else:
                line[:] = line // 2
        return out


def _clustered(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    """``k`` pixel indices; a fifth of them grow into small 2-3 pixel clusters."""
    y = rng.integers(0, h, k)
    x = rng.integers(0, w, k)
    grow = rng.random(k) < 0.2
    extra_y = np.clip(y[grow] + rng.integers(-1, 2, grow.sum()), 0, h - 1)
    extra_x = np.clip(x[grow] + rng.integers(-1, 2, grow.sum()), 0, w - 1)
    return np.concatenate([y * w + x, extra_y * w + extra_x])
