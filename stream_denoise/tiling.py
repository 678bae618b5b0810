"""Overlapping tiles for frames too large to run whole (4K on a small GPU).

Each tile is run with ``overlap`` pixels of context on every inner side, and the tiles
are blended with weights that ramp linearly across the overlap. A hard cut would show a
seam wherever two tiles disagree about their borders (they see different context);
the ramp spreads that disagreement over the overlap, where both tiles saw the content.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``length`` with at least ``overlap``.

    The last tile ends exactly at ``length`` (it overlaps its neighbour more instead of
    running past the edge), so every tile has the same size and no padding is needed.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(length: int, start: int, tile: int, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D blending weight of one tile: rising over ``overlap`` on sides that meet another tile."""
    w = torch.ones(tile, device=device)
    if overlap:
        # Strictly positive, so every pixel has weight even where only one tile reaches it.
        ramp = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        if start > 0:
            w[:overlap] = ramp
        if start + tile < length:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def run_tiled(
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor, tile: int, overlap: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``fn`` (B, 3, h, w) -> (image (B, 3, h, w), attention (B, 1, h, w)) tile by tile.

    ``tile`` and ``overlap`` are in pixels; the caller keeps ``tile`` a multiple of what
    ``fn`` needs. Returns the blended image and attention map at ``x``'s size.
    """
    if overlap * 2 >= tile:
        raise ValueError(f"tile overlap {overlap} must be less than half the tile ({tile})")
    b, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    image = x.new_zeros((b, 3, h, w), dtype=torch.float32)
    attention = x.new_zeros((b, 1, h, w), dtype=torch.float32)
    weight = x.new_zeros((1, 1, h, w), dtype=torch.float32)
    for top in tile_starts(h, th, overlap):
        wy = _ramp(h, top, th, overlap, x.device)
        for left in tile_starts(w, tw, overlap):
            wx = _ramp(w, left, tw, overlap, x.device)
            win = (wy[:, None] * wx[None, :])[None, None]
            out, att = fn(x[..., top:top + th, left:left + tw].contiguous())
            image[..., top:top + th, left:left + tw] += out.float() * win
            attention[..., top:top + th, left:left + tw] += att.float() * win
            weight[..., top:top + th, left:left + tw] += win
    return image / weight, attention / weight
