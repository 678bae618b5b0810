"""Where a frame's time goes in `stream-denoise run` at 640x360 on this CPU: each stage of
the default chain timed alone on the same frames, in one process; then the end-to-end
frame rate of the `stream-denoise run` command on the clip looped to 528 frames (start-up
and model loading included; defaults, then `--compile default`), of the same I/O path with
a copy for the model, and of FFmpeg's CLI. The input is H.264 encoded once, as cameras
send it (Big Buck Bunny scaled, encoded with the default libx264 settings): the lossless
FFV1 clip the other benchmarks use costs 6.6 ms a frame to decode, H.264 0.7. One more row
runs the loop made from the decoded H.264 frames, so encoded twice (what this script ran
before 2026-11-30's fifth session): there the model touches more of each frame, and the
temporal stage fuses about half the frames instead of a few.

The stages: decoding to RGB, the Denoiser's tensor steps (upload and scale, impulse
median, `auto` pre-stage, the generator in bfloat16, post-stage and back to uint8), the
temporal stage, and encoding with the default libx264. The pipeline runs decode, model
and encode on three threads over two cores, so the end-to-end time per frame is less
than the sum when the threads overlap and more when they fight for the cores.

    python benchmarks/frame_time.py [--model lite] [--out benchmarks/results/frame_time.md]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from precision import _Copy, clip_360  # benchmarks/ is the script's folder

from stream_denoise.config import RunConfig, load_config
from stream_denoise.denoiser import Denoiser, _to_uint8
from stream_denoise.filters import remove_impulses
from stream_denoise.frame import Frame, VideoInfo
from stream_denoise.io.sinks import open_sink
from stream_denoise.io.sources import open_source
from stream_denoise.pipeline import run
from stream_denoise.temporal import TemporalFilter

BATCH = 4


def per_frame(step: Callable[[], object], frames: int, rounds: int = 3) -> float:
    """Milliseconds per frame of ``step`` (which handles ``frames`` frames), best of ``rounds``
    after one warm-up call."""
    step()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best / frames * 1e3


def _all_outputs(den: Denoiser, x: torch.Tensor) -> object:
    with torch.autocast(den.device.type, dtype=den.autocast_dtype, enabled=den.autocast_dtype is not None):
        return den.generator(x)


def chain_steps(den: Denoiser, batch: np.ndarray) -> dict[str, float]:
    """ms per frame of each of the Denoiser's steps on one batch, as ``Denoiser._process``
    runs them (tiling and the ensemble are off by default)."""
    n = len(batch)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    cleaned = remove_impulses(x) if den.impulse else x
    pre = den.pre(cleaned)
    m = den.generator.config.multiple
    h, w = batch.shape[1:3]
    padded = torch.nn.functional.pad(pre, (0, (-w) % m, 0, (-h) % m), mode="replicate")
    padded = padded.contiguous(memory_format=torch.channels_last)
    image, _ = den._run(padded)
    out = den.post(image[..., :h, :w].float())
    steps = {
        "upload, to float": lambda: torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0),
        "impulse median": lambda: remove_impulses(x),
        "pre-stage (auto)": lambda: den.pre(cleaned),
        "pad, channels_last": lambda: torch.nn.functional.pad(pre, (0, (-w) % m, 0, (-h) % m),
                                                              mode="replicate").contiguous(
                                                                  memory_format=torch.channels_last),
        "generator, image and last map (what the Denoiser runs)": lambda: den._run(padded),
        "generator, all outputs (as training runs it)": lambda: _all_outputs(den, padded),
        "post-stage": lambda: den.post(image[..., :h, :w].float()),
        "to uint8, to numpy": lambda: np.ascontiguousarray(_to_uint8(out).permute(0, 2, 3, 1).numpy()),
    }
    with torch.inference_mode():
        return {label: per_frame(step, n) for label, step in steps.items()}


def loop(frames: list[Frame], path: Path, info: VideoInfo, config: RunConfig) -> Path:
    """The issue's 528 frames: ``frames`` four times over, encoded as the run's output is."""
    period = frames[-1].pts + frames[1].pts - frames[0].pts - frames[0].pts  # the clip's length in pts
    with open_sink(path, info, config.encode) as sink:
        for k in range(4):
            for f in frames:
                sink.write(Frame(k * len(frames) + f.index, f.image, k * period + f.pts, f.time_base))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    config = load_config(overrides={"model.weights": args.model})
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        with open_source(clip_360(Path(tmp))) as src:
            info = src.info
            lossless = list(src)
        clip = Path(tmp) / "bunny360.mp4"
        with open_sink(clip, info, config.encode) as sink:
            for f in lossless:
                sink.write(f)
        with open_source(clip) as src:
            frames = list(src)
        images = np.stack([f.image for f in frames])

        def decode() -> None:
            with open_source(clip) as s:
                for _ in s:
                    pass

        rows.append(("decode to RGB (PyAV)", per_frame(decode, len(frames), rounds=2)))
        den = Denoiser.from_config(config.model, config.filters)
        steps = chain_steps(den, images[:BATCH])
        rows += [(f"  {label}", ms) for label, ms in steps.items()]
        whole = per_frame(lambda: [den(images[i:i + BATCH]) for i in range(0, len(images), BATCH)], len(images), 1)
        rows.append(("Denoiser, whole (eager)", whole))
        compiled = Denoiser.from_config(config.model.model_copy(update={"compile": "default"}), config.filters)
        rows.append(("Denoiser, whole (`--compile default`)",
                     per_frame(lambda: [compiled(images[i:i + BATCH]) for i in range(0, len(images), BATCH)],
                               len(images), 1)))
        results = np.stack([den(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
        results = results.reshape(images.shape)

        def temporal() -> None:
            stage = TemporalFilter(config.temporal)
            for im, f in zip(results, frames):
                stage(im, f)

        rows.append(("temporal stage", per_frame(temporal, len(frames), rounds=2)))

        def encode() -> None:
            with open_sink(Path(tmp) / "enc.mp4", info, config.encode) as sink:
                for f, im in zip(frames, results):
                    sink.write(Frame(f.index, im, f.pts, f.time_base))

        rows.append(("encode (libx264, defaults)", per_frame(encode, len(frames), rounds=2)))
        looped = loop(lossless, Path(tmp) / "bunny360x4.mp4", info, config)
        twice = loop(frames, Path(tmp) / "bunny360x4_twice.mp4", info, config)
        ends = {}
        for label, clip_in, extra, rounds in (("defaults", looped, [], 3),
                                              ("`--compile default`", looped, ["--compile", "default"], 1),
                                              ("defaults, the clip encoded twice", twice, [], 3)):
            times = []
            for r in range(rounds):
                out = Path(tmp) / f"cli{len(ends)}_{r}.mp4"
                started = time.perf_counter()
                subprocess.run(["stream-denoise", "run", str(clip_in), "-o", str(out), "-q", "--model", args.model,
                                *extra], check=True)
                times.append((time.perf_counter() - started) / (4 * len(frames)) * 1e3)
            runs = "1 run" if rounds == 1 else f"median of {rounds}: " + ", ".join(f"{1e3 / t:.1f}" for t in times)
            ends[f"`stream-denoise run`, {label}, start-up included ({runs})"] = float(np.median(times))
        started = time.perf_counter()
        summary = run(looped, Path(tmp) / "io.mp4", config, model=_Copy(), progress=False)
        ends["I/O path, the model a copy (in process)"] = (time.perf_counter() - started) / summary.frames * 1e3
        ffmpeg = ["ffmpeg", "-v", "error", "-i", str(looped), "-c:v", "libx264", str(Path(tmp) / "ff.mp4")]
        started = time.perf_counter()
        subprocess.run(ffmpeg, check=True)
        ends["FFmpeg's CLI, decode -> libx264"] = (time.perf_counter() - started) / (4 * len(frames)) * 1e3
    stage_sum = sum(ms for label, ms in rows if not label.startswith("  ") and "compile" not in label)
    n = 4 * len(frames)
    lines = [f"`python benchmarks/frame_time.py --model {args.model}` ({len(frames)} frames of Big Buck Bunny "
             f"at 640x360, batches of {BATCH}, {torch.get_num_threads()} torch threads, "
             f"precision {config.model.precision})", "",
             "| stage, alone | ms per frame |", "|---|---|"]
    lines += [f"| {label} | {ms:.2f} |" for label, ms in rows]
    lines += [f"| sum of the stages (eager) | {stage_sum:.2f} |"]
    lines += ["", f"| end to end, {n} frames | ms per frame | fps |", "|---|---|---|"]
    lines += [f"| {label} | {ms:.2f} | {1e3 / ms:.1f} |" for label, ms in ends.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
