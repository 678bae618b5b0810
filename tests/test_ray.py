"""The Ray executor and Ray Train on one local Ray instance shared by this module."""
from __future__ import annotations

import json
import threading

import av
import numpy as np
import pytest
import ray  # a dev dependency (ray[train]): missing, this module fails rather than skips
import torch

from stream_denoise.cli import main
from stream_denoise.config import ExecutorConfig, load_config
from stream_denoise.errors import WorkerError
from stream_denoise.executors.ray_pool import RayExecutor
from stream_denoise.frame import Frame
from stream_denoise.pipeline import batches, open_executor, run

from . import conftest


def _times(path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from ray import cloudpickle  # Ray pickles with its vendored copy, not the standalone package

    cloudpickle.register_pickle_by_value(conftest)  # the stand-in models travel by value
    # 4 logical CPUs: Ray Train needs 2 workers plus its own controller. One GPU declared
    # (there is none): GPU actors get scheduled, and their models run on the CPU.
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _decode(path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


class Slow(conftest.Invert):
    """Invert, slowly enough that an actor can be killed while batches are in flight."""

    def process(self, frames, *, attention=False):
        import time

        time.sleep(0.05)
        return super().process(frames, attention=attention)


class FailsOn:
    """Raises on any batch holding a frame whose first pixel equals ``value``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def process(self, frames, *, attention=False):
        if (frames[:, 0, 0, 0] == self.value).any():
            raise RuntimeError("model blew up")
        return conftest.Invert().process(frames, attention=attention)


def _numbered(n: int, size: int = 4):
    """Frames whose pixels carry their index, so order and identity can be checked."""
    frames = [Frame(i, np.full((8, 8, 3), i, np.uint8), pts=i) for i in range(n)]
    return list(batches(frames, size))


def test_ray_matches_local_on_real_footage(short_clip, tmp_path):
    config = load_config(overrides={"executor.kind": "ray", "executor.workers": 2})
    with open_executor(config) as pool:
        assert len(pool.actors) == 2
        ray_run = run(short_clip, tmp_path / "ray.mp4", config, executor=pool, progress=False)
    local_run = run(short_clip, tmp_path / "local.mp4", load_config(), progress=False)
    assert ray_run.frames == local_run.frames == 23
    ray_pts, ray_img = _decode(tmp_path / "ray.mp4")
    local_pts, local_img = _decode(tmp_path / "local.mp4")
    assert ray_pts == local_pts == sorted(local_pts)
    assert all(np.array_equal(a, b) for a, b in zip(ray_img, local_img, strict=True))


def test_killed_actor_loses_and_repeats_nothing(caplog):
    """The batches the dead actor took are run again, heat maps included, and the
    replacement is said."""
    config = ExecutorConfig(workers=2, in_flight=2)
    with RayExecutor(Slow, config) as pool:
        out, att = [], []
        for result in pool.map(_numbered(60), attention=True):
            out.extend(int(img[0, 0, 0]) for img in result.images)
            att.extend(int(a[0, 0]) for a in result.attention)
            if len(out) == 8:
                ray.kill(pool.actors[0])
        assert pool.restarts == 1
    assert out == [255 - i for i in range(60)]
    assert att == list(range(60))  # Invert's heat map: the input's mean
    assert "a Ray worker died; replaced it (1 of 3 restarts used)" in caplog.text


class Overlaps:
    """Writes into each output how many calls were running in its actor when it started."""

    running = 0
    lock = threading.Lock()

    def process(self, frames, *, attention=False):
        import time

        from stream_denoise.denoiser import DenoiseResult

        with Overlaps.lock:
            Overlaps.running += 1
            seen = Overlaps.running
        time.sleep(0.3)
        with Overlaps.lock:
            Overlaps.running -= 1
        return DenoiseResult(np.full_like(frames, seen))


@pytest.mark.parametrize(("gpus", "overlap"), [(0.5, 2), (0.0, 1)])
def test_gpu_actors_serve_their_batches_in_flight_at_once(gpus, overlap):
    """A GPU actor (--gpus-per-worker, fractions sharing one GPU) runs its in-flight batches
    on as many threads, so one batch's copies overlap another's compute; a CPU actor runs
    one at a time. Order holds either way."""
    config = ExecutorConfig(workers=1, in_flight=2, gpus_per_worker=gpus, cpus_per_worker=1)
    with RayExecutor(Overlaps, config) as pool:
        results = list(pool.map(_numbered(16)))
    assert [f.index for r in results for f in r.batch.frames] == list(range(16))
    assert max(int(r.images.max()) for r in results) == overlap


def test_a_local_ray_is_started_and_stopped_when_no_address_is_given():
    """Without --ray-address the pool starts its own Ray and stops it when it closes (here in
    a fresh process: this module's Ray is already running)."""
    code = ("import ray\n"
            "from ray import cloudpickle\n"
            "from stream_denoise.config import ExecutorConfig\n"
            "from stream_denoise.executors.ray_pool import RayExecutor\n"
            "from tests import conftest\n"
            "from tests.conftest import PassThrough\n"
            "cloudpickle.register_pickle_by_value(conftest)\n"
            "assert not ray.is_initialized()\n"
            "with RayExecutor(PassThrough, ExecutorConfig(workers=1)) as pool:\n"
            "    assert ray.is_initialized() and len(pool.actors) == 1\n"
            "assert not ray.is_initialized()\n"
            "print('ok')\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_batch_that_keeps_failing_names_its_frames(caplog):
    config = ExecutorConfig(workers=2, batch_retries=1)
    with RayExecutor(lambda: FailsOn(9), config) as pool:
        with pytest.raises(WorkerError, match=r"frames 8-11 failed 2 times on Ray workers: "
                                              r"RuntimeError: model blew up"):
            list(pool.map(_numbered(20)))
        said = [r.getMessage() for r in caplog.records if r.name == "stream_denoise.executors.ray_pool"]
        assert said == ["batch of frames 8-11 failed (RuntimeError: model blew up); retrying"]
        # The pool survives a failed run: the next one goes through.
        assert len(list(pool.map(_numbered(4)))) == 1


class Dies:
    """Takes its actor's process down with it, on every batch."""

    def process(self, frames, *, attention=False):
        import os

        os._exit(1)


class Fails:
    """Raises on every batch."""

    def process(self, frames, *, attention=False):
        raise RuntimeError("model blew up")


def test_the_pool_replaces_dead_workers_three_times_then_gives_up(caplog):
    config = ExecutorConfig(workers=1, batch_retries=10)
    assert config.max_restarts == 3  # the default (docs/architecture.md, "Executors")
    with RayExecutor(Dies, config) as pool:
        with pytest.raises(WorkerError, match="every Ray worker has died and the restart budget is spent"):
            list(pool.map(_numbered(4)))
        assert pool.restarts == 3 and pool.actors == []  # the first worker and 3 replacements
    said = [r.getMessage() for r in caplog.records if r.name == "stream_denoise.executors.ray_pool"]
    assert [m for m in said if "Ray worker died" in m] == [
        *(f"a Ray worker died; replaced it ({n} of 3 restarts used)" for n in (1, 2, 3)),
        "a Ray worker died and the restart budget is spent"]


class DiesTwiceThenFails:
    """On frame 8's batch: takes its actor down twice (counted in a file, across actors),
    then raises."""

    def __init__(self, counter) -> None:
        self.counter = counter

    def process(self, frames, *, attention=False):
        import os

        if (frames[:, 0, 0, 0] == 8).any():
            seen = len(self.counter.read_text()) if self.counter.exists() else 0
            self.counter.write_text("x" * (seen + 1))
            if seen < 2:
                os._exit(1)
            raise RuntimeError("model blew up")
        return conftest.Invert().process(frames, attention=attention)


def test_a_batch_that_fails_in_different_ways_is_reported_by_its_last_cause(tmp_path):
    """Two dead workers and then a model error: the run ends naming the last."""
    counter = tmp_path / "calls"
    config = ExecutorConfig(workers=1, in_flight=1, batch_retries=2)
    with RayExecutor(lambda: DiesTwiceThenFails(counter), config) as pool:
        with pytest.raises(WorkerError) as err:
            list(pool.map(_numbered(12)))
        assert pool.restarts == 2
    assert str(err.value) == "frames 8-11 failed 3 times on Ray workers: RuntimeError: model blew up"


class Pid:
    """Writes its process id into the first pixel (three bytes), slowly."""

    def process(self, frames, *, attention=False):
        import os
        import time

        from stream_denoise.denoiser import DenoiseResult

        time.sleep(0.02)
        out = frames.copy()
        pid = os.getpid()
        out[:, 0, 0] = [(pid >> 16) & 255, (pid >> 8) & 255, pid & 255]
        return DenoiseResult(out)


def test_batches_are_spread_over_the_workers():
    """Each batch goes to the least busy actor: with two, neither idles."""
    with RayExecutor(Pid, ExecutorConfig(workers=2, in_flight=2)) as pool:
        served = [tuple(r.images[0, 0, 0]) for r in pool.map(_numbered(80, 2))]
    counts = sorted(served.count(pid) for pid in set(served))
    assert len(counts) == 2 and counts[0] >= 10, counts  # of 40 batches


def test_a_batch_that_keeps_failing_ends_the_run_naming_the_input(short_clip, tmp_path):
    """3 attempts by default (batch_retries 2), then one error naming the input and the
    batch's frames; nothing is published."""
    out = tmp_path / "o.mkv"
    with RayExecutor(Fails, ExecutorConfig(workers=1, in_flight=1)) as pool:
        with pytest.raises(WorkerError) as err:
            run(short_clip, out, load_config(), executor=pool, progress=False)
    assert str(err.value) == (f"{short_clip}: frames 0-3 failed 3 times on Ray workers: "
                              "RuntimeError: model blew up")
    assert not out.exists()


def test_concurrent_maps_share_the_pool_and_stay_ordered():
    with RayExecutor(conftest.Invert, ExecutorConfig(workers=2)) as pool:
        outs: dict[int, list[int]] = {}

        def consume(k: int) -> None:
            results = list(pool.map(_numbered(40, 3)))
            assert all(r.attention is None for r in results)  # no heat maps unless asked for
            outs[k] = [int(i[0, 0, 0]) for r in results for i in r.images]

        threads = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outs == {k: [255 - i for i in range(40)] for k in range(3)}


def test_folder_with_a_corrupt_file(short_clip, tmp_path, capsys):
    folder = tmp_path / "recordings"
    (folder / "day2").mkdir(parents=True)
    data = short_clip.read_bytes()
    (folder / "a.mp4").write_bytes(data)
    (folder / "day2" / "b.mp4").write_bytes(data)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "cleaned"
    code = main(["run", str(folder), "-o", str(out), "--executor", "ray", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4")) == ["a.mp4", "day2/b.mp4"]
    assert _times(out / "day2" / "b.mp4") == pytest.approx(_times(short_clip), abs=1e-3)
    lines = err.splitlines()
    assert [ln.split()[0] for ln in lines[1:4]] == ["a.mp4", "broken.mp4", "day2/b.mp4"]
    assert "failed: " in lines[2] and "broken.mp4" in lines[2]
    assert lines[1].rstrip().endswith("ok") and lines[3].rstrip().endswith("ok")
    assert "1 of 3 inputs failed" in err

    def table() -> dict[str, str]:  # the summary's rows: input -> status
        rows = capsys.readouterr().err.splitlines()[1:4]
        return {row.split()[0]: row.split(maxsplit=3)[3] for row in rows}

    done = {name: (out / name).stat().st_mtime_ns for name in ("a.mp4", "day2/b.mp4")}
    # Run again: complete outputs are skipped (not even opened), the broken file fails again.
    assert main(["run", str(folder), "-o", str(out)]) == 1
    status = table()
    assert status["a.mp4"] == status["day2/b.mp4"] == "skipped (output exists)", status
    assert status["broken.mp4"].startswith("failed: ")
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done
    # --overwrite does them again.
    assert main(["run", str(folder), "-o", str(out), "--overwrite"]) == 1
    status = table()
    assert status["a.mp4"] == status["day2/b.mp4"] == "ok", status
    assert all((out / name).stat().st_mtime_ns > mtime for name, mtime in done.items())
    assert _times(out / "a.mp4") == pytest.approx(_times(short_clip), abs=1e-3)


def test_ray_train_two_workers_match_one_process(tmp_path):
    """Data-parallel on 2 Ray Train workers: each takes half the batch and gradients are
    averaged, so 3 steps give the weights one process gets with the whole batch."""
    from stream_denoise.train.distributed import fit_on_ray
    from stream_denoise.train.trainer import Trainer

    from .test_train import tiny_config

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut.png", "chelsea.png"):
        (photos / name).write_bytes(conftest.package_data("skimage", "data", name).read_bytes())
    config = tiny_config(photos, steps=3, val_every=3, **{"loss.adversarial_from_step": 1})
    result = fit_on_ray(config, tmp_path / "ray", workers=2)
    assert result["step"] == 3
    single = Trainer(config, tmp_path / "one")
    single.fit()
    distributed = torch.load(tmp_path / "ray" / "last.pt", weights_only=True)
    for name, w in single.generator.state_dict().items():
        torch.testing.assert_close(distributed["generator"][name], w, rtol=1e-4, atol=1e-5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "ray" / "log.jsonl").open()]
    assert steps == sorted(set(steps))  # one writer: rank 0


def test_ray_train_fits_a_time_budget_on_every_rank(tmp_path):
    """A time budget on 2 Ray Train workers: rank 0's clock sets the step count for both
    (if the ranks decided apart, one would wait forever in a collective)."""
    from stream_denoise.train.distributed import fit_on_ray

    from .test_train import tiny_config

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "chelsea.png").write_bytes(conftest.package_data("skimage", "data", "chelsea.png").read_bytes())
    config = tiny_config(photos, steps=100_000, log_every=10, **{"loss.adversarial": 0.0})
    result = fit_on_ray(config, tmp_path / "ray", workers=2, budget_minutes=0.4)
    assert 50 < result["total_steps"] < 100_000
    assert result["step"] >= 0.9 * result["total_steps"]
    rows = [json.loads(line) for line in (tmp_path / "ray" / "log.jsonl").open()]
    assert sum("budget_total_steps" in r for r in rows) >= 1
