"""Training checkpoints on disk: written whole or not at all, read without running code."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError


def save_checkpoint(path: Path, blob: dict[str, Any]) -> Path:
    """Write ``blob`` to ``path`` through a temporary file, so a crash or a kill mid-write
    never leaves a half-written checkpoint under the real name."""
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint's contents (``weights_only``: tensors and plain data, no pickled code);
    ModelError naming the file for anything unreadable."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # any unreadable checkpoint is a user error
        raise ModelError(f"cannot resume from {path}: {str(e).splitlines()[0][:200]}") from None
