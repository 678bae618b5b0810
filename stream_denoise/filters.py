"""The Gaussian stages around the generator, on tensors so frames stay on the device.

Functional form :func:`gaussian_blur` plus the module :class:`GaussianBlur`. Both follow
OpenCV's conventions so that a sigma chosen by eye in OpenCV means the same here:
``ksize=0`` derives the kernel size from sigma as ``cv2.GaussianBlur`` does for 8-bit
images (``round(6 * sigma + 1) | 1``), and borders are reflected without repeating the
edge pixel (``cv2.BORDER_REFLECT_101``, torch's "reflect").
"""
from __future__ import annotations

import kornia
import torch
from torch import nn


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
