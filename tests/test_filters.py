"""The Gaussian stages against OpenCV, and the switching median for impulses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stream_denoise.degrade import SaltPepper
from stream_denoise.filters import (
    GaussianBlur,
    NoiseAdaptiveBlur,
    estimate_noise,
    gaussian_blur,
    kernel_size_for,
    remove_impulses,
)
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


def test_noise_estimate_is_immerkaers_kernel(photo):
    """The two second differences are the paper's 3x3 kernel, convolved without padding."""
    x = torch.stack([_tensor(photo)[0], _tensor(photo[::-1].copy())[0]])
    luma = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]) * 255
    kernel = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])[None, None]
    expected = F.conv2d(luma, kernel).abs().mean(dim=(1, 2, 3)) * (np.pi / 2) ** 0.5 / 6
    assert torch.allclose(estimate_noise(x), expected, rtol=1e-5)


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


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("amount", [0.002, 0.02])
def test_remove_impulses_restores_salt_and_pepper(photo, amount, per_channel):
    clean = _tensor(photo)
    noisy = _tensor(SaltPepper(amount=(amount, amount), per_channel=per_channel).apply(photo, seed=3, t=0))
    out = remove_impulses(noisy)
    # Light noise too: this is what the noise-adaptive blur misses (it reads as clean).
    assert _psnr(out, clean) > _psnr(noisy, clean) + 15, (_psnr(noisy, clean), _psnr(out, clean))
    hit = noisy != clean
    assert torch.equal(out[~hit], noisy[~hit]) or (out[~hit] != noisy[~hit]).float().mean() < 1e-4


def test_remove_impulses_leaves_clean_photos_and_gaussian_noise(photo):
    clean = _tensor(photo)
    assert (remove_impulses(clean) != clean).float().mean() < 1e-4
    rng = np.random.default_rng(4)
    noisy = _tensor(np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8))
    out = remove_impulses(noisy)
    inside = (noisy > 0) & (noisy < 1)
    assert torch.equal(out[inside], noisy[inside])  # only black/white values are candidates
    # Clipped noise in dark and bright areas does get replaced: it costs ~0.01 dB here.
    assert _psnr(out, clean) > _psnr(noisy, clean) - 0.1


def test_remove_impulses_on_tiny_and_uniform_frames():
    one = torch.ones(2, 3, 1, 7)  # too small for a 3x3 neighbourhood: returned as is
    assert remove_impulses(one) is one
    white = torch.ones(1, 3, 9, 9)  # clipped everywhere: every median is white too
    assert torch.equal(remove_impulses(white), white)


def test_noise_adaptive_sigma_ramps_from_low_to_high(monkeypatch):
    """auto's sigma: 0 up to the low noise estimate, rising linearly to max_sigma at the high
    one, max_sigma beyond; each frame blurred with its own sigma, as gaussian_blur would."""
    from stream_denoise import filters

    monkeypatch.setattr(filters, "estimate_noise", lambda x: torch.tensor([15.0, 17.0, 18.0, 21.0]))
    blur = NoiseAdaptiveBlur(0.8, 16.0, 20.0)
    images = torch.rand(4, 3, 24, 32)
    assert torch.allclose(blur.sigmas(images), torch.tensor([0.0, 0.2, 0.4, 0.8]))
    out = blur(images)
    assert torch.equal(out[0], images[0])  # sigma 0: untouched
    for i, sigma in ((2, 0.4), (3, 0.8)):
        want = gaussian_blur(images[i:i + 1], sigma, blur.ksize)
        assert torch.allclose(out[i:i + 1], want, atol=1e-5), i
    with pytest.raises(ValueError, match="0 <= low < high, got 4, 4"):
        NoiseAdaptiveBlur(0.8, 4, 4)
    NoiseAdaptiveBlur(0.8, 0, 4)  # a low of 0 is allowed


def test_the_module_form_keeps_its_kernel_size():
    """GaussianBlur(sigma, ksize) is gaussian_blur with that kernel, not the derived one."""
    images = torch.rand(1, 3, 20, 20)
    assert torch.equal(GaussianBlur(2.0, 5)(images), gaussian_blur(images, 2.0, 5))
    assert not torch.equal(GaussianBlur(2.0, 5)(images), gaussian_blur(images, 2.0))


# --- what the first mutation run of this file left alive (issue 23) -------------------

@pytest.mark.parametrize("sigma", [1.0, 3.0, 5.0])
def test_ksize_zero_is_opencvs_own_choice(photo, sigma):
    """ksize 0 is the size OpenCV derives itself for 8-bit images: its blur with ``(0, 0)``
    and with our size are the same bit for bit (one size more or less changes pixels)."""
    k = kernel_size_for(sigma)
    assert np.array_equal(cv2.GaussianBlur(photo, (0, 0), sigma), cv2.GaussianBlur(photo, (k, k), sigma))


def test_a_kernel_of_one_is_allowed_and_leaves_the_frame(photo):
    """OpenCV accepts ksize 1 (no blur); so does the config, and so do we."""
    assert kernel_size_for(2.0, 1) == 1
    x = _tensor(photo)
    assert torch.equal(gaussian_blur(x, 2.0, 1), x)
    assert torch.equal(GaussianBlur(2.0, 1)(x), x)


def test_without_a_kernel_size_every_form_derives_it(photo):
    """The function, the module and the auto stage, given no ksize, use the derived size;
    the auto stage keeps a ksize it is given."""
    x = _tensor(photo)
    derived = gaussian_blur(x, 1.5, kernel_size_for(1.5))
    assert not torch.equal(derived, x)
    assert torch.equal(gaussian_blur(x, 1.5), derived)
    assert torch.equal(GaussianBlur(1.5)(x), derived)
    assert NoiseAdaptiveBlur(1.5, 3.0, 4.0).ksize == kernel_size_for(1.5) == 11
    assert NoiseAdaptiveBlur(1.5, 3.0, 4.0, ksize=5).ksize == 5


def test_a_negative_sigma_is_refused_by_the_function_too():
    with pytest.raises(ValueError, match=r"Gaussian sigma must be >= 0, got -0.5"):
        gaussian_blur(torch.rand(1, 3, 8, 8), -0.5)


@pytest.mark.parametrize("side", [2, 3, 5])
def test_frames_smaller_than_the_kernel_are_blurred_not_refused(side):
    """A sigma-5 kernel is 31 px: on a smaller frame it is cut to what reflection allows
    (on 2 rows, to nothing). A flat frame stays flat; a noisy one is smoothed."""
    flat = torch.full((1, 3, side, side + 3), 0.25)
    assert torch.allclose(gaussian_blur(flat, 5.0), flat)
    noisy = torch.rand(2, 3, side, side + 3, generator=torch.Generator().manual_seed(side))
    out = gaussian_blur(noisy, 5.0)
    assert out.shape == noisy.shape and (side < 3 or out.std() < noisy.std())
    # The auto stage too (its noise estimate needs 3 rows).
    out = NoiseAdaptiveBlur(5.0, 0.0, 1.0)(noisy)
    assert out.shape == noisy.shape and (side < 3 or out.std() < noisy.std())


def test_the_auto_stage_returns_a_clean_batch_as_it_came(photo):
    """No frame noisy enough: the batch itself comes back, not a blurred copy (the fast path
    for clean footage, where the stage runs on every batch)."""
    batch = torch.cat([_tensor(photo), _tensor(photo[::-1].copy())])
    assert NoiseAdaptiveBlur(0.75, 3.0, 4.0)(batch) is batch
    assert NoiseAdaptiveBlur(0.0, 0.0, 1.0)(batch) is batch  # max sigma 0: off


@pytest.mark.parametrize("max_sigma", [1.0, 2.0])
def test_the_auto_stage_at_full_strength_is_the_fixed_blur(photo, max_sigma):
    """A frame above the high noise estimate gets exactly gaussian_blur(max_sigma), whatever
    the max sigma (1.0 once read as "off"; 2.0's kernel, 13, once grew to 15)."""
    rng = np.random.default_rng(2)
    noisy = _tensor(np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8))
    stage = NoiseAdaptiveBlur(max_sigma, 3.0, 4.0)
    out = stage(noisy)
    assert torch.allclose(out, gaussian_blur(noisy, max_sigma, kernel_size_for(max_sigma)), atol=1e-6)


def test_remove_impulses_repairs_a_single_dead_pixel(photo):
    """One stuck value in a frame without others (a hot pixel) is enough to be looked at."""
    clean = _tensor(photo)
    clean = clean.clamp(1 / 255, 254 / 255)  # the photo's own clipped values out of the way
    broken = clean.clone()
    broken[0, 1, 150, 100] = 1.0
    out = remove_impulses(broken)
    assert abs(float(out[0, 1, 150, 100] - clean[0, 1, 150, 100])) < 12 / 255
    out[0, 1, 150, 100] = clean[0, 1, 150, 100]
    assert torch.equal(out, clean)


def test_remove_impulses_on_one_channel_and_two_row_frames():
    """The docstring's grey frame, and a frame just tall enough for a reflected 3x3."""
    grey = torch.full((1, 1, 5, 5), 0.5)
    grey[0, 0, 2, 2] = 1.0
    assert remove_impulses(grey).max().item() == 0.5
    strip = torch.full((1, 3, 2, 8), 0.5)
    strip[0, 2, 1, 3] = 0.0
    assert torch.equal(remove_impulses(strip), torch.full((1, 3, 2, 8), 0.5))


def test_remove_impulses_leaves_overexposed_areas_white(photo):
    """A clipped highlight is not an impulse: white values whose 3x3 neighbourhood is
    within the threshold of white (OpenCV's median) stay white."""
    bright = np.clip(photo.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    x = _tensor(bright)
    out = remove_impulses(x)
    median = cv2.medianBlur(bright, 3)
    keep = (bright == 255) & (255 - median.astype(int) <= 32)
    keep[[0, -1]] = keep[:, [0, -1]] = False  # OpenCV replicates borders, we reflect
    keep = torch.from_numpy(keep).permute(2, 0, 1)[None]
    assert int(keep.sum()) > 10_000
    assert torch.equal(out[keep], x[keep])
