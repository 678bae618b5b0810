"""Several degradations on one frame, in the order light meets them.

Scene (snow) -> lens (raindrops, wet glass, dust) -> sensor (defects, noise, line noise, impulse
errors) -> codec (JPEG, H.264). Order matters: noise on top of a drop is noisy, a drop
on top of noise would be clean, and compression acts on everything before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .base import Degradation
from .compression import H264, Jpeg
from .defects import Defects
from .dust import Dust
from .mask import difference_mask
from .noise import GaussianNoise, SaltPepper, Stripes
from .raindrops import Raindrops
from .snow import Snow
from .wet_glass import WetGlass

# Name -> class, in physical order (ties within a stage are broken by this order).
KINDS: dict[str, type[Degradation]] = {
    cls.name: cls for cls in (Snow, Raindrops, WetGlass, Dust, Defects, GaussianNoise, Stripes, SaltPepper, Jpeg, H264)
}
_RANK = {name: i for i, name in enumerate(KINDS)}


def physical_order(kinds: Sequence[Degradation]) -> list[Degradation]:
    """``kinds`` sorted scene -> lens -> sensor -> codec (stable for equal kinds)."""
    return sorted(kinds, key=lambda k: (k.stage, _RANK.get(k.name, len(_RANK))))


@dataclass(frozen=True, slots=True)
class Mixture:
    """Several kinds applied in physical order; the same ``apply`` shape as one kind.

    Each kind draws from its own streams (they are salted by name); a kind listed twice
    gets a derived seed for its second use so the two do not repeat each other.
    """

    kinds: tuple[Degradation, ...]

    def apply(self, clean: np.ndarray, seed: int, t: int = 0) -> np.ndarray:
        """Degraded ``(H, W, 3)`` uint8 image; depends only on (kinds, clean, seed, t)."""
        out = clean
        for kind, sub in self._seeded(seed):
            out = kind.apply(out, sub, t)
        return out if out is not clean else clean.copy()

    def veil_share(self, seed: int) -> float:
        """The mixture's veil for ``seed`` (:meth:`Degradation.veil_share`): veils v1, v2 leave
        (1 - v1)(1 - v2) of each pixel."""
        keep = 1.0
        for kind, sub in self._seeded(seed):
            keep *= 1.0 - kind.veil_share(sub)
        return 1.0 - keep

    def _seeded(self, seed: int) -> Iterator[tuple[Degradation, int]]:
        """The kinds in physical order, each with the seed it draws from."""
        seen: dict[str, int] = {}
        for kind in physical_order(self.kinds):
            n = seen.get(kind.name, 0)
            seen[kind.name] = n + 1
            yield kind, seed if n == 0 else int(np.random.SeedSequence([seed, n]).generate_state(1)[0])


def degrade(
    clean: np.ndarray, kinds: Sequence[Degradation], seed: int, t: int = 0, threshold: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``kinds`` in physical order; return the degraded image and the
    :func:`difference_mask` of the total change (the attention target).

    >>> noisy, mask = degrade(clean, [Raindrops(), GaussianNoise(sigma=(10, 10))], seed=7)
    """
    noisy = Mixture(tuple(kinds)).apply(clean, seed, t)
    return noisy, difference_mask(noisy, clean, threshold)
