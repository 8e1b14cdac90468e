"""Every constructor argument of every registered net round-trips through ``ckpt["segapp"]["net"]``.

The registry records the arguments (``register_net``); these tests save a checkpoint the way
``segapp fit`` does (``build_meta``), rebuild it with ``segapp.inference.checkpoint.load_net``
offline, and compare. A new constructor argument without an entry in :data:`ALTERNATIVES`
fails :func:`test_every_argument_has_a_tested_alternative`, so it cannot be forgotten.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from segapp.io import PreprocessSpec
from segapp.lit.checkpoint_meta import build_meta
from segapp.nets import available_nets, create_net, net_spec, register_net
from segapp.nets import registry as net_registry

SMALL: dict[str, dict[str, Any]] = {  # cheap builds; the argument under test is set over these
    "unet": {"depth": 2, "base_channels": 4},
    "smp_unet": {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [64, 32, 16]},
}
ALTERNATIVES: dict[str, dict[str, list[Any]]] = {  # non-default values (Literal choices are added below)
    "unet": {
        "in_channels": [1],
        "out_channels": [2],
        "depth": [3],
        "base_channels": [8],
        "dropout": [0.1],
        "decoder_dropout": [0.2],
        "skips": [False],
    },
    "smp_unet": {
        "encoder_name": ["resnet34"],
        "encoder_weights": ["<weights file>"],
        "in_channels": [1],
        "out_channels": [2],
        "encoder_depth": [4],
        "decoder_channels": [[48, 32, 16]],
        "decoder_attention": ["scse"],
        "load_weights": [False],
    },
}
# Every offered choice builds and runs (SMP 0.6's broken decoder norms are not offered: smp_unet.DecoderNorm).
BROKEN_IN_SMP: set[tuple[str, str, str]] = set()
NO_FORWARD: set[tuple[str, str, str]] = set()
SIZE = 32


def _params(name: str) -> dict[str, inspect.Parameter]:
    cls = type(create_net(name, **SMALL[name]))
    return dict(list(inspect.signature(cls.__init__).parameters.items())[1:])


def _literal_choices(name: str) -> dict[str, list[Any]]:
    cls = type(create_net(name, **SMALL[name]))
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for pname, param in _params(name).items():
        literals = [a for a in typing.get_args(hints[pname]) if typing.get_origin(a) is typing.Literal]
        if typing.get_origin(hints[pname]) is typing.Literal:
            literals = [hints[pname]]
        values = [v for lit in literals for v in typing.get_args(lit) if v != param.default]
        if values:
            out[pname] = values
    return out


def _cases() -> list[tuple[str, str, Any]]:
    cases = []
    for name in available_nets():
        alts = {**ALTERNATIVES.get(name, {})}
        for pname, values in _literal_choices(name).items():
            alts[pname] = alts.get(pname, []) + [v for v in values if (name, pname, str(v)) not in BROKEN_IN_SMP]
        cases += [(name, pname, v) for pname, values in sorted(alts.items()) for v in values]
    return cases


def _kwargs(name: str, pname: str, value: Any, weights_file: Path) -> dict[str, Any]:
    kw = {**SMALL[name], pname: value}
    if value == "<weights file>":
        kw[pname] = str(weights_file)
    if name == "smp_unet" and pname == "encoder_depth":
        kw["decoder_channels"] = [64, 32, 16, 16][:value]
    return kw


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory) -> Path:
    """A torchvision-format ResNet-18 state dict (random init) standing in for pretrained weights."""
    import torchvision

    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("w") / "resnet18_tv.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _save_checkpoint(net: nn.Module, path: Path) -> dict[str, Any]:
    channels = net.net_config["in_channels"]
    spec = PreprocessSpec(size=(SIZE, SIZE), in_channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
    meta = build_meta(net, spec, 0.5, None)
    torch.save({"segapp": meta, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return meta


def _forbid_weight_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, and any attempt to fetch or read encoder weights fails the test."""
    import huggingface_hub

    import segapp.nets.smp_unet as smp_unet

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("hub touched"))
    monkeypatch.setattr(smp_unet, "encoder_state_dict", lambda *a, **k: pytest.fail("encoder weights loaded again"))


def test_every_registered_net_has_cases():
    assert set(available_nets()) == set(SMALL) == set(ALTERNATIVES)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_argument_has_a_tested_alternative(name):
    tested = {pname for n, pname, _ in _cases() if n == name}
    assert set(_params(name)) == tested, "add the new constructor argument to ALTERNATIVES"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_defaults_are_recorded(name):
    net = create_net(name, **SMALL[name])
    params = _params(name)
    overrides = getattr(type(net), "rebuild_overrides", {})
    assert set(net.net_config) == set(params)
    for pname, p in params.items():
        want = overrides.get(pname, SMALL[name].get(pname, p.default))
        assert net.net_config[pname] == want, pname


@pytest.mark.slow
@pytest.mark.parametrize(("name", "pname", "value"), _cases(), ids=lambda v: str(v))
def test_argument_round_trips_through_the_checkpoint(name, pname, value, tmp_path, resnet18_weights, monkeypatch):
    from segapp.inference.checkpoint import load_net

    kw = _kwargs(name, pname, value, resnet18_weights)
    torch.manual_seed(0)
    net = create_net(name, **kw).eval()
    meta = _save_checkpoint(net, tmp_path / "m.ckpt")
    spec = meta["net"]
    assert json.loads(json.dumps(spec)) == spec
    overrides = getattr(type(net), "rebuild_overrides", {})
    assert spec == {"name": name, "kwargs": {**net.net_config}}
    assert spec["kwargs"][pname] == overrides.get(pname, kw[pname])
    _forbid_weight_loading(monkeypatch)
    rebuilt, *_ = load_net(tmp_path / "m.ckpt")
    assert net_spec(rebuilt) == spec
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values(), strict=True))
    if (name, pname, str(value)) in NO_FORWARD:
        return
    x = torch.randn(1, kw.get("in_channels", 3), SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_smp_rebuild_with_imagenet_weights_stays_offline(tmp_path, monkeypatch):
    """A net trained from hub weights rebuilds with load_weights=False: no hub, no weights file."""
    from segapp.inference.checkpoint import load_net
    from segapp.nets import SmpUnet

    net = SmpUnet(
        encoder_name="resnet18",
        encoder_weights="imagenet",
        encoder_depth=3,
        decoder_channels=[64, 32, 16],
        load_weights=False,
    ).eval()
    meta = _save_checkpoint(net, tmp_path / "m.ckpt")
    assert meta["net"]["kwargs"]["encoder_weights"] == "imagenet" and meta["net"]["kwargs"]["load_weights"] is False
    _forbid_weight_loading(monkeypatch)
    rebuilt, *_ = load_net(tmp_path / "m.ckpt")
    assert rebuilt.net_config == net.net_config and rebuilt.pretrained_stats == net.pretrained_stats


def test_recording_follows_the_signature_and_refuses_positional_only():
    class Tiny(nn.Module):
        rebuild_overrides = {"b": 0}

        def __init__(self, a: int = 1, b: int = 2, **extra: Any) -> None:
            super().__init__()
            self.lin = nn.Linear(a, 1)

    try:
        register_net("_test_tiny")(Tiny)
        net = Tiny(3, c=4)
        assert net.net_config == {"a": 3, "b": 0, "c": 4}
        assert net_spec(net) == {"name": "_test_tiny", "kwargs": {"a": 3, "b": 0, "c": 4}}

        class Sub(Tiny):  # unregistered: its spec would rebuild the parent, so it is refused
            pass

        with pytest.raises(ValueError, match="not a registered segapp net"):
            net_spec(Sub())
    finally:
        net_registry._NETS.pop("_test_tiny", None)

    class Positional(nn.Module):
        def __init__(self, a: int, /) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="positional-only"):
        register_net("_test_positional")(Positional)
    assert "_test_positional" not in available_nets()
