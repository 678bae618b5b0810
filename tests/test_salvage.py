"""Recordings cut off by a power loss (issue 22): an MP4 with no index (moov) salvaged.

Each case encodes real footage (bikes.mp4; bigbuckbunny.mp4 with its AAC audio) to an MP4
whose moov is at the end, as a camera writes it, then cuts the moov off and the mdat in
the middle of a frame. What is salvaged must be the frames that were fully written, in
order, each with the intact file's pixels.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from stream_denoise.cli import main
from stream_denoise.errors import InputError
from stream_denoise.io.sources import open_source
from stream_denoise.models.generator import Generator, GeneratorConfig
from stream_denoise.models.weights import save_generator

RATE = 25
FRAMES = 60  # 2.4 s
WIDTH = 320
X265 = "log-level=error"


@dataclass
class Clip:
    intact: Path
    broken: Path
    reference: Path  # a healthy recording of other footage, same encoder settings
    written: int  # video samples wholly before the cut
    frames: list[np.ndarray]  # the intact file's pictures, in presentation order


def _encode(src: Path, dst: Path, *, codec: str = "libx264", options: dict | None = None,
            start: int = 0, audio: bool = False, time_base: Fraction | None = None) -> None:
    """FRAMES frames of ``src`` from frame ``start``, WIDTH wide, into an MP4 whose moov is
    written at the end (PyAV's mp4 muxer does that; no faststart)."""
    tb = time_base or Fraction(1, RATE)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        height = round(vin.height * WIDTH / vin.width / 2) * 2
        stream = out.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, height, "yuv420p"
        stream.codec_context.time_base = tb
        stream.options = options or {}
        aout = out.add_stream_from_template(inp.streams.audio[0]) if audio else None
        index = done = 0
        end = (start + FRAMES) / RATE
        for packet in inp.demux():
            if packet.stream.type == "audio":
                if aout is not None and packet.pts is not None and start / RATE <= packet.pts * packet.time_base < end:
                    packet.pts -= round(start / RATE / packet.time_base)
                    packet.dts = packet.pts
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                index += 1
                if start < index <= start + FRAMES:
                    frame = frame.reformat(width=WIDTH, height=height, format="yuv420p")
                    frame.pts, frame.time_base = round(done / RATE / tb), tb
                    done += 1
                    out.mux(stream.encode(frame))
            if done == FRAMES and (aout is None or (packet.pts or 0) * packet.time_base > end + 1):
                break
        out.mux(stream.encode(None))


def _boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes (start, end), read here rather than by the code under test."""
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes[data[pos + 4:pos + 8]] = (pos, pos + size)
        pos += size
    return boxes


def _break(intact: Path, broken: Path, at: float = 0.8) -> int:
    """Cut the moov off, and the mdat in the middle of the video sample ``at`` of the way
    through the file. Returns how many video samples were wholly written before the cut."""
    data = intact.read_bytes()
    boxes = _boxes(data)
    assert boxes[b"moov"][0] > boxes[b"mdat"][0], "the moov must come after the mdat"
    with av.open(str(intact)) as c:
        samples = sorted((p.pos, p.size) for p in c.demux(video=0) if p.size)
    pos, size = samples[int(len(samples) * at)]
    cut = pos + size // 2
    broken.write_bytes(data[:cut])
    return sum(p + s <= cut for p, s in samples)


def _pictures(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def make_clip(tmp_path_factory, bikes: Path, bunny: Path):
    """Clips made on first use, once per module."""
    made: dict[str, Clip] = {}
    recipes = {
        "h264 in band": (bikes, "libx264", {"x264-params": "repeat-headers=1"}, False),
        "h264": (bikes, "libx264", {}, False),
        "h265 in band": (bikes, "libx265", {"x265-params": X265 + ":repeat-headers=1"}, False),
        "h265": (bikes, "libx265", {"x265-params": X265}, False),
        "h264 + aac": (bunny, "libx264", {}, True),
    }

    def make(name: str) -> Clip:
        if name not in made:
            src, codec, options, audio = recipes[name]
            folder = tmp_path_factory.mktemp(name.replace(" ", "_").replace("+", ""))
            intact, broken, reference = folder / "intact.mp4", folder / "broken.mp4", folder / "ok.mp4"
            _encode(src, intact, codec=codec, options=options, audio=audio)
            _encode(src, reference, codec=codec, options=options, audio=audio, start=FRAMES)
            made[name] = Clip(intact, broken, reference, _break(intact, broken), _pictures(intact))
        return made[name]

    return make


def _in_order(salvaged: list[np.ndarray], intact: list[np.ndarray]) -> int:
    """How many salvaged pictures there are, checking that each is an intact picture that
    comes after the previous one: no garbage, nothing out of order."""
    j = 0
    for k, picture in enumerate(salvaged):
        while j < len(intact) and not np.array_equal(intact[j], picture):
            j += 1
        assert j < len(intact), f"salvaged frame {k} is not the next intact frame"
        j += 1
    return len(salvaged)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-denoise: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _salvage(clip: Clip, tmp_path: Path, capsys, reference: bool) -> tuple[list[np.ndarray], str]:
    fixed = tmp_path / "fixed.mp4"
    argv = ["salvage", str(clip.broken), "-o", str(fixed)] + (["--reference", str(clip.reference)]
                                                              if reference else [])
    assert main(argv) == 0
    err = capsys.readouterr().err
    with av.open(str(fixed)) as c:  # a real, indexed file: keyframes flagged, times at 25 fps
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        assert packets[0].is_keyframe and stream.average_rate == RATE
        times = sorted(float(p.pts * p.time_base) for p in packets)
        assert times == pytest.approx([i / RATE for i in range(len(times))])
    return _pictures(fixed), err


# --- the salvage command and the run source --------------------------------------------

@pytest.mark.parametrize("name", ["h264 in band", "h265 in band"])
def test_in_band_parameter_sets_need_no_reference(name, make_clip, tmp_path, capsys, caplog):
    clip = make_clip(name)
    pictures, err = _salvage(clip, tmp_path, capsys, reference=False)
    n = _in_order(pictures, clip.frames)
    assert n >= 0.95 * clip.written and n <= clip.written
    assert f"salvaged {n} " in err and "its own parameter sets" in err
    assert "25 fps (from the stream's timing info)" in err
    # The same frames reach `run` through open_source, with one warning that says so.
    with caplog.at_level(logging.WARNING), open_source(clip.broken) as src:
        frames = list(src)
    assert _in_order([f.image for f in frames], clip.frames) == n
    assert [f.pts for f in frames] == list(range(n)) and frames[0].time_base == Fraction(1, RATE)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"salvaged {n} " in warnings[0]


@pytest.mark.parametrize("name", ["h264", "h265"])
def test_parameter_sets_from_a_reference(name, make_clip, tmp_path, capsys):
    clip = make_clip(name)
    assert main(["salvage", str(clip.broken), "-o", str(tmp_path / "no.mp4")]) == 1
    assert "--reference" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "no.mp4").exists()
    pictures, err = _salvage(clip, tmp_path, capsys, reference=True)
    n = _in_order(pictures, clip.frames)
    assert n >= 0.95 * clip.written
    assert "the reference ok.mp4's parameter sets" in err
    with open_source(clip.broken, reference=clip.reference) as src:
        assert _in_order([f.image for f in src], clip.frames) == n


def test_interleaved_aac_is_never_taken_for_video(make_clip, tmp_path, capsys):
    clip = make_clip("h264 + aac")
    with av.open(str(clip.intact)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
    pictures, err = _salvage(clip, tmp_path, capsys, reference=True)
    assert _in_order(pictures, clip.frames) >= 0.95 * clip.written
    assert "audio (aac" in err and "not recovered" in err
    with open_source(clip.broken, reference=clip.reference) as src:
        assert _in_order([f.image for f in src], clip.frames) == len(pictures)


def test_frame_rate_assumed_or_from_the_reference(bikes, make_clip, tmp_path, capsys):
    """A 90 kHz encoder clock leaves no frame rate in the SPS timing: 30 fps is assumed,
    unless a reference gives one."""
    intact, broken = tmp_path / "intact.mp4", tmp_path / "broken.mp4"
    _encode(bikes, intact, options={"x264-params": "repeat-headers=1"}, time_base=Fraction(1, 90000))
    written = _break(intact, broken)
    assert main(["salvage", str(broken), "-o", str(tmp_path / "a.mp4")]) == 0
    assert "30 fps (assumed" in capsys.readouterr().err
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert c.streams.video[0].average_rate == 30
        assert sum(1 for p in c.demux(video=0) if p.size) >= 0.95 * written
    reference = make_clip("h264 in band").reference
    assert main(["salvage", str(broken), "-o", str(tmp_path / "b.mp4"), "--reference", str(reference)]) == 0
    assert "25 fps (from the reference ok.mp4)" in capsys.readouterr().err


# --- what cannot be salvaged -----------------------------------------------------------

@pytest.fixture
def zeros_after_ftyp(make_clip, tmp_path) -> Path:
    path = tmp_path / "zeros.mp4"
    ftyp = make_clip("h264 in band").intact.read_bytes()[:32]
    assert ftyp[4:8] == b"ftyp"
    path.write_bytes(ftyp + bytes(200_000))
    return path


@pytest.fixture
def text_as_mp4(tmp_path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("meeting notes, not a video\n" * 100)
    return path


@pytest.mark.parametrize("command", ["run", "salvage"])
@pytest.mark.parametrize("kind", ["zeros", "text"])
def test_nothing_to_salvage_is_one_error_line(command, kind, zeros_after_ftyp, text_as_mp4, tmp_path,
                                              capsys):
    path = zeros_after_ftyp if kind == "zeros" else text_as_mp4
    assert main([command, str(path), "-o", str(tmp_path / "out.mp4")]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert path.name in line
    assert ("nothing to salvage" if kind == "zeros" else "Invalid data") in line
    assert not (tmp_path / "out.mp4").exists()


def test_zeros_with_a_reference_say_nothing_was_found(zeros_after_ftyp, make_clip, tmp_path, capsys):
    reference = make_clip("h264").reference
    assert main(["salvage", str(zeros_after_ftyp), "-o", str(tmp_path / "o.mp4"),
                 "--reference", str(reference)]) == 1
    assert "no H.264 frames could be salvaged" in _one_error_line(capsys.readouterr().err)


def test_a_healthy_file_is_not_salvaged(make_clip, tmp_path, capsys):
    assert main(["salvage", str(make_clip("h264").intact), "-o", str(tmp_path / "o.mp4")]) == 1
    assert "nothing to salvage" in _one_error_line(capsys.readouterr().err)


# --- damage ----------------------------------------------------------------------------

def _fuzz(data: bytes, seed: int) -> bytes:
    """Runs of random bytes, zeros or 0xFF written over the mdat (the ftyp is kept)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        size, pos = rng.choice([1, 4, 37, 500, 4000, 20000]), rng.randrange(40, len(out))
        fill = rng.choice(["random", "zeros", "ff"])
        run = (rng.randbytes(size) if fill == "random" else bytes(size) if fill == "zeros"
               else b"\xff" * size)
        out[pos:pos + size] = run[:len(out) - pos]
    return bytes(out)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("name", ["h264 in band", "h264 + aac", "h265"])
def test_fuzzed_mdat_ends_in_a_valid_file_or_one_error(name, seed, make_clip, tmp_path, capsys):
    clip = make_clip(name)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(_fuzz(clip.broken.read_bytes(), seed))
    reference = [] if "in band" in name else ["--reference", str(clip.reference)]
    out = tmp_path / "fixed.mp4"
    code = main(["salvage", str(damaged), "-o", str(out)] + reference)
    err = capsys.readouterr().err
    if code:
        assert code == 1
        _one_error_line(err)
        assert not out.exists()
    else:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        with av.open(str(out)) as c:  # it opens, and every packet is a whole sample
            stream = c.streams.video[0]
            decoded = 0
            for packet in c.demux(stream):
                try:
                    decoded += len(stream.decode(packet))
                except av.FFmpegError:
                    pass
            assert decoded > 0
    # The frames `run` would read: they end, without an exception other than one line.
    try:
        with open_source(damaged, reference=clip.reference if reference else None) as src:
            assert sum(1 for _ in src) > 0
    except InputError as e:
        assert "\n" not in str(e)


def test_damage_in_the_middle_is_stepped_over(make_clip, tmp_path, capsys):
    """A zeroed run and a run of garbage in the middle of the data: the frames before and
    after are salvaged, and nothing of the damage reaches the decoder."""
    clip = make_clip("h264 in band")
    data = bytearray(clip.broken.read_bytes())
    third = len(data) // 3
    data[third:third + 3000] = bytes(3000)
    data[2 * third:2 * third + 3000] = random.Random(1).randbytes(3000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert main(["salvage", str(damaged), "-o", str(tmp_path / "fixed.mp4")]) == 0
    capsys.readouterr()
    pictures = _pictures(tmp_path / "fixed.mp4")
    # Pictures whose references were hit come out concealed; the first stretch is exact.
    assert sum(any(np.array_equal(p, q) for q in clip.frames) for p in pictures) >= len(clip.frames) // 4
    assert len(pictures) >= 0.5 * clip.written


# --- `run` end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """Explicitly seeded random weights: plumbing only, not a denoiser."""
    torch.manual_seed(0)
    config = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=4)
    return save_generator(tmp_path_factory.mktemp("ckpt") / "random.safetensors", Generator(config))


def test_run_cleans_a_salvaged_recording_and_a_folder_of_them(make_clip, tiny_model, tmp_path, capsys,
                                                               caplog):
    clip = make_clip("h264 + aac")
    out = tmp_path / "clean.mp4"
    with caplog.at_level(logging.WARNING):
        assert main(["run", str(clip.broken), "-o", str(out), "--model", str(tiny_model),
                     "--reference", str(clip.reference)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "salvaged" in warnings[0], warnings
    salvaged = int(warnings[0].split("salvaged ")[1].split()[0])
    assert len(_pictures(out)) == salvaged >= 0.95 * clip.written
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("h264 in band", "h265 in band"):
        (folder / f"{name.replace(' ', '_')}.mp4").write_bytes(make_clip(name).broken.read_bytes())
    assert main(["run", str(folder), "-o", str(tmp_path / "cleaned"), "--model", str(tiny_model)]) == 0
    assert sorted(p.name for p in (tmp_path / "cleaned").iterdir()) == ["h264_in_band.mp4", "h265_in_band.mp4"]
