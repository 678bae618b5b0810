"""The Gaussian stages against OpenCV."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from stream_denoise.filters import GaussianBlur, NoiseAdaptiveBlur, estimate_noise, gaussian_blur, kernel_size_for
from tests.conftest import package_data


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    bgr = cv2.imread(str(package_data("skimage", "data", "astronaut.png")))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:301, :257]  # odd sizes on purpose


def _ours(img: np.ndarray, sigma: float, ksize: int = 0) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return gaussian_blur(x, sigma, ksize)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("sigma,ksize", [(0.8, 0), (1.5, 0), (3.0, 0), (2.0, 5), (5.0, 0)])
def test_matches_opencv(photo, sigma, ksize):
    k = kernel_size_for(sigma, ksize)
    ours = _ours(photo, sigma, ksize)
    # OpenCV's float path: the same arithmetic, so only float rounding differs.
    ref_float = cv2.GaussianBlur(photo.astype(np.float32), (k, k), sigma)
    assert np.abs(ours - ref_float).max() < 0.01
    # OpenCV's uint8 path uses fixed-point weights; rounded, we agree to a grey level
    # on almost every pixel.
    ref_u8 = cv2.GaussianBlur(photo, (k, k), sigma)
    diff = np.abs(np.round(ours).astype(int) - ref_u8)
    assert (diff <= 1).mean() > 0.999 and diff.max() <= 2


def test_sigma_zero_is_identity(photo):
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    assert torch.equal(GaussianBlur(0.0)(x), x)


def test_blur_reduces_noise(photo):
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.float32)
    err_before = np.abs(noisy - photo).mean()
    err_after = np.abs(_ours(noisy.astype(np.uint8), 1.0) - photo).mean()
    assert err_after < 0.6 * err_before


def test_bad_parameters():
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(-1.0)
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(1.0, ksize=4)


# --- the noise-adaptive pre-filter (sigma: auto) -------------------------------------

def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_noise_estimate_finds_added_gaussian_noise(photo, sigma):
    clean = estimate_noise(_tensor(photo)).item()
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
    found = estimate_noise(_tensor(noisy)).item()
    assert clean < 3.0  # a real photo's own texture reads as little noise
    # Independent noise per channel averages down in the luma: sigma * |(0.299, 0.587, 0.114)|
    luma_sigma = sigma * float(np.linalg.norm([0.299, 0.587, 0.114]))
    assert abs(found - luma_sigma) < 0.15 * luma_sigma + clean, (found, luma_sigma)


def test_adaptive_blur_leaves_clean_frames_and_blurs_noisy_ones(photo):
    rng = np.random.default_rng(1)
    noisy = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    batch = torch.cat([_tensor(photo), _tensor(noisy)])
    stage = NoiseAdaptiveBlur(0.75, 3.0, 4.0)
    assert stage.sigmas(batch).tolist() == pytest.approx([0.0, 0.75])
    out = stage(batch)
    assert torch.equal(out[0], batch[0])  # untouched, bit for bit
    assert torch.allclose(out[1:], gaussian_blur(batch[1:], 0.75, stage.ksize), atol=1e-6)
