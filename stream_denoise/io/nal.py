"""H.264 and H.265 bitstream syntax, as much as telling real NAL units from other bytes needs.

Parameter sets (SPS/PPS, and the VPS of H.265) are parsed for what a slice header needs and
for the stream's frame rate (VUI timing) and reordering depth; slice headers are parsed far
enough to check them against those parameter sets (ITU-T H.264 7.3.3 and H.265 7.3.6) and
to give ``frame_num`` and the picture order count. Every read is bounded by the bytes
given: a corrupt field raises ``BitstreamError``, it never drives an allocation or a loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


class BitstreamError(ValueError):
    """Bytes that do not parse as the syntax element they were read as."""


def unescape(data: bytes) -> bytes:
    """The RBSP of a NAL unit payload: every emulation prevention byte (00 00 03) dropped."""
    if b"\x00\x00\x03" not in data:
        return data
    out, start = bytearray(), 0
    while True:
        i = data.find(b"\x00\x00\x03", start)
        if i < 0:
            out += data[start:]
            return bytes(out)
        out += data[start:i + 2]
        start = i + 3


class Bits:
    """A big-endian bit reader over bytes; reading past the end raises BitstreamError."""

    __slots__ = ("_value", "_size", "pos")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._size = 8 * len(data)
        self.pos = 0

    @property
    def left(self) -> int:
        return self._size - self.pos

    def u(self, n: int) -> int:
        if n == 0:
            return 0
        if self.pos + n > self._size:
            raise BitstreamError("read past the end")
        self.pos += n
        return (self._value >> (self._size - self.pos)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def skip(self, n: int) -> None:
        if self.pos + n > self._size:
            raise BitstreamError("read past the end")
        self.pos += n

    def ue(self, limit: int = 1 << 32) -> int:
        """Exp-Golomb, checked against ``limit`` (inclusive)."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise BitstreamError("Exp-Golomb code too long")
        value = (1 << zeros) - 1 + self.u(zeros)
        if value > limit:
            raise BitstreamError(f"value {value} over {limit}")
        return value

    def se(self, low: int = -(1 << 31), high: int = 1 << 31) -> int:
        k = self.ue()
        value = (k + 1) // 2 if k % 2 else -(k // 2)
        if not low <= value <= high:
            raise BitstreamError(f"value {value} outside [{low}, {high}]")
        return value

    def aligned_ones(self) -> None:
        """CABAC's alignment bits: ones up to the next byte boundary."""
        while self.pos % 8:
            if not self.u(1):
                raise BitstreamError("alignment bit is not 1")


def _rate(time_scale: int, units: int) -> Fraction | None:
    """A frame rate from VUI timing, if it is one a camera could have (1-300 fps)."""
    if units <= 0 or time_scale <= 0:
        return None
    rate = Fraction(time_scale, units)
    return rate if 1 <= rate <= 300 else None


# --- H.264 ---------------------------------------------------------------------------

H264_VCL = frozenset({1, 5})
H264_IDR = 5
H264_SEI, H264_SPS, H264_PPS, H264_AUD = 6, 7, 8, 9
H264_TYPES = frozenset({1, 5, 6, 7, 8, 9, 10, 11, 12})  # no data partitions, SVC or MVC
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True)
class H264Sps:
    id: int
    profile: int
    chroma_format: int
    separate_planes: bool
    bit_depth: int
    log2_max_frame_num: int
    poc_type: int
    log2_max_poc_lsb: int
    poc_always_zero: bool
    gaps_allowed: bool
    frame_mbs_only: bool
    mbs: int  # macroblocks in a frame
    width: int
    height: int
    rate: Fraction | None
    reorder: int | None  # max_num_reorder_frames, when the VUI says


@dataclass(frozen=True)
class H264Pps:
    id: int
    sps_id: int
    cabac: bool
    bottom_poc: bool
    refs_l0: int
    refs_l1: int
    weighted_pred: bool
    weighted_bipred: int
    init_qp: int
    deblocking_control: bool
    redundant_pic_cnt: bool


@dataclass(frozen=True)
class H264Slice:
    first_mb: int
    slice_type: int  # 0 P, 1 B, 2 I, 3 SP, 4 SI
    pps_id: int
    frame_num: int
    idr: bool
    ref: bool
    poc_lsb: int


def h264_header_ok(byte: int) -> bool:
    """forbidden_zero_bit 0, a type we accept, nal_ref_idc as the type requires."""
    if byte & 0x80:
        return False
    ref, kind = byte >> 5, byte & 0x1F
    if kind not in H264_TYPES:
        return False
    if kind in (5, 7, 8):
        return ref != 0
    if kind in (6, 9, 10, 11, 12):
        return ref == 0
    return True


def _scaling_lists(b: Bits, count: int) -> None:
    for i in range(count):
        if b.flag():
            last = nxt = 8
            for _ in range(16 if i < 6 else 64):
                if nxt:
                    nxt = (last + b.se(-128, 127) + 256) % 256
                last = nxt or last


def _hrd(b: Bits) -> None:
    count = b.ue(31) + 1
    b.skip(8)
    for _ in range(count):
        b.ue()
        b.ue()
        b.skip(1)
    b.skip(20)


def _skip_vui_head(b: Bits) -> None:
    """Skip the VUI fields H.264 and H.265 share before their timing: aspect ratio,
    overscan, video signal type and chroma location."""
    if b.flag() and b.u(8) == 255:  # extended sample aspect ratio
        b.skip(32)
    if b.flag():
        b.skip(1)
    if b.flag():
        b.skip(4)
        if b.flag():
            b.skip(24)
    if b.flag():
        b.ue()
        b.ue()


def parse_h264_sps(rbsp: bytes) -> H264Sps:
    """An SPS NAL unit's RBSP (header byte first)."""
    b = Bits(rbsp[:512])
    b.skip(8)
    profile = b.u(8)
    b.skip(16)
    sps_id = b.ue(31)
    chroma, separate, depth = 1, False, 8
    if profile in _HIGH_PROFILES:
        chroma = b.ue(3)
        if chroma == 3:
            separate = b.flag()
        depth = b.ue(6) + 8
        b.ue(6)
        b.skip(1)
        if b.flag():
            _scaling_lists(b, 8 if chroma != 3 else 12)
    log2_frame_num = b.ue(12) + 4
    poc_type = b.ue(2)
    log2_poc, always_zero = 0, False
    if poc_type == 0:
        log2_poc = b.ue(12) + 4
    elif poc_type == 1:
        always_zero = b.flag()
        b.se()
        b.se()
        for _ in range(b.ue(255)):
            b.se()
    b.ue(32)
    gaps = b.flag()
    width_mbs = b.ue(1023) + 1
    height_units = b.ue(1023) + 1
    frame_mbs_only = b.flag()
    if not frame_mbs_only:
        b.skip(1)
    b.skip(1)
    height_mbs = height_units * (1 if frame_mbs_only else 2)
    width, height = 16 * width_mbs, 16 * height_mbs
    if b.flag():  # frame cropping, in chroma units
        cx = 1 if chroma in (0, 3) or separate else 2
        cy = (1 if chroma in (0, 3) or chroma == 2 or separate else 2) * (1 if frame_mbs_only else 2)
        left, right, top, bottom = (b.ue(8192) for _ in range(4))
        width -= cx * (left + right)
        height -= cy * (top + bottom)
    if width <= 0 or height <= 0:
        raise BitstreamError("cropped away the whole picture")
    rate = reorder = None
    if b.flag():  # VUI
        _skip_vui_head(b)
        if b.flag():
            units, scale = b.u(32), b.u(32)
            b.skip(1)
            rate = _rate(scale, 2 * units)
        hrd = False
        for _ in range(2):  # NAL, then VCL HRD parameters
            if b.flag():
                _hrd(b)
                hrd = True
        if hrd:
            b.skip(1)
        b.skip(1)
        if b.flag():  # bitstream restriction
            b.skip(1)
            for _ in range(4):
                b.ue()
            reorder = b.ue(16)
            b.ue(16)
    if poc_type == 2:
        reorder = 0
    return H264Sps(sps_id, profile, chroma, separate, depth, log2_frame_num, poc_type, log2_poc,
                   always_zero, gaps, frame_mbs_only, width_mbs * height_mbs, width, height, rate, reorder)


def parse_h264_pps(rbsp: bytes, spss: dict[int, H264Sps]) -> H264Pps:
    b = Bits(rbsp[:256])
    b.skip(8)
    pps_id, sps_id = b.ue(255), b.ue(31)
    if sps_id not in spss:
        raise BitstreamError(f"PPS names SPS {sps_id}, not seen")
    cabac, bottom_poc = b.flag(), b.flag()
    if b.ue(7) > 0:
        raise BitstreamError("slice groups (FMO) are not supported")
    refs_l0, refs_l1 = b.ue(31) + 1, b.ue(31) + 1
    weighted, bipred = b.flag(), b.u(2)
    if bipred == 3:
        raise BitstreamError("weighted_bipred_idc 3")
    depth = spss[sps_id].bit_depth
    init_qp = 26 + b.se(-26 - 6 * (depth - 8), 25)
    b.se(-26, 25)
    b.se(-12, 12)
    deblocking, _constrained, redundant = b.flag(), b.flag(), b.flag()
    return H264Pps(pps_id, sps_id, cabac, bottom_poc, refs_l0, refs_l1, weighted, bipred, init_qp,
                   deblocking, redundant)


def _h264_ref_list_modification(b: Bits, refs: int) -> None:
    if b.flag():
        for _ in range(refs + 1):
            idc = b.ue(3)
            if idc == 3:
                return
            b.ue()
        raise BitstreamError("ref_pic_list_modification does not end")


def _h264_weights(b: Bits, sps: H264Sps, refs: int) -> None:
    chroma = sps.chroma_format != 0 and not sps.separate_planes
    b.ue(7)
    if chroma:
        b.ue(7)
    for _ in range(refs):
        if b.flag():
            b.se(-128, 127)
            b.se(-512, 511)
        if chroma and b.flag():
            for _ in range(4):
                b.se(-512, 511)


def parse_h264_slice(rbsp: bytes, spss: dict[int, H264Sps], ppss: dict[int, H264Pps]) -> H264Slice:
    """A slice NAL unit's header, checked against the parameter sets it names."""
    b = Bits(rbsp[:512])
    header = b.u(8)
    ref, kind = bool(header >> 5), header & 0x1F
    idr = kind == H264_IDR
    first_mb = b.ue(1 << 20)
    slice_type = b.ue(9) % 5
    pps_id = b.ue(255)
    pps = ppss.get(pps_id)
    if pps is None:
        raise BitstreamError(f"slice names PPS {pps_id}, not seen")
    sps = spss[pps.sps_id]
    if first_mb >= sps.mbs:
        raise BitstreamError("first_mb_in_slice outside the picture")
    if idr and slice_type not in (2, 4):
        raise BitstreamError("IDR slice that is not intra")
    if sps.separate_planes:
        if b.u(2) > 2:
            raise BitstreamError("colour_plane_id")
    frame_num = b.u(sps.log2_max_frame_num)
    field = False
    if not sps.frame_mbs_only:
        field = b.flag()
        if field:
            b.skip(1)
    if idr:
        if frame_num:
            raise BitstreamError("IDR with frame_num != 0")
        b.ue(65535)
    poc_lsb = 0
    if sps.poc_type == 0:
        poc_lsb = b.u(sps.log2_max_poc_lsb)
        if pps.bottom_poc and not field:
            b.se()
    elif sps.poc_type == 1 and not sps.poc_always_zero:
        b.se()
        if pps.bottom_poc and not field:
            b.se()
    if pps.redundant_pic_cnt:
        b.ue(127)
    refs_l0, refs_l1 = pps.refs_l0, pps.refs_l1
    if slice_type == 1:
        b.skip(1)  # direct_spatial_mv_pred_flag
    if slice_type in (0, 1, 3):
        if b.flag():
            refs_l0 = b.ue(31) + 1
            if slice_type == 1:
                refs_l1 = b.ue(31) + 1
    if slice_type not in (2, 4):
        _h264_ref_list_modification(b, refs_l0)
        if slice_type == 1:
            _h264_ref_list_modification(b, refs_l1)
    if (pps.weighted_pred and slice_type in (0, 3)) or (pps.weighted_bipred == 1 and slice_type == 1):
        _h264_weights(b, sps, refs_l0)
        if slice_type == 1:
            _h264_weights(b, sps, refs_l1)
    if ref:  # dec_ref_pic_marking
        if idr:
            b.skip(2)
        elif b.flag():
            for _ in range(66):
                op = b.ue(6)
                if op == 0:
                    break
                if op in (1, 3):
                    b.ue()
                if op == 2:
                    b.ue()
                if op in (3, 6):
                    b.ue(31)
                if op == 4:
                    b.ue(32)
            else:
                raise BitstreamError("memory management operations do not end")
    if pps.cabac and slice_type not in (2, 4):
        b.ue(2)
    qp = pps.init_qp + b.se(-200, 200)
    if not -6 * (sps.bit_depth - 8) <= qp <= 51:
        raise BitstreamError("slice QP out of range")
    if slice_type in (3, 4):
        if slice_type == 3:
            b.skip(1)
        b.se(-51, 51)
    if pps.deblocking_control:
        if b.ue(2) != 1:
            b.se(-6, 6)
            b.se(-6, 6)
    if pps.cabac:
        b.aligned_ones()
    return H264Slice(first_mb, slice_type, pps_id, frame_num, idr, ref, poc_lsb)


# --- H.265 ---------------------------------------------------------------------------

HEVC_VCL = frozenset(range(0, 10)) | frozenset(range(16, 22))
HEVC_IRAP = frozenset(range(16, 22))
HEVC_IDR = frozenset({19, 20})
HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_AUD, HEVC_EOS, HEVC_EOB, HEVC_FD = 32, 33, 34, 35, 36, 37, 38
HEVC_PREFIX_SEI, HEVC_SUFFIX_SEI = 39, 40
HEVC_TYPES = HEVC_VCL | frozenset(range(32, 41))


@dataclass(frozen=True)
class HevcVps:
    id: int
    max_sub_layers: int
    rate: Fraction | None


@dataclass(frozen=True)
class HevcSps:
    id: int
    max_sub_layers: int
    separate_planes: bool
    width: int
    height: int
    log2_max_poc_lsb: int
    reorder: int
    ctbs: int  # coding tree blocks in a picture
    rps_count: int  # short-term reference picture sets in the SPS
    rps_pics: tuple[int, ...]  # NumDeltaPocs of each
    rate: Fraction | None


@dataclass(frozen=True)
class HevcPps:
    id: int
    sps_id: int
    dependent_slices: bool
    output_flag: bool
    extra_bits: int


@dataclass(frozen=True)
class HevcSlice:
    first: bool
    pps_id: int
    address: int
    dependent: bool
    slice_type: int  # 0 B, 1 P, 2 I (dependent segments: -1)
    poc_lsb: int


def hevc_header_ok(first: int, second: int) -> bool:
    """forbidden_zero_bit 0, a type we accept, nuh_layer_id 0, TemporalId given."""
    kind = (first >> 1) & 0x3F
    return (not first & 0x81) and kind in HEVC_TYPES and not second & 0xF8 and bool(second & 7)


def _profile_tier_level(b: Bits, sub_layers: int) -> None:
    b.skip(96)
    flags = [(b.flag(), b.flag()) for _ in range(sub_layers)]
    if sub_layers:
        b.skip(2 * (8 - sub_layers))
    for profile, level in flags:
        b.skip((88 if profile else 0) + (8 if level else 0))


def _hevc_timing(b: Bits) -> Fraction | None:
    units, scale = b.u(32), b.u(32)
    return _rate(scale, units)


def parse_hevc_vps(rbsp: bytes) -> HevcVps:
    b = Bits(rbsp[:512])
    b.skip(16)
    vps_id = b.u(4)
    b.skip(8)
    sub_layers = b.u(3)
    b.skip(1)
    if b.u(16) != 0xFFFF:
        raise BitstreamError("vps_reserved_0xffff_16bits")
    _profile_tier_level(b, sub_layers)
    ordering = b.flag()
    for _ in range(0 if ordering else sub_layers, sub_layers + 1):
        b.ue(15)
        b.ue(15)
        b.ue()
    max_layer_id = b.u(6)
    for _ in range(b.ue(1023)):
        b.skip(max_layer_id + 1)
    rate = None
    if b.flag():
        rate = _hevc_timing(b)
    return HevcVps(vps_id, sub_layers + 1, rate)


def _hevc_scaling_list(b: Bits) -> None:
    for size in range(4):
        for _ in range(0, 6, 3 if size == 3 else 1):
            if not b.flag():
                b.ue(5 * 3)
            else:
                if size > 1:
                    b.se(-7, 247)
                for _ in range(min(64, 1 << (4 + (size << 1)))):
                    b.se(-128, 127)


def _st_ref_pic_set(b: Bits, idx: int, count: int, pics: list[int]) -> int:
    """One st_ref_pic_set(idx) (H.265 7.3.7); returns its NumDeltaPocs."""
    if idx and b.flag():  # inter_ref_pic_set_prediction_flag
        delta_idx = b.ue(idx - 1) + 1 if idx == count else 1
        ref = idx - delta_idx
        b.skip(1)
        b.ue(1 << 15)
        total = 0
        for _ in range(pics[ref] + 1):
            used = b.flag()
            if used or b.flag():
                total += 1
        return total
    negative, positive = b.ue(16), b.ue(16)
    for _ in range(negative + positive):
        b.ue(1 << 15)
        b.skip(1)
    return negative + positive


def parse_hevc_sps(rbsp: bytes) -> HevcSps:
    b = Bits(rbsp[:1024])
    b.skip(16)
    b.skip(4)
    sub_layers = b.u(3)
    b.skip(1)
    _profile_tier_level(b, sub_layers)
    sps_id = b.ue(15)
    chroma = b.ue(3)
    separate = b.flag() if chroma == 3 else False
    width, height = b.ue(16888), b.ue(16888)
    if width == 0 or height == 0:
        raise BitstreamError("empty picture")
    if b.flag():  # conformance window, in chroma units
        sx = 2 if chroma in (1, 2) and not separate else 1
        sy = 2 if chroma == 1 and not separate else 1
        left, right, top, bottom = (b.ue(8192) for _ in range(4))
        width, height = width - sx * (left + right), height - sy * (top + bottom)
        if width <= 0 or height <= 0:
            raise BitstreamError("cropped away the whole picture")
    b.ue(8)
    b.ue(8)
    log2_poc = b.ue(12) + 4
    ordering = b.flag()
    reorder = 0
    for _ in range(0 if ordering else sub_layers, sub_layers + 1):
        b.ue(15)
        reorder = b.ue(15)
        b.ue()
    log2_min_cb = b.ue(3) + 3
    log2_ctb = log2_min_cb + b.ue(3)
    if log2_ctb > 6:
        raise BitstreamError("CTB larger than 64")
    b.ue(3)
    b.ue(3)
    b.ue(4)
    b.ue(4)
    if b.flag() and b.flag():
        _hevc_scaling_list(b)
    b.skip(2)
    if b.flag():  # PCM
        b.skip(8)
        b.ue(2)
        b.ue(2)
        b.skip(1)
    rps_count = b.ue(64)
    pics: list[int] = []
    for i in range(rps_count):
        pics.append(_st_ref_pic_set(b, i, rps_count, pics))
    rate = None
    try:  # the VUI's timing, where it is reachable
        if b.flag():
            for _ in range(b.ue(32)):
                b.skip(log2_poc + 1)
        b.skip(2)
        if b.flag():
            _skip_vui_head(b)
            b.skip(3)
            if b.flag():
                for _ in range(4):
                    b.ue()
            if b.flag():
                rate = _hevc_timing(b)
    except BitstreamError:
        pass
    size = 1 << log2_ctb
    ctbs = -(-width // size) * -(-height // size)
    return HevcSps(sps_id, sub_layers + 1, separate, width, height, log2_poc, reorder,
                   max(ctbs, 1), rps_count, tuple(pics), rate)


def parse_hevc_pps(rbsp: bytes, spss: dict[int, HevcSps]) -> HevcPps:
    b = Bits(rbsp[:64])
    b.skip(16)
    pps_id, sps_id = b.ue(63), b.ue(15)
    if sps_id not in spss:
        raise BitstreamError(f"PPS names SPS {sps_id}, not seen")
    dependent, output_flag = b.flag(), b.flag()
    return HevcPps(pps_id, sps_id, dependent, output_flag, b.u(3))


def parse_hevc_slice(rbsp: bytes, spss: dict[int, HevcSps], ppss: dict[int, HevcPps]) -> HevcSlice:
    b = Bits(rbsp[:512])
    kind = (b.u(16) >> 9) & 0x3F
    first = b.flag()
    if kind in HEVC_IRAP:
        b.skip(1)
    pps_id = b.ue(63)
    pps = ppss.get(pps_id)
    if pps is None:
        raise BitstreamError(f"slice names PPS {pps_id}, not seen")
    sps = spss[pps.sps_id]
    dependent, address = False, 0
    if not first:
        if pps.dependent_slices:
            dependent = b.flag()
        address = b.u((sps.ctbs - 1).bit_length())
        if not 0 < address < sps.ctbs:
            raise BitstreamError("slice_segment_address outside the picture")
    slice_type, poc_lsb = -1, 0
    if not dependent:
        b.skip(pps.extra_bits)
        slice_type = b.ue(2)
        if kind in HEVC_IRAP and slice_type != 2:
            raise BitstreamError("IRAP slice that is not intra")
        if pps.output_flag:
            b.skip(1)
        if sps.separate_planes and b.u(2) > 2:
            raise BitstreamError("colour_plane_id")
        if kind not in HEVC_IDR:
            poc_lsb = b.u(sps.log2_max_poc_lsb)
            if not b.flag():  # short_term_ref_pic_set_sps_flag
                _st_ref_pic_set(b, sps.rps_count, sps.rps_count, list(sps.rps_pics))
            elif sps.rps_count > 1:
                if b.u((sps.rps_count - 1).bit_length()) >= sps.rps_count:
                    raise BitstreamError("short_term_ref_pic_set_idx")
            elif sps.rps_count == 0:
                raise BitstreamError("no short-term RPS in the SPS to refer to")
    return HevcSlice(first, pps_id, address, dependent, slice_type, poc_lsb)


# --- SEI -----------------------------------------------------------------------------

def sei_ok(rbsp: bytes, header_size: int) -> bool:
    """SEI messages whose sizes add up exactly to the NAL unit (then its stop bit)."""
    pos, end = header_size, len(rbsp)
    seen = 0
    while pos < end:
        if rbsp[pos] == 0x80 and pos == end - 1:
            return seen > 0
        for _ in range(2):  # payloadType, then payloadSize
            value = 0
            while pos < end and rbsp[pos] == 0xFF:
                value += 255
                pos += 1
            if pos >= end:
                return False
            value += rbsp[pos]
            pos += 1
        pos += value
        seen += 1
    return False


# --- configuration records (the reference's extradata) --------------------------------

def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of Annex B bytes (start codes 00 00 01 / 00 00 00 01)."""
    units, start = [], None
    i = 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if start is not None:
            end = len(data) if j < 0 else j
            unit = data[start:end].rstrip(b"\x00")
            if unit:
                units.append(unit)
        if j < 0:
            return units
        start = i = j + 3


def parse_avcc(data: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, parameter set NAL units) of an avcC record."""
    if len(data) < 7 or data[0] != 1:
        raise BitstreamError("not an avcC record")
    size, units, pos = (data[4] & 3) + 1, [], 5
    for mask in (0x1F, 0xFF):  # the SPS count (5 bits), then the PPS count
        if pos >= len(data):
            break
        pos = _sized_units(data, pos + 1, data[pos] & mask, units, "avcC")
    return size, units


def parse_hvcc(data: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, parameter set NAL units) of an hvcC record."""
    if len(data) < 23 or data[0] != 1:
        raise BitstreamError("not an hvcC record")
    size, units, pos = (data[21] & 3) + 1, [], 23
    for _ in range(data[22]):
        if pos + 3 > len(data):
            raise BitstreamError("hvcC record cut short")
        pos = _sized_units(data, pos + 3, int.from_bytes(data[pos + 1:pos + 3], "big"), units, "hvcC")
    return size, units


def _sized_units(data: bytes, pos: int, count: int, units: list[bytes], record: str) -> int:
    """Append ``count`` 16-bit-length-prefixed units read from ``pos``; returns the new
    position. Every length is checked against the bytes left before it is used."""
    for _ in range(count):
        if pos + 2 > len(data):
            raise BitstreamError(f"{record} record cut short")
        n = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + n > len(data):
            raise BitstreamError(f"{record} record cut short")
        units.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return pos
