"""Denoiser: uint8 RGB frames in, uint8 RGB frames out.

Composes the Gaussian pre-filter, the AttentiveGAN generator and the Gaussian post-filter
on one device, so a batch crosses host<->device once each way. Frames whose size is not a
multiple of what the network needs are padded (edge-replicated) and cropped back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import FilterConfig, GaussianStage, ModelConfig
from .filters import GaussianBlur
from .models.attentive_gan import Generator
from .models.weights import load_generator


@dataclass(frozen=True)
class DenoiseResult:
    """``images`` (N, H, W, 3) uint8 RGB; ``attention`` (N, H, W) uint8 (0-255) or None."""

    images: np.ndarray
    attention: np.ndarray | None = None


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Half precision on CUDA by default; the CPU runs float32 (faster there, and exact)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class Denoiser:
    """Pre-filter -> generator -> post-filter.

    Example:
        >>> den = Denoiser.from_pretrained("lite")            # doctest: +SKIP
        >>> clean = den(frames)  # (N, H, W, 3) uint8 -> (N, H, W, 3) uint8   # doctest: +SKIP
    """

    def __init__(
        self,
        generator: Generator,
        *,
        pre: GaussianStage | None = None,
        post: GaussianStage | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        summary: dict[str, Any] | None = None,
    ) -> None:
        self.device = pick_device(device) if isinstance(device, str) else device
        self.generator = generator.eval().to(self.device)
        pre, post = pre or GaussianStage(), post or GaussianStage()
        self.pre = GaussianBlur(pre.sigma, pre.ksize)
        self.post = GaussianBlur(post.sigma, post.ksize)
        self.autocast_dtype = _autocast_dtype(precision, self.device)
        self.summary = summary or {}

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = "lite", *, filters: FilterConfig | None = None, **kwargs: Any
    ) -> Denoiser:
        """A bundled model ("lite", "paper") or a checkpoint path; raises ModelError if absent."""
        generator, summary = load_generator(name_or_path)
        filters = filters or FilterConfig()
        return cls(generator, pre=filters.pre, post=filters.post, summary=summary, **kwargs)

    @classmethod
    def from_config(cls, model: ModelConfig, filters: FilterConfig) -> Denoiser:
        return cls.from_pretrained(
            model.weights, filters=filters, device=model.device, precision=model.precision
        )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.process(frames).images

    @torch.inference_mode()
    def process(self, frames: np.ndarray, *, attention: bool = False) -> DenoiseResult:
        """Clean a batch ``(N, H, W, 3)`` uint8 RGB; optionally return the final attention map."""
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
                or frames.shape[-1] != 3:
            got = getattr(frames, "shape", type(frames).__name__), getattr(frames, "dtype", "")
            raise ValueError(f"frames must be a uint8 array (N, H, W, 3), got {got[0]} {got[1]}")
        n, h, w, _ = frames.shape
        x = torch.from_numpy(frames).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = self.pre(x)
        m = self.generator.config.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            out = self.generator(x)
        y = self.post(out.image[..., :h, :w].float())
        images = _to_uint8(y).permute(0, 2, 3, 1)
        att = None
        if attention:
            att = _to_uint8(out.attention[-1][:, 0, :h, :w].float()).cpu().numpy()
        return DenoiseResult(np.ascontiguousarray(images.cpu().numpy()), att)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)
