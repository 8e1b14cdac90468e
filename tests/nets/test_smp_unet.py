"""SMP U-Net wrapper: shapes, local weight files, rebuild from a checkpoint without downloads."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from segapp.nets import EncoderWeightsError, SmpUnet, create_net, net_spec
from segapp.nets.weights import IMAGENET_STATS


@pytest.fixture(scope="module")
def tv_resnet18_file(tmp_path_factory):
    """A randomly initialised torchvision-format ResNet-18 state dict on disk (with fc.*)."""
    import torchvision

    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # make BN buffers non-default so the round-trip checks them too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("weights") / "resnet18_tv.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_random_init_output_shape_and_no_stats():
    net = create_net("smp_unet", encoder_name="resnet18", in_channels=1, out_channels=2, encoder_depth=3).eval()
    assert net(torch.randn(2, 1, 32, 64)).shape == (2, 2, 32, 64)
    assert net.pretrained_stats is None


@pytest.mark.parametrize("size", [(64, 64), (40, 64), (33, 50)])
def test_any_input_size_keeps_its_shape(size):
    """SMP 0.6's U-Net decoder resizes to each skip, so sizes need not divide 2**depth."""
    net = SmpUnet(encoder_name="resnet18").eval()
    assert net(torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_unknown_encoder_and_bad_decoder_channels_are_clear():
    with pytest.raises(ValueError, match="encoder_name: expected one of .* names, got 'resnet9'; did you mean resnet"):
        SmpUnet(encoder_name="resnet9")
    with pytest.raises(ValueError, match="decoder_channels needs 4 entries"):
        SmpUnet(encoder_name="resnet18", encoder_depth=4, decoder_channels=[64, 32, 16])
    with pytest.raises(EncoderWeightsError, match="unknown encoder_weights 'imagenet21k'; expected 'imagenet'"):
        SmpUnet(encoder_name="resnet18", encoder_weights="imagenet21k")


def test_local_torchvision_resnet_round_trips_exactly(tv_resnet18_file):
    path, ref = tv_resnet18_file
    net = SmpUnet(encoder_name="resnet18", encoder_weights=str(path))
    got = net.model.encoder.state_dict()
    expected = {k: v for k, v in ref.items() if not k.startswith("fc.")}
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    assert net.pretrained_stats == IMAGENET_STATS


def test_safetensors_and_timm_format_into_a_timm_universal_encoder(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    ref = timm.create_model("resnet18", pretrained=False).state_dict()  # timm names, with fc.*
    path = tmp_path / "resnet18_timm.safetensors"
    save_file({k: v.contiguous() for k, v in ref.items()}, str(path))
    net = SmpUnet(encoder_name="tu-resnet18", encoder_weights=str(path), encoder_depth=4)
    got = net.model.encoder.state_dict()  # keys carry SMP's "model." prefix
    for k, v in got.items():
        assert torch.equal(v, ref[k.removeprefix("model.")]), k


def test_mismatched_file_lists_missing_and_unexpected_keys(tmp_path, tv_resnet18_file):
    _, ref = tv_resnet18_file
    bad = {k: v for k, v in ref.items() if not k.startswith("layer4.")}
    bad["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(EncoderWeightsError) as e:
        SmpUnet(encoder_name="resnet18", encoder_weights=str(path))
    msg = str(e.value)
    assert "missing keys: layer4.0.conv1.weight" in msg and "1 unexpected keys: extra.weight" in msg
    with pytest.raises(EncoderWeightsError, match="80 missing keys: layer1.2.conv1.weight"):
        SmpUnet(encoder_name="resnet34", encoder_weights=str(tv_resnet18_file[0]))
    wrong = dict(ref, **{"conv1.weight": torch.zeros(64, 3, 5, 5)})
    torch.save(wrong, path)
    with pytest.raises(
        EncoderWeightsError, match=r"1 shape mismatches: conv1.weight \(64, 3, 5, 5\) vs \(64, 3, 7, 7\)"
    ):
        SmpUnet(encoder_name="resnet18", encoder_weights=str(path))


def test_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(EncoderWeightsError, match=r"nope\.pth not found"):
        SmpUnet(encoder_name="resnet18", encoder_weights=str(tmp_path / "nope.pth"))


def test_gray_input_reuses_pretrained_first_conv(tv_resnet18_file):
    path, ref = tv_resnet18_file
    net = SmpUnet(encoder_name="resnet18", encoder_weights=str(path), in_channels=1)
    assert torch.allclose(net.model.encoder.conv1.weight, ref["conv1.weight"].sum(1, keepdim=True))
    mean, std = net.pretrained_stats
    assert len(mean) == len(std) == 1 and mean[0] == pytest.approx(sum(IMAGENET_STATS[0]) / 3)


def test_checkpoint_rebuild_skips_weights_and_matches(tmp_path, tv_resnet18_file, monkeypatch):
    """Inference rebuilds from net_config (load_weights False) and the state dict; no hub, no file."""
    from segapp.inference.checkpoint import load_net
    from segapp.io import PreprocessSpec

    path, _ = tv_resnet18_file
    net = SmpUnet(encoder_name="resnet18", encoder_weights=str(path), encoder_depth=3).eval()
    spec = net_spec(net)
    assert json.loads(json.dumps(spec)) == spec and spec["kwargs"]["load_weights"] is False
    assert spec["kwargs"]["encoder_weights"] == str(path)  # provenance kept
    ckpt = tmp_path / "m.ckpt"
    meta = {
        "schema_version": 1,
        "net": spec,
        "threshold": 0.4,
        "preprocess": PreprocessSpec(
            size=(64, 64), in_channels=3, mean=IMAGENET_STATS[0], std=IMAGENET_STATS[1]
        ).to_dict(),
    }
    torch.save({"segapp": meta, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    path.rename(path.with_suffix(".moved"))  # the weights file is gone at inference time
    try:
        import huggingface_hub

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("hub touched"))
        rebuilt, *_ = load_net(ckpt)
    finally:
        path.with_suffix(".moved").rename(path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(rebuilt(x), net(x))


@pytest.mark.parametrize("size", [(64, 64), (40, 64), (33, 50)])
def test_fpn_decoder_keeps_any_input_size_and_rebuilds_from_its_spec(size):
    """SMP's FPN wants sizes divisible by 2**depth (it adds pyramid levels element-wise): the
    wrapper pads at the far edges and crops, so the output matches the input as with the U-Net."""
    torch.manual_seed(0)
    net = SmpUnet(encoder_name="resnet18", decoder="fpn", decoder_channels=[32, 32, 16, 16, 16]).eval()
    x = torch.randn(1, 3, *size)
    out = net(x)
    assert out.shape == (1, 1, *size)
    assert type(net.model).__name__ == "FPN" and net.model.decoder.out_channels == 32
    spec = net_spec(net)
    assert spec["kwargs"]["decoder"] == "fpn"
    rebuilt = create_net(spec["name"], **spec["kwargs"]).eval()
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt(x), out)


def test_fpn_refuses_unet_only_settings_and_a_head_groupnorm_cannot_split():
    with pytest.raises(ValueError, match="decoder_attention: expected None with decoder fpn .* got 'scse'"):
        SmpUnet(encoder_name="resnet18", decoder="fpn", decoder_attention="scse")
    with pytest.raises(ValueError, match="decoder_norm: expected 'batchnorm' with decoder fpn"):
        SmpUnet(encoder_name="resnet18", decoder="fpn", decoder_norm="identity")
    with pytest.raises(ValueError, match="decoder: expected one of unet, fpn, got 'FPN'"):
        SmpUnet(encoder_name="resnet18", decoder="FPN")
    with pytest.raises(ValueError, match=r"decoder_channels\[1\]: expected a multiple of 32 .* got 16"):
        SmpUnet(encoder_name="resnet18", decoder="fpn", decoder_channels=[32, 16, 16, 16, 16])
