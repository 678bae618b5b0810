"""Generator checkpoints: bundled names, save and load, never executing code.

A checkpoint carries its architecture beside its tensors, so a file alone rebuilds the
model it was trained as. Two formats load:

* ``.safetensors`` (what ships in the package): tensors plus JSON metadata ``arch`` and
  ``summary`` (training data, steps, validation figures).
* ``.pt`` / ``.pth`` training checkpoints: a dict with ``generator`` (state dict) and
  ``arch`` (dict), read with ``torch.load(weights_only=True)`` so a crafted pickle is
  refused instead of run.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from .generator import Generator, GeneratorConfig

BUNDLED_DIR = Path(__file__).with_name("bundled")
BUNDLED_NAMES = ("lite", "paper")
FORMAT = "stream-denoise/agan-generator/1"


def bundled_path(name: str) -> Path:
    return BUNDLED_DIR / f"agan-{name}.safetensors"


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model name or a file path -> an existing checkpoint file."""
    if str(name_or_path) in BUNDLED_NAMES:
        path = bundled_path(str(name_or_path))
        if not path.is_file():
            raise ModelError(
                f"no bundled '{name_or_path}' model is installed yet; train one "
                "(stream-denoise train) and set model.weights to its checkpoint"
            )
        return path
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(BUNDLED_NAMES)
        raise ModelError(f"model {name_or_path} not found (expected a checkpoint file or one of: {known})")
    return path


def save_generator(
    path: str | Path, generator: Generator, summary: dict[str, Any] | None = None,
    *, half: bool = True,
) -> Path:
    """Write a .safetensors checkpoint; ``half`` stores float16 to keep shipped files small."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in generator.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "arch": json.dumps(generator.config.to_dict()),
        "summary": json.dumps(summary or {}),
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def _read_safetensors(path: Path) -> tuple[dict, dict, dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read checkpoint {path}: {e}") from None
    if meta.get("format") != FORMAT or "arch" not in meta:
        raise ModelError(f"{path} is not a stream-denoise generator checkpoint")
    return tensors, json.loads(meta["arch"]), json.loads(meta.get("summary", "{}"))


def _read_torch(path: Path) -> tuple[dict, dict, dict]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(
            f"refused to load {path}: it holds objects other than tensors and plain data, "
            f"which could run code ({str(e).splitlines()[0][:120]})"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise ModelError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(blob, dict) or "generator" not in blob or "arch" not in blob:
        raise ModelError(f"{path} is not a stream-denoise checkpoint (no 'generator' and 'arch')")
    return blob["generator"], blob["arch"], blob.get("summary", {})


def load_generator(name_or_path: str | Path) -> tuple[Generator, dict[str, Any]]:
    """Build the generator a checkpoint describes and load its tensors (float32, CPU, eval).

    Returns the generator and the checkpoint's training summary. Raises :class:`ModelError`
    for a missing file, a foreign or crafted file, or tensors that do not match the
    architecture recorded beside them.
    """
    path = resolve(name_or_path)
    read = _read_safetensors if path.suffix == ".safetensors" else _read_torch
    tensors, arch, summary = read(path)
    try:
        config = GeneratorConfig(**arch)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path}: invalid architecture in checkpoint: {e}") from None
    generator = Generator(config)
    try:
        generator.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise ModelError(f"{path}: tensors do not match the recorded architecture ({first})") from None
    return generator.eval(), summary
