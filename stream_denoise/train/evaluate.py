"""Evaluation: PSNR/SSIM per degradation kind for each stage of the chain.

Columns: the degraded input, a Gaussian filter alone, the generator alone, and the full
impulse + pre-filter + generator + post-filter chain, all through :class:`Denoiser` on uint8 frames
(exactly what the pipeline runs), so the table shows what each stage adds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import GaussianStage
from ..degrade import DegradeConfig, degrade
from ..denoiser import Denoiser
from ..filters import gaussian_blur
from ..models.attentive_gan import Generator
from .data import Sample, at_least, crop_box, load_footage, split_footage
from .trainer import psnr_ssim

COLUMNS = ("input", "gaussian", "generator", "chain")


@dataclass(frozen=True)
class EvalRow:
    kind: str
    samples: int
    psnr: dict[str, float]
    ssim: dict[str, float]


def synthetic_eval_set(
    images: Sequence[np.ndarray], kinds: Sequence[str], *, samples: int, crop: int, seed: int = 0,
    config: DegradeConfig | None = None,
) -> dict[str, list[Sample]]:
    """A fixed set per kind: each kind alone, at its configured parameters, on the same crops."""
    config = config or DegradeConfig()
    out: dict[str, list[Sample]] = {}
    for kind in kinds:
        rows = []
        for i in range(samples):
            rng = np.random.default_rng([seed, 424242, i])
            clean = at_least(images[i % len(images)], crop)
            noisy, mask = degrade(clean, [config.params(kind)], seed=int(rng.integers(2**31)),
                                  t=int(rng.integers(1000)))
            ys, xs = crop_box(rng, clean.shape, crop)
            rows.append(Sample(noisy[ys, xs].copy(), clean[ys, xs].copy(), mask[ys, xs].copy()))
        out[kind] = rows
    return out


def held_out_eval_set(
    source: str, kinds: Sequence[str], *, samples: int = 24, crop: int = 256, seed: int = 0,
    config: DegradeConfig | None = None,
) -> dict[str, list[Sample]]:
    """:func:`synthetic_eval_set` on the footage the trainer holds out (the last 15 % of each
    clip, frames as the trainer reads them), or on all of it when nothing is held out."""
    footage = load_footage([source], max_side=360, frame_step=2)
    _, held_out = split_footage(footage, 0.15)
    return synthetic_eval_set(held_out or [im for _, im in footage], kinds, samples=samples, crop=crop,
                              seed=seed, config=config)


def _metrics(images: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return psnr_ssim(to(images), to(clean))


def evaluate(
    generator: Generator, sets: dict[str, list[Sample]], *, gauss_sigma: float = 1.0,
    pre: GaussianStage | None = None, post: GaussianStage | None = None, impulse: bool = True,
    ensemble: int = 1, device: str = "auto",
) -> list[EvalRow]:
    """``ensemble``: the generator and chain columns average that many views of each crop
    (``Denoiser(ensemble=...)``)."""
    plain = Denoiser(generator, ensemble=ensemble, device=device)
    chain = Denoiser(generator, pre=pre, post=post, impulse=impulse, ensemble=ensemble, device=device)
    rows = []
    for kind, samples in sets.items():
        noisy = np.stack([s.noisy for s in samples])
        clean = np.stack([s.clean for s in samples])
        t = torch.from_numpy(noisy).permute(0, 3, 1, 2).float()
        blurred = gaussian_blur(t, gauss_sigma).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        outputs = {"input": noisy, "gaussian": blurred}
        outputs["generator"] = np.concatenate([plain(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
        outputs["chain"] = np.concatenate([chain(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
        scores = {k: _metrics(v, clean) for k, v in outputs.items()}
        rows.append(EvalRow(kind, len(samples), {k: v[0] for k, v in scores.items()},
                            {k: v[1] for k, v in scores.items()}))
    return rows


def _g(sigma: float | str) -> str:
    return sigma if isinstance(sigma, str) else f"{sigma:g}"


def format_table(
    rows: Sequence[EvalRow], gauss_sigma: float, pre: float | str, post: float | str, *,
    impulse: bool = True, ensemble: int = 1,
) -> str:
    """A Markdown table: PSNR (dB) / SSIM per kind and column, plus the chain's gain."""
    stages = ("impulse, " if impulse else "") + f"pre σ={_g(pre)}, post σ={_g(post)}"
    generator = f"generator, ensemble {ensemble}" if ensemble > 1 else "generator"
    stages += f", ensemble {ensemble}" if ensemble > 1 else ""
    head = (f"| kind | n | input | gaussian σ={gauss_sigma:g} | {generator} | "
            f"chain ({stages}) | gain (chain - input) |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        cells = " | ".join(f"{r.psnr[c]:.2f} / {r.ssim[c]:.3f}" for c in COLUMNS)
        lines.append(f"| {r.kind} | {r.samples} | {cells} | {r.psnr['chain'] - r.psnr['input']:+.2f} dB |")
    return "\n".join(lines)
