"""Every user error of ``segapp fit`` is one line with exit 2; checkpoints survive a full disk (issue 14.8-9, 12)."""

import errno
import subprocess
import sys

import pytest
import torch

from segapp.inference.checkpoint import CheckpointError, read_meta
from segapp.io.archive import checkpoint_problem
from tests.conftest import REPO, run_fit, tiny_fit_args


def _one_error_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("segapp: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0]
    return errors[0]


BAD_SETTINGS = [
    (("--data.val_fraction", "1.5"), "data.val_fraction: expected a value in [0.0, 1.0), got 1.5"),
    (("--model.optimizer.init_args.lr", "-0.1"), "model.optimizer: expected valid optimiser settings"),
    (("--data.image_size", "0"), "data.image_size: expected a value >= 8, got 0"),
    (("--data.batch_size", "0"), "data.batch_size: expected a value >= 1, got 0"),
    (("--model.net.init_args.norm", "btach"), "did you mean batch?"),
    (
        (
            "--model",
            str(REPO / "configs/model/unet_resnet34.yaml"),
            "--model.net.init_args.encoder_weights",
            "null",
            "--model.net.init_args.encoder_name",
            "resnet43",
        ),
        "got 'resnet43'; did you mean resnet34",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "message"), BAD_SETTINGS, ids=[m.split(":")[0][:30] for _, m in BAD_SETTINGS])
def test_out_of_range_settings_are_one_line_exit_2(synth_root, tmp_path, extra, message):
    _one_error_line(run_fit(tiny_fit_args(synth_root, tmp_path / "run", "--trainer.max_epochs", "1", *extra)), message)


@pytest.fixture()
def one_epoch_run(synth_root, tmp_path):
    from segapp.app import cli

    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "1"))
    return run


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_corrupt_last_checkpoint_is_one_line_with_the_fix(one_epoch_run, synth_root, damage):
    last = one_epoch_run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    proc = run_fit(tiny_fit_args(synth_root, one_epoch_run, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    line = _one_error_line(proc, str(last), "best.ckpt")
    assert ("truncated" if damage == "truncate" else "empty (0 bytes)") in line


def test_disk_full_while_saving_keeps_the_previous_checkpoint(one_epoch_run, synth_root, monkeypatch, capsys):
    import segapp.lit.checkpoint_io as cio
    from segapp.cli.main import main

    last = one_epoch_run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full_disk(obj, fh):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cio.torch, "save", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(synth_root, one_epoch_run, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    monkeypatch.undo()
    assert exit_info.value.code == 4
    err = capsys.readouterr().err
    assert "No space left on device (the previous checkpoint there is kept); fix: free disk space" in err
    assert last.read_bytes() == before  # untouched, and still a whole checkpoint
    assert checkpoint_problem(last) is None
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert not list(last.parent.glob(".*.tmp"))  # no temp files left behind


def test_empty_checkpoint_error_says_why(tmp_path):
    empty = tmp_path / "model.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model.ckpt: empty \(0 bytes\)"):
        read_meta(empty)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x80\x04not a zip")
    with pytest.raises(CheckpointError, match="not a complete zip archive"):
        read_meta(garbage)


class _Evil:
    """Pickles to a call of ``os.system``: what a malicious checkpoint would run on a plain ``torch.load``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_malicious_checkpoint_is_refused_and_never_run(synth_root, tmp_path, subcommand):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Evil(marker)}}, evil)
    args = tiny_fit_args(synth_root, tmp_path / "run", "--trainer.max_epochs", "1", "--ckpt_path", str(evil))
    proc = run_fit([subcommand, *args[1:]])
    _one_error_line(proc, str(evil), "refused by the safe loader")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["segapp.cli.predict", "segapp.cli.export"])
def test_malicious_checkpoint_to_predict_and_export_is_refused_and_never_run(synth_root, tmp_path, script):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "segapp": {"preprocess": {}, "x": _Evil(marker)}}, evil)
    args = {
        "segapp.cli.predict": ["--input", str(synth_root / "images"), "--output", str(tmp_path / "out")],
        "segapp.cli.export": ["--out", str(tmp_path / "m.onnx")],
    }[script]
    proc = subprocess.run(
        [sys.executable, "-m", script, "--checkpoint", str(evil), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and str(evil) in proc.stderr and "weights_only" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "plugins", [[], ["--trainer.plugins", "lightning.pytorch.plugins.environments.LightningEnvironment"]]
)
def test_checkpoints_are_atomic_also_when_other_trainer_plugins_are_given(synth_root, tmp_path, plugins):
    from segapp.app import cli
    from segapp.lit.checkpoint_io import AtomicCheckpointIO

    app = cli(
        ["--config", str(REPO / "configs" / "quickstart.yaml"), "--data.root", str(synth_root), *plugins], run=False
    )
    assert isinstance(app.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_condensed_parser_error_names_the_value_given_once():
    from segapp.app_errors import one_line_parser_error

    nested = (
        'Parser key "model.scheduler":\n  Problem with given class_path:\n    Parser key "warmup_epochs":\n'
        "      Expected a <class 'int'>. Got value: x. Got value: Namespace(class_path='a.B', init_args=...)"
    )
    line = one_line_parser_error(nested)
    assert "got 'x'" in line and "Namespace" not in line and "model.scheduler.init_args.warmup_epochs" in line


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_ckpt_path_that_is_a_directory_or_a_foreign_zip_is_one_line(synth_root, tmp_path, kind):
    import zipfile

    bad = tmp_path / "thing.ckpt"
    if kind == "dir":
        bad.mkdir()
    else:
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("hello.txt", "not a checkpoint")
    args = tiny_fit_args(synth_root, tmp_path / "run", "--trainer.max_epochs", "1", "--ckpt_path", str(bad))
    proc = run_fit(args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert ("a directory" if kind == "dir" else "not loadable as a torch checkpoint") in proc.stderr
