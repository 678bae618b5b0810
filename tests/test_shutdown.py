"""Clean shutdown: a real `stream-denoise run` subprocess and a real signal."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest


def _pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def _start(bikes: Path, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_denoise", "run", str(bikes), "-o", str(out),
         "--batch-size", "2"], stderr=subprocess.PIPE, text=True)
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size > 20_000):  # frames are flowing
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no output after 120 s"
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_what_was_read_and_leaves_a_valid_file(bikes, tmp_path, sig, code):
    out = tmp_path / "out.mp4"
    proc = _start(bikes, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "finishing the frames already read" in err and "stopped early" in err
    written = _pts(out)  # the published file decodes: it was closed properly
    assert 0 < len(written) < 250
    assert written == _pts(bikes)[: len(written)]
    assert not out.with_name("out.partial.mp4").exists()


def test_a_second_sigint_quits_at_once(bikes, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _start(bikes, out)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert not out.exists()  # never published: a half-written file keeps its .partial name
