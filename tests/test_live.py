"""Live streams from a real server on 127.0.0.1: FFmpeg's TCP listener, fed by PyAV,
killed mid-stream and restarted while the pipeline is reading."""
from __future__ import annotations

import logging
import multiprocessing
import socket
import time

import av
import numpy as np
import pytest

from stream_denoise.config import load_config
from stream_denoise.errors import InputError
from stream_denoise.io.sources import open_source
from stream_denoise.pipeline import run

from .test_pipeline import decode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    """Until something listens on ``port`` (read from /proc, so no connection is used up:
    PyAV opens the listener only when the first packet is muxed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        if any(int(r[1].split(":")[1], 16) == port and r[3] == "0A" for r in rows):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _serve(port: int, images: list[np.ndarray], fps: int = 25) -> None:
    """One connection: listen, stream ``images`` as MPEG-TS in real time, hang up."""
    url = f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000"
    with av.open(url, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps, options={"tune": "zerolatency"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
            time.sleep(1 / fps)
        out.mux(stream.encode())


def _server_dies_and_comes_back(port: int, images: list[np.ndarray]) -> None:
    _serve(port, images)  # first connection: 40 frames, then the server goes away
    time.sleep(1.0)  # down for a second: the client's attempts are refused
    _serve(port, images[::-1])  # back up: 40 more frames


@pytest.fixture(scope="module")
def images(bikes):
    with open_source(bikes) as src:
        return [f.image[:256, :320].copy() for f, _ in zip(src, range(40))]


def test_pipeline_reconnects_and_the_output_keeps_growing(images, tmp_path, passthrough, caplog):
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"

    # A separate process: PyAV holds the GIL while its listener waits for a client.
    server = multiprocessing.get_context("spawn").Process(
        target=_server_dies_and_comes_back, args=(port, images), daemon=True)
    server.start()
    _wait_listening(port)
    config = load_config(overrides={
        "source.backoff_initial": 0.2, "source.backoff_max": 0.4, "source.reconnect_attempts": 8,
        "source.open_timeout": 5, "source.read_timeout": 5, "encode.crf": 0,
        "pipeline.drop_policy": "none"})  # count every frame, however slow this machine is
    caplog.set_level(logging.WARNING)
    summary = run(url, tmp_path / "live.mkv", config, model=passthrough, progress=False)
    server.join(timeout=30)
    assert server.exitcode == 0
    pts, frames = decode(tmp_path / "live.mkv")
    assert summary.frames == len(frames) >= 76  # both connections' frames, bar edge losses
    assert "reconnected (1 so far)" in caplog.text
    assert "gave up after 8 reconnect attempts" in caplog.text
    assert all(b > a for a, b in zip(pts, pts[1:]))  # monotonic across the reconnect
    seconds = np.diff(pts) * float(av.open(str(tmp_path / "live.mkv")).streams.video[0].time_base)
    assert seconds.max() > 0.8  # the outage is a gap in time, not a jump back
    # The second connection's frames are the reversed clip, after the first's.
    first = next(i for i, f in enumerate(frames) if np.abs(f.astype(int) - images[-1]).mean() < 3)
    assert np.abs(frames[-1].astype(int) - images[0]).mean() < 3 and first < len(frames) - 30


def test_an_unreachable_url_is_one_clear_error(tmp_path, passthrough):
    config = load_config(overrides={"source.open_timeout": 2})
    url = f"tcp://user:secret@127.0.0.1:{_free_port()}"
    with pytest.raises(InputError) as e:
        run(url, tmp_path / "o.mkv", config, model=passthrough, progress=False)
    assert "cannot open tcp://***@127.0.0.1" in str(e.value) and "secret" not in str(e.value)


def test_segments_are_each_playable_and_hold_every_frame(short_clip, tmp_path, passthrough):
    config = load_config(overrides={"encode.segment": 0.3})  # 23 frames at 25 fps: ~3 pieces
    run(short_clip, tmp_path / "cam.mp4", config, model=passthrough, progress=False)
    pieces = sorted(tmp_path.glob("cam_*.mp4"))
    assert [p.name for p in pieces][:2] == ["cam_00000.mp4", "cam_00001.mp4"]
    counts = [len(decode(p)[0]) for p in pieces]  # each decodes on its own
    assert len(pieces) >= 2 and sum(counts) == 23 and all(counts)
    assert not (tmp_path / "cam.mp4").exists()


def test_hls_playlist(short_clip, tmp_path, passthrough):
    run(short_clip, tmp_path / "live.m3u8", load_config(overrides={"encode.segment": 0.4}),
        model=passthrough, progress=False)
    playlist = (tmp_path / "live.m3u8").read_text()
    assert "#EXTM3U" in playlist and "live_00000.ts" in playlist
    assert len(decode(tmp_path / "live.m3u8")[0]) == 23


def _receive(port: int, result: str) -> None:
    """A listening receiver: counts the frames pushed to it, writes the count to ``result``."""
    with av.open(f"tcp://127.0.0.1:{port}?listen=1&listen_timeout=20000", format="mpegts") as c:
        n = sum(1 for _ in c.decode(video=0))
    with open(result, "w") as f:
        f.write(str(n))


def test_push_to_a_stream_server(short_clip, tmp_path, passthrough):
    port = _free_port()
    result = tmp_path / "received.txt"
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receive, args=(port, str(result)), daemon=True)
    receiver.start()
    _wait_listening(port)
    summary = run(short_clip, f"tcp://127.0.0.1:{port}", load_config(), model=passthrough,
                  progress=False)
    receiver.join(timeout=30)
    assert summary.frames == 23 and result.read_text() == "23"
