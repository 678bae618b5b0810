"""Evaluation: PSNR/SSIM per degradation kind for each stage of the chain.

Columns: the degraded input, a Gaussian filter alone, the generator alone, and the full
impulse + pre-filter + generator + post-filter chain, all through :class:`Denoiser` on uint8 frames
(exactly what the pipeline runs), so the table shows what each stage adds.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import GaussianStage
from ..degrade import Degradation, DegradeConfig, Dust, Raindrops, Snow, degrade
from ..denoiser import Denoiser
from ..filters import gaussian_blur
from ..metrics import frames_psnr_ssim
from ..models.generator import Generator
from .data import Sample, at_least, crop_box, load_footage, split_footage

COLUMNS = ("input", "gaussian", "generator", "chain")


@dataclass(frozen=True)
class EvalRow:
    kind: str
    samples: int
    psnr: dict[str, float]
    ssim: dict[str, float]


# Families of each weather kind that no training config draws (tests/test_evaluate.py checks
# the shipped configs against them): the quality figures that generalise, and the set every
# default and threshold is chosen on. Each differs from what training draws in a parameter
# training never takes, or comes from a renderer training does not use for that look.
HELD_OUT_FAMILIES: dict[str, Degradation] = {
    # Today's drop renderer with nothing washed: no haze or sky (training draws 0.2 / 0.75),
    # large, sharp, irregular, clustered, showing vivid refracted content.
    "raindrops": Raindrops(count=(40, 120), radius=(0.02, 0.1), haze=0.0, sky=0.0, look_up=0.0,
                           focus_blur=(0.0, 0.004), zoom=(2.0, 6.0), elongation=1.0, irregularity=0.3,
                           clustering=0.8, rim_darkness=0.5, highlight=0.2),
    # Snow driven by strong wind (training: |wind| <= 0.6): long diagonal streaks, dense.
    "snow": Snow(density=(3000.0, 9000.0), size=(0.002, 0.015), fall_speed=(0.3, 1.5), wind=(1.0, 2.0)),
    # Only large soft blotches on the glass (training's smudges are at most 0.2 across).
    "dust": Dust(specks=(0, 0), hairs=(0, 0), smudges=(2, 4), smudge_size=(0.3, 0.6), light_fraction=0.5),
}


def synthetic_eval_set(
    images: Sequence[np.ndarray], families: Mapping[str, Degradation], *, samples: int, crop: int,
    seed: int = 0,
) -> dict[str, list[Sample]]:
    """A fixed set per family (row label -> degradation): each alone, on the same crops."""
    out: dict[str, list[Sample]] = {}
    for label, family in families.items():
        rows = []
        for i in range(samples):
            clean = at_least(images[i % len(images)], crop)
            # A crop the weather missed (sparse drops, one blotch) scores an infinite PSNR:
            # draw again until something changed.
            for attempt in range(50):
                rng = np.random.default_rng([seed, 424242, i] + ([attempt] if attempt else []))
                noisy, mask = degrade(clean, [family], seed=int(rng.integers(2**31)), t=int(rng.integers(1000)))
                ys, xs = crop_box(rng, clean.shape, crop)
                if not np.array_equal(noisy[ys, xs], clean[ys, xs]):
                    break
            rows.append(Sample(noisy[ys, xs].copy(), clean[ys, xs].copy(), mask[ys, xs].copy()))
        out[label] = rows
    return out


def held_out_eval_set(
    source: str, kinds: Sequence[str], *, samples: int = 24, crop: int = 256, seed: int = 0,
    config: DegradeConfig | None = None, families: Mapping[str, Degradation] | None = None,
) -> dict[str, list[Sample]]:
    """:func:`synthetic_eval_set` on the footage the trainer holds out (the last 15 % of each
    clip, frames as the trainer reads them), or on all of it when nothing is held out: each
    of ``kinds`` at its ``config`` parameters, then each of ``families`` under its label."""
    footage = load_footage([source], max_side=360, frame_step=2)
    _, held_out = split_footage(footage, 0.15)
    config = config or DegradeConfig()
    chosen = {kind: config.params(kind) for kind in kinds} | dict(families or {})
    return synthetic_eval_set(held_out or [im for _, im in footage], chosen, samples=samples, crop=crop,
                              seed=seed)


def evaluate(
    generator: Generator, sets: dict[str, list[Sample]], *, gauss_sigma: float = 1.0,
    pre: GaussianStage | None = None, post: GaussianStage | None = None, impulse: bool = True,
    ensemble: int = 1, device: str = "auto", precision: str = "auto",
) -> list[EvalRow]:
    """``ensemble``: the generator and chain columns average that many views of each crop
    (``Denoiser(ensemble=...)``); ``precision`` as for ``run``."""
    plain = Denoiser(generator, ensemble=ensemble, device=device, precision=precision)
    chain = Denoiser(generator, pre=pre, post=post, impulse=impulse, ensemble=ensemble, device=device,
                     precision=precision)
    rows = []
    for kind, samples in sets.items():
        # Crops share a shape; whole real photos may not: score each shape apart, then
        # weigh each group by its size so the row is the mean over images.
        groups: dict[tuple[int, ...], list[Sample]] = {}
        for s in samples:
            groups.setdefault(s.noisy.shape, []).append(s)
        psnr: dict[str, float] = dict.fromkeys(COLUMNS, 0.0)
        ssim: dict[str, float] = dict.fromkeys(COLUMNS, 0.0)
        for group in groups.values():
            for column, (p, q) in _score(group, plain, chain, gauss_sigma).items():
                psnr[column] += p * len(group) / len(samples)
                ssim[column] += q * len(group) / len(samples)
        rows.append(EvalRow(kind, len(samples), psnr, ssim))
    return rows


def _score(samples: Sequence[Sample], plain: Denoiser, chain: Denoiser,
           gauss_sigma: float) -> dict[str, tuple[float, float]]:
    """Mean PSNR and SSIM of each column over same-shaped ``samples``."""
    noisy = np.stack([s.noisy for s in samples])
    clean = np.stack([s.clean for s in samples])
    t = torch.from_numpy(noisy).permute(0, 3, 1, 2).float()
    blurred = gaussian_blur(t, gauss_sigma).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    outputs = {"input": noisy, "gaussian": blurred}
    outputs["generator"] = np.concatenate([plain(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
    outputs["chain"] = np.concatenate([chain(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
    return {k: frames_psnr_ssim(v, clean) for k, v in outputs.items()}


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
