"""bench/auto_compare.py: resumable steps, the report's statistics and small-lesion view, the fixed synthetic sets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
try:
    import auto_compare
    import auto_compare_report as report
    import seeds_report
finally:
    sys.path.remove(str(ROOT / "bench"))

COLUMNS = ["image", "dice", "case", "height", "width", "gt_pixels"]


def _metrics(folder: Path, dice: dict[str, float], gt_pixels: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for k, d in dice.items():
            w.writerow([k, d, "both", 100, 100, gt_pixels[k]])


@pytest.fixture
def scored(tmp_path):
    """Two scored arms on 6 images: auto better by 0.1 everywhere; two images with a lesion under 2 %."""
    gt = {"a": 100, "b": 150, "c": 5000, "d": 3000, "e": 0, "f": 4000}  # of 10 000 px: a, b are small
    ref = {"a": 0.2, "b": 0.3, "c": 0.8, "d": 0.7, "e": 0.9, "f": 0.6}
    _metrics(tmp_path / "eval" / "reference", ref, gt)
    _metrics(tmp_path / "eval" / "auto", {k: v + 0.1 for k, v in ref.items()}, gt)
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "train_auto.json").write_text(json.dumps({"rc": 0, "wall_s": 630.0}))
    (steps / "train_reference.json").write_text(json.dumps({"rc": 0, "wall_s": 660.0}))
    return tmp_path


def test_report_pairs_auto_minus_reference_and_the_small_lesions(scored):
    rep = report.write(scored, 10, "toy")
    assert rep["small_lesion_images"] == 2 and rep["test_images"] == 6
    auto = next(m for m in rep["models"] if m["model"] == "auto")
    assert auto["dice"]["mean"] == pytest.approx(0.683333, abs=1e-5)
    assert auto["dice_small"]["n"] == 2 and auto["dice_small"]["mean"] == pytest.approx(0.35)
    assert auto["training"]["wall_over_budget"] == pytest.approx(1.05)
    (pair,) = rep["paired"]
    assert (pair["first"], pair["second"]) == ("auto", "reference")
    assert pair["all"]["mean_diff"] == pytest.approx(0.1) and pair["all"]["first_better"] == 6
    assert pair["all"]["mean_diff_ci"][0] == pytest.approx(0.1)  # every image +0.1: a CI of one point
    assert pair["small"]["n_paired"] == 2
    md = (scored / "compare.md").read_text()
    assert "| auto - reference | 0.100 [0.100, 0.100] | 6 | 6/0/0 |" in md
    assert md.count(rep["cpu"]["label"]) == 2  # the CPU on every model row
    assert "amx_bf16" in rep["cpu"]["label"]
    assert md.startswith("# toy: auto vs reference at 10 min\n")


def test_the_report_title_names_the_arms_that_ran(scored):
    (scored / "eval" / "reference").rename(scored / "eval" / "recipe")
    (scored / "steps" / "train_reference.json").rename(scored / "steps" / "train_recipe.json")
    report.write(scored, 10, "toy")
    assert (scored / "compare.md").read_text().startswith("# toy: auto vs recipe at 10 min\n")
    for arm in ("auto", "recipe"):  # every arm failed before scoring: the title says so, not a blank
        (scored / "eval" / arm / "metrics.csv").unlink()
    report.write(scored, 10, "toy")
    assert (scored / "compare.md").read_text().startswith("# toy: no arm scored at 10 min\n")


def test_a_finished_step_is_skipped_and_a_failed_one_rerun(tmp_path):
    counter = tmp_path / "count"
    code = f"import pathlib; p = pathlib.Path({str(counter)!r}); p.write_text(p.read_text() + 'x')"
    cmd = [sys.executable, "-c", code]
    counter.write_text("")
    first = auto_compare.run_step(tmp_path, "s", cmd)
    again = auto_compare.run_step(tmp_path, "s", cmd)
    assert first["rc"] == 0 and again["skipped"] and counter.read_text() == "x"
    stale = tmp_path / "partial"
    stale.mkdir()
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    assert auto_compare.run_step(tmp_path, "f", failing, (stale,))["rc"] == 3 and not stale.exists()
    assert auto_compare.run_step(tmp_path, "f", cmd)["rc"] == 0 and counter.read_text() == "xx"


def test_budgets_become_the_commands_limits(tmp_path):
    args = auto_compare.parse_args(["--dataset", "ultrasound", "--budget", "10", "--out", str(tmp_path)])
    data = auto_compare.Data("u", "/p", "paired", "/t")
    assert "600s" in auto_compare.auto_cmd(args, data)
    assert auto_compare.max_time(600) == "00:00:10:00" and auto_compare.max_time(2 * 3600 + 5) == "00:02:00:05"
    ref = auto_compare.reference_cmd(args, data)
    assert ref[ref.index("--minutes") + 1] == "10" and "--no-split" in ref
    assert auto_compare.arms(args) == ["auto", "reference"]  # no recipe given


def test_a_seed_reaches_every_arm_and_none_keeps_their_defaults(tmp_path):
    data = auto_compare.Data("u", "/p", "paired", "/t")
    base = ["--dataset", "ultrasound", "--budget", "10", "--out", str(tmp_path), "--recipe", "r.yaml"]
    seeded = auto_compare.parse_args([*base, "--seed", "3", "--recipe-args=--seed_everything 7"])
    auto, ref = auto_compare.auto_cmd(seeded, data), auto_compare.reference_cmd(seeded, data)
    assert auto[auto.index("--seed_everything") + 1] == "3" and ref[ref.index("--seed") + 1] == "3"
    recipe = auto_compare.recipe_cmd(seeded, data)
    assert recipe[-2:] == ["--seed_everything", "7"]  # the recipe's own arguments come last and win
    for bad in ("-1", "one", str(2**32)):
        with pytest.raises(SystemExit):
            auto_compare.parse_args([*base, "--seed", bad])
    plain = auto_compare.parse_args(base)
    for cmd in (auto_compare.auto_cmd(plain, data), auto_compare.reference_cmd(plain, data)):
        assert "--seed" not in cmd and "--seed_everything" not in cmd


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ultrasound", "dermoscopy_large"])
def test_the_committed_synthetic_test_sets_are_reproduced(tmp_path, name):
    data = auto_compare.make_synthetic(name, tmp_path)
    assert len(list((Path(data.test) / "images").glob("*.png"))) == 200


def test_a_test_set_is_known_by_its_digest_or_by_sums_within_rounding(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    img, mask = np.full((100, 100), 100, np.uint8), np.zeros((100, 100), np.uint8)
    mask[:50, :40] = 255  # 2000 foreground pixels
    Image.fromarray(img).save(tmp_path / "images/a.png")
    Image.fromarray(mask).save(tmp_path / "masks/a.png")
    summary = auto_compare.pixel_summary(tmp_path)
    assert summary == {"files": 2, "image_sum": 1_000_000, "mask_pixels": 2000}
    digest = auto_compare.pixel_digest(tmp_path)
    assert auto_compare.same_test_set(tmp_path, {"test_sha256": ["0" * 64, digest], "test_summary": {}})[0]
    near = {**summary, "mask_pixels": 2001}  # one boundary pixel: another CPU's rounding
    assert auto_compare.same_test_set(tmp_path, {"test_sha256": "0" * 64, "test_summary": near})[0]
    far = {**summary, "mask_pixels": 2100}  # a lesion drawn differently
    ok, why = auto_compare.same_test_set(tmp_path, {"test_sha256": "0" * 64, "test_summary": far})
    assert not ok and "2100" in why and "000000000000" in why
    ok, why = auto_compare.same_test_set(tmp_path, {"test_sha256": "0" * 64})  # a spec without sums: refused
    assert not ok and "no test_summary" in why


def _seed_run(out: Path, seed: int | None, gain: float) -> Path:
    """A finished comparison folder: the reference as in ``scored``, auto ahead by ``gain`` on every image."""
    gt = {"a": 100, "b": 150, "c": 5000, "d": 3000, "e": 0, "f": 4000}
    ref = {"a": 0.2, "b": 0.3, "c": 0.8, "d": 0.7, "e": 0.9, "f": 0.6}
    _metrics(out / "eval" / "reference", ref, gt)
    _metrics(out / "eval" / "auto", {k: v + gain for k, v in ref.items()}, gt)
    argv = ["bench/auto_compare.py", "--dataset", "toy", "--budget", "10"] + (
        [] if seed is None else ["--seed", str(seed)]
    )
    (out / "run.json").write_text(json.dumps({"dataset": "toy", "budget_min": 10.0, "argv": argv, "cpu": "toy CPU"}))
    report.write(out, 10, "toy")
    return out


def test_the_seeds_report_pools_the_seeds_and_refuses_one_seed_twice(tmp_path):
    runs = [_seed_run(tmp_path / f"s{s}", s, g) for s, g in ((None, 0.1), (1, 0.1), (2, -0.05))]
    rep = seeds_report.build(runs)
    assert [s["seed"] for s in rep["seeds"]] == ["0", "1", "2"]  # no --seed: both arms' default, 0
    assert [s["all"]["mean_diff"] for s in rep["seeds"]] == pytest.approx([0.1, 0.1, -0.05])
    over = rep["over_seeds_all"]
    assert over["mean_diff"] == pytest.approx(0.05) and over["n_runs_a"] == 3
    assert over["ci_images"] == pytest.approx([0.05, 0.05])  # every image +0.05 on average
    lo, hi = over["ci_seeds_and_images"]
    assert lo < 0 < hi  # one seed in three went the other way
    assert rep["over_seeds_small"]["n_images"] == 2
    md = seeds_report.markdown(rep)
    assert "| 2 | 0.533 | 0.583 | -0.050 [-0.050, -0.050] | 0/6/0 |" in md and "toy CPU" in md
    with pytest.raises(SystemExit, match=r"seed\(s\) \['1'\] more than once"):
        seeds_report.build([runs[1], runs[1]])
    _metrics(runs[1] / "eval" / "auto", {"a": 0.3, "b": 0.4}, {"a": 100, "b": 150})  # scored on 2 of the 6
    with pytest.raises(SystemExit, match="s1.*scored on other images than run 0.*same test split"):
        seeds_report.build(runs[:2])
    (runs[2] / "eval" / "auto" / "metrics.csv").unlink()
    with pytest.raises(SystemExit, match="s2/eval/auto/metrics.csv.*Fix: finish or rerun"):
        seeds_report.build(runs)


def test_the_seeds_report_pairs_an_arm_with_the_same_arm_of_a_replay_folder(tmp_path):
    """``--first auto@_replay``: a plan replayed with one setting changed, in its own folder, same seed."""
    runs = [_seed_run(tmp_path / f"s{s}", s, 0.1) for s in (1, 2)]
    for s in (1, 2):
        _seed_run(tmp_path / f"s{s}_replay", s, 0.1 + 0.02 * s)
    rep = seeds_report.build(runs, "auto@_replay", "auto")
    assert [s["all"]["mean_diff"] for s in rep["seeds"]] == pytest.approx([0.02, 0.04])
    assert rep["first"] == "auto@_replay" and rep["over_seeds_all"]["mean_diff"] == pytest.approx(0.03)
    _seed_run(tmp_path / "s2_other", 3, 0.1)  # trained with another seed: not a pair
    with pytest.raises(SystemExit, match=r"expected both arms trained with one seed, got \['2', '3'\]"):
        seeds_report.build([runs[1]], "auto@_other", "auto")
