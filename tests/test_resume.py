"""Kill a training run mid-way and resume it with ``--ckpt_path last``."""

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import fit_args

EPOCHS = 5
LR = 0.003


def _cosine_factor(epoch: int, warmup: int = 1, max_epochs: int = EPOCHS, floor: float = 0.01) -> float:
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    t = min(1.0, (epoch - warmup) / (max_epochs - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _load(path):
    for _ in range(20):  # the file may be mid-write when we poll it
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"cannot read {path}")


@pytest.mark.slow
def test_killed_run_resumes_step_and_lr_and_ends_at_max_epochs(synth_root, tmp_path):
    run = tmp_path / "run"
    args = fit_args(
        synth_root,
        run,
        "--trainer.max_epochs",
        str(EPOCHS),
        "--model.net.init_args.depth",
        "2",
        "--model.net.init_args.base_channels",
        "8",
    )
    cmd = [sys.executable, "-m", "segapp.cli.main", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and _load(last)["epoch"] >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = _load(last)
            break
        time.sleep(0.3)
    assert killed_at is not None, "the run ended or timed out before it could be killed"
    assert killed_at["epoch"] < EPOCHS - 1

    done = subprocess.run(cmd + ["--ckpt_path", "last"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = _load(last)
    steps_per_epoch = killed_at["global_step"] // (killed_at["epoch"] + 1)
    assert final["epoch"] == EPOCHS - 1
    assert final["global_step"] == EPOCHS * steps_per_epoch
    assert final["lr_schedulers"][0]["last_epoch"] == EPOCHS

    # the resumed run's log starts where the killed run stopped: next step, scheduled LR
    versions = sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows = list(csv.DictReader((versions[-1] / "metrics.csv").read_text().splitlines()))
    first_step = min(int(r["step"]) for r in rows)
    assert first_step >= killed_at["global_step"]
    lr_rows = sorted((int(r["step"]), float(r["lr-AdamW"])) for r in rows if r.get("lr-AdamW"))
    assert lr_rows[0][0] == killed_at["global_step"]  # logged at the start of the first resumed epoch
    assert lr_rows[0][1] == pytest.approx(LR * _cosine_factor(killed_at["epoch"] + 1), rel=1e-5)


def test_last_ckpt_is_the_last_epoch_when_validation_stopped_improving(synth_root, tmp_path):
    """Lightning 2.6 wrote last.ckpt only beside a new best.ckpt, so after epochs that did not improve
    ``--ckpt_path last`` rewound the run to the best epoch (found 2026-11-30)."""
    from segapp.app import cli
    from tests.conftest import tiny_fit_args

    run = tmp_path / "run"
    frozen_net = ("--model.optimizer.init_args.lr", "0.0", "--model.net.init_args.norm", "none")  # nothing changes
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "3", *frozen_net))
    best, last = (
        torch.load(run / "checkpoints" / f, map_location="cpu", weights_only=True) for f in ("best.ckpt", "last.ckpt")
    )
    assert best["epoch"] == 0  # lr 0, no batch norm: the same val/dice every epoch, none is better
    assert last["epoch"] == 2 and last["global_step"] == 3 * 2  # the end of the run, 2 steps per epoch
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name not in ("best.ckpt", "last.ckpt")]


def test_last_ckpt_holds_the_epochs_after_the_last_validation(synth_root, tmp_path):
    """check_val_every_n_epoch 2 over 3 epochs: last.ckpt was written at the validation after epoch 1,
    and epoch 2 (the cosine's lowest learning rate) was lost."""
    from segapp.app import cli
    from tests.conftest import tiny_fit_args

    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "2"))
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3 * 2  # 2 steps per epoch: the end of the run, not of epoch 1 (4)
