"""``segapp-export --quantize int8 --calibration DIR``: the refusals, a tiny ensemble that quantises
and runs in the ONNX engine, the trust head left fp32, and the Dice check that refuses (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.cli.export import main
from segapp.inference import quantize
from tests.conftest import flags

TINY_BOUND = 0.9  # the Dice bound the tiny test net is held to (the real one: quantize.MIN_MEAN_DICE)


def _export(capsys, **kw) -> tuple[int, str, str]:
    """Run ``segapp-export`` in this process: ``(exit code, stdout, stderr)``."""
    try:
        main(flags(**kw))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def int8_model(tiny_ckpt, synth_root, tmp_path_factory) -> Path:
    """A two-member ensemble (the tiny checkpoint twice: K = 2, with OOD statistics) quantised to int8.

    The bound is lowered to :data:`TINY_BOUND`: the 64 px test net, trained for seconds, loses about
    1 % Dice to int8 (0.988 measured), which the real bound refuses (see the refusal test)."""
    from segapp.inference.export import export_model

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "MIN_MEAN_DICE", TINY_BOUND)
        mp.setattr(quantize, "MIN_CHECK_IMAGES", 2)  # 8 check images: a tiny test set
        export_model([tiny_ckpt, tiny_ckpt], out, quantize="int8", calibration=synth_root, calibration_count=24)
    return out


def test_quantize_without_calibration_is_refused_in_one_line(tmp_path, capsys):
    code, _, err = _export(capsys, checkpoint=tmp_path / "none.ckpt", out=tmp_path / "m.onnx", quantize="int8")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs calibration images, got no --calibration" in err and "fix:" in err
    assert _leftovers(tmp_path) == []


def test_quantize_with_torchscript_or_calibration_alone_is_refused(tmp_path, capsys):
    base = {"checkpoint": tmp_path / "none.ckpt", "out": tmp_path / "m.pt"}
    code, _, err = _export(capsys, **base, format="torchscript", quantize="int8", calibration=tmp_path)
    assert code == 2 and "got --format torchscript; fix: --format onnx" in err
    code, _, err = _export(capsys, **base, calibration=tmp_path)
    assert code == 2 and "only used with --quantize int8" in err
    base["out"] = tmp_path / "m.onnx"
    code, _, err = _export(capsys, **base, quantize="int8", calibration=tmp_path, calibration_count=2)
    assert code == 2 and "--calibration-count: expected at least 6, got 2; fix:" in err
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["missing", "empty", "no_images"])
def test_a_calibration_folder_without_images_is_refused_naming_it(tmp_path, capsys, kind):
    folder = tmp_path / "calib"
    if kind != "missing":
        folder.mkdir()
    if kind == "no_images":
        (folder / "notes.txt").write_text("not an image")
        (folder / "masks.npy").write_bytes(b"\0" * 16)
    code, _, err = _export(
        capsys, checkpoint=tmp_path / "none.ckpt", out=tmp_path / "m.onnx", quantize="int8", calibration=folder
    )
    assert code == 2 and str(folder) in err and "fix:" in err
    assert not (tmp_path / "m.onnx").exists()


def test_unreadable_calibration_images_are_refused(tiny_ckpt, tmp_path, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(10):
        (folder / f"broken{i}.png").write_bytes(b"not a png")
    code, _, err = _export(capsys, checkpoint=tiny_ckpt, out=tmp_path / "m.onnx", quantize="int8", calibration=folder)
    assert code == 2 and "expected at least 8 readable training images, got 0" in err
    assert not (tmp_path / "m.onnx").exists()


def test_check_images_are_held_out_and_spread_over_the_folder():
    files = [Path(f"{i:03d}.png") for i in range(200)]
    calib, check = quantize.pick(files, 30)
    assert len(calib) == 30 and len(check) == 10 and not set(calib) & set(check)
    assert calib[0] == files[0] and max(calib + check) > files[190]  # spread, not the first 40
    small_calib, small_check = quantize.pick(files[:9], 64)
    assert len(small_calib) + len(small_check) == 9 and len(small_check) == 2


def test_a_tiny_ensemble_quantises_and_runs_in_the_onnx_engine(int8_model, tiny_ckpt, holdout_root):
    import onnx

    from segapp.inference import Predictor
    from segapp.inference.engines import OnnxEngine

    meta = json.loads({p.key: p.value for p in onnx.load(str(int8_model)).metadata_props}["segapp"])
    assert meta == json.loads(int8_model.with_name(int8_model.name + ".json").read_text())
    q = meta["quantization"]
    assert q["format"] == "int8-static-qdq" and q["scope"] in quantize.SCOPES
    assert Path(q["calibration_dir"]).name == "images"  # DIR/images: the masks beside them are never read
    assert q["calibration_images"] == 24 and q["check_images"] == 8
    assert q["min_mean_dice"] == TINY_BOUND <= q["mean_dice_lower_95"] <= q["mean_dice_vs_fp32"] <= 1
    assert 0 <= q["min_dice_vs_fp32"] <= 1
    assert 0 <= q["max_ood_diff"] <= quantize.MAX_OOD_DIFF and meta["members"] == 2
    engine = OnnxEngine(int8_model)
    assert engine.precision == "int8" and engine.describe()["quantization"] == q
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8_model)).graph.node)
    image = np.asarray(Image.open(sorted((holdout_root / "images").iterdir())[0]).convert("RGB"))
    int8 = Predictor(engine).predict(image)
    fp32 = Predictor.from_checkpoint([tiny_ckpt, tiny_ckpt], precision="fp32").predict(image)
    assert int8.mask.shape == fp32.mask.shape and np.abs(int8.probs - fp32.probs).max() < 0.25
    ood_int8, ood_fp32 = float(int8.signals["ood_score"]), float(fp32.signals["ood_score"])
    assert ood_int8 >= 0 and ood_int8 == pytest.approx(ood_fp32, abs=quantize.MAX_OOD_DIFF)


def test_the_trust_head_and_the_logits_tail_stay_fp32(int8_model):
    """No quantised tensor feeds the Mahalanobis product or the pooling, nor the nodes after the head conv."""
    import onnx

    graph = onnx.load(str(int8_model)).graph
    dequantised = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for n in graph.node:
        if n.op_type in ("MatMul", "ReduceMean", "Gather", "Unsqueeze"):
            assert not set(n.input) & dequantised, (n.name, n.op_type)
    producer = {o: n for n in graph.node for o in n.output}
    assert producer["logits"].op_type != "DequantizeLinear" and producer["ood"].op_type != "DequantizeLinear"


def test_int8_that_changes_the_masks_is_refused_and_leaves_no_file(
    tiny_ckpt, synth_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(quantize, "MIN_MEAN_DICE", 1.01)  # no int8 model can reach it
    out = tmp_path / "out" / "m.int8.onnx"
    code, stdout, err = _export(
        capsys, checkpoint=tiny_ckpt, out=out, quantize="int8", calibration=synth_root / "images", calibration_count=12
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "int8 would change the masks: mean Dice vs fp32" in err and ">= 1.01" in err
    assert "every layer int8" in err and "fix: use the fp32 export" in err
    assert _leftovers(out.parent) == [] and "wrote" not in stdout


def test_a_mean_over_too_few_or_too_spread_check_images_does_not_hold():
    few = quantize.Comparison(0.999, 0.99, 0.1, None, lower_dice=0.998, n=quantize.MIN_CHECK_IMAGES - 1)
    assert not few.holds()
    spread = quantize.Comparison(0.9959, 0.73, 0.3, None, lower_dice=0.9921, n=64)  # a mean over the bound
    assert not spread.holds() and spread.mean_dice >= quantize.MIN_MEAN_DICE
    assert quantize.Comparison(0.998, 0.99, 0.1, 0.01, lower_dice=0.9965, n=40).holds()
