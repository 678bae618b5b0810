"""A recording with no index (moov), salvaged: decoded as a ``Source`` for ``run``, or
remuxed into a playable file for ``stream-denoise salvage`` (no re-encode).

The access units come from :mod:`.salvage`; this module only decodes or muxes them.
"""
from __future__ import annotations

import io
import itertools
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError, OutputError
from ..frame import Frame, VideoInfo
from .base import Source
from .salvage import AccessUnit, Reference, Salvage, moov_missing
from .urls import reason

log = logging.getLogger(__name__)


def _nothing(salvage: Salvage) -> InputError:
    return InputError(f"{salvage.name} has no index (moov atom) and no {salvage.label} frames "
                      f"could be salvaged from its media data"
                      + ("" if salvage.reference else " (with source.reference OK.mp4, a healthy "
                                                      "recording from the same camera, maybe)"))


class SalvagedSource(Source):
    """The frames of a moov-less MP4/MOV: its access units decoded in order.

    Timestamps are in frames at the salvaged rate (``time_base`` = 1 / rate). The input's
    audio is not carried (``audio_from`` None). One warning says what was salvaged.
    """

    def __init__(self, path: str | os.PathLike, *, reference: Reference | str | os.PathLike | None = None,
                 threads: int = 0) -> None:
        self._salvage = salvage = Salvage(path, reference)
        self._closed = self._started = self._told = False
        self.corrupt_frames = 0
        self._count = 0
        try:
            self._ctx = av.CodecContext.create(salvage.codec, "r")
            self._ctx.extradata = salvage.extradata()
            self._ctx.thread_type = "AUTO"
            self._ctx.thread_count = threads
            self._time_base = 1 / Fraction(salvage.rate)
            self._decoder = self._decoded()
            self._head = next((frames for frames in self._decoder if frames), [])
            if not self._head:
                raise _nothing(salvage)
        except BaseException:
            salvage.close()
            raise
        first = self._head[0]
        self.info = VideoInfo(width=first.width, height=first.height, time_base=self._time_base,
                              rate=Fraction(salvage.rate), frames=None, audio_from=None)

    def _decoded(self) -> Iterator[list[av.VideoFrame]]:
        ctx, tb = self._ctx, self._time_base
        for unit, pts, dts in self._salvage.timed():
            packet = av.Packet(unit.annexb())
            packet.pts, packet.dts, packet.time_base = pts, dts, tb
            try:
                yield ctx.decode(packet)
            except av.FFmpegError:
                self.corrupt_frames += 1
        try:
            yield ctx.decode(None)
        except av.FFmpegError:
            self.corrupt_frames += 1

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError(f"{self._salvage.name} is already being read; open it again to restart")
        self._started = True
        prev = None
        for frames in itertools.chain([self._head], self._decoder):
            for vf in frames:
                if vf.is_corrupt:
                    self.corrupt_frames += 1
                pts = vf.pts if vf.pts is not None and (prev is None or vf.pts > prev) else (
                    0 if prev is None else prev + 1)
                prev = pts
                image = np.ascontiguousarray(vf.to_ndarray(format="rgb24"))
                yield Frame(self._count, image, pts, self._time_base)
                self._count += 1
        self._tell()
        if self.corrupt_frames:
            log.warning("%s: %d corrupt packets/frames skipped or concealed",
                        self._salvage.name, self.corrupt_frames)

    def _tell(self) -> None:
        if not self._told:
            self._told = True
            log.warning("%s", self._salvage.summary(self._count))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._started:
                self._tell()
            self._salvage.close()


def open_salvaged(path: str | os.PathLike, *, reference: str | os.PathLike | None = None,
                  threads: int = 0) -> SalvagedSource | None:
    """A source for ``path`` if it is an MP4/MOV without an index (else None): the hook for
    files FFmpeg refuses."""
    if not moov_missing(path):
        return None
    return SalvagedSource(path, reference=reference, threads=threads)


def _template(salvage: Salvage, first: AccessUnit) -> av.container.InputContainer:
    """A stream to copy the output stream's codec parameters from: the parameter sets and
    first picture as a raw Annex B stream, read by FFmpeg."""
    raw = io.BytesIO(salvage.extradata() + first.annexb())
    try:
        return av.open(raw, "r", format="h264" if salvage.codec == "h264" else "hevc")
    except av.FFmpegError as e:
        raise InputError(f"{salvage.name}: the salvaged stream does not parse: {reason(e)}") from None


def write_salvaged(path: str | os.PathLike, output: str | os.PathLike, *,
                   reference: str | os.PathLike | None = None, overwrite: bool = False) -> tuple[int, str]:
    """Remux the salvaged video of a moov-less ``path`` into ``output`` without re-encoding:
    (frames written, the one-line summary). The file appears under its name only when
    complete (it is written as ``NAME.partial.EXT`` first)."""
    out = Path(output)
    if not Path(path).is_file():
        raise InputError(f"no such file: {path}")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} already exists (use output.overwrite to replace it)")
    if not out.parent.is_dir():
        raise OutputError(f"output folder {out.parent} does not exist")
    if Path(path).resolve() == out.resolve():
        raise OutputError(f"the output {out} is the input")
    if not moov_missing(path):
        try:
            av.open(str(path)).close()
        except (av.FFmpegError, OSError) as e:
            raise InputError(f"cannot open {Path(path).name}: {reason(e)}, and it is not an "
                             f"MP4/MOV without an index either") from None
        raise InputError(f"{Path(path).name} has its index (moov atom) and plays as it is: "
                         f"nothing to salvage")
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    count = 0
    with Salvage(path, reference) as salvage:
        units = salvage.timed()
        first = next(units, None)
        if first is None:
            raise _nothing(salvage)
        tb = 1 / Fraction(salvage.rate)
        try:
            container = av.open(str(partial), "w")
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot write {out}: {reason(e)}") from None
        try:
            with _template(salvage, first[0]) as template:
                stream = container.add_stream_from_template(template.streams.video[0])
            stream.codec_context.extradata = salvage.extradata()
            if salvage.codec == "hevc" and not salvage.in_band and container.format.name in ("mp4", "mov"):
                stream.codec_context.codec_tag = "hvc1"  # parameter sets in the header only: what Apple plays
            stream.time_base = tb
            stream.codec_context.framerate = Fraction(salvage.rate)
            for unit, pts, dts in itertools.chain([first], units):
                packet = av.Packet(unit.annexb())
                packet.pts, packet.dts, packet.time_base = pts, dts, tb
                packet.is_keyframe = unit.keyframe
                packet.stream = stream
                container.mux(packet)
                count += 1
            container.close()
        except BaseException as e:
            try:
                container.close()
            except av.FFmpegError:
                pass
            partial.unlink(missing_ok=True)
            if isinstance(e, (av.FFmpegError, ValueError)):
                raise OutputError(f"cannot write {out}: {reason(e)}") from None
            raise
        os.replace(partial, out)
        return count, salvage.summary(count)


__all__ = ["SalvagedSource", "open_salvaged", "write_salvaged"]
