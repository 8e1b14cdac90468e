"""Write tiny files of every supported format (and broken ones) for the inference tests."""

from __future__ import annotations

import csv
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = "Doe^Secret"  # a PatientName that must never show up in logs or outputs


def write_dicom(
    path: Path,
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
) -> str:
    """Write ``arr`` (rows x cols, frames x rows x cols, or rows x cols x 3) as a DICOM file.

    Returns its SOPInstanceUID.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, uid
    ds.PatientName, ds.PatientID, ds.Modality = SECRET_NAME, "SECRET-ID-123", "OT"
    ds.set_pixel_data(arr, photometric, bits or arr.dtype.itemsize * 8)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)
    return uid


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    import nibabel as nib

    affine = np.diag([0.8, 0.9, 2.5, 1.0]) if affine is None else affine
    affine[:3, 3] = (-10.0, 5.0, 30.0)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def jpeg_with_orientation(path: Path, arr: np.ndarray, orientation: int = 6) -> None:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, format="JPEG", exif=exif.tobytes())


def write_png16(path: Path, arr: np.ndarray, sbit: int | None = None) -> Path:
    """A 16-bit grey PNG of ``arr`` (rows x cols, uint16), with an ``sBIT`` chunk of ``sbit`` bits
    right after IHDR when given (Pillow writes none)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, np.uint16)).save(buf, format="PNG")
    data = buf.getvalue()
    if sbit is not None:
        end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length and type, its 13 bytes, CRC
        body = b"sBIT" + bytes([sbit])
        chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body))
        data = data[:end_of_ihdr] + chunk + data[end_of_ihdr:]
    path.write_bytes(data)
    return path


def make_scan_folder(root: Path, seed: int = 0) -> dict[str, dict]:
    """Every supported format plus broken files under ``root``.

    Returns:
        ``{relative path: expectation}`` with ``shape`` (mask shape) for valid files,
        ``frames`` for multi-frame ones and ``error`` (a reason substring) for broken ones.
    """
    import tifffile

    rng = np.random.default_rng(seed)
    (root / "sub" / "deep").mkdir(parents=True, exist_ok=True)
    rgb = lambda h, w: rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # noqa: E731
    exp: dict[str, dict] = {}
    Image.fromarray(rgb(50, 70)).save(root / "a.png")
    exp["a.png"] = {"shape": (50, 70)}
    tifffile.imwrite(root / "a.tiff", rng.integers(0, 65535, (45, 38), dtype=np.uint16))
    exp["a.tiff"] = {"shape": (45, 38)}  # 16-bit gray, same stem as a.png
    jpeg_with_orientation(root / "sub" / "rot.jpg", rgb(30, 40))  # EXIF 6: displayed 40 x 30
    exp["sub/rot.jpg"] = {"shape": (40, 30)}
    Image.fromarray(rgb(33, 41)).save(root / "sub" / "b.bmp")
    exp["sub/b.bmp"] = {"shape": (33, 41)}
    rgba = np.concatenate([rgb(36, 36), np.full((36, 36, 1), 200, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "rgba.png")
    exp["sub/rgba.png"] = {"shape": (36, 36)}
    raw = rng.integers(0, 4000, (48, 40), dtype=np.uint16)
    write_dicom(root / "mono1.dcm", raw, "MONOCHROME1", bits=12, slope=2.0, intercept=-1000.0, window=(1000.0, 4000.0))
    exp["mono1.dcm"] = {"shape": (48, 40)}
    write_dicom(root / "sub" / "deep" / "IM0001", rng.integers(0, 255, (40, 44), dtype=np.uint8))
    exp["sub/deep/IM0001"] = {"shape": (40, 44)}  # extension-less DICOM
    write_dicom(root / "multi.dcm", rng.integers(0, 255, (3, 32, 36), dtype=np.uint8))
    exp["multi.dcm"] = {"shape": (32, 36), "frames": 3}
    write_dicom(root / "rgb.dcm", rgb(34, 30), "RGB")
    exp["rgb.dcm"] = {"shape": (34, 30)}
    write_nifti(root / "vol.nii.gz", rng.normal(100, 30, (40, 36, 3)).astype(np.float32))
    exp["vol.nii.gz"] = {"shape": (40, 36), "nifti_shape": (40, 36, 3)}
    (root / "broken.png").write_bytes(b"not a png at all")
    exp["broken.png"] = {"error": "not a readable image"}
    (root / "empty.jpg").write_bytes(b"")
    exp["empty.jpg"] = {"error": "empty"}
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "one.png")
    exp["one.png"] = {"error": "degenerate"}
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buf, format="JPEG")
    (root / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    exp["trunc.jpg"] = {"error": "not a readable image"}
    (root / "fake.dcm").write_bytes(b"\0" * 200)
    exp["fake.dcm"] = {"error": "DICOM"}
    (root / "bad.nii.gz").write_bytes(b"garbage, not gzip")
    exp["bad.nii.gz"] = {"error": "NIfTI"}
    (root / "notes.txt").write_text("unsupported: skipped, not an error")
    return exp


# Patient/study attributes a DICOM SEG must copy from its source (see write_study_dicom).
STUDY_HEADER = {
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "StudyDate": "20240102",
    "StudyTime": "101500",
    "StudyID": "S1",
    "AccessionNumber": "ACC-1",
    "ReferringPhysicianName": "Ref^Doctor",
    "StudyDescription": "segapp test study",
}
# Multi-frame Secondary Capture classes: a single-frame class (write_dicom's) may not carry frames.
MULTIFRAME_SC = {
    "gray8": "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC Image Storage
    "gray16": "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC Image Storage
    "rgb": "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC Image Storage
}


def write_study_dicom(
    path: Path,
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    spatial: bool = False,
    drop: tuple[str, ...] = (),
) -> str:
    """Like :func:`write_dicom`, plus the study/series identity a real scanner writes.

    ``write_dicom`` leaves out the Study/Series Instance UIDs and study attributes (the readers do
    not need them); a DICOM SEG must copy them. ``spatial`` adds a frame of reference, pixel
    spacing and a plane position per frame (as CT/MR have); ``drop`` removes attributes again
    (e.g. ``("StudyInstanceUID",)``) to make a source a SEG cannot be made from. Returns the
    SOPInstanceUID.
    """
    import pydicom
    from pydicom.uid import generate_uid

    uid = write_dicom(path, arr, photometric)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber, ds.InstanceNumber, ds.ConversionType = 3, 1, "WSD"
    for key, value in STUDY_HEADER.items():
        setattr(ds, key, value)
    if spatial:
        ds.FrameOfReferenceUID = generate_uid()
        ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 1.0
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-10.0, -20.0, 30.0]
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        kind = "rgb" if photometric == "RGB" else f"gray{arr.dtype.itemsize * 8}"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MULTIFRAME_SC[kind]
    for key in drop:
        delattr(ds, key)
    ds.save_as(path, enforce_file_format=True)
    return uid


def predict_rows(ckpt: Path, inp: Path, out: Path) -> tuple[dict[str, dict[str, str]], str]:
    """``segapp-predict`` of ``ckpt`` over ``inp`` into ``out`` (a subprocess, as users run it): the
    CSV rows by input name (one row per input: 2D files) and the run's stderr."""
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--checkpoint", str(ckpt), "--input", str(inp)]
    res = subprocess.run(
        [*cmd, "--output", str(out), "--workers", "0", "--no-review", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    with open(out / "predictions.csv", newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}, res.stderr
