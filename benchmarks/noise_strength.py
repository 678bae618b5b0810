"""The `auto` pre-filter's strength against Gaussian noise of several strengths: the mean
PSNR gain of the run chain (impulse median, pre-filter `auto`, generator) for each
`auto_sigma`, on the evaluation set's held-out crops (as `stream-denoise eval` builds
them) with the noise's sigma drawn from each range instead of the default 5-25.

    python benchmarks/noise_strength.py [--model lite] [--auto-sigma 0,0.5,0.75] [--auto-noise LO,HI]
"""
from __future__ import annotations

import argparse

import numpy as np

from stream_denoise.config import GaussianStage
from stream_denoise.degrade import DegradeConfig
from stream_denoise.denoiser import Denoiser
from stream_denoise.metrics import psnr
from stream_denoise.models.weights import load_generator
from stream_denoise.train.evaluate import held_out_eval_set

RANGES = ((2.0, 6.0), (5.0, 25.0), (25.0, 40.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--auto-sigma", default="0,0.5,0.75")
    p.add_argument("--auto-noise", help="LO,HI: noise estimates where the blur starts / is full [config default]")
    args = p.parse_args()
    noise = {} if args.auto_noise is None else {"auto_noise": tuple(float(v) for v in args.auto_noise.split(","))}
    generator, _ = load_generator(args.model)
    sigmas = [float(v) for v in args.auto_sigma.split(",")]
    chains = {s: Denoiser(generator, pre=GaussianStage(sigma="auto", auto_sigma=s, **noise), impulse=True)
              for s in sigmas}
    print("| noise sigma | input PSNR | " + " | ".join(f"auto_sigma {s:g}" for s in sigmas) + " |")
    print("|---" * (len(sigmas) + 2) + "|")
    for lo, hi in RANGES:
        config = DegradeConfig.model_validate({"gaussian": {"sigma": [lo, hi]}})
        samples = held_out_eval_set("builtin", ["gaussian"], config=config)["gaussian"]
        noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples])
        base = np.mean([psnr(n, c) for n, c in zip(noisy, clean)])
        gains = []
        for chain in chains.values():
            out = np.concatenate([chain(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
            gains.append(np.mean([psnr(o, c) for o, c in zip(out, clean)]) - base)
        print(f"| {lo:g}-{hi:g} | {base:.2f} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")


if __name__ == "__main__":
    main()
