"""The streaming pipeline: source -> batches -> executor -> sink(s), stages overlapped.

Three stages run at once so the slowest sets the pace: a reader thread decodes and
batches, the calling thread pushes batches through the executor, a writer thread
encodes. Bounded queues between them keep memory flat whatever the input length, and
the writer checks that batches arrive in source order. The pipeline owns every thread;
nothing below it starts one.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from .config import RunConfig
from .data import resolve_input
from .errors import OutputError, StreamDenoiseError, WorkerError
from .executors import BatchModel, Executor, ModelFactory
from .frame import Batch, BatchResult, Frame, VideoInfo
from .io.sinks import VIDEO_SUFFIXES, open_sink
from .io.live import Backoff
from .livefeed import LiveFeed
from .io.sources import Source, is_device, is_url, open_source, redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    input: str
    output: str
    frames: int
    seconds: float
    corrupt_frames: int = 0
    stopped: bool = False  # ended early by a stop request; the output holds what was read
    resized_frames: int = 0  # frames scaled to the output size after a mid-stream size change
    dropped_frames: int = 0  # live frames dropped by the drop policy (the model fell behind)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        extra = f", {self.corrupt_frames} corrupt frames skipped" if self.corrupt_frames else ""
        extra += f", {self.resized_frames} frames scaled after a size change" if self.resized_frames else ""
        extra += f", {self.dropped_frames} live frames dropped" if self.dropped_frames else ""
        extra += ", stopped early" if self.stopped else ""
        return (f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps){extra}: "
                f"{redact(self.input)} -> {redact(self.output)}")


def batches(frames: Iterable[Frame], size: int) -> Iterator[Batch]:
    """Group frames into batches of ``size``; a change of frame size closes a batch early
    (a batch is one array, so all its frames share a shape)."""
    pending: list[Frame] = []
    seq = 0
    for frame in frames:
        if pending and (len(pending) == size or frame.image.shape != pending[0].image.shape):
            yield Batch.of(seq, pending)
            seq, pending = seq + 1, []
        pending.append(frame)
    if pending:
        yield Batch.of(seq, pending)


class _Stop(Exception):
    """Raised inside a stage when another stage has failed."""


class _Channel:
    """A bounded queue whose ends give up when the run is stopping."""

    _END = object()

    def __init__(self, size: int, stop: threading.Event) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self._stop = stop

    def put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def close(self) -> None:
        self.put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is self._END:
                return
            yield item
        raise _Stop


class _Stage(threading.Thread):
    """A thread that records its failure and stops the run instead of dying silently."""

    def __init__(self, name: str, target, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - re-raised by the pipeline's thread
            self.error = e
            self._stop_event.set()


def _heatmap(attention: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(attention, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite and not (path.is_dir() and not any(path.iterdir())):
        raise OutputError(f"output {path} already exists (use --overwrite to replace it)")
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


def _open_input(spec: str | Path, config: RunConfig, cancelled) -> Source:
    """Files as they are; URLs and cameras with timeouts, transport and reconnects."""
    threads = config.pipeline.decode_threads
    if not (is_url(spec) or is_device(spec)):
        return open_source(spec, threads=threads)
    s = config.source
    options: dict[str, str] = {}
    if str(spec).lower().startswith("rtsp"):
        options["rtsp_transport"] = s.rtsp_transport
    if is_device(spec):
        if s.device_size:
            options["video_size"] = s.device_size
        if s.device_fps:
            options["framerate"] = f"{s.device_fps:g}"
    backoff = Backoff(s.backoff_initial, s.backoff_max, s.reconnect_attempts) if s.reconnect else None
    return open_source(spec, threads=threads, timeout=(s.open_timeout, s.read_timeout),
                       options=options, reconnect=backoff, cancelled=cancelled)


def open_executor(config: RunConfig, model: BatchModel | None = None) -> Executor:
    """The executor ``config.executor`` names, running ``model`` or the configured Denoiser.

    Ray is imported only here, and only when asked for.
    """
    factory: ModelFactory
    if model is not None:
        factory = partial(_same, model)
    else:
        from .denoiser import Denoiser  # torch import deferred until a model is needed

        factory = partial(Denoiser.from_config, config.model, config.filters)
    if config.executor.kind == "ray":
        try:
            from .executors.ray_pool import RayExecutor
        except ImportError:
            raise StreamDenoiseError(
                "--executor ray needs Ray: pip install 'stream-denoise[ray]'") from None
        return RayExecutor(factory, config.executor)
    from .executors.local import LocalExecutor

    return LocalExecutor(factory)


def _same(model: BatchModel) -> BatchModel:
    return model


def run(
    input: str | Path,
    output: str | Path,
    config: RunConfig | None = None,
    *,
    model: BatchModel | None = None,
    executor: Executor | None = None,
    attention_path: str | Path | None = None,
    compare_path: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    drain: threading.Event | None = None,
) -> RunSummary:
    """Denoise ``input`` (file, image folder, URL or ``"sample"``) into ``output``.

    ``model`` defaults to the Denoiser that ``config.model`` names; pass any object with
    the same ``process`` method to run other models (tests use a pass-through).
    ``executor`` runs the batches on a pool the caller owns (several runs may share it);
    by default the run opens the one ``config.executor`` names and closes it at the end.
    Setting ``drain`` (from a signal handler, say) stops reading; the frames already read
    are processed and written and the output is finished and published as usual.
    ``attention_path`` writes the final attention map as a heat-map video and
    ``compare_path`` a side-by-side input|output video.
    """
    config = config or RunConfig()
    source_spec = resolve_input(input)
    outputs = [Path(p) for p in (output, attention_path, compare_path) if p is not None]
    # Files are staged and published when complete; streams, playlists and segmented
    # recordings are written in place (their pieces are complete as they close).
    staged = not (is_url(str(output)) or Path(output).suffix.lower() == ".m3u8"
                  or config.encode.segment)
    for path in outputs if staged else []:
        _check_output(path, overwrite)
        _remove(partial_path(path))  # the remains of an earlier crash
    target = partial_path if staged else (lambda p: p)
    written = 0
    try:
        with ExitStack() as stack:
            # The input first: a wrong path should be reported before a model is loaded.
            stop = threading.Event()
            source = stack.enter_context(_open_input(
                source_spec, config, lambda: stop.is_set() or (drain is not None and drain.is_set())))
            info = source.info
            if executor is None:
                executor = stack.enter_context(open_executor(config, model))
            enc = {**config.encode.model_dump(),
                   "segment_clock": is_url(str(source_spec)) or is_device(source_spec)}
            first = output if is_url(str(output)) else target(outputs[0])
            sinks = [stack.enter_context(open_sink(first, info, **enc))]
            side = replace(info, audio_from=None)
            att_sink = cmp_sink = None
            if attention_path is not None:
                att_sink = stack.enter_context(open_sink(target(Path(attention_path)), side, **enc))
            if compare_path is not None:
                cmp_sink = stack.enter_context(open_sink(
                    target(Path(compare_path)), replace(side, width=2 * info.width), **enc))
            bar = stack.enter_context(tqdm(
                total=info.frames, unit="frame", disable=not progress, dynamic_ncols=True,
                desc=Path(str(redact(str(source_spec)))).name[:30]))

            to_model = _Channel(config.pipeline.queue_size, stop)
            to_writer = _Channel(config.pipeline.queue_size, stop)
            resized = 0

            def frames() -> Iterator[Frame]:
                for frame in source:
                    if drain is not None and drain.is_set():
                        return
                    yield frame

            live = is_url(str(source_spec)) or is_device(source_spec)
            feed = LiveFeed(config.pipeline.batch_size * config.pipeline.queue_size,
                            config.pipeline.drop_policy, stop.is_set) if live else None

            def read() -> None:
                if feed is None:
                    groups = batches(frames(), config.pipeline.batch_size)
                else:
                    groups = feed.batches(config.pipeline.batch_size, config.pipeline.batch_timeout)
                for batch in groups:
                    to_model.put(batch)
                to_model.close()

            def write() -> None:
                nonlocal written, resized
                expected = 0
                for result in to_writer:
                    if result.batch.seq != expected:
                        raise RuntimeError(f"batch {result.batch.seq} arrived, expected {expected}")
                    expected += 1
                    scaled = _write_result(result, info, sinks[0], att_sink, cmp_sink)
                    if scaled and not resized:
                        log.warning("%s: frame size changed mid-stream at frame %d (%dx%d); "
                                    "scaling to %dx%d", redact(str(source_spec)),
                                    result.batch.frames[0].index, result.images.shape[2],
                                    result.images.shape[1], info.width, info.height)
                    resized += scaled
                    written += len(result.batch.frames)
                    bar.update(len(result.batch.frames))

            stages = [_Stage("sd-reader", read, stop), _Stage("sd-writer", write, stop)]
            if feed is not None:
                stages.append(_Stage("sd-decoder", lambda: feed.fill(frames()), stop))
            started = time.perf_counter()
            for stage in stages:
                stage.start()
            try:
                for result in executor.map(to_model, attention=att_sink is not None):
                    to_writer.put(result)
                to_writer.close()
            except _Stop:
                pass
            except WorkerError as e:
                stop.set()
                raise WorkerError(f"{redact(str(source_spec))}: {e}") from None
            except BaseException:
                stop.set()
                raise
            finally:
                for stage in stages:
                    stage.join()
            for stage in stages:
                if stage.error is not None:
                    raise stage.error
            if stop.is_set():
                raise StreamDenoiseError("pipeline stopped before the end of the input")
    except BaseException:
        if staged and written == 0:  # nothing worth keeping: leave no .partial behind
            for path in outputs:
                _remove(partial_path(path))
        raise
    for path in outputs if staged else []:
        _publish(path)
    seconds = time.perf_counter() - started
    return RunSummary(str(source_spec), str(output), written, seconds, source.corrupt_frames,
                      stopped=drain is not None and drain.is_set(), resized_frames=resized,
                      dropped_frames=feed.dropped if feed is not None else 0)


def _fit(image: np.ndarray, info: VideoInfo) -> np.ndarray:
    """The policy for frames whose size changed mid-stream (live cameras do this): scale
    them to the output's size, fixed by the first frame, so the file stays one stream."""
    if image.shape[:2] == (info.height, info.width):
        return image
    return cv2.resize(image, (info.width, info.height), interpolation=cv2.INTER_AREA)


def _write_result(result: BatchResult, info: VideoInfo, sink, att_sink, cmp_sink) -> int:
    """Write one batch to every sink; returns how many of its frames had to be scaled."""
    first = result.batch.frames[0].image
    scaled = len(result.batch.frames) if first.shape[:2] != (info.height, info.width) else 0
    for i, frame in enumerate(result.batch.frames):
        clean = _fit(result.images[i], info)
        sink.write(frame.with_image(clean))
        if att_sink is not None:
            att_sink.write(frame.with_image(_fit(_heatmap(result.attention[i]), info)))
        if cmp_sink is not None:
            cmp_sink.write(frame.with_image(np.hstack([_fit(frame.image, info), clean])))
    return scaled
