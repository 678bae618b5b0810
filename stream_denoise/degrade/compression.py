"""Compression artefacts from real codecs: JPEG (OpenCV) and H.264 (libx264 via PyAV).

Blocking, ringing and colour bleeding are hard to fake convincingly, so both kinds run
the actual encoder and decoder. Settings are a property of the stream, so the quality
is drawn from the seed; so is a shift of the block grid against the picture (as after
a crop or rescale), which also makes two seeds with the same quality differ.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, ClassVar, Literal

import av
import cv2
import numpy as np

from .base import Degradation, Stage, integers, span


class Jpeg(Degradation):
    """JPEG round trip at ``quality`` (1-100, lower = blockier) with 4:2:0 chroma."""

    name: ClassVar[str] = "jpeg"
    stage: ClassVar[Stage] = Stage.CODEC

    quality: Annotated[tuple[int, int], span(1, 100)] = (10, 40)

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        rng = self.layout_rng(seed)
        quality = integers(rng, self.quality)
        dy, dx = (int(v) for v in rng.integers(0, 8, 2))
        # JPEG's colour transform assumes BGR order.
        bgr = cv2.copyMakeBorder(clean[..., ::-1], dy, 0, dx, 0, cv2.BORDER_REFLECT)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if out is None:
            raise RuntimeError("OpenCV could not decode its own JPEG")
        return np.ascontiguousarray(out[dy:, dx:, ::-1])


class H264(Degradation):
    """One frame through libx264 and back: a real H.264 intra frame at ``crf``.

    Each call encodes the single frame as an I-frame (``apply`` sees one frame, and the
    output must depend only on that frame, seed and t), so P-frame artefacts of a real
    stream (smearing along motion, drifting blocks) are not modelled. The encoder runs
    single-threaded so that the bitstream, and thus the result, is the same on every
    machine (x264's output depends on its thread count); that costs ~5-10 ms per
    640x360 frame with the default ``veryfast`` preset. Odd sizes are padded for 4:2:0.
    """

    name: ClassVar[str] = "h264"
    stage: ClassVar[Stage] = Stage.CODEC

    crf: Annotated[tuple[int, int], span(0, 51)] = (28, 40)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "veryfast"

    def _apply(self, clean: np.ndarray, seed: int, t: int) -> np.ndarray:
        h, w = clean.shape[:2]
        rng = self.layout_rng(seed)
        crf = integers(rng, self.crf)
        dy, dx = (int(v) for v in rng.integers(0, 16, 2))
        # Shift the 16x16 macroblock grid, then pad to even sizes for 4:2:0.
        padded = cv2.copyMakeBorder(clean, dy, (h + dy) % 2, dx, (w + dx) % 2, cv2.BORDER_REFLECT)
        ph, pw = padded.shape[:2]
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = pw, ph
        enc.pix_fmt = "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.options = {"crf": str(crf), "preset": self.preset, "threads": "1"}
        frame = av.VideoFrame.from_ndarray(padded.astype(np.uint8, copy=False), format="rgb24")
        frame.pts = 0
        packets = list(enc.encode(frame)) + list(enc.encode(None))
        dec = av.CodecContext.create("h264", "r")
        decoded = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
        if not decoded:
            raise RuntimeError("libx264 round trip produced no frame")
        out = decoded[0].to_ndarray(format="rgb24")
        return np.ascontiguousarray(out[dy : dy + h, dx : dx + w])
