"""What a run was: git commit, package versions, resolved config. Stored in every checkpoint."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "segapp",
    "torch",
    "torchvision",
    "lightning",
    "segmentation-models-pytorch",
    "timm",
    "monai",
    "torchmetrics",
    "albumentations",
    "numpy",
    "jsonargparse",
)


def git_commit(repo: Path | None = None) -> str | None:
    """``HEAD`` of the segapp checkout (with ``-dirty`` if it has changes), or None outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_run_info(config_yaml: str | None, data_fingerprint: str | None) -> dict[str, Any]:
    """Plain-JSON run record: git commit, versions, data fingerprint, resolved config text."""
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "data_fingerprint": data_fingerprint,
        "config": config_yaml,
    }


def write_run_info(info: dict[str, Any], folder: str | Path) -> Path:
    path = Path(folder) / "run_info.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2))
    return path
