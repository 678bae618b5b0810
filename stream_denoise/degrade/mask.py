"""The attention target of Qian et al.: where the degraded frame differs from the clean one."""

from __future__ import annotations

import numpy as np

from .base import check_image


def difference_mask(degraded: np.ndarray, clean: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """``(H, W)`` float32 mask, 1 where ``|degraded - clean|`` summed over the three
    channels exceeds ``threshold`` (0-255 scale), else 0.

    This is the paper's binary mask ``M`` that supervises the attentive-recurrent
    network: it marks what the generator has to repair.
    """
    check_image(degraded)
    check_image(clean)
    if degraded.shape != clean.shape:
        raise ValueError(f"shapes differ: degraded {degraded.shape}, clean {clean.shape}")
    diff = np.abs(degraded.astype(np.int16) - clean.astype(np.int16)).sum(axis=2)
    return (diff > threshold).astype(np.float32)
