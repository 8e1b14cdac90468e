"""``--engine auto|torch|onnx``: ONNX Runtime over a cached export where it runs what torch would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.inference import Predictor
from segapp.inference.engines import OnnxEngine, TorchEngine, create_engine

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SEGAPP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _images(root: Path, n: int = 4) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "images").glob("*.png"))[:n]]


def test_auto_runs_onnx_at_fp32_with_the_same_masks_and_reuses_the_export(tiny_ckpt, holdout_root, cache):
    auto = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="auto")
    assert isinstance(auto, OnnxEngine) and auto.describe()["export"] == "exported"
    (entry,) = cache.glob("*.onnx")
    torch_p = Predictor(create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="torch"))
    onnx_p = Predictor(auto)
    assert onnx_p.threshold == torch_p.threshold and onnx_p.rules == torch_p.rules
    for img in _images(holdout_root):
        a, b = torch_p.predict(img), onnx_p.predict(img)
        assert np.abs(a.probs - b.probs).max() < 1e-4 and np.array_equal(a.mask, b.mask)
        assert a.signals["ood_score"] == pytest.approx(b.signals["ood_score"], abs=1e-3)
    stamp = entry.stat().st_mtime_ns
    again = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="auto")
    assert again.describe()["export"] == "cached" and entry.stat().st_mtime_ns == stamp


def test_a_corrupt_or_foreign_cache_entry_is_exported_again(tiny_ckpt, cache):
    create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx")
    (entry,) = cache.glob("*.onnx")
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    assert create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx").describe()["export"] == "exported"


def test_auto_keeps_torch_where_onnx_would_run_another_precision(tiny_ckpt, cache):
    notes: list[str] = []
    engine = create_engine(checkpoint=tiny_ckpt, precision="bf16", engine="auto", notes=notes.append)
    assert isinstance(engine, TorchEngine) and engine.describe()["auto"] == "torch"
    assert "precision bf16" in engine.describe()["auto_reason"] and not cache.exists()
    assert notes == []  # keeping torch for bf16 is the plan on such CPUs, not a fallback worth a note
    with pytest.raises(ValueError, match="^--engine onnx cannot run here: precision bf16"):
        create_engine(checkpoint=tiny_ckpt, precision="bf16", engine="onnx")


def test_auto_falls_back_to_torch_without_onnxruntime(tiny_ckpt, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    notes: list[str] = []
    engine = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="auto", notes=notes.append)
    assert isinstance(engine, TorchEngine) and "onnxruntime is not installed" in notes[0]


def test_cli_records_the_chosen_engine(tiny_ckpt, holdout_root, tmp_path, cache):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(tiny_ckpt), "--input"]
    cmd += [str(holdout_root / "images"), "--output", str(out), "--precision", "fp32", "--workers", "0"]
    env = {**__import__("os").environ, "SEGAPP_CACHE_DIR": str(cache.parent)}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["engine"]["engine"] == "onnxruntime" and run["engine"]["export"] == "exported"
    assert run["sizing"]["workers"] == 0 and run["sizing"]["batch_size"] == 1  # --workers given, batch auto
    assert run["options"]["batch_size"] == 1 and "ONNX Runtime on the CPU: batch 1" in run["sizing"]["reason"]
    assert run["model_sha256"] == __import__("hashlib").sha256(tiny_ckpt.read_bytes()).hexdigest()


def test_a_changed_checkpoint_gets_its_own_export(tiny_ckpt, tmp_path, cache):
    import torch

    first = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx")
    changed = tmp_path / "changed.ckpt"
    state = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    name = next(k for k, t in state["state_dict"].items() if t.is_floating_point() and t.numel() > 1)
    state["state_dict"][name] += 0.5  # a retrained checkpoint: other weights, same settings
    torch.save(state, changed)
    second = create_engine(checkpoint=changed, precision="fp32", engine="onnx")
    assert second.describe()["export"] == "exported"
    assert second.describe()["export_path"] != first.describe()["export_path"] and len(list(cache.glob("*.onnx"))) == 2
    x = np.random.default_rng(0).random((1, 3, *first.spec.size), dtype=np.float32)
    assert not np.allclose(first.run(x).logits, second.run(x).logits)  # the new weights, not the cached old ones


def test_changed_graph_code_gets_its_own_export(tiny_ckpt, cache, monkeypatch):
    """segapp's version string stays 0.1.0 across commits: a changed net or export with the same
    checkpoint reused the graph cached by the old code."""
    import segapp.inference.onnx_cache as onnx_cache

    first = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx")
    again = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx")
    assert again.describe()["export_path"] == first.describe()["export_path"]  # same code: reused
    digest = onnx_cache.graph_code_digest()
    assert len(digest) == 64 and digest == onnx_cache.graph_code_digest()
    monkeypatch.setattr(onnx_cache, "graph_code_digest", lambda: "another commit's nets")
    later = create_engine(checkpoint=tiny_ckpt, precision="fp32", engine="onnx")
    assert (
        later.describe()["export"] == "exported" and later.describe()["export_path"] != first.describe()["export_path"]
    )
