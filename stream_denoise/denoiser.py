"""Denoiser: uint8 RGB frames in, uint8 RGB frames out.

Composes the impulse median, the Gaussian pre-filter, the AttentiveGAN generator and the
Gaussian post-filter on one device, so a batch crosses host<->device once each way. Frames whose size is not a
multiple of what the network needs are padded (edge-replicated) and cropped back; frames
larger than ``tile`` run as overlapping tiles (:mod:`.tiling`).

On CUDA each calling thread gets its own stream, and host memory is pinned, so the copies
of one in-flight batch overlap the compute of another (a Ray actor serves ``in_flight``
batches on as many threads).
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import FilterConfig, GaussianStage, ModelConfig
from .filters import GaussianBlur, NoiseAdaptiveBlur, remove_impulses
from .models.generator import Generator
from .models.weights import load_generator
from .tiling import run_tiled


@dataclass(frozen=True)
class DenoiseResult:
    """``images`` (N, H, W, 3) uint8 RGB; ``attention`` (N, H, W) uint8 (0-255) or None."""

    images: np.ndarray
    attention: np.ndarray | None = None


CPU_BATCH_PIXELS = 1_000_000  # pixels per model call on a CPU; larger batches run in parts
# Self-ensemble views by their count: (shift in half cells, mirrored). The half-cell
# shift was worth more than the mirror on the evaluation set (docs/models.md, "Self-ensemble").
ENSEMBLE_VIEWS = {1: [(0, False)], 2: [(0, False), (1, False)],
                  4: [(0, False), (1, False), (0, True), (1, True)]}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX). There bf16
    convolutions run about twice as fast as float32; elsewhere they are emulated and slower."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # older torch: assume not
    if capabilities is None:
        return False
    found = capabilities()
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``: float16 on CUDA; bfloat16 on a CPU that has it natively (the generator only:
    the filters stay float32, and pixels the gate passes through come out bit for bit;
    benchmarks/README.md, "Precision"); float32 on other CPUs."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class Denoiser:
    """Pre-filter -> generator -> post-filter; ``impulse`` adds a switching median first.

    ``ensemble`` > 1 averages the repairs of several views of each frame (a self-ensemble,
    ``ensemble`` times the compute): 2 adds the frame shifted by half an unshuffle cell
    (2 px for lite), so the cells' edges fall elsewhere; 4 adds both views mirrored left
    to right. Weather comes out cleaner: for recordings, where time is not short.
    ``veil`` False drops the generator's veil head (a model that has one): the pixels its
    gate passes through then stay as they came, hazy snow included.

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
        impulse: bool = False,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int = 0,
        tile_overlap: int = 32,
        compile: str = "none",
        ensemble: int = 1,
        veil: bool = True,
        summary: dict[str, Any] | None = None,
    ) -> None:
        self.device = pick_device(device) if isinstance(device, str) else device
        self.autocast_dtype = _autocast_dtype(precision, self.device)
        if self.autocast_dtype == torch.bfloat16 and self.device.type == "cpu":
            # A bfloat16 copy of the net instead of autocast's casts around every op: 24 % less
            # time at 640x360 here. The gate's output stays float32 (Generator.forward).
            generator = copy.deepcopy(generator).to(torch.bfloat16)
            self.autocast_dtype = None
        self.generator = generator.eval().to(self.device)
        if not veil:  # the veil head's estimate goes unused: drop it
            self.generator.veil = None
        cuda = self.device.type == "cuda"
        # NHWC: feeds tensor cores on CUDA, and measured 17 % faster on the CPU too
        # (benchmarks/README.md, "Real time on this CPU").
        self.generator.to(memory_format=torch.channels_last)
        self._net = self.generator
        if compile != "none":  # "reduce-overhead" captures CUDA graphs for fixed shapes
            self._net = torch.compile(self.generator, mode=None if compile == "default" else compile)
        pre, post = pre or GaussianStage(), post or GaussianStage()
        self.pre, self.post = _stage(pre), _stage(post)
        self.impulse = impulse
        m = self.generator.config.multiple
        self.tile = tile // m * m if tile else 0
        if tile and not self.tile:
            raise ValueError(f"tile {tile} is smaller than the model's multiple ({m})")
        self.tile_overlap = tile_overlap
        if ensemble not in ENSEMBLE_VIEWS:
            raise ValueError(f"ensemble must be one of {sorted(ENSEMBLE_VIEWS)}, got {ensemble}")
        shift = max(1, self.generator.config.unshuffle // 2)
        self.views = [(shift * s, flip) for s, flip in ENSEMBLE_VIEWS[ensemble]]
        self._streams = threading.local() if cuda else None
        self.summary = summary or {}

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = "lite", *, filters: FilterConfig | None = None, **kwargs: Any
    ) -> Denoiser:
        """A bundled model ("lite", "paper") or a checkpoint path; raises ModelError if absent."""
        generator, summary = load_generator(name_or_path)
        filters = filters or FilterConfig()
        return cls(generator, pre=filters.pre, post=filters.post, impulse=filters.impulse,
                   summary=summary, **kwargs)

    @classmethod
    def from_config(cls, model: ModelConfig, filters: FilterConfig) -> Denoiser:
        return cls.from_pretrained(
            model.weights, filters=filters, device=model.device, precision=model.precision,
            tile=model.tile, tile_overlap=model.tile_overlap, compile=model.compile,
            ensemble=model.ensemble, veil=model.veil,
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
        h, w = frames.shape[1:3]
        # On a CPU, batches beyond ~1 megapixel fall out of cache: 1280x720 ran at 3.3 fps
        # one frame at a time and 2.0 fps eight at a time (benchmarks/suite.py).
        step = len(frames) if self._streams is not None else max(1, CPU_BATCH_PIXELS // (h * w))
        if step < len(frames):
            parts = [self.process(frames[i:i + step], attention=attention)
                     for i in range(0, len(frames), step)]
            att = None if not attention else np.concatenate([p.attention for p in parts])
            return DenoiseResult(np.concatenate([p.images for p in parts]), att)
        if self._streams is None:
            return self._process(frames, attention)
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            result = self._process(frames, attention)
        return result

    def _process(self, frames: np.ndarray, attention: bool) -> DenoiseResult:
        h, w = frames.shape[1:3]
        host = torch.from_numpy(frames)
        if self._streams is not None:
            host = host.pin_memory()
        x = host.to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if self.impulse:
            x = remove_impulses(x)
        x = self.pre(x)
        m = self.generator.config.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        if self.tile and max(x.shape[-2:]) > self.tile:
            image, att_map = run_tiled(self._run, x, self.tile, self.tile_overlap)
        else:
            image, att_map = self._run(x)
        y = self.post(image[..., :h, :w].float())
        images = _to_cpu(_to_uint8(y).permute(0, 2, 3, 1))
        att = None
        if attention:
            att = _to_cpu(_to_uint8(att_map[:, 0, :h, :w].float()))
        if self._streams is not None:
            torch.cuda.current_stream(self.device).synchronize()
        return DenoiseResult(np.ascontiguousarray(images.numpy()), None if att is None else att.numpy())

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator on ``x`` (B, 3, H, W), H and W multiples of the model's; with an
        ensemble, on each view, mapped back and averaged."""
        h, w = x.shape[-2:]
        m = self.generator.config.multiple
        image = att = None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            for shift, flip in self.views:
                y = x.flip(-1) if flip else x
                if shift:  # shifted down-right; padded back to a multiple
                    y = F.pad(y, (shift, m - shift, shift, m - shift), mode="replicate")
                out = self._net(y.contiguous(memory_format=torch.channels_last), inference=True)
                im, a = (t[..., shift:shift + h, shift:shift + w] for t in (out.image, out.attention[-1]))
                if flip:
                    im, a = im.flip(-1), a.flip(-1)
                image, att = (im, a) if image is None else (image + im, att + a)
        if len(self.views) > 1:
            image, att = image / len(self.views), att / len(self.views)
        return image, att


def _stage(stage: GaussianStage) -> torch.nn.Module:
    if stage.sigma == "auto":
        return NoiseAdaptiveBlur(stage.auto_sigma, *stage.auto_noise, ksize=stage.ksize)
    return GaussianBlur(stage.sigma, stage.ksize)


def _to_cpu(x: torch.Tensor) -> torch.Tensor:
    """A non-blocking copy into pinned memory on CUDA (the caller synchronises), else as is."""
    if x.device.type != "cuda":
        return x
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    host.copy_(x, non_blocking=True)
    return host


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # in place on clamp's copy: a third of the time of fresh tensors for each step
    return x.clamp(0, 1).mul_(255).round_().to(torch.uint8)
