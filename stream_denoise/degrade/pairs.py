"""Write paired training folders: ``noisy/``, ``clean/`` and ``mask/`` PNGs by name.

This is the layout the trainer reads: the same file name in each folder is one sample.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ..errors import OutputError
from .config import DegradeConfig
from .mix import degrade


def sample_seed(seed: int, name: str) -> int:
    """The seed of sample ``name``: tied to the name, not the order, so re-running on a
    reordered or extended source gives the same pair for the same name."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def write_pairs(
    sources: Iterable[np.ndarray] | Iterable[tuple[str, np.ndarray]],
    out_dir: str | Path,
    config: DegradeConfig,
    seed: int = 0,
    masks: bool = True,
) -> list[str]:
    """Degrade each clean ``(H, W, 3)`` uint8 RGB image and write the pair.

    ``sources`` yields images (named ``000000``, ``000001``, ...) or ``(name, image)``
    pairs. Writes ``out_dir/noisy/NAME.png``, ``out_dir/clean/NAME.png`` and, with
    ``masks``, ``out_dir/mask/NAME.png`` (0/255 difference mask). Returns the names in
    order. Raises ``OutputError`` when a file cannot be written.
    """
    root = Path(out_dir)
    folders = ["noisy", "clean"] + (["mask"] if masks else [])
    try:
        for folder in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {root}: {e.strerror}") from e
    names: list[str] = []
    for i, item in enumerate(sources):
        name, clean = item if isinstance(item, tuple) else (f"{i:06d}", item)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"sample name {name!r} is not a plain file name")
        s = sample_seed(seed, name)
        noisy, mask = degrade(clean, config.sample(s), s)
        images = {"noisy": noisy, "clean": clean, "mask": (mask * 255).astype(np.uint8)}
        for folder in folders:
            image = images[folder]
            path = root / folder / f"{name}.png"
            bgr = image[..., ::-1] if image.ndim == 3 else image
            if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
                raise OutputError(f"cannot write {path}")
        names.append(name)
    return names
