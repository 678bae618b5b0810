"""A run's outputs: the cleaned video, and optionally the attention heat-map and the
side-by-side, written from batch results and published only once complete.

Their own module because naming, publishing and cleaning up outputs is a job of its own,
apart from the threads of the pipeline that feeds them.
"""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from .config import EncodeConfig
from .errors import OutputError
from .frame import BatchResult, VideoInfo
from .io.sinks import open_sink
from .io.sources import VIDEO_SUFFIXES
from .io.urls import is_url

log = logging.getLogger(__name__)


def _heatmap(attention: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(attention, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite and not (path.is_dir() and not any(path.iterdir())):
        raise OutputError(f"output {path} already exists (use output.overwrite to replace it)")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist")


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete: ``clip.partial.mp4`` beside
    ``clip.mp4``. Only a finished run renames it, so a file under the final name is never
    the remains of a crash. A folder of frames gets ``frames-partial``."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return path.with_name(f"{path.stem}.partial{path.suffix}")
    return path.with_name(f"{path.name}-partial")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _publish(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial_path(path), path)


class Outputs:
    """The run's sinks: the cleaned video, and optionally the attention heat-map and the
    side-by-side. Files are ``atomic``: written under ``.partial`` names and renamed into
    place only when the run completes; streams, playlists and segmented recordings are
    written in place (their pieces are complete as they close)."""

    def __init__(self, output: str | Path, attention: str | Path | None,
                 compare: str | Path | None, encode: EncodeConfig, overwrite: bool) -> None:
        self.output, self.encode = output, encode
        self.paths = [Path(p) for p in (output, attention, compare) if p is not None]
        self.has_attention, self.has_compare = attention is not None, compare is not None
        self.atomic = not (is_url(str(output)) or Path(output).suffix.lower() == ".m3u8" or encode.segment)
        for path in self.paths if self.atomic else []:
            _check_output(path, overwrite)
            _remove(partial_path(path))  # the remains of an earlier crash
        self.resized = 0

    def open(self, stack: ExitStack, info: VideoInfo, segment_clock: bool) -> None:
        def target(path: Path) -> str | Path:
            return partial_path(path) if self.atomic else path

        self.info = info
        main = self.output if is_url(str(self.output)) else target(self.paths[0])
        sink = partial(open_sink, encode=self.encode, segment_clock=segment_clock)
        self.sink = stack.enter_context(sink(main, info))
        side = replace(info, audio_from=None)
        extra = iter(self.paths[1:])
        self.att_sink = self.cmp_sink = None
        if self.has_attention:
            self.att_sink = stack.enter_context(sink(target(next(extra)), side))
        if self.has_compare:
            self.cmp_sink = stack.enter_context(sink(target(next(extra)), replace(side, width=2 * info.width)))

    def write(self, result: BatchResult, name: str) -> None:
        info = self.info
        if result.images.shape[1:3] != (info.height, info.width) and not self.resized:
            log.warning("%s: frame size changed mid-stream at frame %d (%dx%d); scaling to %dx%d",
                        name, result.batch.frames[0].index, result.images.shape[2],
                        result.images.shape[1], info.width, info.height)
        for i, frame in enumerate(result.batch.frames):
            if frame.image.shape[:2] != (info.height, info.width):
                self.resized += 1
            clean = _fit(result.images[i], info)
            self.sink.write(frame.with_image(clean))
            if self.att_sink is not None:
                self.att_sink.write(frame.with_image(_fit(_heatmap(result.attention[i]), info)))
            if self.cmp_sink is not None:
                self.cmp_sink.write(frame.with_image(np.hstack([_fit(frame.image, info), clean])))

    def publish(self) -> None:
        for path in self.paths if self.atomic else []:
            _publish(path)

    def discard(self) -> None:
        for path in self.paths if self.atomic else []:
            _remove(partial_path(path))


def _fit(image: np.ndarray, info: VideoInfo) -> np.ndarray:
    """The policy for frames whose size changed mid-stream (live cameras do this): scale
    them to the output's size, fixed by the first frame, so the file stays one stream."""
    if image.shape[:2] == (info.height, info.width):
        return image
    return cv2.resize(image, (info.width, info.height), interpolation=cv2.INTER_AREA)
