"""The streaming pipeline: source -> batches -> executor -> temporal stage -> sink(s), on
threads that overlap.

Three threads run at once so the slowest sets the pace: a reader thread decodes and
batches, a model thread pushes batches through the executor, a writer thread encodes;
the calling thread only waits, in short steps, so that a drain is timed. Bounded queues
between them keep memory flat whatever the input length, and the writer checks that
batches arrive in source order. The pipeline owns every thread; nothing below it starts
one.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import RunConfig
from .data import resolve_input
from .errors import StreamDenoiseError, WorkerError
from .executors import BatchModel, Executor
from .executors.factory import open_executor
from .frame import Batch, BatchResult, Frame, batches
from .io.inputs import open_input
from .io.urls import is_device, is_url, redact
from .livefeed import LiveFeed
from .outputs import Outputs
from .temporal import TemporalFilter

log = logging.getLogger(__name__)

DRAIN_DEADLINE = 30.0
"""Seconds from a drain request (the CLI's first SIGINT or SIGTERM) to every output closed
and published. A service manager's stop timeout must be longer (systemd: TimeoutStopSec,
docs/stream-denoise@.service)."""
_CUT_OFF = DRAIN_DEADLINE - 10.0  # then stop waiting for model and source; 10 s to close


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


class _Stop(Exception):
    """Raised inside a pipeline thread when another one has failed."""


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


class _Thread(threading.Thread):
    """A thread that records its failure and stops the run instead of dying silently.
    Daemon: one a drain leaves behind, blocked in a read or a model call, never holds up
    the process's exit."""

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
        except BaseException as e:  # re-raised by the pipeline's thread
            self.error = e
            self._stop_event.set()


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

    def draining() -> bool:
        return drain is not None and drain.is_set()

    spec = resolve_input(input)
    name = redact(str(spec))
    live = is_url(str(spec)) or is_device(spec)
    outputs = Outputs(output, attention_path, compare_path, config.encode, overwrite)
    stop = threading.Event()  # set when any thread fails: every other one gives up
    written = 0
    try:
        with ExitStack() as stack:
            # The input first: a wrong path should be reported before a model is loaded.
            source = open_input(spec, config.source, threads=config.pipeline.decode_threads,
                                cancelled=lambda: stop.is_set() or draining())
            reader: list[_Thread] = []

            def close_source() -> None:
                # The reading thread closes the source as it ends, on its own thread: closing
                # it under a read frees what FFmpeg reads. One a drain left behind (below)
                # closes it when its read returns.
                if not any(thread.is_alive() for thread in reader):
                    source.close()

            stack.callback(close_source)
            if executor is None:
                executor = stack.enter_context(open_executor(config, model))
            outputs.open(stack, source.info, segment_clock=live)
            bar = stack.enter_context(tqdm(
                total=source.info.frames, unit="frame", disable=not progress,
                dynamic_ncols=True, desc=Path(name).name[:30]))
            # Live: the model takes its next batch straight from the feed when it is ready
            # for it (no queue in between), so it always gets the freshest frames; with the
            # "oldest" policy the feed holds just one batch. One batch waits for the encoder.
            depth = 1 if live else config.pipeline.queue_size
            to_model, to_writer = _Channel(depth, stop), _Channel(depth, stop)
            size = config.pipeline.batch_size
            policy = config.pipeline.drop_policy
            feed = LiveFeed(size if policy == "oldest" else size * config.pipeline.queue_size,
                            policy, stop.is_set, draining) if live else None

            def frames() -> Iterator[Frame]:
                for frame in source:
                    if draining():
                        return
                    yield frame

            def read() -> None:
                try:
                    if feed is not None:
                        feed.fill(frames())
                        return
                    for batch in batches(frames(), size):
                        to_model.put(batch)
                    to_model.close()
                finally:
                    source.close()

            def model() -> None:
                for result in executor.map(model_input, attention=outputs.has_attention):
                    to_writer.put(result)
                to_writer.close()

            # The temporal stage keeps this stream's history where its results arrive in
            # order, whichever worker ran them. A file's first frames wait for its window to
            # fill (look-ahead); a live feed's pass at once.
            temporal = TemporalFilter(config.temporal, wait=not live) if config.temporal.mode != "off" else None

            def put(results: list[BatchResult]) -> None:
                nonlocal written
                for done in results:
                    outputs.write(done, name)
                    written += len(done.batch.frames)
                    bar.update(len(done.batch.frames))

            def write() -> None:
                for expected, result in enumerate(to_writer):
                    if result.batch.seq != expected:
                        raise RuntimeError(f"batch {result.batch.seq} arrived, expected {expected}")
                    put([result] if temporal is None else temporal.apply(result))
                if temporal is not None:
                    put(temporal.finish())

            model_input: Iterable[Batch] = to_model if feed is None else feed.batches(
                size, config.pipeline.batch_timeout)
            reader.append(_Thread("sd-reader" if feed is None else "sd-decoder", read, stop))
            threads = [_Thread("sd-writer", write, stop), _Thread("sd-model", model, stop), *reader]
            started = time.perf_counter()
            _run_threads(threads, stop, draining, name)
    except BaseException:
        if written == 0:  # nothing worth keeping: leave no .partial behind
            outputs.discard()
        raise
    if written == 0 and draining():
        outputs.discard()  # stopped before a frame got through: no empty file either
    else:
        outputs.publish()
    return RunSummary(
        str(spec), str(output), written, time.perf_counter() - started, source.corrupt_frames,
        stopped=draining(), resized_frames=outputs.resized,
        dropped_frames=feed.dropped if feed is not None else 0)


def _run_threads(threads: list[_Thread], stop: threading.Event, draining, name: str) -> None:
    """Start the threads, wait for the writer (the first) to finish, re-raise the first failure.

    The wait is in short steps, so that a drain is timed: after ``_CUT_OFF`` seconds of it,
    ``stop`` makes every thread give up and the run ends with the frames written so far.
    Once draining, a thread still blocked when the writer is done (a read from a silent
    camera, a backoff, a model call) is left to finish on its own.
    """
    for thread in threads:
        thread.start()
    writer, cut_at = threads[0], None
    try:
        while writer.is_alive():
            writer.join(0.1)
            if cut_at is None and draining():
                cut_at = time.monotonic() + _CUT_OFF
            if cut_at is not None and time.monotonic() > cut_at and not stop.is_set():
                log.warning("%s: still draining after %.0f s; closing the output with the "
                            "frames written so far", name, _CUT_OFF)
                stop.set()
    except BaseException:  # KeyboardInterrupt, in a caller's main thread
        stop.set()
        writer.join()  # the sinks are the writer's until it returns
        raise
    for thread in threads[1:]:
        thread.join(1.0 if draining() else None)
    for thread in threads:
        if isinstance(thread.error, WorkerError):
            raise WorkerError(f"{name}: {thread.error}") from None
        if thread.error is not None:
            raise thread.error
    if stop.is_set() and cut_at is None:
        raise StreamDenoiseError("pipeline stopped before the end of the input")
