"""A candidate model on full frames, as the bundled model's tests measure it: the held-out
end of bikes.mp4 (frames 240-247, 640x272), the four noise and dust layouts of
`tests/test_denoiser.py` (seeds 777-780) against the same chain around an identity
generator, the raindrop test's layout, and clean frames plain and through the 4-view
ensemble. Run it on a model before it replaces the bundled one: the tests' limits
(CHAIN_VS_IDENTITY, 50 dB for the ensemble) apply to what it prints.

    python benchmarks/full_frames.py lite runs/candidate.safetensors
"""
from __future__ import annotations

import argparse
import itertools
from types import SimpleNamespace

import numpy as np
import torch

from stream_denoise.config import FilterConfig
from stream_denoise.degrade import DegradeConfig, Raindrops, degrade
from stream_denoise.denoiser import Denoiser
from stream_denoise.io.sources import open_source
from stream_denoise.metrics import psnr
from stream_denoise.train.data import builtin_footage

SEEDS = (777, 778, 779, 780)


class Identity(torch.nn.Module):
    """A generator that returns its input, with a shut attention map: the chain without it."""

    def __init__(self, config: object) -> None:
        super().__init__()
        self.config, self.veil = config, None

    def forward(self, x: torch.Tensor, *, inference: bool = False) -> SimpleNamespace:
        return SimpleNamespace(image=x, attention=[x[:, :1] * 0])


def held_out_frames() -> np.ndarray:
    bikes = next(p for p in builtin_footage() if p.name == "bikes.mp4")
    with open_source(bikes) as src:
        return np.stack([f.image for f in itertools.islice(src, 240, 248)])


def mean_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of the per-frame PSNR, as the tests' ``psnr_ssim``."""
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


def measure(model: str, clean: np.ndarray) -> dict[str, str]:
    f = FilterConfig()
    den = Denoiser.from_pretrained(model, filters=f)
    identity = Denoiser(Identity(den.generator.config), pre=f.pre, post=f.post, impulse=f.impulse)
    row = {}
    for kind in ("gaussian", "dust", "salt_pepper"):
        gains = []
        for seed in SEEDS:
            noisy = np.stack([degrade(c, [DegradeConfig().params(kind)], seed=seed, t=i)[0]
                              for i, c in enumerate(clean)])
            gains.append(mean_psnr(den(noisy), clean) - mean_psnr(identity(noisy), clean))
        row[kind] = f"{np.mean(gains):+.2f} ({min(gains):+.2f})"
    drops = np.stack([Raindrops().apply(c, seed=12345, t=i) for i, c in enumerate(clean)])
    row["raindrops"] = f"{mean_psnr(den(drops), clean) - mean_psnr(drops, clean):+.2f}"
    row["clean"] = f"{mean_psnr(den(clean), clean):.2f}"
    row["clean, 4 views"] = f"{mean_psnr(Denoiser.from_pretrained(model, ensemble=4)(clean), clean):.2f}"
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="bundled names or checkpoint paths")
    args = p.parse_args()
    clean = held_out_frames()
    rows = {m: measure(m, clean) for m in args.models}
    cols = list(next(iter(rows.values())))
    print("gain over the chain around an identity generator, dB: mean of 4 layouts (worst); "
          "raindrops: gain over the input; clean: PSNR of the output\n")
    print("| model | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for m, row in rows.items():
        print(f"| {m} | " + " | ".join(row[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
