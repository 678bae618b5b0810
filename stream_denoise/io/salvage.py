"""The video of an MP4/MOV cut off before its index was written (a dashcam's power loss).

A camera writes MP4/MOV with the index (the ``moov`` box) at the end. When the power goes,
the file keeps its ``ftyp`` and a long ``mdat`` of encoded frames, but no index: FFmpeg
stops at "moov atom not found". This module finds the video's access units in such a file
by scanning the ``mdat`` for H.264 / H.265 NAL units stored as MP4 stores them (each behind
a 4-byte big-endian length, AVCC/HVCC), in file order, which is decode order.

Which bytes are video is decided by the bitstream alone; the audio chunks between the video
ones (AAC, PCM) and damaged runs are stepped over. A candidate NAL unit must:

- have a length of at least its header and at most the bytes left in the ``mdat`` (and
  what a picture of the stream's size can take): no length field is ever trusted further;
- have a valid header (forbidden_zero_bit, a type that carries video, nal_ref_idc or
  nuh_layer_id / TemporalId as its type requires), no byte pattern a NAL unit cannot hold
  (00 00 00, 00 00 01, 00 00 02) and a last byte other than 0;
- parse: parameter sets as parameter sets, SEI messages adding up to its length, slice
  headers consistent with the parameter sets they name (ranges, the CABAC alignment bits);
- continue the sequence: a picture's ``frame_num`` (H.264) or picture order count (H.265)
  follows the previous picture's. After a gap the scan waits for a keyframe, or for a
  picture that the NAL unit right after it confirms.

Bytes that fail are skipped one at a time (a vectorised pre-filter finds the next
candidate), so damage costs what it covers and the scan always ends. The parameter sets
come from the stream itself (SPS/PPS/VPS in band) or from a healthy recording of the same
camera (``reference``: its avcC/hvcC record, NAL length size, frame rate and audio).
"""
from __future__ import annotations

import bisect
import heapq
import logging
import mmap
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from . import nal
from .nal import BitstreamError
from .urls import reason

log = logging.getLogger(__name__)

CODEC_NAMES = {"h264": "H.264", "hevc": "H.265"}
ASSUMED_RATE = Fraction(30)
_FORBIDDEN = (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02")
_WINDOW = 1 << 18  # bytes the pre-filter looks at in one go
_PS_SEARCH = 1 << 30  # bytes searched for in-band parameter sets before giving up
_PS_SEARCH_WITH_REFERENCE = 1 << 26  # ... when a reference gives them anyway
_POC_WINDOW = 32  # largest picture order count step (H.265) within a sequence
_CONTAINERS = frozenset({b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"meta", b"udta",
                         b"moof", b"mfra", b"sidx", b"styp", b"pdin", b"prft", b"emsg"})


@dataclass(frozen=True)
class AccessUnit:
    """One coded picture: its NAL units (without length fields), in decode order.

    ``order`` sorts pictures into presentation order: (coded video sequence, picture
    order count). ``offset`` is where its first NAL unit's length field is in the file.
    """

    nals: tuple[bytes, ...]
    keyframe: bool
    order: tuple[int, int]
    offset: int

    def annexb(self) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + unit for unit in self.nals)


@dataclass(frozen=True)
class Reference:
    """What a healthy recording of the same camera tells about a broken one."""

    path: str
    codec: str  # "h264" or "hevc"
    length_size: int
    parameter_sets: tuple[bytes, ...]
    rate: Fraction | None
    audio: tuple[str, ...]  # e.g. "aac 48000 Hz stereo"


def read_reference(path: str | os.PathLike) -> Reference:
    """The parameter sets, NAL length size, frame rate and audio layout of a healthy file."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"cannot open the reference {path}: {reason(e)}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"the reference {path} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        if codec not in CODEC_NAMES:
            raise InputError(f"the reference {path} is {codec}: salvage reads H.264 and H.265")
        extradata = stream.codec_context.extradata or b""
        try:
            if extradata[:1] == b"\x01":
                size, units = (nal.parse_avcc if codec == "h264" else nal.parse_hvcc)(extradata)
            else:
                size, units = 4, nal.split_annexb(extradata)
        except BitstreamError as e:
            raise InputError(f"the reference {path}: unreadable codec header ({e})") from None
        if not units:
            raise InputError(f"the reference {path} has no parameter sets in its header")
        audio = tuple(
            f"{a.codec_context.name} {a.codec_context.sample_rate} Hz {a.codec_context.layout.name}"
            for a in container.streams.audio if a.codec_context is not None)
        rate = stream.average_rate or stream.guessed_rate
        return Reference(str(path), codec, size, tuple(units), Fraction(rate) if rate else None, audio)


# --- boxes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int
    payload: int  # where its payload begins
    end: int  # where it ends, at most the file's end


def top_level_boxes(data: bytes | mmap.mmap) -> tuple[list[Box], int]:
    """The file's top-level boxes, and where the walk stopped (a box that cannot be one:
    garbage, zeros, a size that does not fit; the file's end when all went well)."""
    boxes, pos, n = [], 0, len(data)
    while pos + 8 <= n:
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), bytes(data[pos + 4:pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > n:
                break
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = n - pos
        if size < header or not all(32 <= c < 127 or c == 0xA9 for c in kind):
            break
        if kind not in _CONTAINERS and kind != b"ftyp" and pos + size > n:
            break  # only a box the camera was still writing may run past the end
        boxes.append(Box(kind, pos, pos + header, min(pos + size, n)))
        pos += size
    return boxes, min(pos, n)


def moov_missing(path: str | os.PathLike) -> bool:
    """An ISO media file (MP4/MOV: ``ftyp`` first) that has no ``moov`` index box."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[4:8] != b"ftyp" or not 16 <= int.from_bytes(head[:4], "big") <= 4096:
                return False
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                boxes, _ = top_level_boxes(data)
    except (OSError, ValueError):
        return False
    return size > 0 and not any(box.kind == b"moov" for box in boxes)


# --- the scan ------------------------------------------------------------------------

@dataclass
class _Candidate:
    pos: int  # of the length field
    end: int  # just past the NAL unit
    kind: int
    tid: int
    parsed: object  # slice header, parameter set, or None


@dataclass
class _Unit:
    """The access unit being gathered."""

    nals: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each NAL unit
    offset: int = -1
    picture: object = None  # the first slice of its picture
    last: object = None  # its latest slice
    keyframe: bool = False
    order: tuple[int, int] = (0, 0)
    drop: bool = False


class Salvage:
    """The video access units of a moov-less MP4/MOV, found by scanning its ``mdat``.

    Opening finds the codec and its parameter sets (in band, or from ``reference``) and
    raises ``InputError`` in one line when there is nothing to salvage. ``access_units()``
    then scans the file once; ``timed()`` adds presentation and decode timestamps, in frames
    at ``rate``. The counts (``units``, ``skipped`` bytes) fill in as the scan goes.
    """

    def __init__(self, path: str | os.PathLike, reference: Reference | str | os.PathLike | None = None):
        self.path = str(path)
        self.name = Path(path).name
        if reference is not None and not isinstance(reference, Reference):
            reference = read_reference(reference)
        self.reference = reference
        try:
            self._file = open(path, "rb")
            size = os.fstat(self._file.fileno()).st_size
            self._data = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {self.name}: {reason(e)}") from None
        try:
            self._open(size)
        except BaseException:
            self.close()
            raise

    def _open(self, size: int) -> None:
        boxes, stop = top_level_boxes(self._data)
        if not boxes or boxes[0].kind != b"ftyp":
            raise InputError(f"{self.name} is not an MP4/MOV file (no ftyp box)")
        self.regions = [(b.payload, b.end) for b in boxes if b.kind == b"mdat" and b.end > b.payload]
        if stop < size:  # bytes the box walk could not read: scanned too
            self.regions.append((stop, size))
        self.units = self.skipped = 0
        ref = self.reference
        self.codec = ref.codec if ref else None
        self.length_size = ref.length_size if ref else 4
        self._spss: dict[int, object] = {}
        self._ppss: dict[int, object] = {}
        self._vpss: dict[int, object] = {}
        self._raw: dict[tuple[int, int], bytes] = {}  # (type, id) -> parameter set NAL unit
        self.in_band = False
        if ref:
            for unit in ref.parameter_sets:
                self._register(unit)
            if not self._spss or not self._ppss:
                raise InputError(f"the reference {ref.path} has no usable SPS/PPS")
        self._find_parameter_sets(_PS_SEARCH_WITH_REFERENCE if ref else _PS_SEARCH)
        sps = next(iter(self._spss.values()))
        self.width, self.height = sps.width, sps.height
        self._vcl_max = (1 << 16) + 4 * sps.width * sps.height
        own = [p.rate for p in (*self._spss.values(), *self._vpss.values()) if p.rate] if self.in_band else []
        if own:
            self.rate, self.rate_source = own[0], "from the stream's timing info"
        elif ref and ref.rate:
            self.rate, self.rate_source = ref.rate, f"from the reference {Path(ref.path).name}"
        else:
            self.rate = ASSUMED_RATE
            self.rate_source = "assumed: the stream has no timing info and no reference gave one"
        self.reorder = sps.reorder if sps.reorder is not None else 16
        self._win_range, self._win_end = (0, 0), -1
        self._win: list[int] = []

    # -- parameter sets --

    @property
    def hevc(self) -> bool:
        return self.codec == "hevc"

    @property
    def label(self) -> str:
        return CODEC_NAMES[self.codec]

    def parameter_sets(self) -> list[bytes]:
        """The parameter set NAL units known now: VPS, SPS, PPS (a decoder's extradata)."""
        order = (32, 33, 34) if self.hevc else (7, 8)
        return [unit for t in order for (k, _), unit in sorted(self._raw.items()) if k == t]

    def extradata(self) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + unit for unit in self.parameter_sets())

    def _register(self, unit: bytes) -> object | None:
        """Parse a parameter set NAL unit and keep it; None if it is not a valid one."""
        if not unit:
            return None
        hevc = self.hevc if self.codec else (unit[0] >> 1) & 0x3F in (32, 33, 34) and len(unit) > 2
        kind = (unit[0] >> 1) & 0x3F if hevc else unit[0] & 0x1F
        try:
            rbsp = nal.unescape(unit)
            if hevc:
                if kind == nal.HEVC_VPS:
                    parsed, table = nal.parse_hevc_vps(rbsp), self._vpss
                elif kind == nal.HEVC_SPS:
                    parsed, table = nal.parse_hevc_sps(rbsp), self._spss
                elif kind == nal.HEVC_PPS:
                    parsed, table = nal.parse_hevc_pps(rbsp, self._spss), self._ppss
                else:
                    return None
            elif kind == nal.H264_SPS:
                parsed, table = nal.parse_h264_sps(rbsp), self._spss
            elif kind == nal.H264_PPS:
                parsed, table = nal.parse_h264_pps(rbsp, self._spss), self._ppss
            else:
                return None
        except BitstreamError:
            return None
        table[parsed.id] = parsed
        self._raw[(kind, parsed.id)] = bytes(unit)
        return parsed

    def _find_parameter_sets(self, limit: int) -> bool:
        """Look for the stream's own parameter sets (in band) in the first ``limit`` bytes:
        an H.264 SPS and PPS, or an H.265 VPS, SPS and PPS, one after another. Without a
        reference, the first found also tells the codec."""
        data, ls = self._data, self.length_size
        searched, anything = 0, False
        for start, end in self.regions:
            pos = start
            while pos < end and searched < limit:
                stop = min(end, pos + 16 * _WINDOW)
                chunk = np.frombuffer(bytes(data[pos:min(end, stop + ls + 2)]), np.uint8)
                n = stop - pos
                head = np.zeros(n + ls + 2, np.uint8)
                head[:chunk.size] = chunk
                anything = anything or bool(chunk.any())
                lead = np.ones(n, bool)  # a parameter set is shorter than 64 KiB
                for k in range(ls - 2):
                    lead &= head[k:k + n] == 0
                h0, h1 = head[ls:ls + n], head[ls + 1:ls + 1 + n]
                found = np.zeros(n, bool)
                if self.codec in (None, "h264"):
                    found |= ((h0 & 0x9F) == 0x07) & ((h0 & 0x60) != 0)
                if self.codec in (None, "hevc"):
                    found |= (h0 == 0x40) & (h1 == 0x01)
                for i in np.flatnonzero(lead & found):
                    if self._try_parameter_sets(pos + int(i), end):
                        self.in_band = True
                        return True
                searched += n
                pos = stop
        if self.reference is not None:
            return False
        if not anything:
            raise InputError(f"{self.name} has no index (moov atom), and no media data after its "
                             f"header but zeros: nothing to salvage")
        what = "SPS/PPS/VPS" if searched < limit else "SPS/PPS/VPS in its first GiB"
        raise InputError(
            f"{self.name} has no index (moov atom) and no parameter sets ({what}) in its media "
            f"data: salvage it with source.reference OK.mp4, a healthy recording from the same camera")

    def _try_parameter_sets(self, pos: int, end: int) -> bool:
        """A chain of parameter sets at ``pos`` (the SPS and PPS, with the VPS for H.265),
        kept if they parse; what was known before stays otherwise."""
        data, ls = self._data, self.length_size
        units = []
        for _ in range(3):
            if pos + ls >= end:
                break
            length = int.from_bytes(data[pos:pos + ls], "big")
            if not 2 <= length <= min(1 << 16, end - pos - ls):
                break
            unit = bytes(data[pos + ls:pos + ls + length])
            if unit[-1] == 0 or any(p in unit for p in _FORBIDDEN):
                break
            units.append(unit)
            pos += ls + length
        saved = self.codec, dict(self._spss), dict(self._ppss), dict(self._vpss), dict(self._raw)
        self.codec = "hevc" if units and units[0][0] == 0x40 else "h264"
        kinds = (32, 33, 34) if self.hevc else (7, 8)
        got = [self._register(u) for u in units[:len(kinds)]]
        if len(got) == len(kinds) and all(got) and all(
                ((u[0] >> 1) & 0x3F if self.hevc else u[0] & 0x1F) == k for u, k in zip(units, kinds)):
            return True
        self.codec, self._spss, self._ppss, self._vpss, self._raw = saved
        return False

    # -- candidates --

    def _limit(self, kind: int) -> int:
        """The largest NAL unit of this type the scan believes."""
        if self.hevc:
            if kind in nal.HEVC_VCL:
                return self._vcl_max
            if kind in (nal.HEVC_PREFIX_SEI, nal.HEVC_SUFFIX_SEI, nal.HEVC_FD):
                return 1 << 20
            return 1 << 16
        if kind in nal.H264_VCL:
            return self._vcl_max
        if kind in (nal.H264_SEI, 12):
            return 1 << 20
        return 1 << 16

    def _next(self, pos: int, end: int) -> int:
        """The first position at or after ``pos`` that the pre-filter lets through (or end):
        a length field that fits and a NAL header that could be video."""
        ls, hdr = self.length_size, 2 if self.hevc else 1
        while pos < end:
            w0, w1 = self._win_range
            if not w0 <= pos < w1 or self._win_end != end:
                w0, w1 = pos, min(end, pos + _WINDOW)
                chunk = np.frombuffer(bytes(self._data[w0:min(end, w1 + ls + hdr)]), np.uint8)
                n = w1 - w0
                head = np.zeros(n + ls + hdr, np.uint8)
                head[:chunk.size] = chunk
                length = np.zeros(n, np.int64)
                for k in range(ls):
                    length = (length << 8) | head[k:k + n]
                room = np.minimum(end - (w0 + np.arange(n, dtype=np.int64)) - ls,
                                  max(self._vcl_max, 1 << 20))
                ok = (length >= hdr) & (length <= room)
                h0 = head[ls:ls + n]
                if self.hevc:
                    ok &= _HEVC_FIRST[h0] & _HEVC_SECOND[head[ls + 1:ls + 1 + n]]
                else:
                    ok &= _H264_FIRST[h0]
                self._win = (w0 + np.flatnonzero(ok)).tolist()
                self._win_range, self._win_end = (w0, w1), end
            i = bisect.bisect_left(self._win, pos)
            if i < len(self._win):
                return self._win[i]
            pos = w1
        return end

    def _candidate(self, pos: int, end: int, parse: bool = True) -> _Candidate | None:
        """The NAL unit at ``pos`` if it passes every check that needs no sequence context
        (with ``parse`` False, all but reading its content)."""
        data, ls = self._data, self.length_size
        hdr = 2 if self.hevc else 1
        if pos + ls + hdr > end:
            return None
        length = int.from_bytes(data[pos:pos + ls], "big")
        start, stop = pos + ls, pos + ls + length
        if length < hdr or stop > end:
            return None
        first = data[start]
        if self.hevc:
            second = data[start + 1]
            if not nal.hevc_header_ok(first, second):
                return None
            kind, tid = (first >> 1) & 0x3F, (second & 7) - 1
            if tid and (kind in nal.HEVC_IRAP or kind in (32, 33, 36, 37)):
                return None
            if tid >= max((s.max_sub_layers for s in self._spss.values()), default=7):
                return None
        else:
            if not nal.h264_header_ok(first):
                return None
            kind, tid = first & 0x1F, 0
        if length > self._limit(kind) or data[stop - 1] == 0:
            return None
        parsed = self._parse(kind, start, stop) if parse else True  # cheaper than the search
        if parsed is None or any(data.find(p, start, stop) >= 0 for p in _FORBIDDEN):
            return None
        return _Candidate(pos, stop, kind, tid, parsed)

    def _parse(self, kind: int, start: int, stop: int) -> object | None:
        """The NAL unit's content checked: a slice header, a parameter set, SEI messages."""
        data, length = self._data, stop - start
        try:
            if self.hevc:
                if kind in nal.HEVC_VCL:
                    return nal.parse_hevc_slice(nal.unescape(data[start:min(stop, start + 640)]),
                                                self._spss, self._ppss)
                if kind == nal.HEVC_VPS:
                    return nal.parse_hevc_vps(nal.unescape(data[start:stop]))
                if kind == nal.HEVC_SPS:
                    return nal.parse_hevc_sps(nal.unescape(data[start:stop]))
                if kind == nal.HEVC_PPS:
                    return nal.parse_hevc_pps(nal.unescape(data[start:stop]), self._spss)
                if kind in (nal.HEVC_PREFIX_SEI, nal.HEVC_SUFFIX_SEI):
                    return True if nal.sei_ok(nal.unescape(data[start:stop]), 2) else None
                if kind == nal.HEVC_AUD:
                    return True if length == 3 else None
                if kind in (nal.HEVC_EOS, nal.HEVC_EOB):
                    return True if length == 2 else None
                return True if data[start + 2:stop - 1].strip(b"\xff") == b"" else None  # filler
            if kind in nal.H264_VCL:
                return nal.parse_h264_slice(nal.unescape(data[start:min(stop, start + 640)]),
                                            self._spss, self._ppss)
            if kind == nal.H264_SPS:
                return nal.parse_h264_sps(nal.unescape(data[start:stop]))
            if kind == nal.H264_PPS:
                return nal.parse_h264_pps(nal.unescape(data[start:stop]), self._spss)
            if kind == nal.H264_SEI:
                return True if nal.sei_ok(nal.unescape(data[start:stop]), 1) else None
            if kind == nal.H264_AUD:
                return True if length == 2 else None
            if kind in (10, 11):
                return True if length == 1 else None
            return True if data[start + 1:stop - 1].strip(b"\xff") == b"" else None  # filler
        except (BitstreamError, KeyError, IndexError):  # KeyError: a parameter set not seen
            return None

    # -- the sequence --

    def _new_picture(self, c: _Candidate) -> bool:
        return c.kind in (nal.HEVC_VCL if self.hevc else nal.H264_VCL) and (
            c.parsed.first if self.hevc else c.parsed.first_mb == 0)

    def _is_keyframe(self, c: _Candidate) -> bool:
        return c.kind in nal.HEVC_IRAP if self.hevc else c.kind == nal.H264_IDR

    def _follows(self, c: _Candidate, prev: _Candidate | None = None) -> bool:
        """Whether a new picture continues the sequence (of ``prev``, else of the scan)."""
        s = c.parsed
        if self.hevc:
            if prev is not None:
                last, bits = prev.parsed.poc_lsb, self._spss[self._ppss[prev.parsed.pps_id].sps_id].log2_max_poc_lsb
                step = (s.poc_lsb - last) % (1 << bits)
                return min(step, (1 << bits) - step) <= _POC_WINDOW
            if self._seq is None:
                return False
            poc = self._hevc_poc(c)
            return abs(poc - self._seq["last_poc"]) <= _POC_WINDOW
        sps = self._spss[self._ppss[s.pps_id].sps_id]
        if sps.gaps_allowed:
            return prev is not None or self._seq is not None
        ref = prev.parsed.frame_num if prev is not None else (
            None if self._seq is None else self._seq["ref_frame_num"])
        if ref is None:
            return False
        step = (s.frame_num - ref) % (1 << sps.log2_max_frame_num)
        return step in (0, 1)

    def _confirmed(self, c: _Candidate, end: int) -> bool:
        """The NAL unit right after a picture's first slice is valid and continues it."""
        nxt = self._candidate(c.end, end)
        if nxt is None:
            return False
        if not self._new_picture(nxt):
            if nxt.kind in (nal.HEVC_VCL if self.hevc else nal.H264_VCL):  # its next slice
                return (nxt.parsed.first_mb if not self.hevc else nxt.parsed.address) > 0
            return True
        return self._follows(nxt, c)

    def _hevc_poc(self, c: _Candidate) -> int:
        s, seq = c.parsed, self._seq
        if c.kind in nal.HEVC_IDR:
            return 0
        bits = self._spss[self._ppss[s.pps_id].sps_id].log2_max_poc_lsb
        top = 1 << bits
        if seq is None or seq.get("reset"):
            msb = 0
        else:
            prev_msb, prev_lsb = seq["tid0"]
            if s.poc_lsb < prev_lsb and prev_lsb - s.poc_lsb >= top // 2:
                msb = prev_msb + top
            elif s.poc_lsb > prev_lsb and s.poc_lsb - prev_lsb > top // 2:
                msb = prev_msb - top
            else:
                msb = prev_msb
        return msb + s.poc_lsb

    def _start_picture(self, c: _Candidate, fresh: bool) -> tuple[int, int]:
        """Take a new picture into the sequence state; its (sequence, POC) order key."""
        s = c.parsed
        if self.hevc:
            reset = fresh or c.kind in (16, 17, 18, 19, 20)
            if reset:
                self._cvs += 1
                self._seq = {"reset": True, "tid0": (0, 0), "last_poc": 0}
                self._skip_rasl = True
            elif c.kind in nal.HEVC_IRAP:
                self._skip_rasl = False
            poc = self._hevc_poc(c)
            self._seq["reset"] = False
            if c.tid == 0 and not (c.kind <= 14 and c.kind % 2 == 0) and c.kind not in range(6, 10):
                self._seq["tid0"] = (poc - s.poc_lsb if c.kind not in nal.HEVC_IDR else 0,
                                     s.poc_lsb if c.kind not in nal.HEVC_IDR else 0)
            self._seq["last_poc"] = poc
            return self._cvs, poc
        sps = self._spss[self._ppss[s.pps_id].sps_id]
        if fresh or s.idr:
            self._cvs += 1
            self._seq = {"ref_frame_num": 0, "msb": 0, "lsb": s.poc_lsb if not s.idr else 0,
                         "offset": 0, "frame_num": s.frame_num}
        seq = self._seq
        if sps.poc_type == 0:
            top = 1 << sps.log2_max_poc_lsb
            if s.idr:
                msb = 0
            elif s.poc_lsb < seq["lsb"] and seq["lsb"] - s.poc_lsb >= top // 2:
                msb = seq["msb"] + top
            elif s.poc_lsb > seq["lsb"] and s.poc_lsb - seq["lsb"] > top // 2:
                msb = seq["msb"] - top
            else:
                msb = seq["msb"]
            poc = msb + s.poc_lsb
            if s.ref:
                seq["msb"], seq["lsb"] = msb, s.poc_lsb
        else:  # types 1 and 2: decode order (type 1 streams with B-frames are rare)
            if s.frame_num < seq["frame_num"]:
                seq["offset"] += 1 << sps.log2_max_frame_num
            poc = 2 * (seq["offset"] + s.frame_num) - (0 if s.ref else 1)
        seq["frame_num"] = s.frame_num
        if s.ref:
            seq["ref_frame_num"] = s.frame_num
        return self._cvs, poc

    # -- access units --

    def access_units(self) -> Iterator[AccessUnit]:
        """The video's access units in file (decode) order, from the first keyframe on."""
        self._seq: dict | None = None
        self._cvs = 0
        self._skip_rasl = False
        self._started = False
        for start, end in self.regions:
            yield from self._scan(start, end)

    def _scan(self, start: int, end: int) -> Iterator[AccessUnit]:
        unit, pos = _Unit(), start
        vcl = nal.HEVC_VCL if self.hevc else nal.H264_VCL
        opens = (frozenset({32, 33, 34, 35, 39}) | frozenset(range(41, 45)) if self.hevc
                 else frozenset({6, 7, 8, 9}))
        while pos < end:
            c = self._candidate(pos, end)
            accepted = False
            if c is not None:
                if c.kind in vcl:
                    if self._new_picture(c):
                        fresh = self._seq is None or not self._follows(c)
                        if not fresh or self._is_keyframe(c) or self._confirmed(c, end):
                            if unit.picture is not None:
                                yield from self._emit(unit)
                                unit = _Unit()
                            unit.order = self._start_picture(c, fresh)
                            unit.picture = unit.last = c.parsed
                            unit.keyframe = self._is_keyframe(c)
                            unit.drop = self.hevc and self._skip_rasl and c.kind in (8, 9)
                            accepted = True
                    elif unit.picture is not None and self._same_picture(unit, c):
                        unit.last = c.parsed
                        accepted = True
                elif c.kind not in opens or self._candidate(c.end, end, parse=False) is not None:
                    # Parameter sets, SEI and delimiters precede a picture's slices in the
                    # same sample: the NAL unit after them must look like one too.
                    if unit.picture is not None and c.kind in opens:
                        yield from self._emit(unit)
                        unit = _Unit()
                    if c.kind in ((32, 33, 34) if self.hevc else (7, 8)):
                        self._register(bytes(self._data[c.pos + self.length_size:c.end]))
                        if not self.hevc or c.kind != 32:
                            self._vcl_max = max(self._vcl_max, (1 << 16) + 4 * max(
                                (s.width * s.height for s in self._spss.values()), default=0))
                    accepted = True
            if accepted:
                if unit.offset < 0:
                    unit.offset = c.pos
                unit.nals.append((c.pos + self.length_size, c.end))
                pos = c.end
                continue
            # The chain of NAL units breaks here: the unit is complete, unless a slice of its
            # picture was still being written when the file was cut off.
            if unit.picture is not None and not self._cut_in_picture(unit, pos, end):
                yield from self._emit(unit)
            unit = _Unit()
            nxt = self._next(pos + 1, end)
            self.skipped += nxt - pos
            pos = nxt
        if unit.picture is not None:  # the data ended with a whole NAL unit
            yield from self._emit(unit)

    def _same_picture(self, unit: _Unit, c: _Candidate) -> bool:
        s, last = c.parsed, unit.last
        if self.hevc:
            return s.address > last.address and (s.dependent or s.poc_lsb == unit.picture.poc_lsb)
        return (s.first_mb > last.first_mb and s.frame_num == last.frame_num
                and s.pps_id == last.pps_id and s.idr == last.idr)

    def _cut_in_picture(self, unit: _Unit, pos: int, end: int) -> bool:
        """Whether the bytes at ``pos`` are the start of a next slice of ``unit``'s picture
        that runs past the end of the data (the file was cut off inside the picture)."""
        ls = self.length_size
        if pos + ls + 2 > end:
            return False
        length = int.from_bytes(self._data[pos:pos + ls], "big")
        if length <= end - pos - ls or length > self._vcl_max:
            return False
        first = self._data[pos + ls]
        kind = (first >> 1) & 0x3F if self.hevc else first & 0x1F
        if kind not in (nal.HEVC_VCL if self.hevc else nal.H264_VCL):
            return False
        parsed = self._parse(kind, pos + ls, end)
        if parsed is None:
            return False
        return not (parsed.first if self.hevc else parsed.first_mb == 0)

    def _emit(self, unit: _Unit) -> Iterator[AccessUnit]:
        if unit.drop or (not self._started and not unit.keyframe):
            return
        self._started = True
        self.units += 1
        yield AccessUnit(tuple(bytes(self._data[a:b]) for a, b in unit.nals), unit.keyframe,
                         unit.order, unit.offset)

    def timed(self) -> Iterator[tuple[AccessUnit, int, int]]:
        """(unit, pts, dts) in decode order, in frames: presentation order from the picture
        order counts (a buffer of ``reorder`` + 1 pictures), dts running ``reorder`` frames
        behind so that it never passes pts."""
        depth = self.reorder + 1
        pending: deque[tuple[int, AccessUnit]] = deque()
        heap: list[tuple[tuple[int, int], int]] = []
        ranks: dict[int, int] = {}
        shown = 0

        def release(until: int) -> Iterator[tuple[AccessUnit, int, int]]:
            nonlocal shown
            while len(heap) > until:
                _, seq = heapq.heappop(heap)
                ranks[seq] = shown
                shown += 1
            while pending and pending[0][0] in ranks:
                seq, au = pending.popleft()
                dts = seq - self.reorder
                yield au, max(ranks.pop(seq), dts), dts

        for seq, au in enumerate(self.access_units()):
            pending.append((seq, au))
            heapq.heappush(heap, (au.order, seq))
            yield from release(depth)
        yield from release(0)

    def summary(self, frames: int) -> str:
        """The one line that says what happened."""
        ref = Path(self.reference.path).name if self.reference else ""
        ps = f"the reference {ref}'s parameter sets" if ref and not self.in_band else "its own parameter sets"
        audio = ""
        if self.reference and self.reference.audio:
            audio = f"; its audio ({', '.join(self.reference.audio)}) is not recovered"
        return (f"{self.name} has no index (moov atom), as when a recording is cut off by a power "
                f"loss: salvaged {frames} {self.label} frames from its media data with {ps}, "
                f"timed at {float(self.rate):g} fps ({self.rate_source}); "
                f"{_kb(self.skipped)} of audio or damaged data skipped{audio}")

    def close(self) -> None:
        self._win = []
        data = getattr(self, "_data", None)
        if isinstance(data, mmap.mmap):
            data.close()
        if getattr(self, "_file", None) is not None:
            self._file.close()

    def __enter__(self) -> Salvage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _lut(check) -> np.ndarray:
    return np.array([check(b) for b in range(256)], bool)


_H264_FIRST = _lut(nal.h264_header_ok)
_HEVC_FIRST = _lut(lambda b: not b & 0x81 and ((b >> 1) & 0x3F) in nal.HEVC_TYPES)
_HEVC_SECOND = _lut(lambda b: not b & 0xF8 and bool(b & 7))


__all__ = ["AccessUnit", "Reference", "Salvage", "moov_missing", "read_reference", "top_level_boxes"]
