"""Model-only throughput of the Denoiser at a frame size, per batch size.

    python benchmarks/model_speed.py --preset lite --size 360x640 --batches 1 2 4 8

Random weights: speed does not depend on their values. Prints one JSON line per batch
size (frames per second, median of --repeats timed calls after a warm-up call).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from stream_denoise.denoiser import Denoiser
from stream_denoise.models.attentive_gan import PRESETS, Generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    p.add_argument("--size", default="360x640", help="HxW")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    den = Denoiser(Generator(PRESETS[args.preset]), device=args.device)
    rng = np.random.default_rng(0)
    for n in args.batches:
        frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        den(frames)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            den(frames)
            times.append(time.perf_counter() - t)
        print(json.dumps({
            "preset": args.preset, "size": args.size, "batch": n, "device": str(den.device),
            "fps": round(n / statistics.median(times), 2), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        }))


if __name__ == "__main__":
    main()
