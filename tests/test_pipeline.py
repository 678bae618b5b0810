"""The pipeline end to end on real clips: count, order, timestamps, sizes, extra outputs."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream_denoise.config import EncodeConfig, load_config
from stream_denoise.errors import OutputError
from stream_denoise.frame import Frame
from stream_denoise.io.sinks import open_sink
from stream_denoise.io.sources import open_source
from stream_denoise.pipeline import batches, run

from .conftest import PassThrough


def decode(path: Path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def lossless(batch_size: int = 4, temporal: str = "off"):
    """Encode losslessly (RGB in FFV1) so frames can be compared for exact equality; the
    temporal stage off, so the output is the model's, frame for frame."""
    return load_config(overrides={
        "pipeline.batch_size": batch_size, "encode.codec": "ffv1", "encode.pix_fmt": "bgr0",
        "temporal.mode": temporal,
    })


@pytest.mark.parametrize("batch_size", [1, 4, 5, 23, 64])
def test_order_preserved_at_every_batch_size(short_clip, tmp_path, passthrough, batch_size):
    out = tmp_path / "out.mkv"
    summary = run(short_clip, out, lossless(batch_size), model=passthrough, progress=False)
    assert summary.frames == 23
    in_pts, in_frames = decode(short_clip)
    out_pts, out_frames = decode(out)
    assert out_pts == in_pts
    assert len(out_frames) == 23
    for k, (a, b) in enumerate(zip(in_frames, out_frames)):
        assert np.array_equal(a, b), f"frame {k} differs"


@pytest.mark.parametrize("batch_size", [1, 5])
def test_temporal_stage_runs_on_the_stream_in_order(bikes, tmp_path, passthrough, batch_size):
    """A still camera in snow: the output is the stage applied to the model's results in
    source order, whatever the batching, every frame fused (a file's first frames wait for
    the window); with the stage off, the model's results."""
    from stream_denoise.degrade import Snow
    from stream_denoise.temporal import TemporalFilter

    with open_source(bikes) as src:
        still = next(f for f in src if f.index == 245)
    clip = tmp_path / "still.mkv"
    with open_sink(clip, src.info, EncodeConfig(codec="ffv1", pix_fmt="bgr0")) as sink:
        for i in range(12):
            sink.write(Frame(i, Snow(density=(1000, 1000)).apply(still.image, 1, i), i, still.time_base))
    with open_source(clip) as src:
        frames = list(src)
    noisy = [f.image for f in frames]
    stage = TemporalFilter(load_config().temporal, wait=True)
    expected = [out for f in frames for out in stage.push(f.image, f)] + stage.flush()
    run(clip, tmp_path / "on.mkv", lossless(batch_size, "auto"), model=passthrough, progress=False)
    run(clip, tmp_path / "off.mkv", lossless(batch_size), model=passthrough, progress=False)
    on, off = decode(tmp_path / "on.mkv")[1], decode(tmp_path / "off.mkv")[1]
    assert stage.fused == 12  # a file's first five frames waited for the window, then were fused with it
    assert all(np.array_equal(a, b) for a, b in zip(on, expected, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(off, noisy, strict=True))
    assert not np.array_equal(on[-1], noisy[-1])


def test_output_is_the_models_output(short_clip, tmp_path, invert):
    out = tmp_path / "out.mkv"
    run(short_clip, out, lossless(), model=invert, progress=False)
    _, in_frames = decode(short_clip)
    _, out_frames = decode(out)
    assert all(np.array_equal(255 - a, b) for a, b in zip(in_frames, out_frames))


def test_bikes_through_h264_keeps_count_size_and_pts(bikes, tmp_path, invert):
    out = tmp_path / "bikes.mp4"
    summary = run(bikes, out, model=invert, progress=False)
    in_pts, in_frames = decode(bikes)
    out_pts, out_frames = decode(out)
    assert summary.frames == len(in_pts) == 250
    assert out_pts == in_pts
    assert out_frames[0].shape == (272, 640, 3)
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == 25
    # The model's effect is visible through lossy encoding: output ~ 255 - input.
    err = np.abs(out_frames[100].astype(int) - (255 - in_frames[100].astype(int))).mean()
    assert err < 4


def test_audio_is_copied_untouched(bunny, tmp_path, passthrough):
    """Into the cleaned video, untouched; the heat map and the side-by-side get none."""
    out, heat, side = tmp_path / "bunny.mp4", tmp_path / "heat.mp4", tmp_path / "side.mp4"
    cfg = load_config(overrides={"encode.preset": "ultrafast", "pipeline.batch_size": 8})
    run(bunny, out, cfg, model=passthrough, progress=False, attention_path=heat, compare_path=side)

    def audio_packets(path):
        with av.open(str(path)) as c:
            return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]

    assert audio_packets(out) == audio_packets(bunny)
    assert len(decode(out)[0]) == 132
    for path in (heat, side):
        with av.open(str(path)) as c:
            assert not c.streams.audio and c.streams.video[0].frames == 132


def test_odd_size_one_frame_and_image_folders(tmp_path, passthrough):
    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    src.mkdir()
    with open_sink(src, _info(641, 361)) as sink:
        for i in range(3):
            sink.write(Frame(i, rng.integers(0, 256, (361, 641, 3), dtype=np.uint8)))
    out = tmp_path / "out"
    assert run(src, out, model=passthrough, progress=False).frames == 3
    with open_source(src) as a, open_source(out) as b:
        assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    # One frame of an odd size into a video file.
    single = tmp_path / "single"
    single.mkdir()
    (src / "frame_000001.png").rename(single / "only.png")
    video = tmp_path / "single.mp4"
    assert run(single, video, model=passthrough, progress=False).frames == 1
    _, frames = decode(video)
    assert len(frames) == 1 and frames[0].shape == (361, 641, 3)


def _info(w: int, h: int):
    from stream_denoise.frame import VideoInfo

    return VideoInfo(width=w, height=h)


def test_attention_and_compare_outputs(short_clip, tmp_path, invert):
    out, att, cmp = tmp_path / "o.mkv", tmp_path / "a.mkv", tmp_path / "c.mkv"
    run(short_clip, out, lossless(), model=invert, attention_path=att, compare_path=cmp,
        progress=False)
    _, src = decode(short_clip)
    _, side = decode(cmp)
    _, heat = decode(att)
    assert len(side) == len(heat) == 23
    assert side[5].shape == (272, 1280, 3)
    assert np.array_equal(side[5][:, :640], src[5])
    assert np.array_equal(side[5][:, 640:], 255 - src[5])
    # The heat map is the model's attention (Invert's: the mean over colours) in JET
    # colours, each frame its own; FFV1 in bgr0 is lossless, so it comes back exact.
    for k in (0, 5, 22):
        attention = src[k].mean(axis=2).astype(np.uint8)
        want = cv2.cvtColor(cv2.applyColorMap(attention, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        assert np.array_equal(heat[k], want), k


def test_existing_output_is_not_overwritten(short_clip, tmp_path, passthrough):
    out = tmp_path / "o.mkv"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="output.overwrite"):
        run(short_clip, out, lossless(), model=passthrough, progress=False)
    assert out.read_bytes() == b"precious"
    run(short_clip, out, lossless(), model=passthrough, progress=False, overwrite=True)
    assert len(decode(out)[0]) == 23


class Broken(PassThrough):
    """Works for ``good`` batches, then fails."""

    def __init__(self, good: int) -> None:
        self.good = good

    def process(self, frames, *, attention=False):
        if self.good == 0:
            raise RuntimeError("model exploded")
        self.good -= 1
        return super().process(frames, attention=attention)


def test_overwriting_keeps_the_old_output_until_the_new_one_is_complete(short_clip, tmp_path):
    """With overwrite, a run that fails half-way leaves the old output whole (and its own
    frames under the .partial name); every output of the run is staged alike."""
    out, heat, side = (tmp_path / n for n in ("o.mkv", "heat.mkv", "side.mkv"))
    for path in (out, heat, side):
        path.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="model exploded"):
        run(short_clip, out, lossless(), model=Broken(2), progress=False, overwrite=True,
            attention_path=heat, compare_path=side)
    assert all(p.read_bytes() == b"precious" for p in (out, heat, side))
    assert all((tmp_path / f"{n}.partial.mkv").exists() for n in ("o", "heat", "side"))
    run(short_clip, out, lossless(), model=PassThrough(), progress=False, overwrite=True,
        attention_path=heat, compare_path=side)
    assert [len(decode(p)[0]) for p in (out, heat, side)] == [23, 23, 23]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.mkv", "o.mkv", "side.mkv"]


def test_a_folder_of_frames_is_staged_and_an_empty_one_taken(short_clip, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()  # empty: taken without overwrite
    run(short_clip, frames, lossless(), model=PassThrough(), progress=False)
    assert len(list(frames.glob("*.png"))) == 23 and not (tmp_path / "frames-partial").exists()
    with pytest.raises(OutputError, match="already exists"):
        run(short_clip, frames, lossless(), model=PassThrough(), progress=False)
    with pytest.raises(RuntimeError, match="model exploded"):
        run(short_clip, frames, lossless(), model=Broken(1), progress=False, overwrite=True)
    assert len(list(frames.glob("*.png"))) == 23  # the old frames, whole
    assert 0 < len(list((tmp_path / "frames-partial").glob("*.png"))) < 23
    (tmp_path / "frames-partial" / "stale.png").write_bytes(b"not a frame")
    run(short_clip, frames, lossless(), model=PassThrough(), progress=False, overwrite=True)
    assert len(list(frames.glob("*.png"))) == 23 and not (frames / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # the crash's remains cleared


def test_an_output_in_a_missing_folder_is_refused_before_anything_runs(short_clip, tmp_path):
    with pytest.raises(OutputError, match=r"output folder .*nowhere does not exist"):
        run(short_clip, tmp_path / "nowhere" / "o.mkv", lossless(), model=Broken(0), progress=False)
    assert not list(tmp_path.iterdir())


def test_a_failing_model_stops_the_run_with_its_error(short_clip, tmp_path):
    out = tmp_path / "o.mkv"
    with pytest.raises(RuntimeError, match="model exploded"):
        run(short_clip, out, lossless(), model=Broken(0), progress=False)
    assert not list(tmp_path.iterdir())  # nothing written, nothing left behind
    with pytest.raises(RuntimeError, match="model exploded"):
        run(short_clip, out, lossless(), model=Broken(2), progress=False)
    # Nothing under the final name: only a finished run publishes its output; what was
    # written stays under the .partial name.
    assert not out.exists() and (tmp_path / "o.partial.mkv").exists()
    run(short_clip, out, lossless(), model=PassThrough(), progress=False)
    assert len(decode(out)[0]) == 23 and not (tmp_path / "o.partial.mkv").exists()


def test_batches_split_on_size_change():
    a = [Frame(i, np.zeros((4, 6, 3), np.uint8)) for i in range(3)]
    b = [Frame(i + 3, np.zeros((8, 6, 3), np.uint8)) for i in range(3)]
    got = [(bt.seq, [f.index for f in bt.frames]) for bt in batches(a + b, 2)]
    assert got == [(0, [0, 1]), (1, [2]), (2, [3, 4]), (3, [5])]


def _ts(path: Path, frames: list[np.ndarray], start: int) -> bytes:
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = start + i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path.read_bytes()


def test_a_size_change_mid_stream_is_scaled_to_the_first_size(short_clip, tmp_path, invert, caplog):
    """Live cameras change resolution; two MPEG-TS pieces concatenated do the same."""
    with open_source(short_clip) as src:
        images = [f.image for f in src]
    big = [im[:256, :320] for im in images[:10]]
    small = [np.ascontiguousarray(im[:192, :256]) for im in images[10:20]]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(_ts(tmp_path / "a.ts", big, 0) + _ts(tmp_path / "b.ts", small, 10))
    run(short_clip, tmp_path / "same.mkv", lossless(), model=invert, progress=False)
    assert "size changed" not in caplog.text  # nothing to say about a stream of one size
    summary = run(joined, tmp_path / "o.mkv", lossless(), model=invert, progress=False)
    assert summary.frames == 20 and summary.resized_frames == 10
    assert f"{joined}: frame size changed mid-stream at frame 10 (256x192); scaling to 320x256" in caplog.text
    assert caplog.text.count("size changed") == 1  # said once, not for every frame or batch
    _, out = decode(tmp_path / "o.mkv")
    assert {im.shape for im in out} == {(256, 320, 3)}
    with open_source(joined) as src:
        given = [f.image for f in src]
    for k in (10, 19):  # the inverted frame as decoded, scaled by area: exact (FFV1 in bgr0)
        assert np.array_equal(out[k], cv2.resize(255 - given[k], (320, 256), interpolation=cv2.INTER_AREA)), k


def test_a_truncated_file_keeps_every_decodable_frame(bikes, tmp_path, passthrough):
    cut = tmp_path / "cut.mp4"
    # A fragmented copy, so that cutting its end leaves the start readable (a plain mp4
    # with its index at the end would be unreadable: nothing to keep).
    with av.open(str(bikes)) as src, av.open(str(cut), "w", options={
            "movflags": "frag_keyframe+empty_moov"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    full_pts, _ = decode(cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    summary = run(cut, tmp_path / "o.mp4", load_config(), model=passthrough, progress=False)
    pts, _ = decode(tmp_path / "o.mp4")
    assert 100 < summary.frames == len(pts) < 250
    assert pts == full_pts[: len(pts)]


def _displayed(path: Path) -> list[np.ndarray]:
    """A file's frames as a player shows them: turned by the file's own display matrix."""
    with av.open(str(path)) as c:
        return [np.rot90(f.to_ndarray(format="rgb24"), round(f.rotation / 90)) for f in c.decode(video=0)]


def _phone_clip(short_clip: Path, out: Path) -> Path:
    """short_clip stored landscape with a 90-degree display matrix, as phones write it."""
    with av.open(str(short_clip)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 640, 272, "yuv444p"
        stream.set_display_rotation(90)
        for frame in src.decode(video=0):
            dst.mux(stream.encode(frame.reformat(format="yuv444p")))
        dst.mux(stream.encode())
    return out


@pytest.mark.parametrize(
    ("case", "suffix", "codec"),
    [
        ("webm", ".webm", "vp9"),  # `run in.webm -o out.webm` with default options
        ("phone", ".mp4", "h264"),  # rotation metadata: must not come out sideways
        ("phone", ".webm", "vp9"),
    ],
)
def test_odd_inputs_with_default_options(case, suffix, codec, short_clip, tmp_path, invert):
    if case == "webm":
        inp = tmp_path / "in.webm"
        run(short_clip, inp, load_config(), model=PassThrough(), progress=False)
    else:
        inp = _phone_clip(short_clip, tmp_path / "phone.mp4")
    out = tmp_path / f"out{suffix}"
    assert run(inp, out, load_config(), model=invert, progress=False).frames == 23
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
    shown_in, shown_out = _displayed(inp), _displayed(out)
    assert len(shown_out) == 23
    assert shown_out[0].shape == shown_in[0].shape == ((640, 272, 3) if case == "phone" else (272, 640, 3))
    # The model saw the frames upright (invert), and the output shows them upright.
    err = np.abs(shown_out[10].astype(int) - (255 - shown_in[10].astype(int))).mean()
    assert err < 4


def test_a_codec_the_container_cannot_hold_is_a_one_line_error(short_clip, tmp_path, passthrough):
    cfg = load_config(overrides={"encode.codec": "libx264"})
    with pytest.raises(OutputError, match=r"cannot encode libx264 into .*webm.*libvpx-vp9") as err:
        run(short_clip, tmp_path / "out.webm", cfg, model=passthrough, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.webm").exists()


@pytest.mark.parametrize("queue_size", [1, 3])
def test_queue_size_bounds_how_far_decoding_runs_ahead(short_clip, tmp_path, monkeypatch, queue_size):
    """--queue-size: with a model slower than decoding, the reader stays ahead of the model
    by at most the batch the model holds, the queued batches, the full batch waiting to be
    queued and the one frame that closed it (memory stays flat whatever the input's length);
    and it does fill the queue (measured: 7 frames at 1, 11 at 3)."""
    import time

    from stream_denoise import pipeline

    read = [0]
    leads: list[int] = []
    opened = pipeline.open_input

    def counting(*args, **kwargs):
        source = opened(*args, **kwargs)
        frames = iter(source)

        class Counted:
            info, close = source.info, source.close
            corrupt_frames = 0

            def __iter__(self):
                for frame in frames:
                    read[0] += 1
                    yield frame

        return Counted()

    class Slow(PassThrough):
        done = 0

        def process(self, frames, *, attention=False):
            time.sleep(0.05)
            leads.append(read[0] - Slow.done)
            Slow.done += len(frames)
            return super().process(frames, attention=attention)

    monkeypatch.setattr(pipeline, "open_input", counting)
    config = load_config(overrides={"pipeline.batch_size": 2, "pipeline.queue_size": queue_size,
                                    "temporal.mode": "off"})
    assert run(short_clip, tmp_path / "o.mkv", config, model=Slow(), progress=False).frames == 23
    assert max(leads) <= 2 * (queue_size + 2) + 1, leads
    assert max(leads) >= 2 * (queue_size + 1), leads


def test_decode_threads_reach_the_decoder(short_clip, tmp_path, monkeypatch, passthrough):
    """--decode-threads N: the run opens its input with N threads, and the source gives
    FFmpeg's decoder that many."""
    from stream_denoise import pipeline

    asked = []
    opened = pipeline.open_input
    monkeypatch.setattr(pipeline, "open_input", lambda *a, **k: asked.append(k["threads"]) or opened(*a, **k))
    run(short_clip, tmp_path / "o.mkv", load_config(overrides={"pipeline.decode_threads": 3}),
        model=passthrough, progress=False)
    assert asked == [3]
    with open_source(short_clip, threads=1) as src:
        assert src._stream.codec_context.thread_count == 1
