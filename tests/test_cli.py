"""The command line: real runs, exit codes and one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from stream_denoise.cli import main
from stream_denoise.models import weights
from stream_denoise.models.generator import Generator, GeneratorConfig
from stream_denoise.models.weights import save_generator

TINY = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=4)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """Explicitly seeded random weights: plumbing only, not a denoiser."""
    torch.manual_seed(0)
    return save_generator(tmp_path_factory.mktemp("ckpt") / "random.safetensors", Generator(TINY))


def frames_and_pts(path: Path):
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def test_run_bikes_with_a_checkpoint(bikes, tmp_path, random_checkpoint, capsys):
    out = tmp_path / "clean.mp4"
    code = main(["run", str(bikes), "-o", str(out), "--model", str(random_checkpoint),
                 "--batch-size", "8", "--pre-sigma", "1.0", "--post-sigma", "0.5"])
    assert code == 0
    assert "250 frames" in capsys.readouterr().err
    in_pts, in_frames = frames_and_pts(bikes)
    out_pts, out_frames = frames_and_pts(out)
    assert out_pts == in_pts
    assert out_frames[0].shape == in_frames[0].shape == (272, 640, 3)
    # Random weights change the picture: the output is the model's, not a copy.
    assert np.abs(out_frames[50].astype(int) - in_frames[50]).mean() > 5


@pytest.mark.parametrize("argv,code,needle", [
    (["run", "missing.mp4", "-o", "x.mp4"], 1, "no such file or folder: missing.mp4"),
    (["run", "TEXT", "-o", "x.mp4"], 1, "cannot open notes.mp4 as video"),
    (["run", "EMPTYDIR", "-o", "x.mp4"], 1, "no images"),
    (["run", "tcp://admin:hunter2@127.0.0.1:9/cam", "-o", "x.mp4"], 1,
     "cannot open tcp://***@127.0.0.1:9/cam as video"),
    (["run", "/dev/video99", "-o", "x.mp4"], 1, "cannot open /dev/video99 as video"),
    (["run", "IN"], 2, "-o OUTPUT is required"),
    (["run", "IN", "-o", "x.mp4", "--batch-size", "0"], 2, "pipeline.batch_size"),
    (["run", "IN", "-o", "x.mp4", "--pre-ksize", "4"], 2, "filters.pre.ksize"),
    (["run", "IN", "-o", "x.mp4", "--model", "nope.safetensors"], 1, "nope.safetensors"),
    (["run", "IN", "-o", "x.mp4", "--device", "gpu7"], 2, "model.device"),
    (["run", "IN", "-o", "x.txt"], 1, "x.txt"),
])
def test_errors_are_one_line_with_the_right_exit_code(argv, code, needle, bikes, tmp_path,
                                                      random_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.mp4").write_text("shopping list\n" * 100)
    (tmp_path / "empty").mkdir()
    argv = [{"IN": str(bikes), "TEXT": "notes.mp4", "EMPTYDIR": "empty"}.get(a, a) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(random_checkpoint)]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err and "hunter2" not in err
    assert len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("x*.mp4"))  # no output, not even a partial one


def test_bad_config_file_names_the_key(tmp_path, bikes, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pipeline:\n  batch_sise: 4\n")
    assert main(["run", str(bikes), "-o", str(tmp_path / "o.mp4"), "--config", str(cfg)]) == 2
    assert "pipeline.batch_sise: unknown key" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "x.mp4", "-o", "y.mp4", "--no-such-flag"])
    assert e.value.code == 2


def test_missing_bundled_model_says_so(tmp_path, monkeypatch, bikes, capsys):
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path)
    assert main(["run", str(bikes), "-o", str(tmp_path / "o.mp4"), "--model", "paper"]) == 1
    err = capsys.readouterr().err
    assert "no bundled 'paper' model is installed" in err and "set --model to its checkpoint" in err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="missing.mp4"):
        main(["--debug", "run", "missing.mp4", "-o", "x.mp4"])


def test_entry_point_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "stream_denoise", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("stream-denoise ")


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, stream_denoise, stream_denoise.cli, stream_denoise.pipeline, "
            "stream_denoise.jobs; print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"  # neither Ray nor even torch until a model is needed


def _serve_once(path: Path):
    """An HTTP server on localhost that serves ``path`` to the first request and 404 to
    the rest: a stream that ends, and a camera that is gone when the run reconnects."""
    import http.server
    import threading

    data = path.read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if served:
                self.send_error(404)
                return
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_credentials_are_redacted_in_log_lines_and_the_summary(short_clip, tmp_path, random_checkpoint,
                                                               capfd, caplog):
    """A stream URL with a password that ends and cannot be reopened: the run writes what
    it got, and the password appears in no log line (debug included: the reconnect, the
    failed reopen, giving up), not in the summary line, and not in anything FFmpeg
    itself writes to stderr; ``***`` stands in for it."""
    import logging

    server = _serve_once(short_clip)
    url = f"http://admin:hunter2@127.0.0.1:{server.server_address[1]}/cam.mkv"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  reconnect_attempts: 1\n  backoff_initial: 0.1\n")
    caplog.set_level(logging.DEBUG)
    try:
        code = main(["run", url, "-o", str(tmp_path / "o.mkv"), "--config", str(cfg),
                     "--model", str(random_checkpoint), "--drop-policy", "none"])
    finally:
        server.shutdown()
    out, err = capfd.readouterr()
    logs = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert code == 0, err
    assert "hunter2" not in out + err + "\n".join(logs), [line for line in logs if "hunter2" in line]
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("23 frames") and summary.endswith(
        f"http://***@127.0.0.1:{server.server_address[1]}/cam.mkv -> {tmp_path / 'o.mkv'}"), summary
    said = "\n".join(logs)
    assert "http://***@127.0.0.1" in said and "stream ended or stalled; reconnecting" in said
    assert "gave up after 1 reconnect attempts" in said


@pytest.mark.parametrize("flag", [[], ["--no-audio"]])
def test_no_audio_leaves_the_soundtrack_out(flag, bunny, tmp_path, random_checkpoint):
    """The first second of bigbuckbunny.mp4 (video and AAC audio, copied): its audio is
    copied to the output unless ``--no-audio``."""
    clip = tmp_path / "clip.mkv"
    with av.open(str(bunny)) as src, av.open(str(clip), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in (src.streams.video[0], src.streams.audio[0])}
        for packet in src.demux(src.streams.video[0], src.streams.audio[0]):
            if packet.dts is not None and packet.size and packet.dts * packet.time_base < 1:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    out = tmp_path / "out.mkv"
    assert main(["run", str(clip), "-o", str(out), "--model", str(random_checkpoint), "--preset", "ultrafast",
                 "-q", *flag]) == 0
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1
        assert len(c.streams.audio) == (0 if flag else 1)


def test_library_errors_come_out_naming_the_flags(bikes, tmp_path, random_checkpoint, capsys):
    """The library names settings by config key (output.overwrite, encode.segment,
    output.path); the command says the flags that set them. Config errors keep their keys."""
    old = tmp_path / "old.mkv"
    old.write_bytes(b"precious")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")
    model = ["--model", str(random_checkpoint)]
    for argv, code, needle in [
        (["run", str(bikes), "-o", str(old)], 1, "(use --overwrite to replace it)"),
        (["run", str(bikes), "-o", str(tmp_path / "x.avi"), "--segment", "5"], 1, "--segment writes"),
        (["run", str(tmp_path / "videos")], 2, "needs an output folder (-o)"),
        (["run", str(bikes), "-o", str(tmp_path / "x.mp4"), "--batch-size", "0"], 2, "pipeline.batch_size"),
    ]:
        assert main(argv + model) == code
        err = capsys.readouterr().err
        assert needle in err, err


@pytest.mark.parametrize("overrides, single", [({"model.device": "cpu"}, True),
                                               ({"model.device": "cpu", "executor.kind": "ray"}, False)])
def test_run_leaves_the_cores_to_a_model_on_this_cpu(overrides, single):
    """OpenCV's thread pool fights a CPU model's threads for the cores: ``run`` makes it
    single-threaded when the model runs in this process on the CPU, and only then."""
    import cv2

    from stream_denoise.cli import _cores_to_the_model
    from stream_denoise.config import load_config

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        _cores_to_the_model(load_config(overrides=overrides))
        assert cv2.getNumThreads() == (1 if single else 2)
    finally:
        cv2.setNumThreads(before)
