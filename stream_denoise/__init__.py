"""stream-denoise: remove weather and sensor noise from live and recorded video.

Public API: :class:`Denoiser` (frames in, frames out), :func:`run` (a whole stream) and
:func:`load_config`. They are imported on first use so that ``stream-denoise --help``
does not pay for importing PyTorch.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Denoiser", "run", "load_config", "__version__"]

_LAZY = {"Denoiser": "denoiser", "run": "pipeline", "load_config": "config"}

if TYPE_CHECKING:
    from .config import load_config
    from .denoiser import Denoiser
    from .pipeline import run


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
