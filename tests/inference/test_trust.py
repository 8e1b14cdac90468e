"""Trust signals (issue 16): ensembles, calibration, OOD score, CSV columns, the trust block."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segapp.inference import Predictor
from segapp.inference.checkpoint import CheckpointError
from segapp.inference.engines import create_engine
from segapp.inference.trust import REASONS, TrustRules, expected_dice, input_checks, review
from segapp.lit.calibrate import fit_temperature, ledoit_wolf

REPO = Path(__file__).resolve().parents[2]


def _members(cv: Path) -> list[Path]:
    return [cv / m for m in json.loads((cv / "ensemble.json").read_text())["members"]]


def _image(root: Path, i: int = 0) -> np.ndarray:
    return np.asarray(Image.open(sorted((root / "images").glob("*.png"))[i]).convert("RGB"))


def test_fit_writes_the_trust_block(tiny_ckpt):
    meta = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["segapp"]
    trust = meta["trust"]
    feats = trust["features"]
    d = feats["dim"]
    assert feats["mean"].shape == (d,) and feats["precision"].shape == (d, d)
    assert torch.allclose(feats["precision"], feats["precision"].T, atol=1e-3 * feats["precision"].abs().max())
    assert feats["ood_scale"] > 0 and 0.05 <= trust["temperature"] <= 20
    assert 0 <= trust["uncertainty_threshold"] <= 1 and trust["fitted_on"]["train"] > trust["fitted_on"]["val"] > 0
    assert trust["trained_on_colour"] is True and trust["flag_empty"] in (True, False)


def test_temperature_fit_recovers_a_known_temperature():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(400_000, generator=gen) * 4
    y = torch.rand(400_000, generator=gen) < torch.sigmoid(z / 2.5)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.03)
    y1 = torch.rand(400_000, generator=gen) < torch.sigmoid(z)
    assert fit_temperature(z, y1) == pytest.approx(1.0, rel=0.03)


def test_ledoit_wolf_shrinks_towards_the_identity_when_samples_are_few():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 50))  # fewer samples than dimensions: the raw covariance is singular
    mean, cov = ledoit_wolf(x)
    assert np.allclose(mean, x.mean(0)) and np.linalg.matrix_rank(cov) == 50
    many = rng.normal(size=(5000, 5)) * [1, 2, 3, 4, 5]
    _, cov2 = ledoit_wolf(many)
    assert np.allclose(np.diag(cov2), [1, 4, 9, 16, 25], rtol=0.1)


def test_cv_writes_the_ensemble_record(tiny_cv):
    record = json.loads((tiny_cv / "ensemble.json").read_text())
    assert record["members"] == ["fold_0/checkpoints/best.ckpt", "fold_1/checkpoints/best.ckpt"]
    assert record["oof"]["images"] == 96  # every image once, by the member that did not train on it
    assert 0.3 <= record["threshold"] <= 0.7 and record["trust"]["temperature"] > 0
    assert len(record["member_thresholds"]) == 2


def test_ensemble_probability_is_the_mean_of_its_members(tiny_cv, holdout_root):
    a, b = _members(tiny_cv)
    specs = [torch.load(p, weights_only=True)["segapp"]["preprocess"] for p in (a, b)]
    assert specs[0]["mean"] != specs[1]["mean"]  # folds normalise differently: the input map is exercised
    img = _image(holdout_root)
    # each fold alone would use its own stored TTA choice; the ensemble uses none: compare without
    pa = Predictor.from_checkpoint(a, precision="fp32", tta="none").predict_probs(img)
    pb = Predictor.from_checkpoint(b, precision="fp32", tta="none").predict_probs(img)
    both = Predictor.from_checkpoint([a, b], precision="fp32")
    np.testing.assert_allclose(both.predict_probs(img), (pa + pb) / 2, atol=2e-5)
    folder = Predictor.from_checkpoint(tiny_cv, precision="fp32")  # the cv folder: same members
    np.testing.assert_allclose(folder.predict_probs(img), (pa + pb) / 2, atol=2e-5)
    record = json.loads((tiny_cv / "ensemble.json").read_text())
    assert folder.threshold == record["threshold"] and folder.rules.temperature == record["trust"]["temperature"]


def test_a_cv_folder_whose_member_changed_is_refused(tiny_cv, tmp_path):
    import shutil

    cv = tmp_path / "cv"
    shutil.copytree(tiny_cv, cv)
    record = json.loads((cv / "ensemble.json").read_text())
    assert len(record["member_sha256"]) == 2
    create_engine(checkpoint=[cv])  # as written: fine
    member = cv / record["members"][1]
    ckpt = torch.load(member, map_location="cpu", weights_only=True)
    ckpt["segapp"]["threshold"] = 0.9  # a retrained or edited fold
    torch.save(ckpt, member)
    with pytest.raises(CheckpointError, match=r"fold_1/checkpoints/best.ckpt changed since .*ensemble.json"):
        create_engine(checkpoint=[cv])
    member.unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        create_engine(checkpoint=[cv])


def test_members_of_another_input_size_are_refused(tiny_cv, tiny_ckpt, tmp_path):
    a, _ = _members(tiny_cv)
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["segapp"]["preprocess"]["size"] = [32, 32]
    odd = tmp_path / "odd.ckpt"
    torch.save(ckpt, odd)
    with pytest.raises(CheckpointError, match=r"must share their input, but size is \[64, 64\] .* and \[32, 32\]"):
        create_engine(checkpoint=[a, odd])


def test_members_trained_on_another_label_are_refused(tiny_ckpt, tmp_path):
    """Members trained on foreground_labels [1] and [2] were averaged: a plausible mask of neither."""
    ckpts = []
    for labels in ([1], [2]):
        ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
        ckpt["segapp"]["run"]["mask_rule"] = {"kind": "labels", "threshold": 127.0, "labels": labels}
        ckpts.append(tmp_path / f"label{labels[0]}.ckpt")
        torch.save(ckpt, ckpts[-1])
    with pytest.raises(
        CheckpointError, match=r"label1.ckpt was trained on labels \[1\] and .*label2.ckpt on labels \[2\]"
    ):
        create_engine(checkpoint=ckpts)
    from segapp.inference.ensemble import check_targets

    def rule(**r):
        return {"run": {"mask_rule": r}}

    grey, binary, unknown = rule(kind="grey", threshold=50.0), rule(kind="binary"), {"run": {}}
    check_targets([grey, binary, unknown, rule(kind="grey")], [Path(c) for c in "abcd"])  # 0/255 read alike
    with pytest.raises(CheckpointError, match=r"b was trained on labels \[1\] and c on labels \[2\]"):
        check_targets(
            [unknown, rule(kind="labels", labels=[1]), rule(kind="labels", labels=[2])], [Path(c) for c in "abc"]
        )


def test_onnx_ensemble_matches_the_torch_ensemble(tiny_cv, tmp_path):
    pytest.importorskip("onnxruntime")
    from segapp.inference.engines import OnnxEngine
    from segapp.inference.export import export_model

    out = export_model(tiny_cv, tmp_path / "ens.onnx")
    onnx_engine, torch_engine = OnnxEngine(out), create_engine(checkpoint=[tiny_cv], precision="fp32")
    meta = onnx_engine.meta
    assert meta["members"] == 2 and meta["has_ood"] and set(meta["outputs"]) == {"logits", "ood", "features_k"}
    assert meta["threshold"] == torch_engine.threshold and meta["trust"] == torch_engine.trust
    assert [m["threshold"] for m in meta["member_blocks"]] == pytest.approx(
        json.loads((tiny_cv / "ensemble.json").read_text())["member_thresholds"]
    )
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    got, want = onnx_engine.run(x), torch_engine.run(x)
    assert got.logits.shape == (3, 2, 64, 64) and got.ood.shape == (3, 2)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-3)
    np.testing.assert_allclose(got.ood, want.ood, rtol=1e-3)


def test_temperature_never_changes_the_masks(tiny_ckpt, holdout_root):
    engine = create_engine(checkpoint=tiny_ckpt, precision="fp32")
    for tta in ("none", "flip"):
        pred = Predictor(engine, tta=tta)
        images = [_image(holdout_root, i) for i in range(6)]
        engine.trust = {**engine.trust, "temperature": 3.0}
        hot = [pred.predict(im) for im in images]
        engine.trust = {**engine.trust, "temperature": 1.0}
        plain = [pred.predict(im) for im in images]
        for h, p in zip(hot, plain, strict=True):
            assert np.array_equal(h.mask, p.mask)
        assert any(not np.allclose(h.probs, p.probs) for h, p in zip(hot, plain, strict=True))
    engine.trust = {**engine.trust, "temperature": 3.0}
    pred = Predictor(engine, tta="none")
    res = pred.predict(images[0])  # one member, no TTA: the calibrated threshold reproduces the mask
    assert np.array_equal(res.probs > pred.calibrated_threshold, res.mask)


def _foreign(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "blank":
        return np.full((64, 64, 3), int(rng.integers(0, 256)), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]  # stripes: nothing like the synthetic lesions
    return np.stack([(np.sin(xx / rng.uniform(1, 3)) * 127 + 128)] * 3, -1).astype(np.uint8)


def test_ood_score_ranks_foreign_scans_above_the_training_kind(tiny_ckpt, holdout_root):
    pred = Predictor.from_checkpoint(tiny_ckpt, precision="fp32")
    inside = [pred.predict(_image(holdout_root, i)).signals["ood_score"] for i in range(24)]
    rng = np.random.default_rng(0)
    for kind in ("blank", "noise", "stripes"):
        outside = [pred.predict(_foreign(kind, rng)).signals["ood_score"] for _ in range(4)]
        assert min(outside) > np.median(inside), (kind, outside, sorted(inside))
    assert np.mean(np.array(inside) > 1) <= 0.25  # the validation-set threshold holds on held-out scans


def test_input_checks_and_review_rules():
    grey = np.repeat(np.random.default_rng(0).integers(0, 255, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    assert input_checks(np.full((8, 8, 3), 7, np.uint8), 3, True) == ["blank"]
    opaque_black = np.dstack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 255, np.uint8)])
    assert input_checks(opaque_black, 3, True) == ["blank"]  # its alpha made it neither blank nor grey
    assert input_checks(np.full((8, 8, 1), 65535, np.uint16) * np.ones((1, 1, 1), np.uint16), 1, False) == ["blank"]
    assert input_checks(grey, 3, True) == ["channels"] and input_checks(grey, 3, False) == []
    bright = np.full((32, 32, 3), 255, np.uint8)
    bright[:8] = np.random.default_rng(1).integers(0, 255, (8, 32, 3))
    assert input_checks(bright, 3, True) == ["saturated"]
    rules = TrustRules(uncertainty_threshold=0.2, flag_empty=True)
    calm = {"uncertainty": 0.1, "est_dice": 0.95, "ood_score": 0.5, "agreement": ""}
    assert review(calm, [], False, rules) == {"review": "no", "review_reason": "", "risk": 0.5}
    assert review(calm, [], True, rules)["review_reason"] == "empty prediction"
    far = {**calm, "ood_score": 2.0, "uncertainty": 0.3}
    out = review(far, [], True, rules)  # out of distribution: an empty mask there is not the reason
    assert out["review_reason"] == "out of distribution; uncertain" and out["risk"] == 2.0
    assert set(out["review_reason"].split("; ")) <= set(REASONS)
    assert expected_dice(np.ones((4, 4)), np.ones((4, 4), bool)) == 1.0
    assert expected_dice(np.full((4, 4), 0.5), np.ones((4, 4), bool)) == pytest.approx(2 * 8 / (8 + 16))
    faint = np.full((64, 64), 0.01)  # an empty call with faint probabilities everywhere: confident, not 0
    assert expected_dice(faint, np.zeros((64, 64), bool)) == pytest.approx(0.99)
    faint[10, 10] = 0.7  # one likely lesion pixel: the empty call is probably wrong
    assert expected_dice(faint, np.zeros((64, 64), bool)) == pytest.approx(0.3)


def test_predictions_csv_carries_the_trust_columns(tiny_ckpt, holdout_root, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for p in sorted((holdout_root / "images").glob("*.png"))[:6]:
        (inp / p.name).symlink_to(p)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(inp / "zz_blank.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(tiny_ckpt), "--input", str(inp)]
    res = subprocess.run(
        [*cmd, "--output", str(out), "--save-uncertainty", "--workers", "0"], capture_output=True, text=True, cwd=REPO
    )
    assert res.returncode == 0, res.stderr
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7
    for r in rows:
        assert 0 <= float(r["uncertainty"]) <= 1 and 0 <= float(r["est_dice"]) <= 1
        assert float(r["ood_score"]) >= 0 and float(r["risk"]) >= 0 and r["agreement"] == ""
        assert r["review"] in ("yes", "no") and (r["review"] == "yes") == bool(r["review_reason"])
        assert (out / f"{r['input']}.uncertainty.png").is_file()
        assert (out / "review" / "thumbs" / f"{r['input']}.thumb.jpg").is_file()
    blank = rows[-1]
    assert blank["input_check"] == "blank" and "input: blank" in blank["review_reason"]
    html = (out / "review.html").read_text()
    assert "zz_blank.png" in html
    run = json.loads((out / "run.json").read_text())
    assert run["trust"]["ood_statistics"] is True and run["trust"]["members"] == 1


def test_too_few_scans_give_no_ood_statistics_and_few_samples_shrink_hard():
    from segapp.lit.calibrate import MIN_SCANS, checked_temperature, feature_stats, ledoit_wolf

    rng = np.random.default_rng(0)
    assert feature_stats(rng.normal(size=(MIN_SCANS - 1, 16)), rng.normal(size=(20, 16))) is None
    two = rng.normal(size=(2, 16))
    mean, cov = ledoit_wolf(two)  # rank 1 without the floor: a whole orthogonal direction would cost nothing
    assert np.linalg.matrix_rank(cov) == 16
    far = mean + 100 * np.linalg.svd(two - mean)[2][-1]  # 100 units along a direction the samples never moved in
    assert float((far - mean) @ np.linalg.pinv(cov) @ (far - mean)) > 1.0
    z = torch.randn(10_000) * 3
    t, before, after, note = checked_temperature(z, torch.zeros(10_000, dtype=torch.bool))
    assert t == 1.0 and before == after and "one class" in note


def test_an_ensemble_member_without_trust_keeps_the_others_signals(tiny_ckpt, tmp_path, holdout_root):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    del ckpt["segapp"]["trust"]
    bare = tmp_path / "bare.ckpt"
    torch.save(ckpt, bare)
    with pytest.warns(UserWarning, match="bare.ckpt has no trust block"):
        engine = create_engine(checkpoint=[tiny_ckpt, bare], precision="fp32")
    assert engine.has_ood and engine.trust["temperature"] == pytest.approx(
        torch.load(tiny_ckpt, weights_only=True)["segapp"]["trust"]["temperature"]
    )
    res = Predictor(engine).predict(_image(holdout_root))  # an ensemble: no TTA
    alone = Predictor.from_checkpoint(tiny_ckpt, precision="fp32", tta="none").predict(_image(holdout_root))
    assert res.signals["ood_score"] == pytest.approx(alone.signals["ood_score"], abs=1e-3)  # the member with stats


def test_a_folder_that_is_not_a_cv_run_and_a_broken_ensemble_record_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"without ensemble.json or fold_\*/checkpoints/best.ckpt") as e:
        create_engine(checkpoint=[tmp_path])
    assert "\n" not in str(e.value)
    (tmp_path / "ensemble.json").write_text('{"members": ["a.ckpt"]')  # torn write
    with pytest.raises(CheckpointError, match="ensemble.json: cannot read it as JSON.*fix: rerun segapp-cv"):
        create_engine(checkpoint=[tmp_path])
    (tmp_path / "ensemble.json").write_text('{"members": ["a.ckpt"]}')
    with pytest.raises(CheckpointError, match="ensemble.json lacks threshold"):
        create_engine(checkpoint=[tmp_path])


def test_the_cv_ensemble_checks_its_own_out_of_fold_estimates():
    """ensemble.json's trust rules had no `unreliable`: overconfident folds predicted review=no."""
    from segapp.lit.calibrate import fit_ensemble

    targets = torch.zeros(12, 16, 16)
    targets[:, 4:8, 4:8] = 1
    logits = torch.full((12, 16, 16), 8.0)  # a lesion everywhere, confidently: est_dice high, true Dice 0.12
    oof = [{"logits": logits[:6], "targets": targets[:6]}, {"logits": logits[6:], "targets": targets[6:]}]
    assert "overstates the true Dice" in fit_ensemble(oof, [None, None])["trust"]["unreliable"]
    good = [
        {"logits": (targets[:6] - 0.5) * 16, "targets": targets[:6]},
        {"logits": (targets[6:] - 0.5) * 16, "targets": targets[6:]},
    ]
    assert fit_ensemble(good, [None, None])["trust"]["unreliable"] == ""


def test_a_cv_folder_without_its_ensemble_record_says_what_it_ensembles(tiny_ckpt, tmp_path):
    """2 of 5 folds trained (or a crash): the folds found were ensembled with their own mean threshold,
    no word that the out-of-fold fit was missing."""
    import shutil

    for k in (0, 3):
        (tmp_path / "cv" / f"fold_{k}" / "checkpoints").mkdir(parents=True)
        shutil.copy(tiny_ckpt, tmp_path / "cv" / f"fold_{k}" / "checkpoints" / "best.ckpt")
    with pytest.warns(UserWarning, match=r"has no ensemble.json .* the 2 fold\(s\) found \(fold_0, fold_3\)"):
        create_engine(checkpoint=[tmp_path / "cv"], precision="fp32")
