"""``segapp-ablate`` end to end on generated data: rows, figure, report, resume, early failure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from segapp.cli.ablate import main

REPO = Path(__file__).resolve().parents[2]

TINY = """
name: tiny
seeds: 1
budget: {epochs: 1}
target_dice: 0.01
evaluate: true
overrides:
  model.net.init_args.depth: 2
  model.net.init_args.base_channels: 4
  model.scheduler: null
grid:
  model.net.init_args.init: [he, zeros]
"""


@pytest.fixture(scope="module")
def data32(tmp_path_factory) -> Path:
    from segapp.data.synth import generate

    return generate(tmp_path_factory.mktemp("abl") / "data", n=24, size=32, seed=0)


def _argv(study: Path, out: Path, data: Path) -> list[str]:
    return [
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--study",
        str(study),
        "--out",
        str(out),
        "--data.root",
        str(data),
        "--data.image_size",
        "32",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "8",
        "--trainer.enable_progress_bar",
        "false",
    ]


@pytest.mark.slow
def test_tiny_study_end_to_end_and_resume(tmp_path, data32, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    out = tmp_path / "out"
    main(_argv(study, out, data32))

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"]) for r in rows] == [("init=he", "0"), ("init=zeros", "0")]
    for r in rows:
        assert 0.0 <= float(r["best_val_dice"]) <= 1.0 and r["epochs"] == "1"
        assert float(r["final_train_loss"]) > 0 and float(r["wall_s"]) > 0
        assert 0.0 <= float(r["val_bf1"]) <= 1.0  # evaluate: true adds the report's boundary metrics
    png = out / "tiny_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert (
        "val boundary F1" in report
        and "| init=he |" in report
        and "| init=zeros |" in report
        and "](tiny_curves.png)" in report
    )
    done = out / "runs" / "init=he" / "seed0" / "DONE.json"
    assert json.loads(done.read_text())["row"]["variant"] == "init=he"

    # rerun: finished runs are skipped; an unfinished one (no DONE.json) is trained again
    stamp = done.stat().st_mtime_ns
    (out / "runs" / "init=zeros" / "seed0" / "DONE.json").unlink()
    capsys.readouterr()
    main(_argv(study, out, data32))
    log = capsys.readouterr().out
    assert "init=he seed 0: done before, skipped" in log
    assert "init=zeros seed 0: training" in log
    assert done.stat().st_mtime_ns == stamp
    assert len(list((out / "runs" / "init=zeros" / "seed0" / "logs").glob("version_*"))) == 1  # restarted clean
    with open(out / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2

    # the study edited since: its finished runs are not reported under the new settings
    study.write_text(TINY.replace("model.net.init_args.base_channels: 4", "model.net.init_args.base_channels: 8"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(_argv(study, out, data32))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "init=he/seed0 was trained with other settings than this study's" in err
    assert "model.net.init_args.base_channels=4 then, 8 now" in err and "fix: a new --out" in err
    assert done.stat().st_mtime_ns == stamp  # nothing trained, nothing rewritten


@pytest.mark.parametrize(
    ("grid", "needles"),
    [
        (
            "model.net.init_args.norm: [batch, layer]",
            ["model.net.init_args.norm", "expected one of batch, instance, group, none, got 'layer'"],
        ),
        ("model.net.init_args.nrom: [batch]", ["model.net.init_args.nrom", "does not exist"]),
    ],
)
def test_bad_study_fails_before_any_training(tmp_path, data32, capsys, grid, needles):
    study = tmp_path / "bad.yaml"
    study.write_text(f"seeds: 1\nbudget: {{epochs: 1}}\ngrid:\n  {grid}\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(_argv(study, out, data32))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("segapp-ablate: error:")
    for needle in needles:
        assert needle in err
    assert not out.exists()  # nothing trained, nothing written


def test_check_lists_runs_without_training(tmp_path, data32, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    main([*_argv(study, tmp_path / "out", data32), "--check"])
    assert "2 variant(s) x 1 seed(s) = 2 run(s)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_bad_pass_through_argument_fails_early(tmp_path, data32, capsys):
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    with pytest.raises(SystemExit):
        main([*_argv(study, tmp_path / "out", data32), "--data.augment", "heavy"])
    assert "data.augment" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "clash"),
    [
        (["--model.net.init_args.init", "xavier"], "model.net.init_args.init"),  # a variant's key
        (["--trainer.max_epochs", "5"], "trainer.max_epochs"),  # the study's budget
        (["--seed_everything", "3"], "seed_everything"),  # the runner's
    ],
)
def test_an_extra_argument_the_study_sets_is_refused(tmp_path, data32, capsys, extra, clash):
    """Placed after the study's settings, it won in every run: two init arms given
    --model.net.init_args.init xavier were bit-identical and reported as different."""
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    with pytest.raises(SystemExit) as e:
        main([*_argv(study, tmp_path / "out", data32), *extra, "--check"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"({clash}); fix: set it in the study's overrides or variants" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_failing_arm_is_reported_and_the_others_still_run(tmp_path, data32, capsys):
    """A DataError in one arm ended the study with a traceback: later arms never ran, no report."""
    study = tmp_path / "s.yaml"
    study.write_text(
        TINY.replace(
            "grid:\n  model.net.init_args.init: [he, zeros]",
            "variants:\n  ok: {}\n  big: {data.train_subset: 500}\n  ok2: {}",
        ).replace("evaluate: true", "evaluate: false")
    )
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(_argv(study, out, data32))
    assert e.value.code == 1
    rows = {r["variant"]: r for r in csv.DictReader((out / "results.csv").read_text().splitlines())}
    assert set(rows) == {"ok", "big", "ok2"} and rows["ok2"]["best_val_dice"] and not rows["ok2"]["error"]
    assert rows["big"]["error"].startswith("DataError") and not rows["big"]["best_val_dice"]
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report and "`big` seed" in report and "| ok2 |" in report and "| big |" not in report


def test_run_settings_do_not_depend_on_how_arguments_were_typed(tmp_path):
    """A resumed study with `--data.root=X` for `--data.root X`, an absolute --out, or more workers is
    the same study; a changed value is not."""
    from segapp.ablation.runner import run_settings

    (tmp_path / "d").mkdir()
    a = ["fit", "--config", "c.yaml", "--data.root", "d", "--data.num_workers", "0", "--trainer.default_root_dir", "r"]
    b = ["fit", "--config=./c.yaml", f"--data.root={tmp_path / 'd'}", "--trainer.default_root_dir", str(tmp_path)]
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert run_settings(a) == run_settings(b) == {"data.root": str(tmp_path / "d")}
    finally:
        os.chdir(cwd)
    assert run_settings([*a, "--model.lr=1e-3"]) != run_settings([*a, "--model.lr", "3e-3"])
