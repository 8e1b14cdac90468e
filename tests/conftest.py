"""Shared fixtures: tiny synthetic data and one tiny trained checkpoint per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KVASIR = SHARED_DATA / "kvasir-seg"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """96 synthetic 64x64 pairs (seed 0) in images/ + masks/."""
    from segapp.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "data", n=96, size=64, seed=0)


@pytest.fixture(scope="session")
def holdout_root(tmp_path_factory) -> Path:
    """24 synthetic 64x64 pairs with another seed: images the tiny model never saw."""
    from segapp.data.synth import generate

    return generate(tmp_path_factory.mktemp("holdout") / "data", n=24, size=64, seed=123)


def fit_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Command-line arguments for a tiny CPU ``segapp fit`` on ``root``."""
    return [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--data.root",
        str(root),
        "--data.image_size",
        "64",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "8",
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_ckpt(synth_root, tmp_path_factory) -> Path:
    """A small scratch U-Net trained for 12 epochs on the 64 px synthetic set (about a minute)."""
    from segapp.app import cli

    run_dir = tmp_path_factory.mktemp("tiny_run")
    cli(
        fit_args(
            synth_root,
            run_dir,
            "--trainer.max_epochs",
            "12",
            "--model.net.init_args.depth",
            "3",
        )
    )
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return ckpt
