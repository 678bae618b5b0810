"""Files shipped inside the package: the sample clip."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError

SAMPLE_CLIP = Path(__file__).with_name("sample.mp4")


def resolve_input(spec: str | Path) -> str | Path:
    """The word ``sample`` names the bundled clip; anything else passes through."""
    if str(spec) != "sample":
        return spec
    if not SAMPLE_CLIP.is_file():
        raise InputError(f"the bundled sample clip is missing from this install ({SAMPLE_CLIP})")
    return SAMPLE_CLIP
