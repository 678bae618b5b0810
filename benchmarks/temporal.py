"""The temporal stage against the single-frame chain and FFmpeg's temporal filters, on
weather from the families training never draws: `stream-denoise eval --video`'s clips
(stream_denoise/train/video_eval.py), with FFmpeg's tmedian (radius 2, 4), atadenoise and
hqdn3d on the input as more rows.

PSNR is the mean over frames against the clean frames; on still clips also the flicker,
the mean absolute frame-to-frame change of the grey level (0 for a clean still clip). The
stage's time per frame is measured on the still snow clip, beside the chain's.

    python benchmarks/temporal.py [--model lite] [--seed 0] [--set tolerance=16] [--out benchmarks/results/temporal.md]
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np

from stream_denoise.config import FilterConfig, ModelConfig, TemporalConfig
from stream_denoise.denoiser import Denoiser
from stream_denoise.train.video_eval import FPS, video_cases, video_table

PEERS = {"FFmpeg tmedian=radius=2": "tmedian=radius=2", "FFmpeg tmedian=radius=4": "tmedian=radius=4",
         "FFmpeg atadenoise": "atadenoise", "FFmpeg hqdn3d": "hqdn3d"}


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--no-peers", action="store_true", help="skip the FFmpeg rows")
    p.add_argument("--seed", type=int, default=0, help="another layout of the weather (as eval --video --seed)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a temporal setting to try (frames=7, tolerance=16, ...)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    config = TemporalConfig.model_validate({"mode": "on"} | dict(kv.split("=", 1) for kv in args.set))
    den = Denoiser.from_config(ModelConfig(weights=args.model, device="cpu"), FilterConfig())
    cases = video_cases(seed=2026 + args.seed)
    peers = {} if args.no_peers else {label: lambda v, vf=vf: ffmpeg(v, vf) for label, vf in PEERS.items()}
    table, times = video_table(den, config, cases, peers)
    h, w = cases[0].clean.shape[1:3]
    text = (f"{table}\n\nPSNR dB (still clips: PSNR / flicker in grey levels). Temporal settings: "
            f"{config.model_dump(exclude={'mode'})}. Time per frame at {w}x{h}: chain "
            f"{times['chain'] * 1e3:.1f} ms, the stage {times['stage'] * 1e3:.1f} ms "
            f"({100 * times['stage'] / times['chain']:.0f} %).\n")
    print(text)
    if args.out:
        sets = "".join(f" --set {s}" for s in args.set) + (f" --seed {args.seed}" if args.seed else "")
        args.out.write_text(f"`python benchmarks/temporal.py{sets}` (model {args.model})\n\n" + text)


if __name__ == "__main__":
    main()
