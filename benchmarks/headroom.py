"""Where a model's remaining error lies, as mean PSNR gains on the evaluation set's crops
(built as `stream-denoise eval` builds them), for the model as it is and three variants:

- `pixel gate`: the input kept wherever the per-pixel mask says no damage (an oracle for a
  perfect per-pixel gate); `grown gate` the same with the mask grown by one pixel, and
  `... clean cells` that only in the 4 x 4 cells with no damaged pixel, where the
  attention map opened on undamaged ground;
- `affine`: the best gain and offset per colour and crop fitted to the clean crop (an
  oracle for a perfect global correction);
- `no fine gate` / `no affine head`: the model with that head's last layer zeroed.

    python benchmarks/headroom.py [--model lite] [--kinds raindrops,snow,dust]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from stream_denoise.denoiser import Denoiser
from stream_denoise.metrics import psnr
from stream_denoise.models.weights import load_generator
from stream_denoise.train.evaluate import held_out_eval_set
from stream_denoise.train.losses import block_mask


def best_affine(out: np.ndarray, clean: np.ndarray) -> np.ndarray:
    fitted = np.empty(out.shape)
    for ch in range(3):
        x = out[..., ch].ravel().astype(np.float64)
        a = np.stack([x, np.ones_like(x)], 1)
        coef, *_ = np.linalg.lstsq(a, clean[..., ch].ravel().astype(np.float64), rcond=None)
        fitted[..., ch] = (a @ coef).reshape(out.shape[:2])
    return np.clip(fitted, 0, 255).round().astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--kinds", default="raindrops,snow,dust")
    args = p.parse_args()
    sets = held_out_eval_set("builtin", args.kinds.split(","))
    generator, _ = load_generator(args.model)
    models = {"model": Denoiser(generator)}
    for head in ("fine", "affine"):
        if getattr(generator.autoencoder, head) is not None:
            ablated, _ = load_generator(args.model)
            with torch.no_grad():
                for t in getattr(ablated.autoencoder, head)[-1].parameters():
                    t.zero_()
            models[f"no {'fine gate' if head == 'fine' else 'affine head'}"] = Denoiser(ablated)
    oracles = ["pixel gate", "grown gate", "grown gate, clean cells", "affine"]
    print("| kind | " + " | ".join([*models, *oracles]) + " |")
    print("|---" * (len(models) + len(oracles) + 1) + "|")
    for kind, samples in sets.items():
        noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples])
        outs = {name: np.concatenate([den(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
                for name, den in models.items()}
        mask = np.stack([s.mask for s in samples]).astype(np.uint8)
        grown = np.stack([cv2.dilate(m, np.ones((3, 3), np.uint8)) for m in mask])
        r = generator.config.unshuffle
        cells = block_mask(torch.from_numpy(mask).float()[:, None], r)[:, 0].numpy()
        outs["pixel gate"] = np.where(mask[..., None] == 0, noisy, outs["model"])
        outs["grown gate"] = np.where(grown[..., None] == 0, noisy, outs["model"])
        outs["grown gate, clean cells"] = np.where(((grown == 0) & (cells == 0))[..., None], noisy, outs["model"])
        outs["affine"] = np.stack([best_affine(o, c) for o, c in zip(outs["model"], clean)])
        gains = {k: np.mean([psnr(o, c) - psnr(n, c) for o, c, n in zip(v, clean, noisy)]) for k, v in outs.items()}
        print(f"| {kind} | " + " | ".join(f"{g:+.2f}" for g in gains.values()) + " |")


if __name__ == "__main__":
    main()
