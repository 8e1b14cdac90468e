import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segapp.app import cli, parse_only
from tests.conftest import REPO, fit_args

# configs/ablation holds study files for segapp-ablate (validated in tests/ablation), not CLI configs
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "ablation")


def _config_args(config: Path) -> list[str]:
    """How a config file is meant to be used: data/ and model/ files with --data / --model."""
    group = config.relative_to(REPO / "configs").parts[0]
    flag = {"data": "--data", "model": "--model"}.get(group, "--config")
    return ["--config", str(REPO / "configs" / "quickstart.yaml"), flag, str(config)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_is_accepted_by_the_cli_parser(config):
    """Parsed by the CLI's own parser (types, Literal choices, class paths), not yaml.safe_load."""
    assert parse_only(_config_args(config)) is None


def test_config_with_a_bad_value_is_rejected_by_the_parser(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  net:\n    class_path: segapp.nets.UNet\n    init_args:\n      norm: layer\n")
    err = parse_only(["--config", str(REPO / "configs" / "quickstart.yaml"), "--config", str(bad)])
    assert err is not None and "\n" not in err
    assert "model.net.init_args.norm: expected one of batch, instance, group, none, got 'layer'" in err


def test_fit_fast_dev_run_on_generated_files(synth_root, tmp_path):
    app = cli(fit_args(synth_root, tmp_path, "--trainer.fast_dev_run", "true"))
    assert app.trainer.state.finished and app.trainer.global_step == 1
    assert len(app.datamodule.splits["train"]) + len(app.datamodule.splits["val"]) == 96


def test_a_second_fit_into_a_trained_folder_is_refused(synth_root, tmp_path):
    """A second ``segapp fit`` into the same run folder wrote over best.ckpt with whatever it reached."""
    from segapp.errors import SettingError

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"the trained model")
    (tmp_path / "run_2").mkdir()  # taken: the message names the next free folder
    with pytest.raises(SettingError) as e:
        cli(fit_args(synth_root, run))
    msg = str(e.value)
    assert f"got {run}, which holds a trained model (best.ckpt) that this run would write over" in msg
    assert f"--trainer.default_root_dir {tmp_path / 'run_3'}, resume it with --ckpt_path last" in msg
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == b"the trained model"
    app = cli(fit_args(synth_root, run, "--trainer.fast_dev_run", "true"))  # a dry run writes no checkpoint
    assert app.trainer.state.finished and (run / "checkpoints" / "best.ckpt").read_bytes() == b"the trained model"


@pytest.mark.parametrize("native", [False, True])
def test_bf16_training_on_a_cpu_without_bf16_hardware_is_said(synth_root, tmp_path, monkeypatch, capsys, native):
    """A plan made on an AVX512-BF16 machine says bf16-mixed; replayed on an AVX2 CPU it would be
    8-25x slower and ``max_time`` would cut it short without a word."""
    import segapp.app

    monkeypatch.setattr(segapp.app, "cpu_supports_bf16", lambda: native)
    args = ("--trainer.fast_dev_run", "true", "--trainer.precision", "bf16-mixed", "--trainer.accelerator", "cpu")
    app = cli(fit_args(synth_root, tmp_path, *args))
    err = capsys.readouterr().err
    assert app.trainer.state.finished
    said = "trainer.precision bf16-mixed on a CPU without AMX-BF16 or AVX512-BF16" in err
    assert said is not native
    assert ("fix: --trainer.precision 32-true, or plan again here from the plan_input.yaml" in err) is not native


def test_print_config_shows_model_and_data_sections(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "segapp.cli.main",
            "fit",
            "--config",
            str(REPO / "configs/quickstart.yaml"),
            "--print_config",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "class_path: segapp.nets.UNet" in out.stdout and "root: data/synthetic" in out.stdout


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_bad_data_path_gives_one_clear_error_line(kind, tmp_path):
    root = tmp_path / "nope"
    if kind == "empty":
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
    cmd = [sys.executable, "-m", "segapp.cli.main", *fit_args(root, tmp_path / "run", "--trainer.max_epochs", "1")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("segapp: error:") and str(root) in last
    assert ("does not exist" in last) if kind == "missing" else ("no image/mask pairs" in last)


def test_checkpoint_block_is_plain_json_loadable_with_weights_only(tiny_ckpt):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    meta = ckpt["segapp"]
    assert meta["schema_version"] == 1
    assert meta["net"]["name"] == "unet" and meta["net"]["kwargs"]["depth"] == 3
    pre = meta["preprocess"]
    assert pre["size"] == [64, 64] and pre["in_channels"] == 3 and pre["size_policy"] == "resize"
    assert len(pre["mean"]) == 3 and all(0 < s < 1 for s in pre["std"])
    assert 0.3 <= meta["threshold"] <= 0.7
    assert isinstance(meta["data_fingerprint"], str) and len(meta["data_fingerprint"]) == 16


def test_run_folder_layout(tiny_ckpt):
    run = Path(tiny_ckpt).parents[1]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    logs = sorted((run / "logs").glob("version_*"))
    assert logs and (logs[-1] / "config.yaml").is_file() and (logs[-1] / "metrics.csv").is_file()
