"""Predictor and engine options: one checker over the ``Literal`` choices, and the flip-TTA loop.

A fake engine (an asymmetric function of the input) makes the TTA arithmetic checkable exactly,
in resize and tile mode, without a trained model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest

from segapp.errors import SettingError
from segapp.inference.engines import Device, EngineOutput, OnnxEngine, Precision, TorchEngine, resolve_precision
from segapp.inference.predictor import TTA_FLIPS, Mode, Predictor, Tta
from segapp.inference.tiling import sliding_window
from segapp.io import PreprocessSpec

SPEC = PreprocessSpec(size=(8, 8), in_channels=1, mean=(0.0,), std=(1.0,))


def _ramp(batch: np.ndarray) -> np.ndarray:
    """``N x C x H x W`` -> ``N x H x W``: input plus a position ramp (no flip symmetry)."""
    h, w = batch.shape[-2:]
    ramp = np.arange(h)[:, None] * 0.01 + np.arange(w)[None, :] * 0.001
    return (batch.mean(axis=1) + ramp).astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class FakeEngine:
    """One member whose probabilities are :func:`_ramp` of its input."""

    spec: PreprocessSpec = SPEC
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, Any] | None = None
    members: int = 1

    def run(self, batch: np.ndarray) -> EngineOutput:
        return EngineOutput(_logit(_ramp(batch) * 0.5)[:, None], None)

    def describe(self) -> dict[str, Any]:
        return {"engine": "fake"}


def _expected(x: np.ndarray, tta: str, fn) -> np.ndarray:
    """Independent reference: mean over flips of un-flip(fn(flip(x)))."""
    outs = [np.flip(fn(np.flip(x, ax)), ax) if ax else fn(x) for ax in TTA_FLIPS[tta]]
    return np.mean(outs, axis=0)


def test_tta_names_match_the_flip_table():
    assert list(get_args(Tta)) == list(TTA_FLIPS)


@pytest.mark.parametrize("tta", get_args(Tta))
def test_tta_averages_unflipped_probabilities_in_resize_mode(tta):
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 8, 8), dtype=np.float32) for _ in range(3)]
    pred = Predictor(FakeEngine(), tta=tta, batch_size=2)
    got = [r.probs for r in pred.predict_prepared(inputs, [(8, 8)] * 3)]
    want = _expected(np.stack(inputs), tta, lambda a: _ramp(a) * 0.5)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    if tta != "none":
        assert not np.allclose(got[0], _ramp(inputs[0][None])[0] * 0.5)  # the flips really changed something


@pytest.mark.parametrize("tta", get_args(Tta))
def test_tta_averages_unflipped_probabilities_in_tile_mode(tta):
    rng = np.random.default_rng(1)
    x = rng.random((1, 12, 10), dtype=np.float32)
    with pytest.warns(UserWarning, match="--mode tile"):
        pred = Predictor(FakeEngine(), tta=tta, mode="tile")
    (got,) = pred.predict_prepared([x], [(12, 10)])

    def tiled(a: np.ndarray) -> np.ndarray:
        return sliding_window(a, SPEC.size, lambda t: _ramp(t) * 0.5, overlap=pred.overlap, batch_size=8)

    np.testing.assert_allclose(got.probs, _expected(x, tta, tiled), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("tta", "flip2", "did you mean flip"),
        ("mode", "tiles", "did you mean tile"),
        ("batch_size", 0, "expected a value >= 1"),
        ("min_size", -1, "expected a value >= 0"),
        ("threshold", 50.0, r"expected a value in \(0, 1\), got 50.0; fix: a probability"),  # a percentage
        ("threshold", float("nan"), r"expected a value in \(0, 1\)"),
        ("threshold", 0.0, r"expected a value in \(0, 1\)"),
    ],
)
def test_predictor_refuses_bad_options_with_one_line(option, value, hint):
    with pytest.raises(SettingError, match=f"^{option}: .*{hint}") as e:
        Predictor(FakeEngine(), **{option: value})
    assert "\n" not in str(e.value)


def test_choices_come_from_the_literals():
    assert get_args(Mode) == ("resize", "tile")
    with pytest.raises(SettingError) as e:
        resolve_precision("int8", "cpu")
    assert ", ".join(get_args(Precision)) in str(e.value)


def test_torch_engine_refuses_unknown_device_and_precision():
    from segapp.nets import UNet

    net = UNet(in_channels=1, depth=1, base_channels=2)
    with pytest.raises(SettingError, match="^device: expected one of " + ", ".join(get_args(Device))):
        TorchEngine(net, SPEC, 0.5, {}, device="gpu")
    with pytest.raises(SettingError, match="^precision: .*got 'fp8'"):
        TorchEngine(net, SPEC, 0.5, {}, device="cpu", precision="fp8")


@pytest.mark.parametrize(("kw", "setting"), [({"device": "gpu"}, "device"), ({"precision": "fp8"}, "precision")])
def test_onnx_engine_refuses_unknown_device_and_precision(kw, setting, tmp_path: Path):
    """Before, the ONNX engine ran an unknown device on CPU and an unknown precision as fp32, silently."""
    pytest.importorskip("onnxruntime")
    with pytest.raises(SettingError, match=f"^{setting}: expected one of"):
        OnnxEngine(tmp_path / "model.onnx", **kw)
