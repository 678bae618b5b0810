"""Choose a model's dead zones on the families training never draws, not on what it fit.

The gate's dead zone (`GeneratorConfig.gate_threshold`) and the veil head's
(`veil_threshold`) trade removal against harm: too low and clean pixels move, too high and
weather stays. Each pair is scored with the default chain (as `stream-denoise run` runs)
on the held-out families of `stream-denoise eval` (`HELD_OUT_FAMILIES`) and on clean crops
of the same held-out footage; the pick is the pair with the best mean gain on held-out
raindrops and snow among those that leave held-out dust no worse than `--floor` dB and
clean crops above `--clean-floor` dB.

    python benchmarks/dead_zones.py [--model lite] [--gate 0.1,0.2,0.3,0.4] [--veil 0.8,0.9,0.95]
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np

from stream_denoise.config import FilterConfig
from stream_denoise.denoiser import Denoiser
from stream_denoise.metrics import psnr
from stream_denoise.models.generator import Generator
from stream_denoise.models.weights import load_generator
from stream_denoise.train.data import Sample
from stream_denoise.train.evaluate import HELD_OUT_FAMILIES, held_out_eval_set


def gain(den: Denoiser, samples: list[Sample]) -> float:
    """Mean PSNR gain of the chain over its input (dB); on clean crops, where the input is
    the target, the output's own PSNR (an untouched crop counts as 99 dB)."""
    noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples])
    out = np.concatenate([den(noisy[i:i + 8]) for i in range(0, len(noisy), 8)])
    if np.array_equal(noisy, clean):
        return float(np.mean([min(psnr(o, c), 99.0) for o, c in zip(out, clean)]))
    return float(np.mean([psnr(o, c) - psnr(n, c) for o, c, n in zip(out, clean, noisy)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--gate", default="0.1,0.2,0.3,0.4")
    p.add_argument("--veil", default="0.8,0.9,0.95")
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--floor", type=float, default=0.0, help="least gain allowed on held-out dust (dB)")
    p.add_argument("--clean-floor", type=float, default=45.0, help="least PSNR allowed on clean crops (dB)")
    args = p.parse_args()
    sets = held_out_eval_set("builtin", [], samples=args.samples, families=HELD_OUT_FAMILIES)
    sets["clean"] = [Sample(s.clean, s.clean, s.mask * 0) for s in sets["dust"]]
    generator, _ = load_generator(args.model)
    filters = FilterConfig()
    print(f"model {args.model}: gate {generator.config.gate_threshold:g}, veil {generator.config.veil_threshold:g}\n")
    print("| gate dead zone | veil dead zone | " + " | ".join(f"{k} (held out)" if k != "clean" else "clean (PSNR)"
                                                      for k in sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    best = None
    for g, v in itertools.product(map(float, args.gate.split(",")), map(float, args.veil.split(","))):
        net = Generator(replace(generator.config, gate_threshold=g, veil_threshold=v))
        net.load_state_dict(generator.state_dict())
        den = Denoiser(net, pre=filters.pre, post=filters.post, impulse=filters.impulse)
        gains = {k: gain(den, samples) for k, samples in sets.items()}
        print(f"| {g:g} | {v:g} | " + " | ".join(f"{x:+.2f}" for x in gains.values()) + " |")
        score = (gains["raindrops"] + gains["snow"]) / 2
        if gains["dust"] >= args.floor and gains["clean"] >= args.clean_floor and (best is None or score > best[0]):
            best = (score, g, v)
    print("\npick: none meets the floor" if best is None else
          f"\npick: gate {best[1]:g}, veil {best[2]:g} (raindrops and snow {best[0]:+.2f} dB on average)")


if __name__ == "__main__":
    main()
