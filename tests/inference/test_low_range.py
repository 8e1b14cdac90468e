"""A 16-bit scan that uses at most 12 of its bits and declares no depth is flagged, never passed silently."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segapp.inference.loader import FileDataset
from segapp.inference.trust import REASONS, TrustRules, input_checks, input_note, review
from tests.inference.formats import predict_rows, write_dicom, write_nifti, write_png16


def _grey12(seed: int = 0, size: int = 64) -> np.ndarray:
    """A textured grey 12-bit image (values up to 4080) as uint16."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(2000, 600, (size, size)), 0, 4080).astype(np.uint16)
    img[3, 5] = 4080
    return img


def _low_range_folder(root: Path) -> dict[str, list[str]]:
    """Files of every kind a 12-bit scan arrives as, with the checks each must get (1-channel model)."""
    root.mkdir(parents=True, exist_ok=True)
    g = _grey12()
    tifffile.imwrite(root / "low.tif", g)
    write_png16(root / "low.png", g)
    tifffile.imwrite(root / "full.tif", (g.astype(np.uint32) * 16).astype(np.uint16))
    tifffile.imwrite(root / "declared.tif", g // 8, extratags=[(281, "H", 1, 4095, True)])  # dark, but declared
    write_png16(root / "declared.png", g // 8, sbit=12)
    write_dicom(root / "ct.dcm", g, bits=12)  # scaled to the full range by its reader
    vol = np.random.default_rng(1).normal(100, 30, (40, 36, 3)).astype(np.float32)
    vol[..., 0] *= 0.02  # a dark slice: below 4096 after the volume-wide scaling, still not flagged
    write_nifti(root / "vol.nii.gz", vol)
    flagged = ["low-range"]
    return {"low.tif": flagged, "low.png": flagged, "full.tif": [], "declared.tif": [], "declared.png": []}


def test_the_check_fires_only_where_the_depth_is_unknown():
    g = _grey12()[:, :, None]
    assert input_checks(g, 1, False, depth_known=False) == ["low-range"]
    assert input_checks(g, 1, False) == []  # DICOM, NIfTI, a declared depth: the reader knew the scale
    full = (g.astype(np.uint32) * 16).astype(np.uint16)
    assert input_checks(full, 1, False, depth_known=False) == []
    rgba = np.concatenate([np.repeat(g, 3, axis=2), np.full_like(g, 65535)], axis=2)  # opaque alpha is left out
    assert input_checks(rgba, 3, True, depth_known=False) == ["low-range", "channels"]
    note = input_note(g, ["low-range"])
    assert f"stop at {int(g.max())} of 65535" in note and "fix:" in note and "sBIT" in note
    assert input_note(g, []) == "" and "input: low-range" in REASONS
    calm = {"uncertainty": 0.01, "est_dice": 0.99, "ood_score": 0.2, "agreement": ""}
    assert review(calm, ["low-range"], False, rules=TrustRules(uncertainty_threshold=0.2)) == {
        "review": "yes",
        "review_reason": "input: low-range",
        "risk": 3.0,
    }


def test_the_loader_flags_images_without_a_depth_and_never_dicom_or_nifti(tmp_path):
    root = tmp_path / "in"
    expected = _low_range_folder(root)
    files = sorted(p for p in root.iterdir())
    check = partial(input_checks, in_channels=1, trained_on_colour=False)
    data = FileDataset(root, files, prepare=lambda f: f, check=check)
    items = {item.rel: item for item in (data[i] for i in range(len(data)))}
    for rel, want in expected.items():
        assert items[rel].checks == [want], rel
        assert ("stop at 4080 of 65535" in items[rel].notes[0]) == bool(want), rel
    assert all(cs == [] for cs in items["vol.nii.gz"].checks) and len(items["vol.nii.gz"].checks) == 3
    assert items["ct.dcm"].checks == [[]] and items["ct.dcm"].notes == [""]


@pytest.mark.slow
def test_predict_flags_a_12_bit_scan_in_16_bits_and_says_the_fix(tiny_ckpt, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _low_range_folder(inp)
    rows, stderr = predict_rows(tiny_ckpt, inp, out)
    for name in ("low.tif", "low.png"):
        r = rows[name]
        assert r["review"] == "yes" and "input: low-range" in r["review_reason"].split("; "), r
        assert "low-range" in r["input_check"].split() and "stop at 4080 of 65535" in r["reason"], r
        assert "fix: if it is 12-bit data" in r["reason"]
    for name in ("full.tif", "declared.tif", "declared.png", "ct.dcm", "vol.nii.gz"):
        assert "low-range" not in rows[name]["input_check"].split() and rows[name]["reason"] == "", rows[name]
    assert "2 scan(s) flagged input: low-range" in stderr and "values that stop at 4080" in stderr


def test_a_model_trained_on_low_range_scans_does_not_flag_its_own_kind(tmp_path):
    """A model whose training scans were undeclared 12-bit-in-16 learnt them read near-black: the
    flag fired on every scan it was made for. Its calibration records that, and the check is off."""
    from PIL import Image

    from segapp.data import LesionDataModule
    from segapp.lit.calibrate import trained_on_low_range

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(8):
        g = _grey12(seed=i, size=48)
        write_png16(root / "images" / f"s{i}.png", g if i < 6 else (g.astype(np.uint32) * 16).astype(np.uint16))
        m = np.zeros((48, 48), np.uint8)
        m[10:30, 12:34] = 255
        Image.fromarray(m).save(root / "masks" / f"s{i}.png")
    dm = LesionDataModule(root=str(root), image_size=32, batch_size=2, num_workers=0, in_channels=1)
    dm.setup("fit")
    assert len(dm.report.low_range) == 6 and trained_on_low_range(dm)  # 6 of 8 scans: most of any split
    dm.report.low_range = dm.report.low_range[:1]
    assert not trained_on_low_range(dm)
    g = _grey12()[:, :, None]
    assert input_checks(g, 1, False, depth_known=False, trained_on_low_range=True) == []
    assert TrustRules.from_meta({"trained_on_low_range": True, "temperature": 1.0}).trained_on_low_range
    assert not TrustRules.from_meta({"temperature": 1.0}).trained_on_low_range  # older checkpoints: checked


@pytest.mark.slow
def test_predict_does_not_flag_low_range_for_a_model_trained_on_it(tiny_ckpt, tmp_path):
    import torch

    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["segapp"]["trust"]["trained_on_low_range"] = True
    marked = tmp_path / "marked.ckpt"
    torch.save(ckpt, marked)
    inp = tmp_path / "in"
    _low_range_folder(inp)
    rows, stderr = predict_rows(marked, inp, tmp_path / "out")
    for name in ("low.tif", "low.png"):
        assert "low-range" not in rows[name]["input_check"].split() and rows[name]["reason"] == "", rows[name]
    assert "flagged input: low-range" not in stderr
