"""Synthetic degradations for paired training data and demo clips.

Each kind is a frozen pydantic model of its parameters with
``apply(clean, seed, t) -> degraded`` on ``(H, W, 3)`` uint8 RGB images; the result
depends only on (parameters, image, seed, t). What sits on the lens or sensor (drops,
dust, defects) is laid out from the seed and persists over ``t`` (drops drift slowly);
what changes per frame (snow positions, noise) follows from ``(seed, t)``.

>>> from stream_denoise.degrade import Raindrops, GaussianNoise, degrade
>>> noisy, mask = degrade(clean, [Raindrops(), GaussianNoise(sigma=(10, 10))], seed=1, t=0)
"""

from __future__ import annotations

from .base import Degradation, Stage
from .compression import H264, Jpeg
from .config import DegradeConfig, KindName
from .defects import Defects
from .dust import Dust
from .mask import difference_mask
from .mix import KINDS, Mixture, degrade, physical_order
from .noise import GaussianNoise, SaltPepper, Stripes
from .pairs import sample_seed, write_pairs
from .raindrops import Raindrops
from .sheet import contact_sheet
from .snow import Snow
from .wet_glass import WetGlass

__all__ = [
    "H264",
    "KINDS",
    "Defects",
    "Degradation",
    "DegradeConfig",
    "Dust",
    "GaussianNoise",
    "Jpeg",
    "KindName",
    "Mixture",
    "Raindrops",
    "SaltPepper",
    "Snow",
    "Stage",
    "Stripes",
    "WetGlass",
    "contact_sheet",
    "degrade",
    "difference_mask",
    "physical_order",
    "sample_seed",
    "write_pairs",
]
