"""``segapp-predict --dicom-seg``: a SEG beside the mask of each DICOM input, a reason where none can be made."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.inference.formats import write_study_dicom
from tests.inference.test_dicom_seg import check_references, frames_of

REPO = Path(__file__).resolve().parents[2]


def _predict(ckpt: Path, inp: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(ckpt), "--input", str(inp)]
    cmd += ["--output", str(out), "--workers", "0", "--dicom-seg", "--no-review", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture
def dicom_folder(tmp_path, holdout_root) -> Path:
    inp = tmp_path / "in"
    inp.mkdir()
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((holdout_root / "images").glob("*.png"))[:3]]
    write_study_dicom(inp / "grey.dcm", rgb[0][..., 0])
    write_study_dicom(inp / "colour", rgb[1], photometric="RGB")  # extension-less
    write_study_dicom(inp / "cine.dcm", np.stack([r[..., 1] for r in rgb]))  # 3 frames
    write_study_dicom(inp / "nostudy.dcm", rgb[2][..., 2], drop=("StudyInstanceUID",))
    Image.fromarray(rgb[0]).save(inp / "photo.png")
    return inp


def _rows(out: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with open(out / "predictions.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            rows.setdefault(r["input"], []).append(r)
    return rows


def test_dicom_inputs_get_a_seg_equal_to_their_masks(tiny_ckpt, dicom_folder, tmp_path):
    out = tmp_path / "out"
    res = _predict(tiny_ckpt, dicom_folder, out)
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    series = set()
    for name, frames in (("grey.dcm", 1), ("colour", 1), ("cine.dcm", 3)):
        seg_path = out / f"{name}.seg.dcm"
        seg = pydicom.dcmread(seg_path)
        source = pydicom.dcmread(dicom_folder / name, stop_before_pixels=True)
        check_references(seg, source, frames)
        masks = [np.asarray(Image.open(out / r["output"])) > 0 for r in rows[name]]
        assert np.array_equal(frames_of(seg_path).astype(bool), np.stack(masks))
        assert seg.SegmentationType == "BINARY" and seg.PatientID == source.PatientID
        assert all(r["reason"] == "" for r in rows[name])
        series.add((seg.StudyInstanceUID, seg.SeriesInstanceUID))
    assert len(series) == 3 == len({u for _, u in series})  # one job: one series per study (3 studies here)
    assert rows["nostudy.dcm"][0]["status"] == "ok" and (out / "nostudy.dcm.mask.png").is_file()
    assert rows["nostudy.dcm"][0]["reason"].startswith("no DICOM SEG: ") and "StudyInstanceUID" in rows["nostudy.dcm"][
        0
    ]["reason"].replace(" ", "")
    assert not (out / "nostudy.dcm.seg.dcm").exists() and not (out / "photo.png.seg.dcm").exists()


def test_probabilities_make_a_fractional_seg_and_resume_keeps_the_series(tiny_ckpt, dicom_folder, tmp_path):
    out = tmp_path / "out"
    assert _predict(tiny_ckpt, dicom_folder, out, "--save-probs", "npy").returncode == 0
    seg = pydicom.dcmread(out / "grey.dcm.seg.dcm")
    assert seg.SegmentationType == "FRACTIONAL"
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "threshold_calibrated=" in algorithm.AlgorithmParameters  # the scale of the stored probabilities
    probs = np.load(out / "grey.dcm.prob.npy")
    stored = frames_of(out / "grey.dcm.seg.dcm")[0] / float(seg.MaximumFractionalValue)
    assert np.abs(stored - probs).max() <= 1 / float(seg.MaximumFractionalValue) + 1e-6
    first = pydicom.dcmread(out / "cine.dcm.seg.dcm").SeriesInstanceUID  # the series of cine's study
    (out / "cine.dcm.seg.dcm").unlink()  # a lost output: --resume predicts that input again
    assert _predict(tiny_ckpt, dicom_folder, out, "--save-probs", "npy", "--resume").returncode == 0
    assert pydicom.dcmread(out / "cine.dcm.seg.dcm").SeriesInstanceUID == first


def test_a_fractional_seg_thresholds_to_the_cleaned_mask_and_names_the_clean_up(tiny_ckpt, dicom_folder, tmp_path):
    """With --keep-largest/--min-size the FRACTIONAL SEG kept the probabilities of the components the
    clean-up removed: thresholded at its own threshold_calibrated it gave another mask than the CSV's."""
    out = tmp_path / "out"
    res = _predict(tiny_ckpt, dicom_folder, out, "--save-probs", "npy", "--keep-largest", "--min-size", "5")
    assert res.returncode == 0, res.stderr
    seg = pydicom.dcmread(out / "grey.dcm.seg.dcm")
    params = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "keep_largest=True" in params and "min_size=5" in params
    thr = float(params.split("threshold_calibrated=")[1].split(",")[0])
    step = 1 / float(seg.MaximumFractionalValue)
    stored = frames_of(out / "grey.dcm.seg.dcm")[0] * step
    probs = np.load(out / "grey.dcm.prob.npy")
    mask = np.asarray(Image.open(out / _rows(out)["grey.dcm"][0]["output"])) > 0
    near = np.abs(probs - thr) <= step  # 8-bit rounding may move these across the threshold
    assert np.array_equal((stored > thr)[~near], mask[~near])
    kept = mask | (probs <= thr)
    assert np.abs(stored - probs)[kept].max() <= step + 1e-6  # everything else is the probability map
