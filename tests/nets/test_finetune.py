"""Transfer learning: frozen encoder for N epochs (BN eval), then discriminative-LR fine-tuning."""

from __future__ import annotations

import csv
import logging

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from segapp.lit import SegmentationModule, finetune
from segapp.nets import UNet
from tests.conftest import REPO, dotted, fit_args, run_fit, tiny_fit_args

FREEZE_ONE_EPOCH = {"model.freeze_encoder_epochs": 1, "model.encoder_lr_mult": 0.1}  # then fine-tune at lr x 0.1


def _tiny() -> UNet:
    return UNet(depth=2, base_channels=4)


def test_param_groups_scale_the_encoder_lr_and_keep_it_under_a_scheduler():
    from segapp.lit.schedulers import WarmupCosine

    net = _tiny()
    opt = finetune.build_optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01), net, 0.1)
    lrs = finetune.group_lrs(opt)
    assert lrs == pytest.approx({"encoder": 1e-4, "decoder": 1e-3})
    enc_ids = {id(p) for p in net.encoder_module().parameters()}
    assert {id(p) for p in opt.param_groups[0]["params"]} == enc_ids
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    sched = WarmupCosine(opt, warmup_epochs=1, max_epochs=5)
    for _ in range(3):
        opt.step()
        sched.step()
    lrs = finetune.group_lrs(opt)
    assert lrs["encoder"] == pytest.approx(0.1 * lrs["decoder"])


def test_lr_mult_one_keeps_a_single_group_and_bad_values_are_rejected():
    opt = finetune.build_optimizer(lambda p: torch.optim.SGD(p, lr=0.1), _tiny(), 1.0)
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="encoder_lr_mult must be > 0"):
        finetune.build_optimizer(lambda p: torch.optim.SGD(p, lr=0.1), _tiny(), 0.0)


def test_freezing_needs_a_net_with_an_encoder():
    with pytest.raises(ValueError, match="needs a net with an encoder"):
        SegmentationModule(net=nn.Conv2d(3, 1, 1), freeze_encoder_epochs=2)
    with pytest.raises(ValueError, match="model.freeze_encoder_epochs: expected a value >= 0"):
        SegmentationModule(net=_tiny(), freeze_encoder_epochs=-1)


def test_frozen_encoder_gets_no_update_and_keeps_bn_statistics():
    torch.manual_seed(0)
    net = _tiny().train()
    enc = net.encoder_module()
    finetune.set_encoder_frozen(enc, True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    net(torch.randn(2, 3, 16, 16)).mean().backward()
    opt.step()
    after = net.state_dict()
    enc_keys = {f"down.{k}" for k in enc.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in enc_keys)  # weights and running stats
    assert any(not torch.equal(before[k], after[k]) for k in after if k not in enc_keys)
    assert all(not m.training for m in enc.modules() if isinstance(m, nn.BatchNorm2d))
    finetune.set_encoder_frozen(enc, False)
    assert all(p.requires_grad for p in enc.parameters())


class _Recorder(Callback):
    """Encoder state (weights + BN buffers) and BN modes, per epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.bn_training: list[bool] = []

    def _enc(self, pl_module):
        return pl_module.net.encoder_module()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.states.append({k: v.clone() for k, v in self._enc(pl_module).state_dict().items()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bns = [m for m in self._enc(pl_module).modules() if isinstance(m, nn.BatchNorm2d)]
        self.bn_training.append(any(m.training for m in bns))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append({k: v.clone() for k, v in self._enc(pl_module).state_dict().items()})


@pytest.mark.slow
def test_fit_freezes_then_unfreezes_with_lower_encoder_lr(synth_root, tmp_path, caplog):
    """3 tiny epochs: epoch 0 frozen (encoder and BN stats untouched), epochs 1-2 fine-tuned at lr x 0.1."""
    from segapp.app import cli

    limits = {"trainer.max_epochs": 3, "trainer.limit_train_batches": 3, "trainer.limit_val_batches": 2}
    net = {"model.net.init_args.depth": 2, "model.net.init_args.base_channels": 4}
    args = fit_args(
        synth_root, tmp_path, *dotted({**limits, **net, **FREEZE_ONE_EPOCH, "trainer.gradient_clip_val": 1.0})
    )
    run = cli(args[1:], run=False)  # no subcommand when run=False
    rec = _Recorder()
    run.trainer.callbacks.append(rec)
    with caplog.at_level(logging.INFO):
        run.trainer.fit(run.model, datamodule=run.datamodule)
    s0, s1, s2, _ = rec.states
    assert all(torch.equal(s0[k], s1[k]) for k in s0), "frozen epoch changed the encoder"
    assert any(not torch.equal(s1[k], s2[k]) for k in s1), "fine-tuning did not change the encoder"
    assert rec.bn_training[:3] == [False] * 3 and all(rec.bn_training[3:])
    assert any("epoch 1: encoder unfrozen" in r.getMessage() for r in caplog.records)
    lrs = finetune.group_lrs(run.trainer.optimizers[0])
    assert lrs["encoder"] == pytest.approx(0.1 * lrs["decoder"])
    rows = list(csv.DictReader((next(tmp_path.glob("logs/version_*/metrics.csv"))).read_text().splitlines()))
    frozen = [float(r["train/encoder_frozen"]) for r in rows if r.get("train/encoder_frozen")]
    assert frozen == [1.0, 0.0, 0.0]
    enc_lr = [float(r["train/lr_encoder"]) for r in rows if r.get("train/lr_encoder")]
    dec_lr = [float(r["train/lr_decoder"]) for r in rows if r.get("train/lr_decoder")]
    assert len(enc_lr) == 3 and enc_lr == pytest.approx([0.1 * d for d in dec_lr])


def test_cli_validates_switch_values_and_lists_the_valid_ones(capsys):
    from segapp.app import cli

    with pytest.raises(SystemExit):
        cli(
            [
                "fit",
                "--config",
                str(REPO / "configs" / "quickstart.yaml"),
                "--model.net.init_args.upsample",
                "cubic",
                "--print_config",
            ]
        )
    err = capsys.readouterr().err
    assert "cubic" in err and "transposed" in err and "bilinear" in err


def test_distributed_freeze_keeps_requires_grad_and_drops_grads():
    torch.manual_seed(0)
    net = _tiny().train()
    enc = net.encoder_module()
    finetune.set_encoder_frozen(enc, True, keep_grads=True)
    assert all(p.requires_grad for p in enc.parameters())  # DDP's parameter set stays fixed
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    net(torch.randn(2, 3, 16, 16)).mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    finetune.drop_grads(enc)
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


@pytest.mark.slow
def test_ddp_fit_with_a_frozen_encoder_runs(synth_root, tmp_path):
    """2-process CPU DDP (gloo) through freeze -> unfreeze; toggling requires_grad would break DDP."""
    ddp = {"trainer.max_epochs": 2, **FREEZE_ONE_EPOCH, "trainer.strategy": "ddp", "trainer.devices": 2}
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = run_fit(tiny_fit_args(synth_root, tmp_path, *dotted(ddp)), timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1: encoder unfrozen" in proc.stderr + proc.stdout
