"""The model's own TTA and clean-up, chosen on its validation split (segapp.inference.choice).

The rule on made-up per-image scores, the scoring path on a fake engine whose flips disagree,
the predictor taking (and the user overriding) a stored choice, and a real checkpoint carrying it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from segapp.data.layouts import Pair
from segapp.inference.choice import (
    CHOICE_KEY,
    MIN_IMAGES,
    decide,
    describe_choice,
    model_choice,
    score_size,
    variant_scores,
)
from segapp.inference.engines import EngineOutput
from segapp.inference.predictor import Predictor
from segapp.io import MaskRule, PreprocessSpec
from segapp.lit.choose_inference import InferenceChoice, choose_for_checkpoint
from tests.conftest import REPO, run_fit, tiny_fit_args

SPEC = PreprocessSpec(size=(8, 8), in_channels=1, mean=(0.0,), std=(1.0,))


@dataclass
class LeftHalfEngine:
    """Says 'lesion' on the left half of whatever it is shown: its flips disagree."""

    spec: PreprocessSpec = SPEC
    threshold: float = 0.6  # flipped passes average to 0.5: clearly under it
    meta: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, Any] | None = None
    members: int = 1

    def run(self, batch: np.ndarray) -> EngineOutput:
        logits = np.full((batch.shape[0], 1, *batch.shape[-2:]), -4.0, np.float32)
        logits[..., : batch.shape[-1] // 2] = 4.0
        return EngineOutput(logits, None)

    def describe(self) -> dict[str, Any]:
        return {"engine": "fake"}


def _scores(rng, n: int, gains: dict[str, float], noise: float = 0.002) -> dict[str, dict[str, float]]:
    """Per-image Dice of the six variants: a base plus each variant's gain and a little noise."""
    base = rng.uniform(0.6, 0.95, n)
    names = ["none", "none+largest", "flip", "flip+largest", "flip4", "flip4+largest"]
    return {v: {f"img{i}": float(base[i] + gains.get(v, 0.0) + rng.normal(0, noise)) for i in range(n)} for v in names}


def test_a_consistent_flip_gain_is_taken_and_no_further_step_without_one():
    rng = np.random.default_rng(0)
    scores = _scores(rng, 60, {"flip": 0.01, "flip4": 0.01, "flip+largest": -0.02, "flip4+largest": -0.02})
    block = decide(scores)
    assert (block["tta"], block["keep_largest"]) == ("flip", False)
    steps = {s["option"]: s for s in block["steps"]}
    assert steps["tta flip"]["taken"] and steps["tta flip"]["ci"][0] > 0
    assert not steps["tta flip4"]["taken"] and steps["tta flip4"]["against"] == "flip"
    assert not steps["keep_largest true"]["taken"] and steps["keep_largest true"]["against"] == "flip"
    assert block["n_images"] == 60 and block["dice"]["flip"] == pytest.approx(block["dice"]["none"] + 0.01, abs=2e-3)


def test_gains_that_are_noise_change_nothing():
    rng = np.random.default_rng(1)
    scores = _scores(rng, 60, {}, noise=0.02)  # every variant the same up to noise
    block = decide(scores)
    assert (block["tta"], block["keep_largest"]) == ("none", False)
    assert all(not s["taken"] and s["ci"][0] <= 0 for s in block["steps"])


def test_keep_largest_is_taken_on_top_of_the_chosen_tta_when_it_helps():
    rng = np.random.default_rng(2)
    block = decide(_scores(rng, 40, {"none+largest": 0.03, "flip+largest": 0.03, "flip4+largest": 0.03}))
    assert (block["tta"], block["keep_largest"]) == ("none", True)


def test_too_few_validation_images_keep_the_defaults_and_say_so():
    rng = np.random.default_rng(3)
    block = decide(_scores(rng, MIN_IMAGES - 1, {"flip": 0.05}))
    assert (block["tta"], block["keep_largest"]) == ("none", False)
    assert block["steps"] == [] and f"{MIN_IMAGES - 1} validation images" in block["note"]


def test_scores_follow_the_predictor_path_flips_included():
    """The engine marks the left half; the truth is the left half: no TTA scores 1, flipping
    averages left and right to 0.5 (under the threshold 0.6): an empty mask, Dice 0."""
    gt = np.zeros((16, 24), bool)
    gt[:, :12] = True
    image = np.zeros((16, 24, 1), np.float32)
    scores = variant_scores(Predictor(LeftHalfEngine()), [("a", image, gt), ("b", image, gt)], batch=1)
    assert scores["none"] == {"a": pytest.approx(1.0, abs=0.02), "b": pytest.approx(1.0, abs=0.02)}
    assert scores["flip"]["a"] == 0.0 and scores["flip4"]["a"] == 0.0
    assert scores["none+largest"]["a"] == scores["none"]["a"]


def test_the_predictor_takes_the_stored_choice_unless_told_otherwise():
    meta = {CHOICE_KEY: {"tta": "flip4", "keep_largest": True}}
    p = Predictor(LeftHalfEngine(meta=meta))
    assert (p.tta, p.keep_largest, p.from_model) == ("flip4", True, ("tta", "keep_largest"))
    p = Predictor(LeftHalfEngine(meta=meta), tta="none", keep_largest=False)
    assert (p.tta, p.keep_largest, p.from_model) == ("none", False, ())
    p = Predictor(LeftHalfEngine(meta=meta, members=2))  # an ensemble: no member's choice applies
    assert (p.tta, p.keep_largest, p.from_model) == ("none", False, ())
    assert model_choice(LeftHalfEngine()) == {}


def test_a_fitted_checkpoint_carries_its_choice_and_predict_uses_and_reports_it(tiny_ckpt, holdout_root, tmp_path):
    block = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["segapp"][CHOICE_KEY]
    assert block["tta"] in ("none", "flip", "flip4") and block["n_images"] > 0  # written by segapp fit

    # the same function on 24 holdout pairs, stored as a choice of flip, and a predict run
    pairs = [
        Pair(p.stem, p, (holdout_root / "masks" / p.name,)) for p in sorted((holdout_root / "images").glob("*.png"))
    ]
    got = choose_for_checkpoint(tiny_ckpt, pairs, MaskRule(kind="grey", threshold=127.0))
    assert got["n_images"] == len(pairs) == 24 and len(got["steps"]) == 3
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["segapp"][CHOICE_KEY] = {**got, "tta": "flip", "keep_largest": False}
    model = tmp_path / "chose_flip.ckpt"
    torch.save(ckpt, model)

    def predict(out: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(model), "--input"]
        cmd += [str(holdout_root / "images"), "--output", str(out), "--engine", "torch", "--no-progress", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)

    r = predict(tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "--tta flip: the model's choice on its validation split" in r.stderr
    assert json.loads((tmp_path / "out" / "run.json").read_text())["options"]["tta"] == "flip"
    assert json.loads((tmp_path / "out" / "run.json").read_text())["options"]["from_model"] == ["tta", "keep_largest"]
    r = predict(tmp_path / "out_none", "--tta", "none")
    assert r.returncode == 0 and "the model's choice" not in r.stderr
    options = json.loads((tmp_path / "out_none" / "run.json").read_text())["options"]
    assert options["tta"] == "none" and options["from_model"] == ["keep_largest"]

    ckpt["segapp"][CHOICE_KEY] = {**got, "tta": "none", "keep_largest": True}
    torch.save(ckpt, model)
    r = predict(tmp_path / "largest")
    assert r.returncode == 0 and "--keep-largest: the model's choice" in r.stderr
    assert json.loads((tmp_path / "largest" / "run.json").read_text())["options"]["keep_largest"] is True
    r = predict(tmp_path / "all_components", "--no-keep-largest")
    assert r.returncode == 0 and "the model's choice" not in r.stderr
    assert json.loads((tmp_path / "all_components" / "run.json").read_text())["options"]["keep_largest"] is False


def test_a_ground_truth_of_another_size_than_its_image_is_scored_at_its_own_size():
    """Training resizes image and mask each on its own, so a mask may differ in size (the check
    only warns); a large one is scored on a copy of at most SCORE_MAX_PIXELS."""
    image = np.zeros((16, 24, 1), np.float32)
    gt = np.zeros((40, 60), bool)
    gt[:, :30] = True
    huge = np.zeros((3000, 2000), bool)
    huge[:, :1000] = True
    assert score_size(huge.shape) == (1225, 816) and score_size(gt.shape) == (40, 60)
    scores = variant_scores(Predictor(LeftHalfEngine()), [("a", image, gt), ("b", image, huge)])
    assert scores["none"]["a"] == pytest.approx(1.0, abs=0.03) and scores["none"]["b"] == pytest.approx(1.0, abs=0.03)


def test_a_tile_mode_predictor_ignores_a_choice_made_in_resize_mode():
    meta = {CHOICE_KEY: {"tta": "flip4", "keep_largest": True, "mode": "resize"}}
    with pytest.warns(UserWarning, match="--mode tile"):
        p = Predictor(LeftHalfEngine(meta=meta, spec=replace(SPEC, size_policy="resize")), mode="tile")
    assert (p.tta, p.keep_largest, p.from_model) == ("none", False, ())


def test_the_console_line_names_the_choice_and_each_step():
    rng = np.random.default_rng(0)
    block = decide(_scores(rng, 60, {"flip": 0.01, "flip4": 0.01, "flip+largest": -0.02, "flip4+largest": -0.02}))
    line = describe_choice(block)
    assert line.startswith("tta flip, keep_largest false (validation Dice ")
    assert re.search(r"; tta flip: \+0\.0\d{3} \[\+0\.0\d{3}, \+0\.0\d{3}\] taken;", line), line
    assert re.search(r"keep_largest true: -0\.0\d{3} \[-0\.0\d{3}, -0\.0\d{3}\] not taken\)$", line), line
    assert line.count("not taken") == 2


@pytest.mark.parametrize("configured", [False, True], ids=["added by segapp", "in the config, as a plan has it"])
def test_segapp_fit_ends_with_the_choice_on_its_validation_split(synth_root, tmp_path, configured):
    """The choice runs after the trust calibration, also when the config lists it (a plan.yaml
    does): it loads a checkpoint that has its trust block, so no 'no trust block' warning."""
    run = tmp_path / "run"
    extra = ["--trainer.callbacks+=segapp.lit.choose_inference.InferenceChoice"] if configured else []
    res = run_fit(tiny_fit_args(synth_root, run, "--data.val_fraction", "0.25", "--trainer.max_epochs", "1", *extra))
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["segapp"]
    block = ckpt[CHOICE_KEY]
    assert block["n_images"] == 24 and len(block["steps"]) == 3 and "note" not in block and "trust" in ckpt
    line = f"inference choice: {describe_choice(block)}, written to best.ckpt"
    assert line in res.stdout and res.stdout.index("trust: temperature") < res.stdout.index(line)
    assert "no trust block" not in res.stderr


def test_a_failing_choice_is_said_and_leaves_the_finished_run_alone(tiny_ckpt, tmp_path, capsys):
    """An unreadable validation file: one line, no exception out of on_fit_end, checkpoint untouched."""
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    pairs = [Pair(f"k{i}", bad, (bad,)) for i in range(MIN_IMAGES)]
    trainer = SimpleNamespace(
        is_global_zero=True,
        sanity_checking=False,
        datamodule=SimpleNamespace(splits={"val": pairs}, mask_rule=MaskRule()),
        checkpoint_callback=SimpleNamespace(best_model_path=str(ckpt)),
    )
    before = ckpt.read_bytes()
    InferenceChoice().on_fit_end(trainer, SimpleNamespace(device=torch.device("cpu")))
    out = capsys.readouterr().out
    assert out.startswith("inference choice: skipped (ReadError: ") and "bad.png" in out
    assert ckpt.read_bytes() == before


def test_the_variant_counts_are_prefixes_of_the_predictors_flip_table():
    """variant_scores averages the first 1, 2 or 4 passes of flip4: each TTA must be that prefix."""
    from segapp.inference.choice import FLIPS
    from segapp.inference.predictor import TTA_FLIPS

    assert set(FLIPS) == set(TTA_FLIPS)
    for name, n in FLIPS.items():
        assert TTA_FLIPS[name] == TTA_FLIPS["flip4"][:n]


@pytest.mark.parametrize("bad", [{"tta": "flip8"}, {"keep_largest": "yes"}])
def test_a_damaged_stored_choice_is_refused_naming_the_fix_unless_both_options_are_given(bad):
    from segapp.inference.checkpoint import CheckpointError

    meta = {CHOICE_KEY: {"tta": "flip", "keep_largest": False, **bad}}
    with pytest.raises(CheckpointError) as e:
        Predictor(LeftHalfEngine(meta=meta))
    msg = str(e.value)
    assert msg.startswith("the model's stored inference choice is not valid: expected tta one of none, flip, flip4")
    assert "fix: pass --tta and --keep-largest/--no-keep-largest" in msg
    p = Predictor(LeftHalfEngine(meta=meta), tta="flip", keep_largest=False)  # both given: the block is not read
    assert (p.tta, p.keep_largest, p.from_model) == ("flip", False, ())


def test_a_negative_max_images_is_refused():
    from segapp.errors import SettingError

    with pytest.raises(SettingError, match="InferenceChoice.max_images"):
        InferenceChoice(max_images=-1)
