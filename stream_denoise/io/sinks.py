"""Frame sinks: encode ``Frame``s to a video file (keeping timestamps and audio) or PNGs.

>>> with open_source("in.mp4") as src, open_sink("out.mp4", src.info) as sink:  # doctest: +SKIP
...     for frame in src:
...         sink.write(frame)
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..config import EncodeConfig
from ..errors import OutputError
from ..frame import Frame, VideoInfo
from .base import Sink
from .sources import VIDEO_SUFFIXES
from .urls import is_url, reason, redact

log = logging.getLogger(__name__)

DEFAULT_RATE = Fraction(25)  # for untimed input (image folders) with no known rate


def _check_image(frame: Frame, width: int, height: int) -> np.ndarray:
    image = frame.image
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"frame {frame.index}: expected ({height}, {width}, 3) uint8, "
            f"got {image.shape} {image.dtype}"
        )
    return np.ascontiguousarray(image)


class ImageFolderSink(Sink):
    """Lossless ``frame_{index:06d}.png`` files in a folder (created if missing)."""

    def __init__(self, folder: Path, info: VideoInfo) -> None:
        self.folder, self.info = folder, info
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output folder {folder}: {reason(e)}") from None

    def write(self, frame: Frame) -> None:
        image = _check_image(frame, self.info.width, self.info.height)
        path = self.folder / f"frame_{frame.index:06d}.png"
        # imencode + tofile, not imwrite: imwrite fails on non-ASCII paths on Windows.
        ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        try:
            if not ok:
                raise OSError("PNG encoding failed")
            data.tofile(path)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {reason(e)}") from None


_HARDWARE_SUFFIXES = ("_nvenc", "_qsv", "_vaapi", "_amf", "_videotoolbox")
# x264's preset names on NVENC's p1 (fastest) .. p7 (best) scale
_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3",
                  "fast": "p4", "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7"}
# ... and on libvpx's cpu-used (higher = faster); 5 and up run with deadline=realtime.
# Measured on bikes.mp4 (640x272, 2 cores), VP9 crf 20: realtime 7 encodes ~400 fps at
# 41.3 dB, as fast as x264 veryfast; libvpx's default (good, 1) ~37 fps for the same quality.
_VPX_SPEEDS = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 6, "fast": 5,
               "medium": 4, "slow": 2, "slower": 1, "veryslow": 0}


def _is_hardware(codec: str) -> bool:
    return codec.endswith(_HARDWARE_SUFFIXES)


def _encoder_options(ctx: av.CodecContext, crf: int, preset: str, low_latency: bool) -> dict[str, str]:
    """crf/preset/low latency in the encoder's own terms; options it does not know are left out."""
    known = {o.name for o in ctx.supported_options.private}
    if ctx.name.endswith("_nvenc"):
        wanted = {"rc": "vbr", "cq": str(crf), "preset": _NVENC_PRESETS.get(preset, preset)}
        if low_latency:
            wanted["tune"] = "ll"
    elif ctx.name.startswith("libvpx"):
        speed = _VPX_SPEEDS.get(preset, 4)
        wanted = {"crf": str(crf), "cpu-used": str(speed), "row-mt": "1",
                  "deadline": "realtime" if speed >= 5 else "good"}
        if low_latency:
            wanted["lag-in-frames"] = "0"
        if ctx.name == "libvpx":  # VP8's crf only bounds quality under a bitrate (256k unless set)
            ctx.bit_rate = 100_000_000
    else:
        wanted = {"crf": str(crf), "preset": preset}
        if low_latency:  # a pushed stream: no lookahead or B-frames holding frames back
            wanted["tune"] = "zerolatency"
    return {k: v for k, v in wanted.items() if k in known}


def _encoder_opens(encoder: av.Codec, info: VideoInfo, crf: int, preset: str, pix_fmt: str) -> bool:
    """Whether a hardware encoder works here (a build may list NVENC on a machine without
    an NVIDIA card); when not, say so once, and the caller falls back to libx264."""
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height = info.width, info.height
    ctx.pix_fmt = _pick_pix_fmt(encoder, pix_fmt, info.width, info.height)
    ctx.time_base = Fraction(1, 25)
    ctx.options = _encoder_options(ctx, crf, preset, False)
    try:
        ctx.open()
    except (av.FFmpegError, OSError, ValueError) as e:
        log.warning("encoder %s unusable here (%s); encoding with libx264", encoder.name, reason(e))
        return False
    return True


def _accepts(fmt: str, codec: str) -> bool:
    """Whether the ``fmt`` muxer takes ``codec``, asked by writing a header to memory:
    some muxers (ogg, yuv4mpegpipe) refuse a codec only there, not when it is added."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as probe:
            stream = probe.add_stream(codec, rate=25)
            stream.width = stream.height = 64
            probe.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    return True


def _auto_encoder(fmt: str) -> av.Codec:
    """The encoder when none is named: libx264 (the default) where the ``fmt`` muxer takes
    it, else the muxer's own default video codec, which is what ffmpeg picks (VP9 for
    WebM, VP8 for Ogg, raw for Y4M). Asked of FFmpeg, not a table of suffixes."""
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        default = probe.default_video_codec
    for name in ("libx264", default):
        if _accepts(fmt, name):
            return av.Codec(name, "w")
    raise OutputError(f"no video encoder in this FFmpeg build writes {fmt}; name one (encode.codec)")


def _pick_pix_fmt(codec: av.Codec, pix_fmt: str, width: int, height: int) -> str:
    """``pix_fmt``, or a full-chroma format when odd sizes rule out subsampled chroma.

    libx264 refuses 4:2:0 at odd sizes and we never crop or pad, so the output keeps
    the exact input size at the cost of a less widely played format (yuv444p).
    """
    fmt = av.VideoFormat(pix_fmt)
    odd_w = width % 2 and fmt.chroma_width(2) < 2
    odd_h = height % 2 and fmt.chroma_height(2) < 2
    if not (odd_w or odd_h):
        return pix_fmt
    supported = [f.name for f in codec.video_formats or ()]
    for name in ("yuv444p", "gbrp", "rgb24", "bgr0"):
        if name in supported:
            log.warning(
                "%dx%d is odd-sized; %s needs even sizes, encoding %s with %s instead",
                width, height, pix_fmt, codec.name, name,
            )
            return name
    return pix_fmt  # let the encoder accept it (mpeg4 pads) or fail with its own reason


# Stream outputs: the muxer each URL scheme needs (FFmpeg cannot guess from a URL).
_URL_FORMATS = {"rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp", "srt": "mpegts", "udp": "mpegts",
                "tcp": "mpegts"}
_SEGMENT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}


def _muxer(target: str, segment: float, clock: bool) -> tuple[str, str | None, dict[str, str]]:
    """(what av.open gets, muxer name or None to guess from the suffix, muxer options)."""
    if is_url(target):
        scheme = target.split(":", 1)[0].lower()
        fmt = _URL_FORMATS.get(scheme)
        if fmt is None:
            raise OutputError(f"cannot stream to {redact(target)}: use one of "
                              f"{', '.join(f'{k}://' for k in _URL_FORMATS)}")
        options = {"flush_packets": "1"}  # a viewer waits for every buffered packet
        if fmt == "rtsp":
            options["rtsp_transport"] = "tcp"
        return target, fmt, options
    path = Path(target)
    if path.suffix.lower() == ".m3u8":
        return target, "hls", {"hls_time": str(segment or 4), "hls_list_size": "0",
                               "hls_segment_filename": str(path.with_name(f"{path.stem}_%05d.ts"))}
    if segment:
        fmt = _SEGMENT_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise OutputError(f"encode.segment writes {', '.join(_SEGMENT_FORMATS)} files, not {path.suffix}")
        options = {"segment_time": f"{segment:g}", "reset_timestamps": "1", "segment_format": fmt}
        if fmt in ("mp4", "mov"):  # each piece stays playable even if the process dies
            options["segment_format_options"] = "movflags=+frag_keyframe+empty_moov+default_base_moof"
        if clock:
            options["strftime"] = "1"
            return str(path.with_name(f"{path.stem}_%Y%m%d-%H%M%S{path.suffix}")), "segment", options
        return str(path.with_name(f"{path.stem}_%05d{path.suffix}")), "segment", options
    return target, None, {}


class VideoSink(Sink):
    """Encodes frames with their own pts and remuxes the audio of ``info.audio_from``.

    Timing: the output stream and encoder use the input's ``time_base`` and every frame
    keeps its pts, so variable frame rate survives and x264 neither drops nor
    duplicates (it encodes exactly the frames it is given, reordering only internally).
    Untimed frames get ``pts = index`` at ``info.rate`` (25 fps when unknown). A pts
    that does not increase is bumped to previous + 1, with one warning, because
    muxers reject it. Containers with a fixed time base (MKV/WebM: 1 ms) round pts.

    Audio: each audio stream of ``info.audio_from`` is copied packet for packet (no
    re-encode) from a second demuxer, muxed up to the time of each video frame so the
    file is interleaved; what is left is written at ``close()``.

    ``path`` may also be a stream URL (``rtmp://``, ``rtsp://``, ``srt://``, ``udp://``)
    or an HLS playlist (``.m3u8``). ``encode.segment`` seconds > 0 splits a file output
    into pieces, each closed and playable on its own, cut at the first keyframe after
    each ``segment`` seconds (the GOP is shortened to fit): with ``segment_clock`` named
    with their wall-clock start (``cam_20261125-193000.mp4``, for live inputs), else
    numbered (``clip_00000.mp4``).

    ``encode`` (the run config's section, its defaults when None): ``codec`` None picks
    one the container takes (:func:`_auto_encoder`: libx264 for MP4/MKV/MOV/TS, VP9 for
    WebM), and a ``pix_fmt`` that encoder supports. A codec named explicitly is used as
    given, or refused in one line. ``crf`` is in the encoder's own scale; ``preset``
    maps to NVENC's p1-p7 and libvpx's cpu-used.
    """

    def __init__(self, path: Path | str, info: VideoInfo, encode: EncodeConfig | None = None, *,
                 segment_clock: bool = False) -> None:
        encode = encode or EncodeConfig()
        codec, crf, preset, pix_fmt, segment = encode.codec, encode.crf, encode.preset, encode.pix_fmt, encode.segment
        self.path = redact(str(path))
        self.info = info
        self._closed = False
        self._last_pts: int | None = None
        self._warned_pts = False
        self._audio_in: av.container.InputContainer | None = None
        self._audio_out: dict[int, av.stream.Stream] = {}
        self._audio_packets: Iterator[av.Packet] = iter(())
        self._pending: av.Packet | None = None

        self._rate = info.rate or DEFAULT_RATE
        self._time_base = info.time_base or 1 / self._rate
        target, fmt, options = _muxer(str(path), segment, segment_clock)
        if codec is None and (is_url(target) or fmt == "hls"):
            codec = "libx264"  # what streams and HLS carry; a trial header would connect or write
        encoder = None
        if codec is not None:
            try:
                encoder = av.Codec(codec, "w")
            except ValueError:  # av.codec.codec.UnknownCodecError
                raise OutputError(
                    f"unknown video encoder {codec!r} (not in this FFmpeg build)"
                ) from None
            if _is_hardware(codec) and not _encoder_opens(encoder, info, crf, preset, pix_fmt):
                encoder = av.Codec("libx264", "w")
        touch = Path(path) if fmt is None else None
        try:
            # FFmpeg opens the file only at the first packet; touching it now makes a
            # missing folder or a read-only path fail here, before any decoding.
            if touch is not None:
                touch.open("wb").close()
            elif not is_url(target) and not Path(target).parent.is_dir():
                raise OSError(f"no folder {Path(target).parent}")
            self._out = av.open(target, "w", format=fmt, options=options)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot write {self.path}: {reason(e)}") from None
        self._format = options.get("segment_format", self._out.format.name)  # holds the video
        try:
            if encoder is None:
                encoder = _auto_encoder(self._format)
                formats = [f.name for f in encoder.video_formats or ()]
                if formats and pix_fmt not in formats:
                    log.warning("%s cannot encode %s; using %s", encoder.name, pix_fmt, formats[0])
                    pix_fmt = formats[0]
            self._stream = self._add_video(encoder, crf, preset, pix_fmt, segment,
                                           low_latency=is_url(target))
            if encode.copy_audio and info.audio_from:
                self._add_audio(info.audio_from)
        except BaseException:
            self._abandon()
            if touch is not None:
                touch.unlink(missing_ok=True)  # no half-made file left behind
            raise

    def _add_video(
        self, encoder: av.Codec, crf: int, preset: str, pix_fmt: str, segment: float,
        low_latency: bool = False,
    ) -> av.VideoStream:
        info = self.info
        try:
            stream = self._out.add_stream(encoder.name, rate=self._rate)
        except (av.FFmpegError, ValueError) as e:
            try:
                hint = f" (with no codec named, {_auto_encoder(self._format).name} is used)"
            except OutputError:
                hint = ""
            raise OutputError(
                f"cannot encode {encoder.name} into {self.path}: {reason(e)}{hint}"
            ) from None
        stream.width, stream.height = info.width, info.height
        stream.pix_fmt = _pick_pix_fmt(encoder, pix_fmt, info.width, info.height)
        # Encoder and stream share the input time base, so pts pass through unrounded.
        stream.time_base = stream.codec_context.time_base = self._time_base
        stream.codec_context.options = _encoder_options(stream.codec_context, crf, preset, low_latency)
        if segment:  # x264's default GOP (250) would make pieces of 10 s at least
            stream.codec_context.gop_size = max(1, min(250, round(segment * self._rate)))
        try:
            # Open now so a bad preset or size fails here, not at the first frame.
            stream.codec_context.open()
        except (av.FFmpegError, ValueError) as e:
            raise OutputError(
                f"cannot open encoder {encoder.name} for {info.width}x{info.height} "
                f"{stream.pix_fmt} ({self.path}): {reason(e)}"
            ) from None
        return stream

    def _add_audio(self, source: str) -> None:
        try:
            self._audio_in = av.open(source, "r")
        except (av.FFmpegError, OSError) as e:
            log.warning("not copying audio: cannot open %s: %s", redact(source), reason(e))
            return
        for stream in self._audio_in.streams.audio:
            try:
                self._audio_out[stream.index] = self._out.add_stream_from_template(stream)
            except (av.FFmpegError, ValueError) as e:
                log.warning(
                    "not copying audio stream %d (%s) of %s: %s cannot hold it (%s)",
                    stream.index, stream.codec_context.name, redact(source),
                    Path(self.path).suffix or self._out.format.name, reason(e),
                )
        if self._audio_out:
            inputs = [s for s in self._audio_in.streams.audio if s.index in self._audio_out]
            self._audio_packets = self._audio_in.demux(*inputs)
        else:
            self._audio_in.close()
            self._audio_in = None

    def write(self, frame: Frame) -> None:
        if self._closed:
            raise ValueError(f"write to closed sink {self.path}")
        image = _check_image(frame, self.info.width, self.info.height)
        pts = self._pts(frame)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts, vf.time_base = pts, self._time_base
        try:
            self._mux_audio(until=pts * self._time_base)
            self._out.mux(self._stream.encode(vf))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(
                f"cannot write frame {frame.index} to {self.path}: {reason(e)}"
            ) from None

    def _pts(self, frame: Frame) -> int:
        tb = self._time_base
        if frame.pts is None or frame.time_base is None:
            pts = round(frame.index / self._rate / tb)
        elif frame.time_base != tb:
            pts = round(frame.pts * frame.time_base / tb)
        else:
            pts = frame.pts
        if self._last_pts is not None and pts <= self._last_pts:
            if not self._warned_pts:
                log.warning("%s: frame %d pts %d not after %d; shifting it forward",
                            self.path, frame.index, pts, self._last_pts)
                self._warned_pts = True
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _mux_audio(self, until: Fraction | None) -> None:
        """Copy audio packets that start before ``until`` seconds (all when None)."""
        while True:
            packet, self._pending = self._pending, None
            if packet is None:
                packet = next(self._audio_packets, None)
            if packet is None:
                return
            if packet.size == 0:  # demuxer's flush marker, not data
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            if until is not None and ts is not None and ts * packet.time_base > until:
                self._pending = packet
                return
            packet.stream = self._audio_out[packet.stream.index]
            self._out.mux(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._out.mux(self._stream.encode(None))
            self._mux_audio(until=None)
            self._out.close()
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot finish {self.path}: {reason(e)}") from None
        finally:
            self._abandon()

    def _abandon(self) -> None:
        """Close both containers without flushing (after an error or after close)."""
        self._closed = True
        for container in (self._audio_in, self._out):
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError):
                    pass
        self._audio_in = None


def open_sink(
    path: str | os.PathLike,
    info: VideoInfo,
    encode: EncodeConfig | None = None,
    *,
    segment_clock: bool = False,
) -> Sink:
    """Open ``path`` for writing frames shaped like ``info``, encoded as ``encode`` says.

    A video suffix (``.mp4``, ``.mkv``, ...), an ``.m3u8`` playlist or a stream URL gives
    a ``VideoSink`` (``encode.segment``: seconds per file, 0 for one file); an existing
    folder, a path ending in a separator or a path with no suffix gives an
    ``ImageFolderSink``. ``encode.codec`` None lets the container choose (see ``VideoSink``).
    Existing files are overwritten: the overwrite policy belongs to the caller. Raises
    ``OutputError`` (one line) for an unknown suffix, encoder or unwritable path.
    """
    text = os.fspath(path)
    if is_url(text):
        return VideoSink(text, info, encode, segment_clock=segment_clock)
    target = Path(text)
    if target.is_dir() or text.endswith(("/", os.sep)) or not target.suffix:
        return ImageFolderSink(target, info)
    if target.suffix.lower() in VIDEO_SUFFIXES or target.suffix.lower() == ".m3u8":
        return VideoSink(target, info, encode, segment_clock=segment_clock)
    raise OutputError(
        f"cannot tell how to write {target}: use a video suffix "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder"
    )


__all__ = ["ImageFolderSink", "Sink", "VideoSink", "open_sink"]
