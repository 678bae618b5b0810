"""A contact sheet: one photo under every kind, labelled, for judging realism by eye."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import cv2
import numpy as np

from ..metrics import psnr
from .base import check_image
from .compression import H264
from .mask import difference_mask
from .mix import KINDS, Mixture
from .noise import GaussianNoise
from .raindrops import Raindrops


class Applies(Protocol):
    """A kind or a :class:`Mixture`: anything with the ``apply`` call shape."""

    def apply(self, clean: np.ndarray, seed: int, t: int = 0) -> np.ndarray: ...


def contact_sheet(
    clean: np.ndarray,
    kinds: Mapping[str, Applies] | None = None,
    seed: int = 0,
    t: int = 0,
    columns: int = 3,
) -> np.ndarray:
    """Grid of ``clean`` and each kind applied to it (default: every kind at its
    defaults, then a mixture of raindrops, noise and H.264), each tile labelled with its
    name, PSNR and mask coverage. RGB uint8."""
    check_image(clean)
    if kinds is None:
        kinds = {name: cls() for name, cls in KINDS.items()}
        kinds["raindrops+gaussian+h264"] = Mixture((Raindrops(), GaussianNoise(sigma=(8.0, 8.0)), H264()))
    tiles = [_label(clean, "clean")]
    for name, kind in kinds.items():
        out = kind.apply(clean, seed, t)
        cover = float(difference_mask(out, clean).mean())
        tiles.append(_label(out, f"{name}  {psnr(out, clean):.1f} dB  mask {100 * cover:.1f}%"))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    """The tile with a white caption strip above it (text on the picture is unreadable
    exactly where the picture is busy)."""
    w = image.shape[1]
    scale = max(w / 640, 0.4) * 0.8
    strip = np.full((round(34 * scale) + 8, w, 3), 255, np.uint8)
    org = (8, round(26 * scale) + 2)
    cv2.putText(
        strip, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, round(2 * scale)), cv2.LINE_AA
    )
    return np.vstack([strip, image])
