"""The written plan: a normal segapp config that parses and replays; plan.md and plan.json beside it."""

from __future__ import annotations

import json

import pytest
import yaml

from segapp.app import parse_only, parsed_app
from segapp.errors import SettingError
from segapp.plan.apply import plan_fit
from segapp.plan.given import given_keys
from segapp.plan.rules_timed import epoch_room
from segapp.plan.writer import compact, nested
from tests.conftest import REPO
from tests.plan.conftest import FakeTimer, lesion_folder


def _plan(tmp_path, *extra: str, budget: str = "20m"):
    root = lesion_folder(tmp_path / "data", [0.04, 0.09, 0.16, 0.0] * 6, size=100)
    run = tmp_path / "run"
    args = ["--config", str(REPO / "configs/auto.yaml"), "--data.root", str(root), "--budget", budget]
    args = [*args, "--trainer.default_root_dir", str(run), *extra]
    app = parsed_app(args)
    timer = lambda base, splits, rule: FakeTimer()  # noqa: E731
    return plan_fit(app.parser, app.config, make_timer=timer, user_keys=given_keys(args)), root, run


def test_the_plan_is_a_normal_config_that_parses_and_holds_the_plan(tmp_path, capsys):
    active, root, run = _plan(tmp_path, "--data.val_fraction", "0.25", "--trainer.gradient_clip_val", "0.5")
    paths = active.paths
    assert set(paths) == {"yaml", "md", "json", "input"} and all(
        p.parent == run and p.is_file() for p in paths.values()
    )
    assert parse_only(["--config", str(paths["yaml"])]) is None
    cfg = yaml.safe_load(paths["yaml"].read_text())
    assert "budget" not in cfg and "plan_only" not in cfg
    s = active.plan.settings
    assert cfg["data"]["image_size"] == s["data.image_size"] and cfg["trainer"]["max_epochs"] == s["trainer.max_epochs"]
    assert cfg["data"]["root"] == str(root.resolve()) and cfg["model"]["net"] == s["model.net"]
    assert cfg["data"]["val_fraction"] == 0.25 and cfg["trainer"]["gradient_clip_val"] == 0.5  # the user's, kept
    parsed = parsed_app(["--config", str(paths["yaml"])]).config
    assert parsed["data.image_size"] == s["data.image_size"] and parsed["trainer.max_time"] == s["trainer.max_time"]
    assert parsed["model.net.init_args.in_channels"] == s["data.in_channels"]  # the link still applies
    out = capsys.readouterr().out
    assert out.startswith("segapp plan · 20m on CPU") and "replay: segapp fit --config" in out
    record = json.loads(paths["json"].read_text())
    assert (
        epoch_room(record["schedule"]["epochs"], None) == s["trainer.max_epochs"]
        and len(record["epoch_ends_s"]) == record["schedule"]["epochs"]
    )
    md = paths["md"].read_text()
    assert "| `data.image_size` |" in md and "docs/benchmarks.md" in md and "## Measured on this machine" in md


def test_the_users_callbacks_stay_and_ema_is_not_doubled(tmp_path):
    ema = "lightning.pytorch.callbacks.EMAWeightAveraging"
    active, _, _ = _plan(
        tmp_path, "--trainer.callbacks+=LearningRateMonitor", "--trainer.callbacks+=" + ema, budget="3h"
    )
    cbs = yaml.safe_load(active.paths["yaml"].read_text())["trainer"]["callbacks"]
    names = [c["class_path"].rsplit(".", 1)[-1] for c in cbs]
    assert names.count("EMAWeightAveraging") == 1 and "LearningRateMonitor" in names
    assert names.count("InferenceChoice") == 1  # planned with its max_images


def test_the_users_inference_choice_replaces_the_planned_one(tmp_path):
    mine = "--trainer.callbacks+=segapp.lit.choose_inference.InferenceChoice"
    active, _, _ = _plan(tmp_path, mine, "--trainer.callbacks.max_images", "0", budget="3h")
    cbs = yaml.safe_load(active.paths["yaml"].read_text())["trainer"]["callbacks"]
    (choice,) = [c for c in cbs if c["class_path"].endswith("InferenceChoice")]
    assert choice["init_args"]["max_images"] == 0


def test_compact_keeps_what_differs_from_the_defaults():
    full = {"a": 1, "b": {"c": 2, "d": 3}, "n": {"class_path": "x", "init_args": {"k": 1}}}
    defaults = {"a": 1, "b": {"c": 2, "d": 0}, "n": {"class_path": "x", "init_args": {"k": 0}}}
    assert compact(full, defaults) == {"b": {"d": 3}, "n": {"class_path": "x", "init_args": {"k": 1}}}
    assert nested({"data.image_size": 3, "data.augment": "light", "seed": 1}) == {
        "data": {"image_size": 3, "augment": "light"},
        "seed": 1,
    }


def test_compact_tells_one_from_true_and_from_one_point_zero():
    """``1 == True`` in Python: seed 1 was dropped from plan.yaml (its default True is a random seed)."""
    defaults = {"seed_everything": True, "trainer": {"limit_train_batches": 1.0, "fast_dev_run": False}}
    full = {"seed_everything": 1, "trainer": {"limit_train_batches": 1, "fast_dev_run": 0}}
    assert compact(full, defaults) == full
    assert compact({"seed_everything": True, "l": [1, 2]}, {"seed_everything": True, "l": [1, 2]}) == {}


@pytest.mark.parametrize("seed", ["1", "0"])
def test_the_plan_yaml_keeps_a_seed_of_one_or_zero(tmp_path, seed):
    active, _, _ = _plan(tmp_path, "--seed_everything", seed)
    assert yaml.safe_load(active.paths["yaml"].read_text())["seed_everything"] == int(seed)
    assert parsed_app(["--config", str(active.paths["yaml"])]).config["seed_everything"] == int(seed)


def test_a_plan_yaml_is_refused_with_budget_and_its_input_plans_again(tmp_path):
    """A plan.yaml's max_epochs (1.5x + 1) was read as the user's cap when planning again from it;
    plan_input.yaml holds the user's own settings, and plans again with any budget."""
    first, root, run = _plan(tmp_path, "--trainer.gradient_clip_val", "0.3", "--trainer.max_epochs", "40", budget="1m")
    inp = first.paths["input"]
    assert inp == run / "plan_input.yaml" and inp.read_text().startswith("# segapp plan input:")
    mine = yaml.safe_load(inp.read_text())
    assert mine["trainer"]["gradient_clip_val"] == 0.3 and mine["trainer"]["max_epochs"] == 40
    assert mine["data"]["root"] == str(root.resolve()) and "budget" not in mine
    assert "image_size" not in mine["data"] and "callbacks" not in mine["trainer"]  # none of the plan's choices
    timer = lambda base, splits, rule: FakeTimer()  # noqa: E731
    replan = ["--config", str(first.paths["yaml"]), "--budget", "3h"]
    with pytest.raises(SettingError, match=r"--budget with --config .*plan\.yaml: expected the settings to plan"):
        plan_fit(parsed_app(replan).parser, parsed_app(replan).config, make_timer=timer)
    inp.rename(tmp_path / "moved.yaml")  # a plan written before plan_input.yaml existed
    with pytest.raises(SettingError, match=r"plan_input\.yaml is not there: plans before 2026-12-07"):
        plan_fit(parsed_app(replan).parser, parsed_app(replan).config, make_timer=timer)
    (tmp_path / "moved.yaml").rename(inp)
    again = ["--config", str(inp), "--budget", "3h", "--trainer.default_root_dir", str(tmp_path / "b")]
    second = plan_fit(parsed_app(again).parser, parsed_app(again).config, make_timer=timer)
    assert second.plan.settings["trainer.max_epochs"] == 40 and second.plan.schedule.epochs <= 40  # the user's cap
    assert yaml.safe_load(second.paths["yaml"].read_text())["trainer"]["gradient_clip_val"] == 0.3


def test_the_users_weight_average_replaced_or_dropped_is_named(tmp_path):
    ema = "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"
    long, _, _ = _plan(tmp_path / "l", ema, budget="3h")
    (note,) = [n for n in long.plan.notes if "EMAWeightAveraging" in n]
    assert note.startswith("your callback EMAWeightAveraging was replaced by the plan's EMAWeightAveraging{'decay'")
    assert not [n for n in long.plan.notes if "trainer.callbacks" in n]
    short, _, _ = _plan(tmp_path / "s", ema, "--trainer.max_epochs", "2", budget="3h")
    (note,) = [n for n in short.plan.notes if "EMAWeightAveraging" in n]
    assert "was dropped: the plan trains too few epochs" in note


def test_a_setting_the_user_gave_and_the_plan_replaces_is_named(tmp_path, capsys):
    active, _, _ = _plan(tmp_path, "--data.image_size", "999")
    assert active.plan.settings["data.image_size"] != 999
    (note,) = [n for n in active.plan.notes if "was replaced" in n]
    assert note.startswith("your data.image_size=999 was replaced by the plan's") and "plan.yaml" in note
    assert "your data.image_size=999" in capsys.readouterr().out
    plain, _, _ = _plan(tmp_path / "again")
    assert not [n for n in plain.plan.notes if "was replaced" in n]  # configs/auto.yaml alone: nothing to name


def test_a_setting_given_at_its_default_value_and_replaced_is_named_and_kept_in_plan_input(tmp_path):
    """``--data.image_size 256`` and ``--model.freeze_encoder_epochs 0`` equal the parser's defaults,
    so they were taken for "not given": replaced without a note and missing from plan_input.yaml
    (an encoder frozen for the whole run though the user asked for 0)."""
    active, _, _ = _plan(tmp_path, "--data.image_size", "256", "--model.freeze_encoder_epochs=0")
    s = active.plan.settings
    assert s["data.image_size"] != 256 and s["model.freeze_encoder_epochs"] != 0
    notes = [n for n in active.plan.notes if "was replaced" in n]
    assert any(n.startswith("your data.image_size=256 was replaced") for n in notes)
    assert any(n.startswith("your model.freeze_encoder_epochs=0 was replaced") for n in notes)
    mine = yaml.safe_load(active.paths["input"].read_text())
    assert mine["data"]["image_size"] == 256 and mine["model"]["freeze_encoder_epochs"] == 0


def test_planning_into_a_folder_with_a_trained_model_is_refused(tmp_path):
    """`segapp fit --config run/plan_input.yaml --budget ...` (the documented "plan again") names the
    old run folder: it wrote over that run's best.ckpt and plan.yaml."""
    first, _, run = _plan(tmp_path)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    before = first.paths["yaml"].read_text()
    again = ["--config", str(first.paths["input"]), "--budget", "20m"]
    with pytest.raises(SettingError, match=r"trainer.default_root_dir: expected a new run folder .*best\.ckpt.*_2"):
        plan_fit(parsed_app(again).parser, parsed_app(again).config, make_timer=lambda b, s, r: FakeTimer())
    assert first.paths["yaml"].read_text() == before and (run / "checkpoints" / "best.ckpt").read_bytes() == b"weights"


def test_given_keys_come_from_the_command_line_and_the_config_files(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  image_size: 256\nmodel:\n  net:\n    init_args:\n      encoder_name: x\n")
    keys = given_keys(["fit", "-c", str(cfg), "--trainer.max_epochs", "3", "--trainer.callbacks+=X", "--a.b=1"])
    assert {"data.image_size", "model.net.init_args.encoder_name", "trainer.max_epochs", "trainer.callbacks"} <= keys
    assert "a.b" in keys and "fit" not in keys and "data" not in keys  # leaves only: not a whole section


def test_a_test_split_is_checked_but_does_not_choose_the_plan(tmp_path):
    """Split folders: the test pairs' tiny lesions must not raise the image size of the plan they judge."""
    root = tmp_path / "data"
    lesion_folder(root / "train", [0.16] * 8, size=100)
    lesion_folder(root / "val", [0.16] * 4, size=50)
    lesion_folder(root / "test", [0.0025] * 12, size=200)  # every test lesion under 2 % of the frame
    app = parsed_app(
        ["--config", str(REPO / "configs/auto.yaml"), "--data.root", str(root), "--budget", "20m"]
        + ["--trainer.default_root_dir", str(tmp_path / "run")]
    )
    active = plan_fit(app.parser, app.config, make_timer=lambda base, splits, rule: FakeTimer())
    fp = active.plan.fingerprint
    assert fp.pairs == 12 and fp.small_share == 0 and fp.lesion_p10 == pytest.approx(0.16)
    assert any("the 12 test pairs were checked for errors but do not choose the plan" in n for n in active.plan.notes)
