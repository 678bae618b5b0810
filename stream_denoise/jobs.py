"""Many inputs in one run: a folder or glob of recordings, or a YAML list of cameras.

Each input is an ordinary :func:`pipeline.run`; the runs go side by side on threads and
share one executor (one model, or one Ray actor pool), so a folder of short clips keeps
the workers as busy as one long file. One bad file is reported and the rest go on.
"""
from __future__ import annotations

import glob
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from .config import RunConfig
from .errors import InputError, StreamDenoiseError, UsageError
from .executors.factory import open_executor
from .io.sources import VIDEO_SUFFIXES
from .io.urls import is_url, redact
from .pipeline import RunSummary, run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str  # how the summary names it: the relative path, or the camera's name
    input: str
    output: Path | str  # a str only for a stream URL


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # "ok", "skipped (output exists)" or "failed: <reason>"
    summary: RunSummary | None = None

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


class Camera(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    output: str = Field(min_length=1, description="file, relative to the output folder (or to the YAML's "
                                                  "folder), or a stream URL to push to")


class CameraList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[Camera] = Field(min_length=1)


def plan(input: str | Path, output: str | Path | None) -> list[Job] | None:
    """The jobs ``input`` stands for, or None when it is one input (file, URL, image
    folder, ``sample``) for :func:`pipeline.run`."""
    spec = str(input)
    if spec == "sample" or is_url(spec):
        return None
    if spec.endswith((".yaml", ".yml")):
        return _cameras(Path(spec), output)
    if any(c in spec for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if _is_video(Path(p)))
        if not files:
            raise InputError(f"no video files match {spec}")
        root = Path(os.path.commonpath([f.parent for f in files]))
    elif Path(spec).is_dir():
        root = Path(spec)
        files = sorted(p for p in root.rglob("*") if _is_video(p))
        if not files:
            return None  # a folder of images is one input: an image sequence
    else:
        return None
    if output is None:
        raise UsageError("a folder or glob of inputs needs an output folder (output.path)")
    out = Path(output)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        raise UsageError(f"{spec} holds {len(files)} videos: output.path must be a folder, not {out}")
    return [Job(str(f.relative_to(root)), str(f), out / f.relative_to(root)) for f in files]


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file() and ".partial." not in path.name


def _cameras(path: Path, output: str | Path | None) -> list[Job]:
    try:
        cams = CameraList.model_validate(yaml.safe_load(path.read_text()))
    except OSError as e:
        raise UsageError(f"cannot read camera list {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"camera list {path} is not valid YAML: {e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{path}: {key}: {first['msg']}") from None
    names = [c.name for c in cams.cameras]
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: camera names must be unique")
    base = Path(output) if output is not None else path.parent
    return [Job(c.name, c.url, c.output if is_url(c.output) else base / c.output)
            for c in cams.cameras]


def run_jobs(
    jobs: list[Job], config: RunConfig, *, overwrite: bool = False, progress: bool = True,
    drain: threading.Event | None = None,
) -> list[JobResult]:
    """Run every job, ``config.pipeline.jobs`` at a time, on one shared executor.

    Jobs whose output exists are skipped unless ``overwrite`` (outputs are published only
    when complete, so an existing one is a finished one). Live cameras all run at once.
    ``drain`` stops every run as :func:`pipeline.run` describes; jobs not started yet
    are not started.
    """
    results: dict[Job, JobResult] = {}
    todo = []
    for job in jobs:
        if isinstance(job.output, Path) and job.output.exists() and not overwrite:
            results[job] = JobResult(job, "skipped (output exists)")
        else:
            todo.append(job)
    if todo:
        width = _concurrency(config, todo)
        with open_executor(config) as executor, ThreadPoolExecutor(width) as pool, tqdm(
                total=len(todo), unit="file", disable=not progress, dynamic_ncols=True) as bar:
            futures = {pool.submit(_run_one, job, config, executor, overwrite, drain): job for job in todo}
            for future in as_completed(futures):
                result = future.result()
                results[result.job] = result
                bar.update(1)
                if progress:
                    bar.write(f"{result.status}: {result.job.name}")
    return [results[job] for job in jobs]


def _concurrency(config: RunConfig, jobs: list[Job]) -> int:
    if any(is_url(j.input) for j in jobs):
        return len(jobs)  # a live stream cannot wait for another to end
    if config.pipeline.jobs:
        return config.pipeline.jobs
    return config.executor.workers if config.executor.kind == "ray" else 2


def _run_one(job: Job, config: RunConfig, executor, overwrite: bool,
             drain: threading.Event | None) -> JobResult:
    if drain is not None and drain.is_set():
        return JobResult(job, "not started (stopped)")
    try:
        if isinstance(job.output, Path):
            job.output.parent.mkdir(parents=True, exist_ok=True)
        summary = run(job.input, job.output, config, executor=executor, overwrite=overwrite,
                      progress=False, drain=drain)
    except StreamDenoiseError as e:
        return JobResult(job, f"failed: {e}")
    except Exception as e:
        log.debug("job %s failed", job.name, exc_info=True)
        return JobResult(job, f"failed: {type(e).__name__}: {e}")
    return JobResult(job, "stopped early" if summary.stopped else "ok", summary)


def format_results(results: list[JobResult]) -> str:
    """The end-of-run table: input, frames, fps, status."""
    rows = [("input", "frames", "fps", "status")]
    for r in results:
        s = r.summary
        rows.append((redact(r.job.name), str(s.frames) if s else "-",
                     f"{s.fps:.1f}" if s else "-", r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows)
