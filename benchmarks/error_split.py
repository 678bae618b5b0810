"""Where a model's remaining error lies on the evaluation set's crops (built as
`stream-denoise eval` builds them): each region's share of the output's squared error
(and of the input's), for the pixels inside the damage mask grown by one pixel, the clean
pixels the model changed anyway (gate spill), and the clean pixels it left untouched
(damage below the mask's threshold, such as snow's veil). Then the mean gain for a few
gate dead zones (`GeneratorConfig.gate_threshold`).

    python benchmarks/error_split.py [--model lite] [--kinds raindrops,snow] [--thresholds 0.2,0.3,0.4]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import cv2
import numpy as np

from stream_denoise.denoiser import Denoiser
from stream_denoise.metrics import psnr
from stream_denoise.models.generator import Generator
from stream_denoise.models.weights import load_generator
from stream_denoise.train.evaluate import held_out_eval_set


def run(den: Denoiser, noisy: np.ndarray) -> np.ndarray:
    return np.concatenate([den(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--kinds", default="raindrops,snow")
    p.add_argument("--thresholds", default="0.2,0.3,0.4")
    args = p.parse_args()
    sets = held_out_eval_set("builtin", args.kinds.split(","))
    generator, _ = load_generator(args.model)
    print("| kind | region | share of pixels | share of output error | share of input error |\n|---|---|---|---|---|")
    for kind, samples in sets.items():
        noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples]).astype(float)
        out = run(Denoiser(generator), noisy).astype(float)
        grown = np.stack([cv2.dilate(s.mask.astype(np.uint8), np.ones((3, 3), np.uint8)) for s in samples]) > 0
        changed = np.abs(out - noisy).sum(-1) > 0
        err_out, err_in = ((out - clean) ** 2).sum(-1), ((noisy - clean) ** 2).sum(-1)
        for name, sel in (("grown mask", grown), ("spill", ~grown & changed), ("untouched", ~grown & ~changed)):
            print(f"| {kind} | {name} | {sel.mean():.3f} | {err_out[sel].sum() / err_out.sum():.3f} | "
                  f"{err_in[sel].sum() / err_in.sum():.3f} |")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print("\n| gate dead zone | " + " | ".join(sets) + " |\n|---" * 1 + "|---" * len(sets) + "|")
    for t in thresholds:
        g = Generator(replace(generator.config, gate_threshold=t))
        g.load_state_dict(generator.state_dict())
        den = Denoiser(g)
        gains = []
        for samples in sets.values():
            noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples])
            gains.append(np.mean([psnr(o, c) - psnr(n, c) for o, c, n in zip(run(den, noisy), clean, noisy)]))
        print(f"| {t:g} | " + " | ".join(f"{x:+.2f}" for x in gains) + " |")


if __name__ == "__main__":
    main()
