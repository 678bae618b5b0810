"""Video cases for ``eval --video``: the temporal stage on still and moving clips, in
weather of the families training never draws, beside the chain frame by frame. Its
settings are chosen here, on moving footage as well as still (benchmarks/temporal.py adds
FFmpeg's temporal filters to the same table).

Clips of 24 frames from the end of bikes.mp4 (frames 226-249; training never reads 240 on):
- still: frame 245 held still, with held-out snow (strong wind) or held-out drops, half of
  them sliding;
- moving object: the still frame with a piece of another frame crossing it at 6 px a
  frame, in snow; scored in the object's box too, where a ghost or a smear would show;
- pan: the still frame panned 2 px a frame, in snow, and behind held-out drops; and behind
  them with an object the camera follows (fixed in the frame: the lens fill's blind spot),
  scored in its box too;
- real footage: the clip itself (a drifting camera, passing cars, parallax), in snow and
  clean (what the stage costs where there is nothing to remove).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..config import TemporalConfig
from ..denoiser import Denoiser
from ..frame import Frame
from ..io.sources import open_source
from ..metrics import flicker, frames_psnr_ssim
from ..temporal import TemporalFilter
from .data import builtin_footage
from .evaluate import HELD_OUT_FAMILIES

FRAMES, FPS = 24, 25
_TIME_BASE = Fraction(1, FPS)


@dataclass(frozen=True)
class VideoCase:
    """A clean clip ``(N, H, W, 3)``, the same clip in weather, and the box (rows, columns)
    the moving-object score is taken in, or None."""

    name: str
    clean: np.ndarray
    noisy: np.ndarray
    box: tuple[slice, slice] | None = None

    @property
    def still(self) -> bool:
        return self.name.startswith("still")


def footage() -> np.ndarray:
    """The last FRAMES frames of bikes.mp4, RGB."""
    bikes = next(p for p in builtin_footage() if p.name == "bikes.mp4")
    with open_source(bikes) as src:
        return np.stack([f.image for f in itertools.islice(src, 250 - FRAMES, 250)])


def video_cases(real: np.ndarray | None = None, seed: int = 2026) -> list[VideoCase]:
    """The clips above, each in its weather (``seed`` draws the layout)."""
    real = footage() if real is None else real
    still = real[19]
    h, w = still.shape[:2]
    patch = cv2.resize(real[0][40:120, 300:400], (64, 64))
    crossing = np.repeat(still[None], FRAMES, axis=0)
    for t in range(FRAMES):
        crossing[t, 100:164, 40 + 6 * t:104 + 6 * t] = patch
    wide = cv2.resize(still, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_CUBIC)
    pan = np.stack([wide[10:10 + h, 2 * t:2 * t + w] for t in range(FRAMES)])
    followed = pan.copy()
    followed[:, 100:164, 300:364] = patch
    snow = HELD_OUT_FAMILIES["snow"]
    drops = HELD_OUT_FAMILIES["raindrops"].model_copy(update={"slide_fraction": 0.5})
    clips = [("still, snow", np.repeat(still[None], FRAMES, axis=0), snow, None),
             ("still, raindrops", np.repeat(still[None], FRAMES, axis=0), drops, None),
             ("moving object, snow", crossing, snow, (slice(100, 164), slice(40, 40 + 6 * FRAMES + 64))),
             ("pan, snow", pan, snow, None), ("pan, raindrops", pan, HELD_OUT_FAMILIES["raindrops"], None),
             ("pan, followed object, raindrops", followed, HELD_OUT_FAMILIES["raindrops"],
              (slice(100, 164), slice(300, 364))),
             ("real footage, snow", real, snow, None)]
    cases = [VideoCase(name, clean, np.stack([kind.apply(c, seed, t) for t, c in enumerate(clean)]), box)
             for name, clean, kind, box in clips]
    return cases + [VideoCase("real footage, clean", real, real.copy())]


def through_stage(chain_out: np.ndarray, noisy: np.ndarray, config: TemporalConfig,
                  wait: bool = True) -> tuple[np.ndarray, float]:
    """The temporal stage over a clip (frames timed at FPS; ``noisy`` what the chain was
    given; ``wait``: as a file, see :class:`TemporalFilter`) and its seconds per frame."""
    stage = TemporalFilter(config, wait)
    started = time.perf_counter()
    out = [f for i, (im, src) in enumerate(zip(chain_out, noisy)) for f in stage.push(im, Frame(i, src, i, _TIME_BASE))]
    out = np.stack(out + stage.flush())
    return out, (time.perf_counter() - started) / len(out)


def through_chain(den: Denoiser, noisy: np.ndarray) -> tuple[np.ndarray, float]:
    """The chain frame by frame in batches of 4, and its seconds per frame."""
    started = time.perf_counter()
    out = np.concatenate([den(noisy[i:i + 4]) for i in range(0, len(noisy), 4)])
    return out, (time.perf_counter() - started) / len(noisy)


def score(case: VideoCase, out: np.ndarray) -> str:
    """A table cell: PSNR (mean over frames), with the flicker on still clips and the
    object's own PSNR on the moving-object clip."""
    cell = f"{frames_psnr_ssim(out, case.clean)[0]:.2f}"
    if case.still:
        cell += f" / {flicker(out):.2f}"
    if case.box is not None:
        rows, cols = case.box
        cell += f" (object {frames_psnr_ssim(out[:, rows, cols], case.clean[:, rows, cols])[0]:.2f})"
    return cell


def video_table(den: Denoiser, config: TemporalConfig, cases: list[VideoCase],
                more: dict[str, object] | None = None) -> tuple[str, dict[str, float]]:
    """A Markdown table: the input, the chain frame by frame and the chain with the stage,
    per case (``more``: label -> function of the noisy clip, extra rows); and the seconds
    per frame of the chain and of the stage on the first still clip, best of 3 passes."""
    rows: dict[str, list[str]] = {}
    times: dict[str, float] = {}
    for case in cases:
        chain, chain_s = through_chain(den, case.noisy)
        fused, stage_s = through_stage(chain, case.noisy, config)
        if not times and case.still:  # best of 3 passes: one pass varies by a third on a shared VM
            times = {"chain": min([chain_s] + [through_chain(den, case.noisy)[1] for _ in range(2)]),
                     "stage": min([stage_s] + [through_stage(chain, case.noisy, config)[1] for _ in range(2)])}
        outputs = {"input": case.noisy, "chain, frame by frame": chain, "chain + temporal": fused}
        other = config.model_copy(update={"lens": not config.lens})  # what the lens fill adds, or costs
        label = "chain + temporal, no lens fill" if config.lens else "chain + temporal, lens fill"
        outputs[label] = through_stage(chain, case.noisy, other)[0]
        outputs |= {label: make(case.noisy) for label, make in (more or {}).items()}  # type: ignore[operator]
        for label, out in outputs.items():
            rows.setdefault(label, []).append(score(case, out))
    head = "| | " + " | ".join(c.name for c in cases) + " |"
    lines = [head, "|---" * (len(cases) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]
    return "\n".join(lines), times
