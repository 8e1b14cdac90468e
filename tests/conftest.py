"""Shared fixtures: tiny synthetic data and one tiny trained checkpoint per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("SEGAPP_PREVIEW_RAISE", "1")  # a preview bug fails the test that trains, not a warning

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


def flags(**kw) -> list[str]:
    """``--name value`` pairs for an argparse script, in keyword order: ``batch_size=1`` -> ``--batch-size 1``.

    ``True`` gives the bare flag; ``None`` and ``False`` leave it out.
    """
    out: list[str] = []
    for key, value in kw.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def dotted(settings: dict) -> list[str]:
    """LightningCLI arguments from dotted keys, in order: ``{"trainer.max_epochs": 2}`` -> ``--trainer.max_epochs 2``.

    Booleans are written ``true``/``false``.
    """
    out: list[str] = []
    for key, value in settings.items():
        out += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def fit_args(root: Path, run_dir: Path, *extra: str, command: str = "fit", batch_size: int | None = 8) -> list[str]:
    """Command-line arguments for a tiny CPU ``segapp fit`` (or ``test``/``validate``: ``command``) on ``root``.

    ``batch_size=None`` keeps the config's batch size.
    """
    data = {"data.root": root, "data.image_size": 64, "data.num_workers": 0, "data.batch_size": batch_size}
    return [
        command,
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        *dotted({k: v for k, v in data.items() if v is not None}),
        *dotted({"trainer.default_root_dir": run_dir, "trainer.enable_progress_bar": False}),
        *extra,
    ]


def tiny_fit_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """:func:`fit_args` for a very small net (depth 2, 4 channels) on 2 training and 1 validation batch."""
    tiny = {
        "model.net.init_args.depth": 2,
        "model.net.init_args.base_channels": 4,
        "trainer.limit_train_batches": 2,
        "trainer.limit_val_batches": 1,
    }
    return fit_args(root, run_dir, *dotted(tiny), *extra)


def run_fit(args: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    """``segapp <args>`` in a subprocess from the repository root, output captured as text."""
    cmd = [sys.executable, "-m", "segapp.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


@pytest.fixture(scope="session")
def tiny_ckpt(synth_root, tmp_path_factory) -> Path:
    """A small scratch U-Net trained for 12 epochs on the 64 px synthetic set (about a minute)."""
    from segapp.app import cli

    run_dir = tmp_path_factory.mktemp("tiny_run")
    cli(fit_args(synth_root, run_dir, *dotted({"trainer.max_epochs": 12, "model.net.init_args.depth": 3})))
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return ckpt


@pytest.fixture(scope="session")
def tiny_cv(synth_root, tmp_path_factory) -> Path:
    """A 2-fold ``segapp-cv`` folder (tiny scratch U-Nets, 4 epochs each) with its ``ensemble.json``."""
    from segapp.cli.cv import main

    out = tmp_path_factory.mktemp("tiny_cv")
    extra = dotted({"trainer.max_epochs": 4, "model.net.init_args.depth": 3, "model.net.init_args.base_channels": 8})
    main(["--num-folds", "2", "--out", str(out), *fit_args(synth_root, out / "fold", *extra)[1:]])
    assert (out / "ensemble.json").is_file()
    return out
