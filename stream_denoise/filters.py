"""The Gaussian stages around the generator, on tensors so frames stay on the device.

Functional form :func:`gaussian_blur` plus the module :class:`GaussianBlur`, and
:class:`NoiseAdaptiveBlur`, which blurs only frames whose estimated sensor noise is high.
:func:`remove_impulses` runs before them: a switching median for salt-and-pepper noise
and dead or hot pixels, which a blur only smears and the small generator barely touches.
The fixed blur follows OpenCV's conventions so that a sigma chosen by eye in OpenCV means
the same here: ``ksize=0`` derives the kernel size from sigma as ``cv2.GaussianBlur`` does for 8-bit
images (``round(6 * sigma + 1) | 1``), and borders are reflected without repeating the
edge pixel (``cv2.BORDER_REFLECT_101``, torch's "reflect").
"""
from __future__ import annotations

import math

import kornia
import torch
from torch import nn
from torch.nn import functional as F


def kernel_size_for(sigma: float, ksize: int = 0) -> int:
    """OpenCV's kernel size rule for 8-bit images when ``ksize`` is 0."""
    if ksize:
        if ksize < 1 or ksize % 2 == 0:
            raise ValueError(f"Gaussian kernel size must be a positive odd number, got {ksize}")
        return ksize
    return int(round(sigma * 6 + 1)) | 1


def gaussian_blur(images: torch.Tensor, sigma: float, ksize: int = 0) -> torch.Tensor:
    """Blur ``(B, C, H, W)`` float images with an isotropic Gaussian; sigma 0 is the identity.

    Matches ``cv2.GaussianBlur`` on float input to float precision (within 1 grey level of
    its uint8 path, which uses fixed-point arithmetic).

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> gaussian_blur(x, 1.0).shape
        torch.Size([2, 3, 32, 32])
    """
    if sigma < 0:
        raise ValueError(f"Gaussian sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images
    k = kernel_size_for(sigma, ksize)
    # Reflect padding needs the pad to be smaller than the image side.
    k = min(k, 2 * (min(images.shape[-2:]) - 1) - 1) | 1
    return kornia.filters.gaussian_blur2d(
        images, (k, k), (sigma, sigma), border_type="reflect", separable=True
    )


class GaussianBlur(nn.Module):
    """Module form of :func:`gaussian_blur` with a fixed sigma and kernel size."""

    def __init__(self, sigma: float, ksize: int = 0) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"Gaussian sigma must be >= 0, got {sigma}")
        kernel_size_for(sigma, ksize)  # validate now, not on the first frame
        self.sigma = sigma
        self.ksize = ksize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(images, self.sigma, self.ksize)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, ksize={self.ksize}"


def estimate_noise(images: torch.Tensor) -> torch.Tensor:
    """Standard deviation of white noise in each image's luma, on the 0-255 scale:
    Immerkær's fast estimate ("Fast noise variance estimation", CVIU 1996).

    The 3x3 kernel is the difference of two Laplacians, which cancels smooth structure and
    edges to first order and leaves pixel-to-pixel noise; ``images`` (B, 3, H, W) in [0, 1].
    The kernel is [1, -2, 1] down times [1, -2, 1] across, so it runs as two second
    differences of shifted views: on a 640x360 frame 0.4 ms on this CPU, where a
    one-channel conv2d took 5.1 (``benchmarks/frame_time.py``).
    """
    luma = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]) * 255
    rows = luma[:, :-2] + luma[:, 2:] - 2 * luma[:, 1:-1]
    residual = rows[..., :-2] + rows[..., 2:] - 2 * rows[..., 1:-1]
    return residual.abs().mean(dim=(1, 2)) * (math.pi / 2) ** 0.5 / 6


class NoiseAdaptiveBlur(nn.Module):
    """A Gaussian blur whose sigma follows each frame's estimated noise.

    ``sigma`` ramps linearly from 0 at estimated noise ``low`` to ``max_sigma`` at
    ``high`` (0-255 scale). Weather and dust leave the estimate where clean footage has
    it (at most 2.5 on the evaluation set, 2.6 on a detailed full-size photo), so those
    frames pass untouched, while Gaussian and salt-and-pepper noise (3.4 and up, mostly
    above 4) get the pre-blur that helps the generator (docs/models.md, "Where the noise
    gains come from").
    """

    def __init__(self, max_sigma: float, low: float, high: float, ksize: int = 0) -> None:
        super().__init__()
        if not 0 <= low < high:
            raise ValueError(f"noise thresholds must satisfy 0 <= low < high, got {low}, {high}")
        self.max_sigma, self.low, self.high = max_sigma, low, high
        self.ksize = kernel_size_for(max_sigma, ksize)

    def sigmas(self, images: torch.Tensor) -> torch.Tensor:
        ramp = ((estimate_noise(images.float()) - self.low) / (self.high - self.low)).clamp(0, 1)
        return ramp * self.max_sigma

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sigma = self.sigmas(images)
        if self.max_sigma == 0 or not bool((sigma > 0).any()):
            return images
        k = min(self.ksize, 2 * (min(images.shape[-2:]) - 1) - 1) | 1
        # A tiny sigma is an exact identity kernel (the side taps underflow to 0).
        per_image = sigma.clamp(min=0.05)[:, None].expand(-1, 2).to(images.dtype)
        return kornia.filters.gaussian_blur2d(images, (k, k), per_image, border_type="reflect",
                                              separable=True)

    def extra_repr(self) -> str:
        return f"max_sigma={self.max_sigma}, noise=({self.low}, {self.high}), ksize={self.ksize}"


# 32 grey levels, the best of 16-192 on the evaluation set (docs/models.md, "Where the
# noise gains come from"); on the clean training footage at full size it changes 6.5
# values per million.
IMPULSE_THRESHOLD = 32 / 255


def remove_impulses(images: torch.Tensor, threshold: float = IMPULSE_THRESHOLD) -> torch.Tensor:
    """Replace impulses by the 3x3 median of their channel; everything else is untouched.

    An impulse is a channel value at 0 or 1 (black or white: salt-and-pepper noise, dead
    or saturated hot pixels) that differs from its neighbourhood's median by more than
    ``threshold``. Only those candidates are examined, so a frame without saturated values
    costs one comparison. ``images`` (B, C, H, W) in [0, 1], as decoded from uint8.

    Example:
        >>> x = torch.full((1, 1, 5, 5), 0.5); x[0, 0, 2, 2] = 1.0
        >>> remove_impulses(x).max().item()
        0.5
    """
    b, c, y, x = ((images <= 0) | (images >= 1)).nonzero(as_tuple=True)
    if b.numel() == 0 or min(images.shape[-2:]) < 2:
        return images
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    neighbours = torch.stack([padded[b, c, y + dy, x + dx] for dy in range(3) for dx in range(3)])
    median = neighbours.median(dim=0).values
    hit = (images[b, c, y, x] - median).abs() > threshold
    out = images.clone()
    out[b[hit], c[hit], y[hit], x[hit]] = median[hit]
    return out
