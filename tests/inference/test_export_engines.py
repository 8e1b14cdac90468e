"""Export (ONNX, TorchScript), ONNX Runtime vs torch parity, the torch-free path, engine helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segapp.inference import Predictor, resolve_precision
from segapp.inference.tiling import gaussian_importance, sliding_window, window_starts
from tests.conftest import flags

REPO = Path(__file__).resolve().parents[2]
PARITY_TOL = 1e-4  # max abs difference of probabilities, torch fp32 vs ONNX Runtime (docs/inference.md)


@pytest.fixture(scope="module")
def onnx_model(tiny_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.export", *flags(checkpoint=tiny_ckpt, format="onnx", out=out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return out


def test_onnx_carries_the_checkpoint_metadata_and_matches_torch(tiny_ckpt, onnx_model):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props}
    block = json.loads(props["segapp"])
    assert block["preprocess"]["size"] == [64, 64] and block["net"]["name"] == "unet"
    assert json.loads(onnx_model.with_name("tiny.onnx.json").read_text()) == block
    import torch

    stored = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["segapp"]["inference"]
    assert block["inference"]["tta"] == stored["tta"] and block["inference"]["n_images"] == stored["n_images"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, s, dtype=np.uint8) for s in ((64, 64, 3), (50, 90, 3), (120, 33, 1))]
    for mode in ("resize", "tile"):
        kw = {"mode": mode, "tta": "flip"}
        torch_p = Predictor.from_checkpoint(tiny_ckpt, precision="fp32", **kw)
        onnx_p = Predictor.from_onnx(onnx_model, **kw)
        for img in images:
            a, b = torch_p.predict_probs(img), onnx_p.predict_probs(img)
            assert a.shape == b.shape == img.shape[:2]
            assert np.abs(a - b).max() < PARITY_TOL, (mode, img.shape, np.abs(a - b).max())


def on_disk_json(out):
    return json.loads(out.with_name(out.name + ".json").read_text())


def test_torchscript_export_runs_at_other_sizes(tiny_ckpt, tmp_path):
    import torch

    from segapp.inference.export import export_model

    out = export_model(tiny_ckpt, tmp_path / "tiny.pt", fmt="torchscript")
    extra = {"segapp.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["segapp.json"])
    assert meta["preprocess"]["in_channels"] == 3
    ref = Predictor.from_checkpoint(tiny_ckpt).engine.net.members[0].eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        y = module(x)
        assert torch.allclose(y, ref(x), atol=1e-4)
    # the block describes this file: one logits tensor (it listed the ONNX graph's logits/ood/features)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 1, 96, 64)
    assert list(meta["outputs"]) == ["logits"] and meta["has_ood"] is False
    assert "not in the graph" in meta["outputs"]["logits"] and on_disk_json(out) == meta


def test_the_torchscript_export_does_not_print_a_predict_command_that_refuses_it(tiny_ckpt, tmp_path, capsys):
    """It printed `segapp-predict --model X.pt`, which exits 2 ('--model expects an .onnx file')."""
    from segapp.cli.export import main

    main(["--checkpoint", str(tiny_ckpt), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "torch.jit.load" in last and "segapp-predict --model" not in last


BLOCKER = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "cv2", "lightning", "albumentations", "scipy", "monai"}:
                raise ImportError(f"{name} is blocked: the slim container has no {name}")
    sys.meta_path.insert(0, Block())
    sys.argv = ["segapp-predict", *sys.argv[1:]]
    import segapp.inference
    from segapp.cli.predict import main
    try:
        main()
    finally:
        bad = [m for m in sys.modules if m.split(".")[0] in {"torch", "cv2", "lightning", "albumentations", "scipy"}]
        print("BLOCKED-MODULES-LOADED", bad)
    """
)


@pytest.mark.slow
def test_onnx_path_runs_without_torch_opencv_or_scipy(onnx_model, tmp_path):
    from tests.inference.formats import make_scan_folder

    inp, out = tmp_path / "in", tmp_path / "out"
    expected = make_scan_folder(inp)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = flags(model=onnx_model, input=inp, output=out, workers=2, tta="flip", no_progress=True, min_size=3)
    res = subprocess.run(
        [sys.executable, "-c", BLOCKER, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 1, res.stderr  # the broken files fail, the rest succeed
    assert "BLOCKED-MODULES-LOADED []" in res.stdout
    n_ok = sum("error" not in e for e in expected.values())
    assert f"{n_ok} ok / 6 failed" in res.stdout
    assert (out / "vol.nii.gz.mask.nii.gz").is_file() and (out / "multi.dcm.f002.mask.png").is_file()


def test_inference_imports_no_training_code():
    code = (
        "import sys, segapp.inference, segapp.inference.folder, segapp.cli.predict; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'albumentations') "
        "or m.startswith(('segapp.data', 'segapp.lit'))))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_torch_engine_loads_no_lightning_or_training_code(tiny_ckpt):
    code = (
        f"import sys; from segapp.inference import Predictor; p = Predictor.from_checkpoint({str(tiny_ckpt)!r}); "
        "import numpy as np; p.predict_mask(np.zeros((40, 40, 3), np.uint8)); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'albumentations', "
        "'pytorch_lightning') "
        "or m.startswith(('segapp.data', 'segapp.lit'))))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("[]"), res.stdout + res.stderr


def test_numpy_sliding_window_matches_monai():
    torch = pytest.importorskip("torch")
    from monai.inferers import sliding_window_inference

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3,)).astype(np.float32)

    def fn(batch: np.ndarray) -> np.ndarray:  # position-dependent so misplaced tiles would show
        y = np.linspace(0, 1, batch.shape[2], dtype=np.float32)[:, None]
        return 1 / (1 + np.exp(-(np.tensordot(kernel, batch, axes=([0], [1])) + y)))

    for shape, overlap in (((3, 150, 97), 0.25), ((3, 40, 200), 0.5), ((3, 64, 64), 0.25)):
        x = rng.normal(size=shape).astype(np.float32)
        ours = sliding_window(x, (64, 64), fn, overlap=overlap, batch_size=3)
        ref = sliding_window_inference(
            torch.from_numpy(x[None]),
            (64, 64),
            3,
            lambda t: torch.from_numpy(fn(t.numpy()))[:, None],
            overlap=overlap,
            mode="gaussian",
            sigma_scale=0.125,
        )
        assert ours.shape == shape[1:]
        assert np.abs(ours - ref[0, 0].numpy()).max() < 1e-5, shape
    assert window_starts(150, 64, 0.25) == [0, 48, 86]
    w = gaussian_importance((64, 64))
    assert w.max() <= 1 and w.min() >= 1e-3 and w[31, 31] > w[0, 0]


def test_precision_resolution(monkeypatch):
    from segapp.inference import engines

    assert resolve_precision("auto", "cuda") == "fp16" and resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(engines, "cpu_has_amx_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(engines, "cpu_has_amx_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="expected one of"):
        resolve_precision("int8", "cpu")


def test_bf16_probabilities_stay_close_to_fp32(tiny_ckpt):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)
    fp32 = Predictor.from_checkpoint(tiny_ckpt, precision="fp32").predict_probs(img)
    bf16 = Predictor.from_checkpoint(tiny_ckpt, precision="bf16").predict_probs(img)
    assert np.abs(fp32 - bf16).max() < 0.1 and np.mean((fp32 > 0.5) == (bf16 > 0.5)) > 0.98
