"""Image quality metrics: one definition of PSNR and SSIM (kornia's) for training,
evaluation, the contact sheet, tests and benchmarks, so their figures agree."""
from __future__ import annotations

import cv2
import kornia
import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays on the 0-255 scale, over all their values at once
    (inf for equal arrays): the figure for one image, or a clip taken as a whole."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def psnr_ssim(output: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Mean per-image PSNR (dB, inf for equal images) and mean SSIM (11x11 window) of
    ``(B, 3, H, W)`` images in [0, 1]; ``output`` is clamped to [0, 1] first."""
    output = output.clamp(0, 1)
    psnr = [kornia.metrics.psnr(o[None], t[None], 1.0).item() for o, t in zip(output, target)]
    ssim = kornia.metrics.ssim(output, target, 11).mean().item()
    return float(np.mean(psnr)), ssim


def frames_psnr_ssim(frames: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """:func:`psnr_ssim` of uint8 RGB frames ``(N, H, W, 3)`` (or one ``(H, W, 3)``)."""
    def to(a: np.ndarray) -> torch.Tensor:
        a = a[None] if a.ndim == 3 else a
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255

    return psnr_ssim(to(frames), to(clean))


def flicker(frames: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of the grey level of uint8 RGB frames
    ``(N, H, W, 3)``: 0 for a still clean scene, what a temporal filter should keep there."""
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float64)
    return float(np.abs(np.diff(grey, axis=0)).mean())
