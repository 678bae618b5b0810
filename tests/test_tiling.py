"""Tiles for large frames: full coverage, and no seam where tiles meet (CPU, tiles forced small)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from stream_denoise.config import load_config
from stream_denoise.denoiser import Denoiser
from stream_denoise.errors import UsageError
from stream_denoise.io.sources import open_source
from stream_denoise.tiling import run_tiled, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(100, 100, 8), (288, 64, 16), (640, 96, 32), (70, 64, 8)])
def test_tiles_cover_everything_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    for a, b in itertools.pairwise(starts):
        assert b - a <= tile - overlap  # neighbours share at least the overlap


def test_blending_of_a_context_dependent_function_leaves_no_step() -> None:
    """Each tile shifts its content by its own mean: a hard cut would leave steps at every
    border; the ramps make the result change smoothly across the overlap."""
    x = torch.linspace(0, 1, 192).repeat(1, 3, 192, 1)

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t - t.mean(), t[:, :1]

    image, attention = run_tiled(fn, x, 64, 16)
    assert torch.allclose(attention, x[:, :1], atol=1e-6)  # a per-pixel fn comes back exact
    row = image[0, 0, 0]
    steps = (row[1:] - row[:-1]).abs()
    hard = torch.cat([fn(x[..., :, i:i + 48])[0][0, 0, 0] for i in range(0, 192, 48)])
    assert (hard[1:] - hard[:-1]).abs().max() > 0.1  # what a hard cut would do
    assert steps.max() < 0.02


@pytest.fixture(scope="module")
def frame(bikes) -> np.ndarray:
    with open_source(bikes) as src:
        for f in src:
            if f.index == 40:
                return f.image[:160, :224].copy()
    raise AssertionError("bikes.mp4 too short")


def test_tiled_model_matches_the_whole_frame_without_seams(frame: np.ndarray) -> None:
    whole = Denoiser.from_pretrained("lite", device="cpu")(frame[None])[0].astype(np.float64)
    tiled_den = Denoiser.from_pretrained("lite", device="cpu", tile=96, tile_overlap=24)
    seen: list[tuple[int, int]] = []  # what the generator was given: tiles, not the frame
    hook = tiled_den.generator.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        tiled = tiled_den(frame[None])[0].astype(np.float64)
    finally:
        hook.remove()
    # 160x224 in 96-pixel tiles overlapping by 24: starts 0, 64 down and 0, 64, 128 across.
    assert seen == [(96, 96)] * 6, seen
    err = np.abs(tiled - whole).mean(axis=2)
    mse = np.mean((tiled - whole) ** 2)
    assert mse > 0  # tiles see less context than the whole frame: never bit for bit the same
    psnr = 10 * np.log10(255**2 / mse)
    assert psnr > 45, psnr  # measured 52.2 dB
    # Where tiles meet (starts 64 and 128 across, 64 down), the difference is no larger
    # than inside tiles: no seam.
    borders = np.zeros(err.shape, bool)
    for s in tile_starts(160, 96, 24)[1:]:
        borders[s - 2:s + 2 + 24] = True
    for s in tile_starts(224, 96, 24)[1:]:
        borders[:, s - 2:s + 2 + 24] = True
    assert err[borders].mean() < 2.0 * max(err[~borders].mean(), 0.05)


@pytest.mark.parametrize("tile,overlap", [(32, 0), (64, 32), (128, 100)])
def test_bad_tile_settings_are_config_errors(tile: int, overlap: int) -> None:
    with pytest.raises(UsageError, match="tile"):
        load_config(overrides={"model.tile": tile, "model.tile_overlap": overlap})


def test_overlap_must_be_under_half_a_tile():
    """An overlap of half a tile or more would leave a tile nothing of its own: refused,
    naming both; just under half runs, and an identity comes back exactly."""
    x = torch.rand(1, 3, 40, 56)
    identity = lambda t: (t.clone(), t[:, :1].clone())  # noqa: E731
    with pytest.raises(ValueError, match=r"tile overlap 8 must be less than half the tile \(16\)"):
        run_tiled(identity, x, 16, 8)
    image, attention = run_tiled(identity, x, 16, 7)
    assert torch.allclose(image, x, atol=1e-6) and torch.allclose(attention, x[:, :1], atol=1e-6)
