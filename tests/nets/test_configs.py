"""The shipped model and Kvasir configs parse and build the nets they promise."""

from __future__ import annotations

import pytest

from segapp.nets import SmpUnet, UNet
from segapp.nets.weights import HALF_STATS
from tests.conftest import REPO

QUICK = str(REPO / "configs" / "quickstart.yaml")


def _build(*extra: str, root: str = "data/synthetic"):
    from segapp.app import cli

    return cli(["--config", QUICK, "--data.root", root, "--trainer.logger", "false", *extra], run=False)


@pytest.mark.parametrize(("name", "cls"), [("unet_scratch", UNet), ("unet_effl0_pretrained", SmpUnet)])
def test_model_configs_build_offline(name, cls, synth_root):
    run = _build("--model", str(REPO / "configs" / "model" / f"{name}.yaml"), root=str(synth_root))
    assert type(run.model.net) is cls
    if cls is SmpUnet:
        assert run.model.net.pretrained_stats == HALF_STATS
        assert run.model.hparams.freeze_encoder_epochs == 1 and run.model.hparams.encoder_lr_mult == 0.1


def test_resnet34_imagenet_config_fails_offline_with_the_fix(synth_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as e:  # jsonargparse wraps the net's error while instantiating
        _build("--model", str(REPO / "configs" / "model" / "unet_resnet34.yaml"), root=str(synth_root))
    text = str(e.value)
    cause = e.value
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
        text += str(cause)
    assert "HF_HUB_OFFLINE" in text and "encoder_weights: /path/to/resnet34.pth" in text


@pytest.mark.parametrize("name", ["kvasir_scratch", "kvasir_effl0"])
def test_kvasir_experiments_parse(name, capsys):
    from segapp.app import cli

    with pytest.raises(SystemExit) as e:
        cli(
            [
                "fit",
                "--config",
                QUICK,
                "--config",
                str(REPO / "configs" / "experiment" / f"{name}.yaml"),
                "--print_config",
            ]
        )
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "kvasir-seg" in out and "max_time: 00:00:40:00" in out and "precision: 32-true" in out


@pytest.mark.slow
def test_pretrained_fit_stores_weight_stats_and_rebuilds_offline(synth_root, tmp_path, monkeypatch):
    """effl0 config: fit 2 tiny epochs (frozen, then fine-tuned); the checkpoint carries the 0.5/0.5
    normalisation and rebuilds without the weights package or the hub."""
    import huggingface_hub

    from segapp.app import cli
    from segapp.inference.checkpoint import load_net
    from segapp.nets import weights
    from tests.conftest import dotted, fit_args

    args = fit_args(
        synth_root,
        tmp_path,
        "--model",
        str(REPO / "configs" / "model" / "unet_effl0_pretrained.yaml"),
        *dotted({"model.net.init_args.encoder_depth": 3, "model.net.init_args.decoder_channels": "[32, 16, 8]"}),
        *dotted({"trainer.max_epochs": 2, "trainer.limit_train_batches": 2, "trainer.limit_val_batches": 1}),
    )
    cli(args)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("hub touched"))
    monkeypatch.setattr(weights, "lite0_state_dict", lambda: pytest.fail("weights package read"))
    net, spec, threshold, meta = load_net(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(net, SmpUnet) and meta["net"]["kwargs"]["encoder_weights"] == "efficientnet-lite0"
    assert tuple(spec.mean) == HALF_STATS[0] and tuple(spec.std) == HALF_STATS[1]
    assert 0.0 < threshold < 1.0
