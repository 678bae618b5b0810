"""Make degraded data: paired training folders from clean footage, or a degraded video.

Composes io (read/write frames) with degrade (the weather); the ``synth`` command calls it.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from .config import EncodeConfig
from .degrade import DegradeConfig, Mixture, write_pairs
from .io.sinks import open_sink
from .io.sources import open_source
from .train.data import load_footage


def synth_pairs(
    sources: Sequence[str], out_dir: str | Path, config: DegradeConfig, *,
    seed: int = 0, max_side: int = 720, frame_step: int = 1,
) -> int:
    """Clean images/videos -> ``out_dir/{noisy,clean,mask}/NAME.png``; returns the count.
    Each sample draws its kinds from ``config`` (``enabled``, ``choose``)."""
    footage = load_footage(sources, max_side=max_side, frame_step=frame_step)
    return len(write_pairs(footage, out_dir, config, seed))


def synth_video(
    source: str | Path, output: str | Path, config: DegradeConfig, *,
    seed: int = 0, max_frames: int | None = None, crf: int = 20,
) -> int:
    """Degrade every frame of a video with one persistent layout (drops drift, dust stays),
    keeping its timestamps; returns the number of frames written."""
    kinds = Mixture(tuple(config.sample(seed)))
    written = 0
    with open_source(source) as src:
        with open_sink(output, src.info, EncodeConfig(crf=crf, preset="slow", copy_audio=False)) as sink:
            for frame in itertools.islice(src, max_frames):
                sink.write(frame.with_image(kinds.apply(frame.image, seed, frame.index)))
                written += 1
    return written
