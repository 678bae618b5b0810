"""The training configuration tree (``configs/train/*.yaml``), validated like the run tree.

Kept apart from :mod:`stream_denoise.config` so that running a model never imports the
degradation library.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import Section, load_section
from ..degrade import DegradeConfig
from ..models.generator import PRESETS, GeneratorConfig


class TrainData(Section):
    sources: list[str] = ["builtin"]
    paired: str | None = Field(None, description="folder of real pairs; replaces synthesis")
    crop: int = Field(128, ge=16, le=1024)
    max_side: int = Field(360, ge=32, le=4096, description="downscale footage to this short side")
    frame_step: int = Field(2, ge=1, description="use every k-th video frame")
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    val_samples: int = Field(48, ge=1, le=10000)
    val_crop: int = Field(256, ge=16, le=2048)
    workers: int = Field(0, ge=0, le=256, description="synthesis processes (0: one helper thread)")


class TrainLoss(Section):
    theta: float = Field(0.8, gt=0.0, le=1.0)
    attention_positive_weight: float = Field(
        1.0, ge=1.0, le=100.0, description="weight of a damaged cell's attention error against a "
                                           "clean one's (1: plain MSE, the paper's)")
    multiscale: tuple[float, float, float] = (0.6, 0.8, 1.0)
    sample_weighting: Literal["none", "input_relative", "output_relative"] = Field(
        "none", description="weight each sample's multi-scale MSE by 1 / its input's MSE, or "
                            "1 / its output's (the gradient of mean per-sample log MSE)")
    adversarial: float = Field(0.01, ge=0.0)
    gamma: float = Field(0.05, ge=0.0)
    adversarial_from_step: int = Field(0, ge=0, description="train G alone until this step")
    perceptual: float = Field(0.0, ge=0.0)
    vgg16_weights: str | None = Field(None, description="local torchvision-format VGG16 state dict")


class TrainOptim(Section):
    lr: float = Field(2e-4, gt=0.0, le=1.0)
    d_lr: float = Field(2e-4, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.5, 0.999)
    schedule: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0.0, le=1.0)
    head_lr: float | None = Field(
        None, gt=0.0, le=1.0, description="learning rate of the zero-initialised heads (fine gate, "
        "global affine; None: lr): grown onto a trained net they start from nothing")
    heads_only: bool = Field(False, description="train the heads alone; the rest keeps its weights")


class TrainConfig(Section):
    model: str | GeneratorConfig = Field("lite", description="preset name or architecture numbers")
    disc_width: float = Field(0.25, gt=0.0, le=4.0)
    data: TrainData = TrainData()
    degrade: DegradeConfig = DegradeConfig()
    loss: TrainLoss = TrainLoss()
    optim: TrainOptim = TrainOptim()
    batch_size: int = Field(8, ge=1, le=1024)
    steps: int = Field(20000, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on the CPU)")
    log_every: int = Field(20, ge=1)
    val_every: int = Field(500, ge=1)
    checkpoint_minutes: float = Field(5.0, gt=0.0)

    @field_validator("model")
    @classmethod
    def _preset(cls, v: str | GeneratorConfig) -> str | GeneratorConfig:
        if isinstance(v, str) and v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; known: {', '.join(PRESETS)}")
        return v

    @property
    def arch(self) -> GeneratorConfig:
        return PRESETS[self.model] if isinstance(self.model, str) else self.model


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Like :func:`load_config`, for the training tree."""
    return load_section(TrainConfig, path, overrides)
