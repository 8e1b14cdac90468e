"""A checkpoint records its split and preprocessing; scoring and resuming against it are checked.

Found 2026-12 in a review: ``segapp test --data.test_fraction 0.3`` on a run trained without a test
split scored its validation and training images; a resume with another ``data.seed`` swapped
validation and training images; validate/test normalised with the scored data's statistics, not
the checkpoint's; a resume with another ``image_size`` saved the old preprocessing. None was said.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segapp.data.from_checkpoint import CheckpointData, check_resume, check_scored, check_settings, split_record
from segapp.data.layouts import Pair
from segapp.errors import SettingError
from segapp.io import PreprocessSpec
from tests.conftest import tiny_fit_args

SPEC = PreprocessSpec(size=(64, 64), in_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
RECORD = {"train": ["t1", "t2", "t3"], "val": ["v1", "v2"], "test": []}


def _ckpt(split=RECORD, **settings) -> CheckpointData:
    return CheckpointData("run/best.ckpt", SPEC, split, {"image_size": 64, "in_channels": 3, **settings})


def test_image_ids_follow_the_key_and_the_byte_size(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"x" * 11)  # a re-saved (darker) copy under the same key is another image
    pairs = [Pair("k", a, ()), Pair("k", b, ()), Pair("j", a, ())]
    rec = split_record({"train": pairs[:1], "val": pairs[1:]})
    assert rec["test"] == [] and len(rec["train"][0]) == 10
    assert len(set(rec["train"] + rec["val"])) == 3
    assert split_record({"train": pairs[:1]})["train"] == rec["train"]  # stable


def test_scored_splits_holding_learnt_images_are_refused_with_the_counts():
    ckpt = _ckpt()
    with pytest.raises(SettingError, match=r"got 4 test images holding 2 of its training images and 1 of its valid"):
        check_scored(ckpt, {"test": ["t1", "t2", "v1", "new"]}, "test")
    with pytest.raises(SettingError, match=r"never trained on, got 2 validation images holding 1 of"):
        check_scored(ckpt, {"val": ["t1", "v1"]}, "validate")
    check_scored(ckpt, {"val": ["v1", "v2"]}, "validate")  # the run's own validation split
    check_scored(ckpt, {"val": ["new"], "test": ["v1", "v2"]}, "validate")  # only val is scored
    check_scored(ckpt, {"test": ["new1", "new2"]}, "test")


def test_a_resume_whose_split_moved_images_is_refused_and_new_images_are_not_moves():
    ckpt = _ckpt()
    with pytest.raises(SettingError, match=r"changed split \(1 train -> val, 1 val -> train;.*fix: resume with"):
        check_resume(ckpt, {"train": ["t1", "t2", "v1"], "val": ["t3", "v2"], "test": []})
    check_resume(ckpt, {"train": ["t1", "t2", "t3", "new"], "val": ["v1", "v2", "new2"], "test": []})


def test_a_checkpoint_without_a_split_record_is_warned_about_not_refused(caplog):
    with caplog.at_level(logging.WARNING):
        check_scored(_ckpt(split=None), {"test": ["t1"]}, "test")
        check_resume(_ckpt(split=None), {"train": ["v1"], "val": [], "test": []})
    assert caplog.text.count("records no split") == 2


def test_settings_other_than_the_checkpoints_are_refused_when_given_or_resuming():
    ckpt = _ckpt(normalize="dataset")
    hp = {"image_size": 128, "in_channels": 3, "normalize": "dataset"}
    check_settings(ckpt, hp, resume=False, given={"data.root"})  # a default follows the checkpoint
    with pytest.raises(SettingError, match=r"data.image_size: expected 64, .* got 128; fix: leave data.image_size"):
        check_settings(ckpt, hp, resume=False, given={"data.image_size"})
    with pytest.raises(SettingError, match=r"data.image_size: .*train_size_schedule"):
        check_settings(ckpt, hp, resume=True, given=set())
    with pytest.raises(SettingError, match=r"data.normalize: expected 'dataset'.*got 'imagenet'"):
        check_settings(ckpt, {**hp, "image_size": 64, "normalize": "imagenet"}, resume=False, given={"data"})
    with pytest.raises(SettingError, match=r"data.in_channels: expected 3"):  # the net is built from it
        check_settings(ckpt, {**hp, "image_size": 64, "in_channels": 1}, resume=False, given=set())
    explicit = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    check_settings(_ckpt(normalize=explicit), {**hp, "image_size": 64, "normalize": explicit}, True, None)


def test_the_module_keeps_the_datamodules_spec_over_the_checkpoints():
    """A resume's setup() gives the spec it is fed with; on_load_checkpoint (run after) used to overwrite it."""
    from segapp.lit import SegmentationModule
    from segapp.lit.checkpoint_meta import build_meta
    from segapp.nets import UNet

    module = SegmentationModule(net=UNet(depth=2, base_channels=4))
    meta = build_meta(module.net, SPEC, 0.4, "old")
    fed = PreprocessSpec(size=(32, 32), in_channels=3)
    module.preprocess_spec, module.data_fingerprint = fed, "new"
    module.on_load_checkpoint({"segapp": meta})
    assert (module.preprocess_spec, module.data_fingerprint, module.tuned_threshold) == (fed, "new", 0.4)
    bare = SegmentationModule(net=UNet(depth=2, base_channels=4))
    bare.on_load_checkpoint({"segapp": meta})  # no datamodule (load_from_checkpoint): the checkpoint's
    assert (bare.preprocess_spec, bare.data_fingerprint) == (SPEC, "old")


# --- the app, on one tiny run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """24 synthetic pairs, a 1-epoch run without a test split: (data folder, run folder)."""
    from segapp.app import cli
    from segapp.data.synth import generate

    tmp = tmp_path_factory.mktemp("ckpt_data")
    root = generate(tmp / "data", n=24, size=64, seed=0)
    run = tmp / "run"
    cli(tiny_fit_args(root, run, "--trainer.max_epochs", "1"))
    return root, run


def _app_error(capsys, args: list[str]) -> str:
    from segapp.app import bare_argv
    from segapp.cli.main import main

    with pytest.raises(SystemExit) as e, bare_argv():
        main(args)
    assert e.value.code == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("segapp: error:")]
    assert len(lines) == 1
    return lines[0]


def _darker_copy(root: Path, dst: Path) -> Path:
    """The same images at 60 % brightness (another site's copy: same names, other bytes)."""
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for f in sorted((root / sub).iterdir()):
            im = np.asarray(Image.open(f))
            Image.fromarray((im * 0.6).astype(np.uint8) if sub == "images" else im).save(dst / sub / f.name)
    return dst


@pytest.mark.slow
def test_scoring_a_split_the_checkpoint_learnt_from_is_refused(tiny_run, capsys):
    root, run = tiny_run
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    rec = ckpt["LesionDataModule"]["split"]
    assert [len(rec[s]) for s in ("train", "val", "test")] == [19, 5, 0]
    best = ["--ckpt_path", str(run / "checkpoints" / "best.ckpt")]
    # docs/evaluation.md's old example: a test split cut from a run trained without one
    err = _app_error(capsys, ["test", *tiny_fit_args(root, run, "--data.test_fraction", "0.3", *best)[1:]])
    assert "segapp test --ckpt_path" in err and "of its validation images" in err and "fix: score the test" in err
    err = _app_error(capsys, ["validate", *tiny_fit_args(root, run, "--data.seed", "7", *best)[1:]])
    assert "of its training images" in err
    err = _app_error(capsys, ["test", *tiny_fit_args(root, run, *best)[1:]])  # the run's settings: no test split
    assert "the test split is empty" in err and "was trained without; score images it never saw" in err


@pytest.mark.slow
def test_a_resume_with_another_split_or_preprocessing_is_refused(tiny_run, capsys):
    root, run = tiny_run
    resume = ("--ckpt_path", "last", "--trainer.max_epochs", "2")
    for extra in (("--data.seed", "7"), ("--data.val_fraction", "0.4")):
        assert "expected the split the run was trained with" in _app_error(
            capsys, tiny_fit_args(root, run, *extra, *resume)
        )
    err = _app_error(capsys, tiny_fit_args(root, run, "--data.image_size", "32", *resume))
    assert err.startswith("segapp: error: data.image_size: expected 64") and "resume with the run's" in err
    err = _app_error(capsys, tiny_fit_args(root, run, "--data.normalize", "imagenet", *resume))
    assert "data.normalize: expected 'auto'" in err


@pytest.mark.slow
def test_validate_feeds_held_out_data_with_the_checkpoints_preprocessing(tiny_run, tmp_path, capsys):
    from segapp.app import bare_argv, cli

    root, run = tiny_run
    dark = _darker_copy(root, tmp_path / "dark")
    best = run / "checkpoints" / "best.ckpt"
    spec = PreprocessSpec.from_dict(torch.load(best, map_location="cpu", weights_only=True)["segapp"]["preprocess"])
    args = tiny_fit_args(dark, tmp_path / "v", "--ckpt_path", str(best))[1:]  # normalize: auto (dataset here)
    with bare_argv():
        app = cli(["validate", *args])
    assert app.datamodule.spec == spec  # the dark copy's own statistics used to normalise it
    assert "data.image_size: expected 64" in _app_error(capsys, ["validate", *args, "--data.image_size", "32"])


def test_validate_or_test_without_a_checkpoint_is_refused(synth_root, tmp_path, capsys):
    """`segapp test --config <run>/config.yaml` with --ckpt_path forgotten scored the net as built,
    never trained, and wrote a report like any other (exit 0)."""
    args = tiny_fit_args(synth_root, tmp_path / "run")[1:]
    for sub in ("validate", "test"):
        err = _app_error(capsys, [sub, *args, "--data.test_fraction", "0.3"])
        assert f"segapp {sub} scores a trained model, but no --ckpt_path was given" in err
        assert "fix: --ckpt_path runs/<run>/checkpoints/best.ckpt" in err
    err = _app_error(capsys, ["validate", *args, "--ckpt_path", "last"])
    assert "but no last.ckpt in" in err
    err = _app_error(capsys, ["test", *args, "--data.test_fraction", "0.3", "--ckpt_path", "best"])
    assert "--ckpt_path best names the best checkpoint of a fit in this same process" in err


def test_a_loss_monitored_under_mode_max_is_refused(synth_root, tmp_path, capsys):
    """--checkpoint.monitor val/loss under the default mode max kept the epoch of the highest loss."""
    args = tiny_fit_args(synth_root, tmp_path / "run", "--checkpoint.monitor", "val/loss")
    err = _app_error(capsys, args)
    assert "checkpoint.monitor val/loss with checkpoint.mode max: expected mode min" in err
    assert "fix: --checkpoint.mode min" in err
