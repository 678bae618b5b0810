"""A run's outputs (stream_denoise.outputs): which are staged under .partial names, and
how segmented recordings are named. The pipeline's tests cover staging end to end."""
from __future__ import annotations

import re
from contextlib import ExitStack
from fractions import Fraction

import numpy as np
import pytest

from stream_denoise.config import EncodeConfig
from stream_denoise.frame import Batch, BatchResult, Frame, VideoInfo
from stream_denoise.outputs import Outputs


@pytest.mark.parametrize("name, encode, atomic", [
    ("clip.mp4", {}, True),
    ("frames", {}, True),
    ("live.m3u8", {}, False),  # players read a playlist while it grows
    ("LIVE.M3U8", {}, False),
    ("cam.mp4", {"segment": 2.0}, False),  # each piece is complete as it closes
    ("rtmp://host/app/key", {}, False),
])
def test_files_are_staged_and_streams_playlists_and_segments_are_not(tmp_path, name, encode, atomic):
    output = name if "://" in name else tmp_path / name
    outputs = Outputs(output, None, None, EncodeConfig(**encode), overwrite=False)
    assert outputs.atomic is atomic


@pytest.mark.parametrize("clock, pattern", [(True, r"cam_\d{8}-\d{6}\.mkv"), (False, r"cam_\d{5}\.mkv")])
def test_segments_are_named_by_wall_clock_for_live_inputs_and_numbered_for_files(tmp_path, clock, pattern):
    encode = EncodeConfig(codec="ffv1", pix_fmt="bgr0", segment=1.0)
    outputs = Outputs(tmp_path / "cam.mkv", None, None, encode, overwrite=False)
    info = VideoInfo(64, 48, Fraction(1, 25), Fraction(25))
    frames = tuple(Frame(i, np.full((48, 64, 3), i, np.uint8), i, Fraction(1, 25)) for i in range(30))
    with ExitStack() as stack:
        outputs.open(stack, info, segment_clock=clock)
        batch = Batch.of(0, list(frames))
        outputs.write(BatchResult(batch, batch.images, None), "cam")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names and all(re.fullmatch(pattern, n) for n in names), names
    if not clock:  # two 1-s pieces (by the clock, pieces begun in the same second share a name)
        assert len(names) == 2, names
