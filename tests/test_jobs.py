"""Planning many inputs: folders, globs and camera lists become (input, output) jobs."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream_denoise.errors import InputError, UsageError
from stream_denoise.jobs import plan


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_folder_keeps_relative_names_and_ignores_partials(tmp_path):
    rec = tmp_path / "rec"
    _touch(rec / "b.mp4", rec / "a" / "c.MKV", rec / "notes.txt", rec / "x.partial.mp4")
    jobs = plan(rec, tmp_path / "out")
    assert [(j.name, Path(j.input).name, j.output) for j in jobs] == [
        ("a/c.MKV", "c.MKV", tmp_path / "out" / "a" / "c.MKV"),
        ("b.mp4", "b.mp4", tmp_path / "out" / "b.mp4"),
    ]


def test_glob_and_single_inputs(tmp_path):
    _touch(tmp_path / "d1" / "x.mp4", tmp_path / "d2" / "y.mp4", tmp_path / "d2" / "z.mov")
    jobs = plan(f"{tmp_path}/d*/*.mp4", tmp_path / "out")
    assert [j.name for j in jobs] == ["d1/x.mp4", "d2/y.mp4"]
    assert plan(tmp_path / "d1" / "x.mp4", "o.mp4") is None
    assert plan("sample", "o.mp4") is None
    assert plan("rtsp://user:pw@127.0.0.1/cam", "o.mp4") is None
    _touch(tmp_path / "frames" / "0001.png")
    assert plan(tmp_path / "frames", "out") is None  # an image sequence is one input
    with pytest.raises(InputError, match="no video files match"):
        plan(f"{tmp_path}/nothing/*.mp4", "out")
    with pytest.raises(UsageError, match=r"needs an output folder \(output.path\)"):
        plan(tmp_path / "d2", None)
    with pytest.raises(UsageError, match="output.path must be a folder"):
        plan(tmp_path / "d2", tmp_path / "one.mp4")


def test_camera_list(tmp_path):
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras:\n"
                    "  - {name: gate, url: 'rtsp://u:p@127.0.0.1:8554/gate', output: gate.mp4}\n"
                    "  - {name: yard, url: 'rtsp://127.0.0.1:8554/yard', output: yard/out.mkv}\n"
                    "  - {name: road, url: 'rtsp://127.0.0.1:8554/road', "
                    "output: 'rtmp://127.0.0.1/live/road'}\n")
    jobs = plan(cams, None)
    assert [(j.name, j.output) for j in jobs] == [
        ("gate", tmp_path / "gate.mp4"), ("yard", tmp_path / "yard" / "out.mkv"),
        ("road", "rtmp://127.0.0.1/live/road")]
    assert plan(cams, "/srv/out")[0].output == Path("/srv/out/gate.mp4")
    cams.write_text("cameras:\n  - {name: gate, url: 'rtsp://h/x', outptu: g.mp4}\n")
    with pytest.raises(UsageError, match=r"cams.yaml: cameras.0.output: Field required"):
        plan(cams, None)
    cams.write_text("cameras:\n  - {name: a, url: u, output: a.mp4}\n  - {name: a, url: v, output: b.mp4}\n")
    with pytest.raises(UsageError, match="names must be unique"):
        plan(cams, None)


@pytest.mark.parametrize("n", [2, 4])
def test_jobs_runs_that_many_inputs_at_once(n, tmp_path, monkeypatch, capsys):
    """``--jobs N``: the runs of a folder's inputs meet N at a time (a barrier of N
    parties, which fewer runs at once would break), never more; each input once."""
    import threading
    from contextlib import nullcontext

    from stream_denoise import jobs
    from stream_denoise.cli import main
    from stream_denoise.pipeline import RunSummary

    _touch(*(tmp_path / "rec" / f"{i}.mp4" for i in range(4)))
    together, lock = threading.Barrier(n, timeout=20), threading.Lock()
    active, most, seen = [0], [0], []

    def run(input, output, config, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            seen.append(Path(input).name)
        together.wait()
        with lock:
            active[0] -= 1
        return RunSummary(input, str(output), 1, 1.0)

    monkeypatch.setattr(jobs, "run", run)
    monkeypatch.setattr(jobs, "open_executor", lambda config: nullcontext())  # no model needed
    assert main(["run", str(tmp_path / "rec"), "-o", str(tmp_path / "out"), "--jobs", str(n)]) == 0
    assert most[0] == n and sorted(seen) == [f"{i}.mp4" for i in range(4)]
    rows = capsys.readouterr().err.splitlines()[1:5]
    assert [row.split()[-1] for row in rows] == ["ok"] * 4, rows
