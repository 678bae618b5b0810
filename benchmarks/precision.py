"""Inference precision on the CPU, side by side in one process: the quality cost of bf16 per
kind (the evaluation set `stream-denoise eval` scores, the fit table and the held-out
families), and the end-to-end frame rate of `stream-denoise run` at 640x360, fp32 and
bf16 timed in turns, beside the decode -> encode path without a model.

    python benchmarks/precision.py [--model lite] [--rounds 3] [--out benchmarks/results/precision.md]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from stream_denoise.config import EncodeConfig, load_config
from stream_denoise.degrade import KINDS
from stream_denoise.denoiser import native_bf16
from stream_denoise.frame import Frame
from stream_denoise.io.sinks import open_sink
from stream_denoise.io.sources import open_source
from stream_denoise.models.weights import load_generator
from stream_denoise.pipeline import run
from stream_denoise.train.data import builtin_footage
from stream_denoise.train.evaluate import HELD_OUT_FAMILIES, evaluate, held_out_eval_set

PRECISIONS = ("fp32", "bf16")


class _Copy:
    """A model that returns its input: the pipeline's own cost."""

    def process(self, frames: np.ndarray, *, attention: bool = False):
        from stream_denoise.denoiser import DenoiseResult

        return DenoiseResult(frames.copy())


def quality(model: str) -> list[str]:
    generator, _ = load_generator(model)
    kinds = [k for k in KINDS if k != "salt_pepper"] + ["salt_pepper"]
    sets = held_out_eval_set("builtin", kinds, families={f"{k} (held out)": f for k, f in HELD_OUT_FAMILIES.items()})
    chain = load_config().filters
    rows = {p: evaluate(generator, sets, pre=chain.pre, post=chain.post, impulse=chain.impulse, device="cpu",
                        precision=p) for p in PRECISIONS}
    lines = ["| kind | chain gain, fp32 | chain gain, bf16 | bf16 - fp32 |", "|---|---|---|---|"]
    for a, b in zip(rows["fp32"], rows["bf16"]):
        ga, gb = (r.psnr["chain"] - r.psnr["input"] for r in (a, b))
        lines.append(f"| {a.kind} | {ga:+.2f} dB | {gb:+.2f} dB | {gb - ga:+.3f} dB |")
    return lines


def clip_360(folder: Path) -> Path:
    """Big Buck Bunny scaled to 640x360 (132 frames), losslessly."""
    import cv2

    bunny = next(p for p in builtin_footage() if p.name == "bigbuckbunny.mp4")
    out = folder / "bunny360.mkv"
    with open_source(bunny) as src:
        info = src.info
        from dataclasses import replace

        with open_sink(out, replace(info, width=640, height=360, audio_from=None),
                       EncodeConfig(codec="ffv1", pix_fmt="bgr0")) as sink:
            for f in src:
                sink.write(Frame(f.index, cv2.resize(f.image, (640, 360), interpolation=cv2.INTER_AREA),
                                 f.pts, f.time_base))
    return out


def speed(model: str, rounds: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        clip = clip_360(Path(tmp))
        configs = {p: load_config(overrides={"model.weights": model, "model.precision": p}) for p in PRECISIONS}
        fps: dict[str, list[float]] = {p: [] for p in ("no model", *PRECISIONS)}
        for r in range(rounds):
            for label in fps:
                out = Path(tmp) / f"{label.replace(' ', '_')}{r}.mp4"
                kwargs = {"model": _Copy()} if label == "no model" else {}
                started = time.perf_counter()
                summary = run(clip, out, configs.get(label, load_config()), progress=False, **kwargs)
                fps[label].append(summary.frames / (time.perf_counter() - started))
    lines = ["| 640x360, 132 frames, `run` defaults | fps (median of rounds) | runs |", "|---|---|---|"]
    for label, values in fps.items():
        lines.append(f"| {label} | {np.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    head = f"`python benchmarks/precision.py --model {args.model} --rounds {args.rounds}`; native bf16: {native_bf16()}"
    text = "\n".join([head, "", *quality(args.model), "", *speed(args.model, args.rounds)]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
