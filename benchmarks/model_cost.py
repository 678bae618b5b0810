"""Milliseconds per 640x360 frame of the Denoiser (default chain, batch 4) for several models,
timed in turns in one process so that they share the machine's state, on four frames of
Big Buck Bunny (uniform noise reads as noisy to the chain's filters and takes paths real
frames do not):

    python benchmarks/model_cost.py lite runs/lite6/best.pt [--rounds 5] [--ensemble 2,4]

``--ensemble`` times each model also with those self-ensembles (``run --ensemble``).
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from precision import clip_360  # benchmarks/ is the script's folder

from stream_denoise.denoiser import Denoiser
from stream_denoise.io.sources import open_source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="bundled names or checkpoint paths")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ensemble", default="", help="comma-separated view counts to time as well")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open_source(clip_360(Path(tmp))) as src:
        frames = np.stack([f.image for f in itertools.islice(src, 40, 44)])
    dens = {m: Denoiser.from_pretrained(m) for m in args.models}
    for n in filter(None, args.ensemble.split(",")):
        dens |= {f"{m} --ensemble {n}": Denoiser.from_pretrained(m, ensemble=int(n)) for m in args.models}
    for den in dens.values():
        den(frames)  # warm-up
    times: dict[str, list[float]] = {m: [] for m in dens}
    for _ in range(args.rounds):
        for m, den in dens.items():
            start = time.perf_counter()
            den(frames)
            times[m].append((time.perf_counter() - start) / len(frames) * 1000)
    for m, t in times.items():
        print(f"{m}: {np.median(t):.1f} ms per frame (median of {args.rounds}; {min(t):.1f}-{max(t):.1f})")


if __name__ == "__main__":
    main()
