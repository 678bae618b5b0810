"""Detection against repair, per drop family: what a model gains, what it would gain if its
attention map were the true mask, how much of the drops its map opens and how much of the
undamaged rest (false alarms, which the gate hands to the repair).

The autoencoder repairs where the attentive-recurrent net's map points. Forcing the true
damage mask in as that map (at every recurrent step) separates the two: a large gap
between the columns means the detector, not the repair, is what limits the model.

    python benchmarks/detection.py [--model lite] [--samples 16]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from stream_denoise.degrade import DegradeConfig, WetGlass
from stream_denoise.metrics import psnr
from stream_denoise.models.generator import Generator
from stream_denoise.models.weights import load_generator
from stream_denoise.train.evaluate import HELD_OUT_FAMILIES, held_out_eval_set

FAMILIES = {
    "raindrops (held out)": HELD_OUT_FAMILIES["raindrops"],
    "raindrops (training)": DegradeConfig().params("raindrops"),
    "wet glass (training defaults)": WetGlass(),
    "wet glass, vivid": WetGlass(inner_blur=(0.0, 0.002), focus_blur=(0.0, 0.002), haze=(0.0, 0.02),
                                 tint=(0.0, 0.05)),
}


def gain(generator: Generator, noisy: torch.Tensor, samples, force: torch.Tensor | None) -> tuple[float, torch.Tensor]:
    """Mean PSNR gain of the generator's image, with its own maps or ``force`` at every step."""
    arn = generator.arn
    if force is not None:
        arn.forward = lambda x: [force] * generator.config.steps  # an instance attribute: undone below
    try:
        with torch.no_grad():
            out = generator(noisy)
    finally:
        arn.__dict__.pop("forward", None)
    images = (out.image.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return float(np.mean([psnr(o, s.clean) - psnr(s.noisy, s.clean) for o, s in zip(images, samples)])), \
        out.attention[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args()
    generator, _ = load_generator(args.model)
    generator.float().eval()
    threshold = generator.config.gate_threshold
    print(f"model {args.model}, {args.samples} crops per family, gate dead zone {threshold}\n")
    print("| family | input PSNR | gain | gain with the true mask as attention | drop pixels the map opens "
          "| undamaged pixels it opens |")
    print("|---|---|---|---|---|---|")
    for name, samples in held_out_eval_set("builtin", [], families=FAMILIES, samples=args.samples).items():
        noisy = torch.stack([torch.from_numpy(s.noisy).permute(2, 0, 1).float() / 255 for s in samples])
        mask = torch.from_numpy(np.stack([s.mask for s in samples])).float()[:, None]
        cells = F.max_pool2d(mask, generator.config.unshuffle)  # the map's resolution: one value per cell
        own, attention = gain(generator, noisy, samples, None)
        oracle, _ = gain(generator, noisy, samples, cells)
        opened = (attention[mask > 0.5] > threshold).float().mean().item()
        alarms = (attention[mask < 0.5] > threshold).float().mean().item()
        inp = np.mean([psnr(s.noisy, s.clean) for s in samples])
        print(f"| {name} | {inp:.2f} dB | {own:+.2f} dB | {oracle:+.2f} dB | {opened:.0%} | {alarms:.0%} |")


if __name__ == "__main__":
    main()
