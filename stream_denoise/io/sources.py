"""Frame sources: a video file, a folder of images, or a stream URL, read as ``Frame``s.

>>> with open_source("clip.mp4") as src:  # doctest: +SKIP
...     print(src.info.width, src.info.height)
...     for frame in src:
...         frame.image.shape  # (H, W, 3) uint8 RGB
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import av
import cv2
import numpy as np
from av.codec.hwaccel import HWAccel

from ..errors import InputError
from ..frame import Frame, VideoInfo
from .base import Source
from .salvaged import open_salvaged
from .urls import is_device, is_url, reason, redact

log = logging.getLogger(__name__)

# What files are inputs (and outputs): the one list jobs, sinks and training data go by.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".flv",
     ".mpg", ".mpeg", ".ogv", ".nut", ".y4m"}
)

_DIGITS = re.compile(r"(\d+)")


class VideoSource(Source):
    """Decodes the first video stream of a file or URL with FFmpeg (via PyAV).

    Packets are demuxed and decoded here, not with ``container.decode()``, so that a
    packet the decoder rejects is counted in ``corrupt_frames`` and skipped instead of
    ending the run. Frames the decoder outputs but flags as corrupt (h264 error
    concealment) are yielded and counted too.

    Timestamps: ``pts`` is the decoded frame's pts in the stream's ``time_base``. When
    FFmpeg gives none, the frame's packet dts is used (PyAV 18 does not expose
    ``best_effort_timestamp``); failing that, the previous pts plus one frame at the
    nominal rate (or plus 1 when the rate is unknown).

    Orientation: a display matrix (phone video shot upright) is applied to the pixels,
    as ffmpeg's default ``-autorotate`` does, and ``info`` has the displayed size. Frames
    are turned here, before the model, rather than the matrix carried to the output,
    because the model then sees what a viewer sees (rain falls down, as in its
    training) and image-folder, attention and compare outputs, which have no place for
    a matrix, come out upright too. PyAV 18 gives the matrix only with decoded frames
    (``frame.side_data``), so opening decodes the first frame to learn it.
    """

    def __init__(
        self,
        spec: str,
        *,
        threads: int = 0,
        timeout: float | tuple[float, float] | None = None,
        options: Mapping[str, str] | None = None,
        format: str | None = None,
        hwaccel: str | None = None,
    ) -> None:
        self._name = redact(spec)
        fmt = format or ("v4l2" if is_device(spec) else None)  # a camera's, FFmpeg cannot guess
        kw = {"format": fmt, "timeout": timeout, "options": dict(options or {})}
        self._container = None
        if hwaccel and hwaccel != "none":
            try:
                self._container = av.open(spec, "r", hwaccel=HWAccel(hwaccel), **kw)
            except (av.FFmpegError, OSError, ValueError) as e:
                # No such device here (or no driver): decode in software rather than fail.
                log.warning("%s: %s hardware decoding unavailable (%s); decoding in software",
                            self._name, hwaccel, reason(e))
        try:
            if self._container is None:
                self._container = av.open(spec, "r", **kw)
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"cannot open {self._name} as video: {reason(e)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"no video stream in {self._name}")
        self._stream = stream = self._container.streams.video[0]
        if stream.codec_context is None:
            self._container.close()
            raise InputError(f"cannot decode {self._name}: this FFmpeg build has no decoder "
                             f"for its video codec")
        stream.thread_type = "AUTO"  # frame + slice threads: the decode is otherwise one core
        stream.codec_context.thread_count = threads
        ctx = stream.codec_context
        has_audio = bool(self._container.streams.audio)
        self.corrupt_frames = 0
        self._closed = self._started = False
        self._decoder = self._decoded()
        self._head = next((frames for frames in self._decoder if frames), [])
        self._turns, self._mirror = _orientation(self._head[0]) if self._head else (0, False)
        if self._turns or self._mirror:
            log.info("%s: display matrix: turning frames %d degrees%s", self._name,
                     90 * self._turns, ", mirrored" if self._mirror else "")
        swap = self._turns % 2
        self.info = VideoInfo(
            width=ctx.height if swap else ctx.width,
            height=ctx.width if swap else ctx.height,
            time_base=stream.time_base,
            rate=stream.average_rate or None,
            frames=stream.frames if stream.frames > 0 else None,
            # A live URL reopened later would not give the same audio; only files qualify.
            audio_from=spec if has_audio and not is_url(spec) else None,
        )

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError(f"{self._name} is already being read; open it again to restart")
        self._started = True
        tb = self._stream.time_base
        step = self.info.frame_step(tb)
        index, prev = 0, None
        for frames in itertools.chain([self._head], self._decoder):
            for vf in frames:
                if vf.is_corrupt:
                    self.corrupt_frames += 1
                pts = vf.pts if vf.pts is not None else vf.dts
                if pts is None:
                    pts = 0 if prev is None else prev + step
                prev = pts
                image = np.rot90(vf.to_ndarray(format="rgb24"), self._turns)
                if self._mirror:
                    image = image[:, ::-1]
                image = np.ascontiguousarray(image)
                yield Frame(index, image, pts, tb)
                index += 1
        if index == 0:
            raise InputError(f"no decodable video frames in {self._name}")
        if self.corrupt_frames:
            log.warning("%s: %d corrupt packets/frames skipped or concealed",
                        self._name, self.corrupt_frames)

    def _decoded(self) -> Iterator[list[av.VideoFrame]]:
        """Lists of decoded frames, packet by packet, then the decoder's flush."""
        stream = self._stream
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:  # PyAV's end-of-stream marker; we flush below
                    continue
                try:
                    yield stream.decode(packet)
                except av.FFmpegError:
                    self.corrupt_frames += 1
        except av.FFmpegError as e:
            # The demuxer itself gave up (truncated file, dropped connection): keep
            # what was decoded and say why the input ended early.
            self.corrupt_frames += 1
            log.warning("%s: stopped reading: %s", self._name, reason(e))
        try:
            yield stream.decode(None)
        except av.FFmpegError:
            self.corrupt_frames += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


def _orientation(frame: av.VideoFrame) -> tuple[int, bool]:
    """(quarter turns counterclockwise, then mirror left-right) that show ``frame`` the
    way its display matrix says; (0, False) without one, or with a warning for angles
    that are not a multiple of 90 degrees."""
    data = frame.side_data.get("DISPLAYMATRIX")
    if data is None:
        return 0, False
    m = np.frombuffer(bytes(data), np.int32)[[0, 1, 3, 4]].astype(float)  # a b c d
    m /= np.hypot(m[0], m[2]) or 1  # any scale aside
    for turns, (cos, sin) in enumerate(((1, 0), (0, 1), (-1, 0), (0, -1))):
        for mirror in (False, True):
            s = -1 if mirror else 1  # FFmpeg's hflip negates the matrix's first column
            if np.allclose(m, (s * cos, -sin, s * sin, cos), atol=1e-3):
                return turns, mirror
    log.warning("display rotation %.0f degrees is not a multiple of 90; frames are left as "
                "stored", frame.rotation)
    return 0, False


def _natural_key(path: Path) -> list[int | str]:
    """``img2`` before ``img10``: digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(path.name)]


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; InputError if it cannot be decoded."""
    # imdecode from bytes, not imread: imread fails on non-ASCII paths on Windows.
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


class ImageFolderSource(Source):
    """Images of a folder in natural name order; untimed (``pts``/``time_base`` None)."""

    def __init__(self, folder: Path) -> None:
        self._paths = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=_natural_key,
        )
        if not self._paths:
            raise InputError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}"
            )
        self._first = read_rgb(self._paths[0])
        h, w = self._first.shape[:2]
        self.info = VideoInfo(width=w, height=h, frames=len(self._paths))
        self.corrupt_frames = 0

    def __iter__(self) -> Iterator[Frame]:
        size = self._first.shape
        for index, path in enumerate(self._paths):
            image = self._first if index == 0 else read_rgb(path)
            if image.shape != size:
                raise InputError(
                    f"image {path} is {image.shape[1]}x{image.shape[0]}, "
                    f"expected {size[1]}x{size[0]} like {self._paths[0].name}"
                )
            yield Frame(index, image)


def open_source(
    spec: str | os.PathLike,
    *,
    threads: int = 0,
    timeout: float | tuple[float, float] | None = None,
    options: Mapping[str, str] | None = None,
    hwaccel: str | None = None,
    reference: str | os.PathLike | None = None,
) -> Source:
    """Open a video file, an image folder, a stream URL or a camera device for reading.

    ``threads`` is FFmpeg's decoder thread count (0: FFmpeg chooses). ``timeout``
    (seconds, or ``(open, read)``) and ``options`` (FFmpeg AVOptions such as
    ``{"rtsp_transport": "tcp"}``) go to ``av.open``; a stream that drops ends here
    (:func:`.inputs.open_input` reconnects). Raises ``InputError`` with one line naming
    the input (credentials redacted) when it cannot be opened. ``hwaccel`` (e.g. ``"cuda"``) decodes on that
    device, falling back to software with a warning when it cannot be used. An MP4/MOV
    that FFmpeg refuses because it has no index (a recording cut off by a power loss) is
    salvaged (:mod:`.salvaged`), with ``reference``, a healthy file from the same camera,
    where the stream lacks its parameter sets.
    """
    if is_url(spec) or is_device(spec):
        return VideoSource(str(spec), threads=threads, timeout=timeout, options=options, hwaccel=hwaccel)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file or a folder")
    try:
        return VideoSource(str(path), threads=threads, timeout=timeout, options=options, hwaccel=hwaccel)
    except InputError:
        salvaged = open_salvaged(path, reference=reference, threads=threads)
        if salvaged is None:
            raise
        return salvaged


__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "ImageFolderSource",
    "Source",
    "VideoSource",
    "open_source",
]
