"""Which degradations make a training sample, and with what parameters.

One typed block of the package config: per-kind parameters (each defaults to that
kind's defaults), the enabled kinds, and how a mixture is chosen per sample.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import Degradation, span
from .compression import H264, Jpeg
from .defects import Defects
from .dust import Dust
from .mix import KINDS
from .noise import GaussianNoise, SaltPepper, Stripes
from .raindrops import Raindrops
from .snow import Snow
from .wet_glass import WetGlass

KindName = Literal[
    "raindrops", "wet_glass", "dust", "snow", "gaussian", "salt_pepper", "stripes", "jpeg", "h264", "defects"
]


class DegradeConfig(BaseModel):
    """Per-kind parameters plus the rule that picks kinds for each sample.

    ``choose``:
    - ``"all"``: every enabled kind, every sample;
    - ``"each"``: each enabled kind independently with ``probability[name]`` (default
      0.5); if none comes up, one is drawn so a sample is never clean;
    - ``"pick"``: a number of kinds in the ``pick`` range, drawn without replacement
      with ``probability`` as relative weights (default equal).

    ``clean`` is the share of samples left undegraded, whatever ``choose`` says. A net
    that only ever sees weather learns to repair something everywhere; clean samples
    teach its gate to stay shut where there is nothing to repair.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: list[KindName] = Field(default_factory=lambda: list[KindName](["raindrops"]), min_length=1)
    choose: Literal["all", "each", "pick"] = "all"
    probability: dict[KindName, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    pick: Annotated[tuple[int, int], span(1, len(KINDS))] = (1, 2)
    clean: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0

    raindrops: Raindrops = Raindrops()
    wet_glass: WetGlass = WetGlass()
    dust: Dust = Dust()
    snow: Snow = Snow()
    gaussian: GaussianNoise = GaussianNoise()
    salt_pepper: SaltPepper = SaltPepper()
    stripes: Stripes = Stripes()
    jpeg: Jpeg = Jpeg()
    h264: H264 = H264()
    defects: Defects = Defects()

    @field_validator("enabled")
    @classmethod
    def _unique(cls, enabled: list[KindName]) -> list[KindName]:
        if len(set(enabled)) != len(enabled):
            raise ValueError(f"a kind is listed twice: {enabled}")
        return enabled

    def params(self, name: str) -> Degradation:
        """The configured parameters of kind ``name``."""
        kind: Degradation = getattr(self, name)
        return kind

    def kinds(self) -> list[Degradation]:
        """All enabled kinds, as configured."""
        return [self.params(n) for n in self.enabled]

    def sample(self, seed: int | np.random.Generator) -> list[Degradation]:
        """The kinds for one training sample, in ``enabled`` order.

        Drawn from ``seed`` alone (so a clip degraded with one seed keeps the same kinds
        in every frame), or from a caller's generator, which this advances. Empty for
        the ``clean`` share of samples.
        """
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng([seed, zlib.crc32(b"DegradeConfig.sample")])
        if self.clean > 0 and rng.random() < self.clean:  # no draw at 0: older streams stay as they were
            return []
        if self.choose == "all":
            return self.kinds()
        names = list(self.enabled)
        if self.choose == "each":
            p = np.array([self.probability.get(n, 0.5) for n in names])
            hit = rng.random(len(names)) < p
            if not hit.any():
                weights = p if p.sum() > 0 else np.ones(len(names))
                hit[rng.choice(len(names), p=weights / weights.sum())] = True
            return [self.params(n) for n, h in zip(names, hit) if h]
        weights = np.array([self.probability.get(n, 1.0) for n in names])
        if weights.sum() == 0:
            weights = np.ones(len(names))
        k = min(int(rng.integers(self.pick[0], self.pick[1] + 1)), int((weights > 0).sum()))
        chosen = rng.choice(len(names), size=k, replace=False, p=weights / weights.sum())
        return [self.params(names[i]) for i in sorted(chosen)]
