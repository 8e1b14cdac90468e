"""DICOM SEG writer: round trips through highdicom and pydicom, refusals, and dciodvfy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, SegmentationStorage

import segapp
from segapp.inference.dicom_seg import (
    SERIES_DESCRIPTION,
    SegError,
    job_series_uid,
    seg_problem,
    study_series_uid,
    write_seg,
)
from tests.inference.formats import SECRET_NAME, STUDY_HEADER, write_study_dicom

ALGORITHM = {"name": "unet-kvasir", "sha256": "ab" * 32}
JOB = "job-17"
# kind: (file name, pixel array, photometric); multi-frame sizes are odd so SEG frames do not
# start on byte boundaries once bit-packed
KINDS = {
    "mono2": ("mono2.dcm", lambda r: r.integers(0, 255, (40, 44), dtype=np.uint8), "MONOCHROME2"),
    "mono1": ("mono1.dcm", lambda r: r.integers(0, 4000, (48, 40), dtype=np.uint16), "MONOCHROME1"),
    "rgb": ("rgb.dcm", lambda r: r.integers(0, 255, (34, 30, 3), dtype=np.uint8), "RGB"),
    "multi": ("multi.dcm", lambda r: r.integers(0, 255, (3, 33, 37), dtype=np.uint8), "MONOCHROME2"),
    "noext": ("IM0001", lambda r: r.integers(0, 255, (40, 44), dtype=np.uint8), "MONOCHROME2"),
}


def make_source(tmp_path: Path, kind: str, **kwargs) -> tuple[Path, int, int, int]:
    """A source DICOM of ``kind``; returns its path, frame count, rows and columns."""
    name, pixels, photometric = KINDS[kind]
    arr = pixels(np.random.default_rng(0))
    write_study_dicom(tmp_path / name, arr, photometric, **kwargs)
    frames = arr.shape[0] if arr.ndim == 3 and photometric != "RGB" else 1
    rows, cols = arr.shape[-2:] if photometric != "RGB" else arr.shape[:2]
    return tmp_path / name, frames, rows, cols


def make_masks(frames: int, rows: int, cols: int) -> list[np.ndarray]:
    """A different mask per frame (a block plus noise); frame 2 of 3 is empty."""
    rng = np.random.default_rng(frames * 1000 + rows)
    masks = []
    for k in range(frames):
        mask = rng.random((rows, cols)) > 0.8
        mask[3 + k : 12 + 2 * k, 5:20] = True
        masks.append(mask if not (frames == 3 and k == 1) else np.zeros_like(mask))
    return masks


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def frames_of(seg_path: Path) -> np.ndarray:
    """The SEG's pixel data as ``frames x H x W``, as pydicom decodes it."""
    pixels = pydicom.dcmread(seg_path).pixel_array
    return pixels[None] if pixels.ndim == 2 else pixels


def seg_pixels(seg_path: Path, source: pydicom.Dataset, frames: int) -> np.ndarray:
    """The segment's pixels per source frame, as highdicom maps them back onto the source."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    if frames > 1:
        out = seg.get_pixels_by_source_frame(
            source.SOPInstanceUID, source_frame_numbers=list(range(1, frames + 1)), segment_numbers=[1]
        )
    else:
        out = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    return out[..., 0]


def check_references(seg: pydicom.Dataset, source: pydicom.Dataset, frames: int) -> None:
    series = seg.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    instance = series.ReferencedInstanceSequence[0]
    assert (instance.ReferencedSOPInstanceUID, instance.ReferencedSOPClassUID) == (
        source.SOPInstanceUID,
        source.SOPClassUID,
    )
    assert len(seg.PerFrameFunctionalGroupsSequence) == frames
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID) == (source.SOPInstanceUID, source.SOPClassUID)
        assert ref.get("ReferencedFrameNumber") == (k + 1 if frames > 1 else None)


def check_identity(seg: pydicom.Dataset, source: pydicom.Dataset) -> None:
    assert seg.Modality == "SEG" and seg.SOPClassUID == SegmentationStorage
    assert seg.file_meta.MediaStorageSOPClassUID == SegmentationStorage
    for key in ("PatientName", "PatientID", "StudyInstanceUID", *STUDY_HEADER):
        if key != "StudyDescription":  # not in the SEG's modules as highdicom copies them
            assert seg.get(key) == source.get(key), key
    assert str(seg.PatientName) == SECRET_NAME
    assert seg.SeriesInstanceUID == study_series_uid(job_series_uid(JOB), source.StudyInstanceUID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert (seg.SeriesDescription, seg.SeriesNumber, seg.Manufacturer) == (SERIES_DESCRIPTION, 901, "segapp")
    assert seg.SoftwareVersions == segapp.__version__


def check_segment(seg: pydicom.Dataset) -> None:
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Lesion" and segment.SegmentAlgorithmType == "AUTOMATIC"
    category, kind = segment.SegmentedPropertyCategoryCodeSequence[0], segment.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodingSchemeDesignator, category.CodeValue) == ("SCT", "49755003")
    assert (kind.CodingSchemeDesignator, kind.CodeValue, kind.CodeMeaning) == ("SCT", "52988006", "Lesion")
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("segapp", segapp.__version__)
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert algorithm.AlgorithmParameters == f"model={ALGORITHM['name']},sha256={ALGORITHM['sha256']}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_binary_seg_round_trips(tmp_path, kind):
    src, frames, rows, cols = make_source(tmp_path, kind)
    masks = make_masks(frames, rows, cols)
    out = tmp_path / "out" / f"{src.name}.seg.dcm"
    write_seg(src, masks, out, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    source, seg = header(src), pydicom.dcmread(out)
    assert seg.SegmentationType == "BINARY" and int(seg.NumberOfFrames) == frames
    np.testing.assert_array_equal(frames_of(out), np.stack(masks).astype(np.uint8))
    np.testing.assert_array_equal(seg_pixels(out, source, frames), np.stack(masks).astype(np.uint8))
    check_references(seg, source, frames)
    check_identity(seg, source)
    check_segment(seg)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("kind", ["mono2", "multi"])
def test_fractional_seg_round_trips_within_one_step(tmp_path, kind):
    src, frames, rows, cols = make_source(tmp_path, kind)
    rng = np.random.default_rng(1)
    probs = [rng.random((rows, cols)).astype(np.float32) for _ in range(frames)]
    masks = [p > 0.5 for p in probs]
    out = tmp_path / "p.seg.dcm"
    write_seg(src, masks, out, probs=probs, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    seg = pydicom.dcmread(out)
    assert (seg.SegmentationType, seg.SegmentationFractionalType, seg.MaximumFractionalValue) == (
        "FRACTIONAL",
        "PROBABILITY",
        255,
    )
    assert np.abs(frames_of(out) / 255.0 - np.stack(probs)).max() <= 1 / 255
    back = seg_pixels(out, header(src), frames)
    assert np.abs(back - np.stack(probs)).max() <= 1 / 255
    check_references(seg, header(src), frames)


def test_spatial_source_gets_plane_geometry_not_patient_orientation(tmp_path):
    src = tmp_path / "ct.dcm"
    write_study_dicom(src, np.random.default_rng(0).integers(0, 4000, (40, 44), dtype=np.uint16), spatial=True)
    masks = make_masks(1, 40, 44)
    out = tmp_path / "ct.seg.dcm"
    write_seg(src, masks, out, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    seg = pydicom.dcmread(out)
    assert seg.FrameOfReferenceUID == header(src).FrameOfReferenceUID
    assert "PlaneOrientationSequence" in seg.SharedFunctionalGroupsSequence[0]
    assert "PatientOrientation" not in seg
    np.testing.assert_array_equal(seg_pixels(out, header(src), 1), masks[0].astype(np.uint8)[None])


def test_patient_orientation_is_added_only_without_plane_orientation(tmp_path):
    src, *_ = make_source(tmp_path, "mono2")
    out = tmp_path / "s.seg.dcm"
    write_seg(src, make_masks(1, 40, 44), out, series_uid=job_series_uid(None), algorithm=ALGORITHM)
    seg = pydicom.dcmread(out)
    assert "PatientOrientation" in seg and not seg.PatientOrientation  # Type 2C: present, empty if unknown
    assert "FrameOfReferenceUID" not in seg


def test_series_uid_is_one_per_job_and_study(tmp_path):
    """A series belongs to one study: one job UID for every source put the SEGs of every patient
    of a folder (and of every container run of one model) into one series."""
    assert job_series_uid("a") == job_series_uid("a") != job_series_uid("b")
    assert job_series_uid(None) != job_series_uid(None)
    assert all(UID(job_series_uid(j)).is_valid for j in ("a", None, "x" * 500))
    segs = []
    for kind, study, number in (("mono2", "1.2.3.1", 7), ("rgb", "1.2.3.1", None), ("multi", "1.2.3.2", 2)):
        src, frames, rows, cols = make_source(tmp_path, kind)
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID = study
        if number is None:
            del ds.InstanceNumber
        else:
            ds.InstanceNumber = number
        ds.save_as(src)
        out = tmp_path / f"{kind}.seg.dcm"
        write_seg(src, make_masks(frames, rows, cols), out, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
        segs.append(pydicom.dcmread(out, stop_before_pixels=True))
    same, other = segs[0].SeriesInstanceUID, segs[2].SeriesInstanceUID
    assert segs[1].SeriesInstanceUID == same != other and UID(same).is_valid and UID(other).is_valid
    assert same == study_series_uid(job_series_uid(JOB), "1.2.3.1") != job_series_uid(JOB)
    assert [s.StudyInstanceUID for s in segs] == ["1.2.3.1", "1.2.3.1", "1.2.3.2"]
    assert len({s.SOPInstanceUID for s in segs}) == 3
    assert [int(s.InstanceNumber) for s in segs] == [7, 1, 2]  # the source's position, else 1


def test_source_without_study_uid_gets_a_reason_and_no_file(tmp_path):
    src, frames, rows, cols = make_source(tmp_path, "mono2", drop=("StudyInstanceUID",))
    reason = seg_problem(header(src))
    assert reason and "Study Instance UID" in reason
    assert SECRET_NAME not in reason and "SECRET-ID" not in reason
    out = tmp_path / "out" / "x.seg.dcm"
    with pytest.raises(SegError, match="Study Instance UID"):
        write_seg(src, make_masks(frames, rows, cols), out, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    assert not out.parent.exists() or not list(out.parent.iterdir())


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda ds: setattr(ds, "SeriesInstanceUID", "not a uid"), "Series Instance UID"),
        (lambda ds: delattr(ds, "SOPClassUID"), "SOP Class UID"),
        (lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR"), "PALETTE COLOR"),
        (lambda ds: setattr(ds, "SOPClassUID", "1.2.3.4"), "not a standard image storage class"),
    ],
)
def test_seg_problem_names_what_is_wrong(tmp_path, edit, expected):
    src, *_ = make_source(tmp_path, "mono2")
    source = header(src)
    assert seg_problem(source) is None
    edit(source)
    assert expected in (seg_problem(source) or "")


def test_single_frame_class_with_frames_is_refused(tmp_path):
    """A Secondary Capture (single-frame class) carrying 3 frames: a SEG may not reference its frames."""
    src, frames, rows, cols = make_source(tmp_path, "multi")
    ds = pydicom.dcmread(src)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.save_as(src, enforce_file_format=True)
    assert "single-frame" in (seg_problem(header(src)) or "")
    with pytest.raises(SegError, match="single-frame"):
        write_seg(src, make_masks(frames, rows, cols), tmp_path / "x.dcm", series_uid="1.2.3", algorithm=ALGORITHM)
    assert not (tmp_path / "x.dcm").exists()


def test_type2_attributes_missing_in_the_source_are_copied_empty(tmp_path):
    src, frames, rows, cols = make_source(tmp_path, "mono2", drop=("PatientID", "StudyDate", "AccessionNumber"))
    assert seg_problem(header(src)) is None
    out = tmp_path / "e.seg.dcm"
    write_seg(src, make_masks(frames, rows, cols), out, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    seg = pydicom.dcmread(out)
    assert all(key in seg and not seg[key].value for key in ("PatientID", "StudyDate", "AccessionNumber"))


@pytest.mark.parametrize(
    ("masks", "probs", "expected"),
    [
        (lambda m: m[:1], None, "one per source frame"),
        (lambda m: [x[:-1] for x in m], None, "Rows x Columns"),
        (lambda m: m, lambda m: [x * 2.0 for x in m], "in \\[0, 1\\]"),
        (lambda m: m, lambda m: [np.full(x.shape, np.nan) for x in m], "finite"),
    ],
)
def test_masks_that_do_not_fit_the_source_are_refused(tmp_path, masks, probs, expected):
    src, frames, rows, cols = make_source(tmp_path, "multi")
    good = make_masks(frames, rows, cols)
    out = tmp_path / "x.seg.dcm"
    with pytest.raises(SegError, match=expected):
        write_seg(
            src,
            masks(good),
            out,
            probs=probs(good) if probs else None,
            series_uid=job_series_uid(JOB),
            algorithm=ALGORITHM,
        )
    assert not out.exists()


def test_unreadable_source_bad_series_uid_and_missing_model_identity_are_refused(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 200)
    with pytest.raises(SegError, match="not a readable DICOM"):
        write_seg(bad, [], tmp_path / "a.dcm", series_uid="1.2.3", algorithm=ALGORITHM)
    src, frames, rows, cols = make_source(tmp_path, "mono2")
    with pytest.raises(SegError, match="sha256"):
        write_seg(src, make_masks(frames, rows, cols), tmp_path / "b.dcm", series_uid="1.2.3", algorithm={"name": "m"})
    with pytest.raises(SegError, match="series_uid"):
        write_seg(src, make_masks(frames, rows, cols), tmp_path / "c.dcm", series_uid="job-1", algorithm=ALGORITHM)
    assert not [p.name for p in tmp_path.iterdir() if p.suffix == ".dcm" and p.name != src.name and p != bad]


# --- dciodvfy (dicom3tools) -----------------------------------------------------------------------


def dciodvfy() -> str:
    """Path of dciodvfy; skip without it, but fail in CI (``CI`` set), which installs it."""
    exe = shutil.which("dciodvfy")
    if exe:
        return exe
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail("dciodvfy not found, and CI requires it: .ci/run installs Debian's dicom3tools with apt")
    pytest.skip("dciodvfy not installed (apt-get install dicom3tools); CI installs it")


def verify(exe: str, path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's (errors, warnings) for ``path``."""
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if "Error" in line], [line for line in lines if "Warning" in line]


def test_dciodvfy_reports_no_errors(tmp_path):
    exe = dciodvfy()
    written = []
    for kind in KINDS:
        src, frames, rows, cols = make_source(tmp_path, kind)
        masks = make_masks(frames, rows, cols)
        for probs in (None, [m * 0.7 + 0.1 for m in masks]):
            out = tmp_path / f"{kind}-{'fractional' if probs else 'binary'}.seg.dcm"
            write_seg(src, masks, out, probs=probs, series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
            written.append(out)
    ct = tmp_path / "ct.dcm"
    write_study_dicom(ct, np.zeros((40, 44), np.uint16), spatial=True)
    write_seg(ct, make_masks(1, 40, 44), tmp_path / "ct.seg.dcm", series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    src, *_ = make_source(sparse, "mono2", drop=("PatientID", "StudyDate", "StudyTime", "StudyID"))
    write_seg(src, make_masks(1, 40, 44), sparse / "seg.dcm", series_uid=job_series_uid(JOB), algorithm=ALGORITHM)
    written += [tmp_path / "ct.seg.dcm", sparse / "seg.dcm"]
    failures = {}
    for path in written:
        errors, warnings = verify(exe, path)
        if warnings:
            print(f"dciodvfy warnings for {path.relative_to(tmp_path)}:", *warnings, sep="\n  ")
        if errors:
            failures[str(path.relative_to(tmp_path))] = errors
    assert not failures, failures


def test_dciodvfy_flags_what_highdicom_leaves_out(tmp_path):
    """Why write_seg sets Patient Orientation: highdicom 0.28's own SEG of a secondary capture lacks it.

    If this starts failing, highdicom writes it now and the addition in ``_build`` can go.
    """
    from segapp.inference import dicom_seg

    exe = dciodvfy()
    src, *_ = make_source(tmp_path, "mono2")
    raw = dicom_seg._segmentation(header(src), np.stack(make_masks(1, 40, 44)), job_series_uid(None), 901, ALGORITHM)
    raw.save_as(tmp_path / "raw.dcm", enforce_file_format=True)
    errors, _ = verify(exe, tmp_path / "raw.dcm")
    assert errors and all("PatientOrientation" in e and "Type 2C" in e for e in errors), errors
