"""``segapp fit --budget``: refusals as one line, and a real planned run whose plan.yaml replays."""

from __future__ import annotations

import pytest
import torch
import yaml
from lightning.pytorch import seed_everything

from segapp.app import bare_argv, cli
from segapp.cli.main import main
from segapp.data.synth import generate
from segapp.errors import SettingError
from tests.conftest import REPO

AUTO = str(REPO / "configs" / "auto.yaml")


def _error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as e, bare_argv():
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("segapp: error: ")
    return err


def test_refusals_are_one_line(tmp_path, capsys):
    root = str(generate(tmp_path / "d", n=8, size=32, seed=0))
    base = ["fit", "--config", AUTO, "--data.root", root, "--trainer.default_root_dir", str(tmp_path / "run")]
    assert "--budget: expected a duration like 40m" in _error(capsys, [*base, "--budget", "40 minutes"])
    assert "--plan_only: expected --budget" in _error(capsys, [*base, "--plan_only", "true"])
    assert "data.root: expected your dataset folder" in _error(capsys, [*base, "--data.root", "", "--budget", "5m"])
    resume = _error(capsys, [*base, "--budget", "5m", "--ckpt_path", "last"])
    assert "--budget: expected a new run, got --ckpt_path last" in resume and "plan.yaml --ckpt_path last" in resume
    for key, value in (("limit_train_batches", "0.25"), ("limit_train_batches", "1"), ("accumulate_grad_batches", "4")):
        err = _error(capsys, [*base, "--budget", "5m", f"--trainer.{key}", value])
        assert f"trainer.{key}: expected " in err and "with --budget" in err and "plan.yaml" in err, err
    for key, value in (("check_val_every_n_epoch", "2"), ("max_steps", "100"), ("val_check_interval", "0.5")):
        assert f"trainer.{key}: expected " in _error(capsys, [*base, "--budget", "5m", f"--trainer.{key}", value])
    # a minimum switched off trainer.max_time's stop (a 60 s plan ran 82 s); the others are debugging runs
    for key, value in (("min_epochs", "34"), ("min_steps", "500"), ("fast_dev_run", "true"), ("overfit_batches", "2")):
        assert f"trainer.{key}: expected " in _error(capsys, [*base, "--budget", "5m", f"--trainer.{key}", value])
    assert "model.compile: expected false with --budget" in _error(
        capsys, [*base, "--budget", "5m", "--model.compile", "true"]
    )
    val = ["validate", *base[1:], "--budget", "5m"]
    assert "--budget: expected with segapp fit, got segapp validate" in _error(capsys, val)
    assert not (tmp_path / "run" / "plan.yaml").exists()


@pytest.mark.slow
def test_a_planned_run_trains_and_its_plan_yaml_replays(tmp_path, capsys):
    root = generate(tmp_path / "d", n=24, size=64, seed=0)
    run = tmp_path / "run"
    small = ["--trainer.limit_val_batches", "1", "--trainer.logger", "false"]
    with bare_argv():
        app = cli(
            ["fit", "--config", AUTO, "--data.root", str(root), "--budget", "3m", "--trainer.max_epochs", "1"]
            + ["--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false", *small]
        )
    assert app.trainer.state.finished and app.trainer.current_epoch == 1
    out = capsys.readouterr().out
    assert "segapp plan · 3m on" in out and "plan: epoch 1/1 ·" in out
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["trainer"]["max_epochs"] == 1 and plan["data"]["image_size"] == 64
    assert plan["trainer"]["limit_val_batches"] == 1  # the user's settings are kept
    assert f"replay: segapp fit --config {run / 'plan.yaml'} --trainer.default_root_dir {run}_2" in out
    with bare_argv(), pytest.raises(SettingError, match="holds a trained model"):  # not over the planned run
        cli(["fit", "--config", str(run / "plan.yaml"), "--trainer.max_epochs", "1"])
    again = ["--trainer.default_root_dir", f"{run}_2"]
    with bare_argv():
        replay = cli(["fit", "--config", str(run / "plan.yaml"), "--trainer.max_epochs", "1", *again])
    assert replay.trainer.state.finished and (tmp_path / "run_2" / "checkpoints" / "last.ckpt").is_file()
    assert "plan: epoch" not in capsys.readouterr().out  # no plan is active in a replay


def test_a_planned_run_starts_from_its_seed_as_its_plan_yaml_replayed_does(tmp_path, monkeypatch):
    """The step timer reseeds and draws from torch's RNG after Lightning seeded it; the run must not
    start from what the timer left (every --seed_everything would train the same init and order)."""
    import segapp.app as app_module
    from segapp.plan.apply import plan_fit
    from tests.plan.conftest import FakeTimer

    class DrawingTimer(FakeTimer):
        def measure(self, cand, max_s=float("inf")):
            torch.manual_seed(0)  # as segapp.plan.torch_timer builds its timing net
            torch.rand(100)
            return super().measure(cand, max_s)

    def planned(parser, cfg, started=None, user_keys=()):
        timer = lambda base, splits, rule: DrawingTimer()  # noqa: E731
        return plan_fit(parser, cfg, make_timer=timer, started=started, user_keys=user_keys)

    monkeypatch.setattr(app_module, "plan_fit", planned)
    root = str(generate(tmp_path / "d", n=12, size=32, seed=0))
    firsts = {}
    for seed in (3, 4):
        run = tmp_path / f"run{seed}"
        with bare_argv():
            cli(["fit", "--config", AUTO, "--data.root", root, "--budget", "5m", "--plan_only", "true"]
                + ["--seed_everything", str(seed), "--trainer.default_root_dir", str(run)])  # fmt: skip
        firsts[seed] = torch.rand(4)
        assert yaml.safe_load((run / "plan.yaml").read_text())["seed_everything"] == seed
        seed_everything(seed)
        assert torch.equal(firsts[seed], torch.rand(4))  # the seed's own stream, as a replay starts
    assert not torch.equal(firsts[3], firsts[4])
