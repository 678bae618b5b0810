"""The typed configuration tree, loaded once from YAML and validated at load.

Every section is a pydantic model that forbids unknown keys, so a typo in a config file or
an out-of-range value fails at start-up with a message naming the key. Modules receive the
section they need (``RunConfig.encode`` for the sink, ...), never the whole tree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


M = TypeVar("M", bound=Section)


class GaussianStage(Section):
    """One Gaussian stage; ``sigma`` 0 turns it off, ``ksize`` 0 derives it from sigma.

    ``sigma: auto`` picks it per frame from the frame's estimated noise: 0 up to
    ``auto_noise[0]``, rising to ``auto_sigma`` at ``auto_noise[1]`` (0-255 scale).
    """

    sigma: float | Literal["auto"] = 0.0
    ksize: int = Field(0, ge=0, le=121)
    auto_sigma: float = Field(0.75, ge=0.0, le=20.0, description="sigma on noisy frames (auto)")
    auto_noise: tuple[float, float] = Field((16.0, 20.0), description="noise estimate where auto "
                                                                    "starts / reaches auto_sigma")

    @field_validator("sigma", mode="before")
    @classmethod
    def _sigma(cls, v: Any) -> float | str:
        if v == "auto":
            return v
        try:
            sigma = float(v)
        except (TypeError, ValueError):
            sigma = -1.0
        if not 0.0 <= sigma <= 20.0:
            raise ValueError(f"must be 'auto' or a number from 0 to 20, got {v!r}")
        return sigma

    @field_validator("auto_noise")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1]:
            raise ValueError("must be two noise levels, 0 <= low < high")
        return v

    @field_validator("ksize")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v and v % 2 == 0:
            raise ValueError("must be 0 (derive from sigma) or an odd number")
        return v


class FilterConfig(Section):
    # Chosen from the evaluation table (docs/models.md, "Where the noise gains come from"):
    # a fixed pre-blur costs weather and dust frames what it gains on noisy ones, so the
    # default blurs only frames that are noisy.
    pre: GaussianStage = GaussianStage(sigma="auto")
    post: GaussianStage = GaussianStage()
    # Impulses (salt-and-pepper, dead and hot pixels) go to a switching median before the
    # pre-filter: light impulse noise does not read as noisy to `auto` (docs/models.md).
    impulse: bool = Field(True, description="replace isolated black/white values by their "
                                            "3x3 median before the pre-filter")


class ModelConfig(Section):
    weights: str = Field("lite", description="bundled model name (lite, paper) or a checkpoint path")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    tile: int = Field(0, ge=0, le=16384, description="run frames larger than this (px) as "
                                                     "overlapping tiles; 0 = whole frames")
    tile_overlap: int = Field(32, ge=0, le=1024, description="px shared by neighbouring tiles")
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = Field(
        "none", description="torch.compile mode; reduce-overhead = CUDA graphs")
    ensemble: Literal[1, 2, 4] = Field(
        1, description="average the repairs of this many views of each frame (2: also shifted by "
                       "half a cell; 4: both also mirrored): cleaner weather, that many times the compute")
    veil: bool = Field(True, description="remove the veil (snow's haze) the model's veil head sees; off: "
                                         "pixels the gate passes through stay as they came")

    @model_validator(mode="after")
    def _tiles(self) -> ModelConfig:
        if self.tile and (self.tile < 64 or 2 * self.tile_overlap >= self.tile):
            raise ValueError(f"tile must be 0 or >= 64 px and more than twice tile_overlap "
                             f"(got tile {self.tile}, overlap {self.tile_overlap})")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


class TemporalConfig(Section):
    """The temporal stage after the chain (:mod:`.temporal`): weather that passes is
    replaced from the last ``frames`` frames, aligned when the camera pans."""

    mode: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on for videos and streams, off for image folders (no time)")
    frames: int = Field(9, ge=3, le=9, description="frames whose inputs and results enter the "
                                                          "per-pixel median, this one included")
    tolerance: int = Field(12, ge=1, le=255, description="grey levels a pixel may differ from the "
                                                          "median and still be the same scene")
    object_size: float = Field(0.04, gt=0.0, le=1.0, description="a changed region this size (fraction "
                                                                 "of the short side) that darkens, or 2.5x as "
                                                                 "large, is motion")
    still: float = Field(1.0, gt=0.0, le=100.0, description="px the camera may move over the window and "
                                                            "still count as still")
    align: bool = Field(True, description="a panning camera's frames are aligned and fused where the "
                                          "chain saw weather; false: it gets the single-frame result")
    gap: float = Field(1.0, gt=0.0, le=3600.0, description="seconds between frames that start the "
                                                           "history again (a reconnect)")
    lens: bool = Field(False, description="on a panning camera, what stays in place on the lens where the "
                                          "chain saw weather is filled from the scene seen past it (objects "
                                          "crossing the pan can be erased: off by default)")

    @field_validator("frames")
    @classmethod
    def _odd_frames(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (3, 5, 7 or 9): the median of an odd count is a frame's value")
        return v


class PipelineConfig(Section):
    batch_size: int = Field(4, ge=1, le=256)
    queue_size: int = Field(4, ge=1, le=64, description="batches buffered between the pipeline's threads")
    decode_threads: int = Field(0, ge=0, le=64, description="0 lets FFmpeg choose")
    drop_policy: Literal["oldest", "newest", "none"] = Field(
        "oldest", description="live inputs: which frame goes when the model falls behind")
    batch_timeout: float = Field(0.1, gt=0.0, le=10.0,
                                 description="live inputs: seconds a batch waits to fill")
    jobs: int = Field(0, ge=0, le=256, description="files processed at once from a folder; "
                                                   "0 = one per Ray worker, or 2 with the local executor")


class SourceConfig(Section):
    """How inputs are opened: stream URLs and cameras, and kept alive (files use only hwaccel
    and reference)."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout: float = Field(10.0, gt=0.0, le=600.0, description="seconds to connect")
    read_timeout: float = Field(10.0, gt=0.0, le=600.0, description="seconds without data = stalled")
    reconnect: bool = True
    reconnect_attempts: int = Field(0, ge=0, description="in a row before giving up; 0 = never")
    backoff_initial: float = Field(1.0, gt=0.0, le=60.0)
    backoff_max: float = Field(30.0, gt=0.0, le=3600.0)
    device_size: str | None = Field(None, pattern=r"^\d+x\d+$", description="camera WxH, e.g. 1280x720")
    device_fps: float | None = Field(None, gt=0.0, le=1000.0)
    hwaccel: Literal["none", "cuda", "vaapi", "qsv", "videotoolbox", "d3d11va", "amf"] = Field(
        "none", description="decode on this device type; software when it cannot be used")
    reference: str | None = Field(
        None, description="a healthy MP4/MOV from the same camera: the parameter sets and frame "
                          "rate for salvaging a recording cut off before its index (moov)")


class ExecutorConfig(Section):
    """Where batches run: in this process, or on a pool of Ray actors."""

    kind: Literal["local", "ray"] = "local"
    workers: int = Field(2, ge=1, le=1024, description="Ray actors, one model each")
    cpus_per_worker: float = Field(1.0, ge=0.0, le=256.0)
    gpus_per_worker: float = Field(0.0, ge=0.0, le=16.0, description="fractions share a GPU")
    address: str | None = Field(None, description="None starts a local Ray; 'auto' or ray://host:port joins one")
    in_flight: int = Field(2, ge=1, le=64, description="batches outstanding per actor")
    max_restarts: int = Field(3, ge=0, le=1000, description="dead actors the pool replaces")
    batch_retries: int = Field(2, ge=0, le=10, description="re-submissions of a failed batch")


class EncodeConfig(Section):
    """How outputs are encoded.

    ``codec`` None (``auto`` in YAML and on the command line) lets the output's container
    choose, as ffmpeg does: libx264 where it fits (MP4, MKV, MOV, TS), VP9 for WebM, and a
    ``pix_fmt`` that encoder supports. A named encoder must be in this FFmpeg build.
    """

    codec: str | None = Field(None, description="video encoder; None/auto: one the container takes")
    crf: int = Field(20, ge=0, le=63)
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"
    copy_audio: bool = True
    segment: float = Field(0.0, ge=0.0, le=86400.0, description="seconds per output file; 0 = one file")

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: str | None) -> str | None:
        if v is None or v == "auto":
            return None
        import av  # here, not at the top: configs load where PyAV is not needed

        try:
            if av.Codec(v, "w").type == "video":
                return v
        except ValueError:  # av.codec.codec.UnknownCodecError
            pass
        raise ValueError(f"no video encoder {v!r} in this FFmpeg build (auto lets the output choose)")


class RunConfig(Section):
    source: SourceConfig = SourceConfig()
    model: ModelConfig = ModelConfig()
    filters: FilterConfig = FilterConfig()
    temporal: TemporalConfig = TemporalConfig()
    pipeline: PipelineConfig = PipelineConfig()
    executor: ExecutorConfig = ExecutorConfig()
    encode: EncodeConfig = EncodeConfig()


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[leaf] = value


def load_section(section: type[M], path: str | Path | None, overrides: dict[str, Any] | None) -> M:
    """Read YAML (or nothing), apply dotted overrides, validate into ``section`` (a whole tree:
    RunConfig, or train's TrainConfig); ConfigError on any fault."""
    tree: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        tree = loaded or {}
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    try:
        return section.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML file (or the defaults), apply dotted-key overrides, validate once.

    >>> load_config(overrides={"pipeline.batch_size": 8}).pipeline.batch_size
    8

    Raises :class:`ConfigError` (a UsageError) naming the file and key for unreadable files, unknown keys
    and out-of-range values.
    """
    return load_section(RunConfig, path, overrides)

