"""The bench/ shell scripts: valid bash, and the GPU check fails clearly without its pack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_parses(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def test_gpu_check_without_pack_names_prepare(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GPU_CHECK_DEVICE": "cpu",
        "PACK": str(tmp_path / "missing"),
        "OUT": str(tmp_path / "out"),
        "SEGAPP_PY": sys.executable,
    }
    r = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), "run"], env=env, capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "bench/gpu_check.sh prepare" in r.stdout and "missing" in r.stdout
    assert "torch " in (tmp_path / "out" / "env.txt").read_text()  # the environment is recorded first


def test_gpu_check_rejects_unknown_command() -> None:
    r = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage: bench/gpu_check.sh [prepare|run]" in r.stderr


def test_run_ablations_rejects_unknown_study(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "DOCS": ""}
    r = subprocess.run(
        ["bash", str(ROOT / "bench/run_ablations.sh"), "no_such_study"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and "configs/ablation/no_such_study.yaml" in r.stdout


@pytest.mark.parametrize(("compare", "columns"), [("layout", "NCHW"), ("precision", "fp32")])
def test_step_bench_times_both_variants_and_splices_docs(compare, columns) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import step_bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    opts = {"nets": ["scratch"], "sizes": [32], "batch": 2, "steps": 1, "repeats": 1, "compare": compare}
    md = step_bench.table(type("A", (), opts)())
    assert md.splitlines()[0].startswith(f"| net | size (px) | {columns} s/step |")
    row = md.splitlines()[-1].split("|")
    assert row[1].strip() == "scratch" and row[2].strip() == "32"
    nchw, cl, ratio = float(row[3]), float(row[4]), float(row[5].strip().rstrip("x"))
    assert nchw > 0 and cl > 0 and ratio == pytest.approx(nchw / cl, rel=0.1)
    doc = f"intro\n\n{step_bench.MARK}\n| old |\n\nold info\n\nafter\n"
    assert step_bench.splice(doc, md, "new info") == f"intro\n\n{step_bench.MARK}\n{md}\n\nnew info\n\nafter\n"


def test_reference_script_trains_and_scores_per_image() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import reference_smp as ref
    finally:
        sys.path.remove(str(ROOT / "bench"))
    import numpy as np
    import torch

    from segapp.nets import UNet

    assert ref.dice(np.eye(4, dtype=bool), np.eye(4, dtype=bool)) == 1.0
    assert ref.dice(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    assert ref.dice(np.eye(4, dtype=bool), np.ones((4, 4), bool)) == pytest.approx(2 * 4 / 20)
    rng = np.random.default_rng(0)
    imgs, masks = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.zeros((4, 32, 32), np.uint8)
    masks[:, 8:24, 8:24] = 1
    loader = torch.utils.data.DataLoader(ref.Pairs(imgs, masks), batch_size=2)
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4)
    out = ref.train(net, loader, minutes=0.005, lr=1e-3, dtype=torch.float32)
    assert out["steps"] >= 1 and out["train_s"] >= 0.3
    originals = [np.pad(m, 4).astype(bool) for m in masks]  # "original" 40 px masks
    scores = ref.evaluate(net, imgs, masks, originals)
    assert (
        len(scores["per_image_original"]) == 4
        and 0 <= scores["val_dice_256"] <= 1
        and 0 <= scores["val_dice_original"] <= 1
    )
