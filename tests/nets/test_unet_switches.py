"""Every scratch U-Net switch changes the module the way its docstring claims."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from segapp.nets import UNet
from segapp.nets.blocks import ConvBlock


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _small(**kw) -> UNet:
    return UNet(**{"depth": 2, "base_channels": 8, **kw})


# ---- init -------------------------------------------------------------------------------------


def test_zeros_init_gives_identical_filters_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="segapp.nets.init"):
        net = _small(init="zeros")
    assert any("symmetry" in r.getMessage() for r in caplog.records)
    for conv in _convs(net):
        w = conv.weight.detach()
        filt = w.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else w
        assert torch.equal(filt, filt[:1].expand_as(filt)), "every output filter of a layer is the same"
    # ...and they stay identical after training steps: the symmetry is never broken
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
        opt.step()
    w = net.down[1].conv1.weight.detach()
    assert torch.equal(w, w[:1].expand_as(w))


def test_he_init_filters_differ_and_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="segapp.nets.init"):
        net = _small(init="he")
    assert not caplog.records
    w = net.down[1].conv1.weight.detach()
    assert not torch.equal(w[0], w[1])


def test_xavier_init_is_glorot_uniform():
    torch.manual_seed(0)
    w = _small(init="xavier", base_channels=16).down[1].conv1.weight.detach()  # 16 -> 32, 3x3
    bound = math.sqrt(6.0 / ((16 + 32) * 9))
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_default_init_keeps_pytorch_init():
    torch.manual_seed(0)
    net = _small(init="default", base_channels=16)
    w = net.down[1].conv1.weight.detach()
    assert w.abs().max().item() <= 1 / math.sqrt(16 * 9)  # kaiming_uniform(a=sqrt(5)) bound
    assert net.head.bias.abs().sum().item() > 0  # he/xavier zero the biases, PyTorch does not
    assert _small(init="he").head.bias.abs().sum().item() == 0


# ---- norm, activation, block --------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "cls"), [("batch", nn.BatchNorm2d), ("instance", nn.InstanceNorm2d), ("group", nn.GroupNorm)]
)
def test_norm_switch_puts_that_norm_in_every_block(norm, cls):
    net = _small(norm=norm)
    blocks = [m for m in net.modules() if isinstance(m, ConvBlock)]
    assert blocks and all(isinstance(b.norm1, cls) and isinstance(b.norm2, cls) for b in blocks)
    assert all(b.conv1.bias is None for b in blocks)  # the norm's shift replaces the bias


def test_norm_none_has_no_norm_layers_and_biased_convs():
    net = _small(norm="none")
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in net.modules())
    assert all(b.conv1.bias is not None for b in net.modules() if isinstance(b, ConvBlock))


@pytest.mark.parametrize(
    ("act", "cls"),
    [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU), ("gelu", nn.GELU), ("silu", nn.SiLU)],
)
def test_activation_switch(act, cls):
    net = _small(activation=act)
    acts = {type(m) for m in net.modules() if type(m).__module__.startswith("torch.nn.modules.activation")}
    assert acts == {cls}


def test_residual_blocks_have_a_shortcut_that_is_used():
    plain, res = _small(block="plain"), _small(block="residual")
    assert all(b.shortcut is None for b in plain.modules() if isinstance(b, ConvBlock))
    blocks = [b for b in res.modules() if isinstance(b, ConvBlock)]
    assert all(b.shortcut is not None for b in blocks)
    # channels change in every encoder block -> 1x1 projection; equal channels -> identity
    proj = res.down[1].shortcut
    assert isinstance(proj, nn.Sequential) and proj[0].kernel_size == (1, 1)
    assert isinstance(ConvBlock(8, 8, "batch", "relu", "residual").shortcut, nn.Identity)
    calls = []
    proj.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    res.eval()(torch.randn(1, 3, 16, 16))
    assert calls == [torch.Size([1, 16, 8, 8])]


def test_residual_block_is_identity_plus_branch():
    blk = ConvBlock(4, 4, "none", "relu", "residual").eval()
    for p in (blk.conv1.weight, blk.conv2.weight, blk.conv1.bias, blk.conv2.bias):
        nn.init.zeros_(p)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(blk(x), torch.relu(x))  # zero branch -> act(x + 0)


# ---- dropout ------------------------------------------------------------------------------


def test_dropout_is_spatial_at_the_bottleneck_and_optional_in_the_decoder():
    net = _small(dropout=0.3)
    assert isinstance(net.bottleneck.drop, nn.Dropout2d) and net.bottleneck.drop.p == 0.3
    assert all(isinstance(d.drop, nn.Identity) for d in net.decoders)
    net = _small(dropout=0.3, decoder_dropout=0.2)
    assert all(isinstance(d.drop, nn.Dropout2d) and d.drop.p == 0.2 for d in net.decoders)
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in _small().modules())


def test_spatial_dropout_zeroes_whole_channels_in_training_only():
    net = _small(dropout=0.5)
    seen = []
    net.bottleneck.drop.register_forward_hook(lambda m, i, o: seen.append(o))
    torch.manual_seed(0)
    net.train()(torch.randn(2, 3, 16, 16))
    out = seen[-1]
    per_channel = out.flatten(2).abs().amax(-1)  # (N, C): a dropped channel is all zero
    assert (per_channel == 0).any() and (per_channel > 0).any()
    net.eval()
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_dropout_out_of_range_is_rejected(p):
    with pytest.raises(ValueError, match=r"dropout: expected a value in \[0.0, 1.0\)"):
        _small(dropout=p)


# ---- upsample, skips ---------------------------------------------------------------------


def test_transposed_upsampling_is_learnable():
    net = _small(upsample="transposed")
    ups = [u.up for u in net.ups]
    assert all(isinstance(u, nn.ConvTranspose2d) and u.stride == (2, 2) for u in ups)
    net(torch.randn(1, 3, 16, 16)).sum().backward()
    assert all(u.weight.grad is not None and u.weight.grad.abs().sum() > 0 for u in ups)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_interpolating_upsampling_has_no_learnable_upsampler(mode):
    net = _small(upsample=mode)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    samplers = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(samplers) == 2 and all(s.mode == mode and list(s.parameters()) == [] for s in samplers)


def test_bilinear_is_the_default_upsampling():
    assert UNet().net_config["upsample"] == "bilinear"


@pytest.mark.parametrize("skips", [True, False])
def test_skips_switch_controls_concatenation(skips, monkeypatch):
    net = _small(skips=skips).eval()
    seen = []
    for dec in net.decoders:
        dec.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    cats = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda *a, **k: cats.append(1) or real_cat(*a, **k))
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    widths = [16, 8]  # decoder order: deepest first
    assert seen == ([2 * w for w in widths] if skips else widths)
    assert len(cats) == (2 if skips else 0)
    assert [d.conv1.in_channels for d in net.decoders] == seen


# ---- depth, base_channels, shapes --------------------------------------------------------


@pytest.mark.parametrize(("depth", "base"), [(1, 4), (3, 8), (5, 2)])
def test_depth_and_base_channels_set_the_widths(depth, base):
    net = UNet(depth=depth, base_channels=base)
    assert len(net.down) == len(net.ups) == len(net.decoders) == depth
    assert net.down[0].conv1.out_channels == base
    assert net.bottleneck.conv2.out_channels == base * 2**depth


@pytest.mark.parametrize(
    "kw",
    [
        {"block": "residual", "norm": "group", "upsample": "transposed"},
        {"skips": False, "norm": "instance", "upsample": "nearest", "activation": "gelu"},
        {"init": "xavier", "norm": "none", "dropout": 0.2, "decoder_dropout": 0.1},
    ],
)
@pytest.mark.parametrize("size", [(16, 16), (32, 48)])
def test_output_shape_equals_input_for_switch_combinations(kw, size):
    net = UNet(in_channels=1, out_channels=2, depth=3, base_channels=4, **kw).eval()
    assert net(torch.randn(2, 1, *size)).shape == (2, 2, *size)


def test_indivisible_size_error_names_the_size_to_pad_to():
    with pytest.raises(ValueError, match=r"divisible by 4, got 18x16; pad or resize the input to 20x16"):
        _small()(torch.randn(1, 3, 18, 16))


def test_net_config_rebuilds_the_same_architecture():
    from segapp.nets import create_net

    net = _small(block="residual", upsample="transposed", skips=False, norm="group")
    twin = create_net("unet", **net.net_config)
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [(k, v.shape) for k, v in twin.state_dict().items()]
