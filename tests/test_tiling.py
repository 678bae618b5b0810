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


# --- what the first mutation run of this file left alive (issue 23) -------------------

def test_tiles_step_by_the_tile_less_the_overlap() -> None:
    """Not one tile a pixel: 288 px in 64 px tiles overlapping by 16 is 6 tiles."""
    assert tile_starts(288, 64, 16) == [0, 48, 96, 144, 192, 224]
    assert tile_starts(64, 64, 16) == [0]


def _weight(length: int, start: int, tile: int, overlap: int) -> np.ndarray:
    """The documented blending weight of one tile, pixel by pixel: 1, ramping down to
    1/(overlap + 1) over the last ``overlap`` pixels of each side that meets another tile."""
    w = np.zeros(length)
    for p in range(start, start + tile):
        from_left = p - start + 1 if start > 0 else np.inf
        from_right = start + tile - p if start + tile < length else np.inf
        w[p] = min(1.0, from_left / (overlap + 1), from_right / (overlap + 1))
    return w


@pytest.mark.parametrize("h,w,tile,overlap", [(64, 160, 64, 16), (70, 65, 64, 8), (160, 70, 64, 8)])
def test_tiles_are_blended_with_linear_ramps_on_both_axes(h: int, w: int, tile: int, overlap: int) -> None:
    """A model that fills each tile with one value (its top-left pixel) shows the weights:
    every pixel is the weighted mean of its tiles' values, weights ramping linearly over
    the overlap on sides that meet another tile, down and across, and 1 at the frame's edges.
    The layouts include a last tile 1 px and 6 px from its neighbour."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    x = (rows * 1000 + cols).float().expand(1, 3, h, w).contiguous()

    def fill(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full_like(t, float(t[0, 0, 0, 0])), torch.full_like(t[:, :1], float(t[0, 0, 0, 0]))

    image, attention = run_tiled(fill, x, tile, overlap)
    assert image.shape == (1, 3, h, w) and attention.shape == (1, 1, h, w)
    num, den = np.zeros((h, w)), np.zeros((h, w))
    for top in tile_starts(h, min(tile, h), overlap):
        for left in tile_starts(w, min(tile, w), overlap):
            win = np.outer(_weight(h, top, min(tile, h), overlap), _weight(w, left, min(tile, w), overlap))
            num += win * (top * 1000 + left)
            den += win
    want = torch.from_numpy(num / den).float()
    assert torch.allclose(image[0, 0], want, rtol=1e-5) and torch.allclose(attention[0, 0], want, rtol=1e-5)


def test_a_half_precision_batch_is_blended_in_float32() -> None:
    """The sums are kept in float32 whatever the input's type: a half-precision batch of two
    comes back float32, each frame exactly as it went in through an identity model."""
    x = torch.rand(2, 3, 40, 56).to(torch.bfloat16)
    image, attention = run_tiled(lambda t: (t.clone(), t[:, :1].clone()), x, 16, 4)
    assert image.dtype == attention.dtype == torch.float32
    assert image.shape == (2, 3, 40, 56) and attention.shape == (2, 1, 40, 56)
    assert torch.allclose(image, x.float(), atol=1e-6) and torch.allclose(attention, x[:, :1].float(), atol=1e-6)


def test_the_weights_are_made_on_the_frames_device() -> None:
    """On a GPU the blending weights must live beside the tiles; the meta device stands in
    for one here (a weight made on the CPU fails against it as it would against CUDA)."""
    x = torch.empty(1, 3, 40, 56, device="meta")
    image, attention = run_tiled(lambda t: (t.clone(), t[:, :1].clone()), x, 16, 4)
    assert image.device == attention.device == x.device
