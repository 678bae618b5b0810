"""Typed config: defaults file, overrides, and errors that name the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream_denoise.config import RunConfig, load_config
from stream_denoise.errors import UsageError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_default_yaml_is_the_code_defaults():
    assert load_config(CONFIGS / "default.yaml") == RunConfig()


def test_overrides_beat_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pipeline: {batch_size: 2}\nencode: {crf: 30}\n")
    c = load_config(cfg, {"pipeline.batch_size": 16})
    assert (c.pipeline.batch_size, c.encode.crf) == (16, 30)


@pytest.mark.parametrize("text,needle", [
    ("model: {weigths: lite}", "model.weigths: unknown key"),
    ("encode: {crf: 99}", "encode.crf: Input should be less than or equal to 63"),
    ("filters: {pre: {sigma: -1}}", "filters.pre.sigma"),
    ("[1, 2]", "must be a mapping"),
    ("model: {precision: fp8}", "model.precision"),
    ("model: {ensemble: 3}", "model.ensemble"),
    ("a: [", "not valid YAML"),
])
def test_errors_name_the_key(tmp_path, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(UsageError) as e:
        load_config(cfg)
    assert needle in str(e.value) and str(cfg) in str(e.value)


def test_missing_file():
    with pytest.raises(UsageError, match="cannot read config nowhere.yaml"):
        load_config("nowhere.yaml")
