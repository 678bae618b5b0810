"""The temporal stage against the single-frame chain and FFmpeg's temporal filters, on
weather from the families training never draws (train/evaluate.py HELD_OUT_FAMILIES).

Clips of 24 frames from the end of bikes.mp4 (frames 226-249; training never reads 240 on):
- still: frame 245 held still, with held-out snow (strong wind) or sliding held-out drops;
- moving object: the still frame with a photo patch crossing it at 6 px a frame, in snow;
  the object's PSNR is measured in its own box, where a ghost or a smear would show;
- moving camera: the real footage itself (frames 226-249), with the same weather; and a
  pan across the still frame at 2 px a frame.

Rows: the input, the chain frame by frame (what `run` did before the stage), the chain with
the stage, and FFmpeg's tmedian (radius 2, 4), atadenoise and hqdn3d on the input.
PSNR is the clips' mean over frames against the clean frames; flicker is the mean absolute
frame-to-frame change of the grey level (0 for a clean still clip). The stage's time per
frame is measured on the still snow clip, beside the chain's.

    python benchmarks/temporal.py [--model lite] [--out benchmarks/results/temporal.md]
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from stream_denoise.config import FilterConfig, ModelConfig, TemporalConfig
from stream_denoise.degrade.base import Degradation
from stream_denoise.denoiser import Denoiser
from stream_denoise.frame import Frame
from stream_denoise.io.sources import open_source
from stream_denoise.metrics import flicker, frames_psnr_ssim
from stream_denoise.temporal import TemporalFilter
from stream_denoise.train.data import builtin_footage
from stream_denoise.train.evaluate import HELD_OUT_FAMILIES

FRAMES, FPS = 24, 25
_TB = Fraction(1, FPS)
PEERS = {"ffmpeg tmedian=radius=2": "tmedian=radius=2", "ffmpeg tmedian=radius=4": "tmedian=radius=4",
         "ffmpeg atadenoise": "atadenoise", "ffmpeg hqdn3d": "hqdn3d"}


def footage() -> np.ndarray:
    bikes = next(p for p in builtin_footage() if p.name == "bikes.mp4")
    with open_source(bikes) as src:
        return np.stack([f.image for f in itertools.islice(src, 250 - FRAMES, 250)])


def clips(real: np.ndarray) -> dict[str, tuple[np.ndarray, tuple[slice, slice] | None]]:
    """Clean clips by name, each with the box the moving-object score is taken in (or None)."""
    still = real[19]
    h, w = still.shape[:2]
    patch = cv2.resize(real[0][40:120, 300:400], (64, 64))  # a piece of another scene
    crossing = []
    for t in range(FRAMES):
        frame = still.copy()
        x = 40 + 6 * t
        frame[100:164, x:x + 64] = patch
        crossing.append(frame)
    box = (slice(100, 164), slice(40, 40 + 6 * FRAMES + 64))
    wide = cv2.resize(still, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_CUBIC)
    pan = [wide[10:10 + h, 2 * t:2 * t + w] for t in range(FRAMES)]
    return {"still": (np.stack([still] * FRAMES), None), "moving object": (np.stack(crossing), box),
            "pan": (np.stack(pan), None), "real footage": (real, None)}


def degrade(clean: np.ndarray, kind: Degradation, seed: int) -> np.ndarray:
    return np.stack([kind.apply(c, seed, t) for t, c in enumerate(clean)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of each frame's PSNR."""
    return frames_psnr_ssim(a, b)[0]


def ffmpeg(video: np.ndarray, vf: str) -> np.ndarray:
    """FFmpeg's filter on the clip, frame for frame. tmedian leaves out its first and last
    ``radius`` frames; those are the input's (left unfiltered), so every row scores all frames."""
    n, h, w, _ = video.shape
    cmd = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS),
           "-i", "-", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, input=video.tobytes(), capture_output=True, check=True).stdout
    filtered = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
    skip = (n - len(filtered)) // 2
    return np.concatenate([video[:skip], filtered, video[skip + len(filtered):]])


def staged(chain_out: np.ndarray, noisy: np.ndarray, config: TemporalConfig) -> tuple[np.ndarray, float]:
    """The stage over a clip (frames timed at FPS, ``noisy`` what the chain was given) and its
    seconds per frame."""
    stage = TemporalFilter(config)
    started = time.perf_counter()
    out = np.stack([stage(im, Frame(i, src, i, _TB)) for i, (im, src) in enumerate(zip(chain_out, noisy))])
    return out, (time.perf_counter() - started) / len(out)


def run_chain(den: Denoiser, video: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = np.concatenate([den(video[i:i + 4]) for i in range(0, len(video), 4)])
    return out, (time.perf_counter() - started) / len(video)


def table(den: Denoiser, config: TemporalConfig, real: np.ndarray, peers: bool) -> tuple[list[str], dict[str, float]]:
    weather = {"snow": HELD_OUT_FAMILIES["snow"],
               "raindrops": HELD_OUT_FAMILIES["raindrops"].model_copy(update={"slide_fraction": 0.5})}
    cases: list[tuple[str, str, np.ndarray, np.ndarray, tuple[slice, slice] | None]] = []
    for name, (clean, box) in clips(real).items():
        for kind in ("snow", "raindrops") if name == "still" else ("snow",):
            cases.append((name, kind, clean, degrade(clean, weather[kind], seed=2026), box))
    rows: dict[str, dict[str, str]] = {}
    times: dict[str, float] = {}
    for name, kind, clean, noisy, box in cases:
        col = f"{name}, {kind}"
        chain, chain_s = run_chain(den, noisy)
        fused, stage_s = staged(chain, noisy, config)
        if name == "still" and kind == "snow":
            times = {"chain": chain_s, "stage": stage_s}
        outs: dict[str, np.ndarray] = {"input": noisy, "chain (frame by frame)": chain, "chain + temporal": fused}
        if peers:
            outs |= {label: ffmpeg(noisy, vf) for label, vf in PEERS.items()}
        for label, out in outs.items():
            cell = f"{psnr(out, clean):.2f}"
            if name == "still":
                cell += f" / {flicker(out):.2f}"
            if box is not None:
                cell += f" (object {psnr(out[:, box[0], box[1]], clean[:, box[0], box[1]]):.2f})"
            rows.setdefault(label, {})[col] = cell
    cols = [f"{n}, {k}" for n, k, *_ in cases]
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells.get(c, "") for c in cols) + " |" for label, cells in rows.items()]
    return lines, times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--no-peers", action="store_true", help="skip the FFmpeg rows")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a temporal setting to try (frames=7, tolerance=16, ...)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    config = TemporalConfig.model_validate({"mode": "on"} | dict(kv.split("=", 1) for kv in args.set))
    den = Denoiser.from_config(ModelConfig(weights=args.model, device="cpu"), FilterConfig())
    real = footage()
    lines, times = table(den, config, real, not args.no_peers)
    note = (f"\nPSNR dB (still clips: PSNR / flicker in grey levels). Temporal settings: "
            f"{config.model_dump(exclude={'mode'})}. Time per frame at "
            f"{real.shape[2]}x{real.shape[1]}: chain {times['chain'] * 1e3:.1f} ms, "
            f"the stage {times['stage'] * 1e3:.1f} ms ({100 * times['stage'] / times['chain']:.0f} %).")
    text = "\n".join(lines) + "\n" + note + "\n"
    print(text)
    if args.out:
        sets = "".join(f" --set {s}" for s in args.set)
        args.out.write_text(f"`python benchmarks/temporal.py{sets}` (model {args.model})\n\n" + text)


if __name__ == "__main__":
    main()
