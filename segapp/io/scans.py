"""Decode medical scans (DICOM, NIfTI) and plain images into 2D frames plus metadata.

One entry point, :func:`read_scan`, returns every 2D frame of a file as ``H x W x C`` arrays
in the same conventions as :func:`segapp.io.read_image`, so training and inference decode a
file identically. Grayscale scans come back as ``uint16`` scaled to the full 0-65535 range:

- DICOM: rescale slope/intercept (modality LUT), then the first VOI window when the file has
  one (else the file's min-max), MONOCHROME1 inverted so bright means dense as in
  MONOCHROME2. Multi-frame files give one frame per slice. RGB/YBR files give RGB.
- NIfTI (``.nii``, ``.nii.gz``): scaled data (``scl_slope``/``scl_inter`` applied), volume-wide
  min-max, 2D images give one frame and 3D volumes one frame per index along ``axis``.

Metadata holds no patient data: only technical fields (kind, frame count, SOPInstanceUID,
photometric interpretation; for NIfTI the shape, affine and header needed to write a mask back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segapp.io.errors import ReadError

ScanKind = Literal["image", "dicom", "nifti"]
DICOM_EXTENSIONS = (".dcm", ".dicom")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")


@dataclass
class Scan:
    """A decoded file: its 2D frames (each ``H x W x C``) and non-identifying metadata.

    Attributes:
        path: The file read.
        kind: ``image``, ``dicom`` or ``nifti``.
        frames: One ``H x W x C`` array per 2D frame (native dtype for images, uint16 for
            grayscale scans, uint8/uint16 RGB for colour DICOM).
        meta: ``n_frames`` and, for DICOM, ``sop_instance_uid`` and ``photometric``; for NIfTI
            ``shape``, ``axis``, ``affine`` (4x4 array) and ``header`` (nibabel header).
    """

    path: Path
    kind: ScanKind
    frames: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def has_dicm_preamble(path: Path) -> bool:
    """True when bytes 128-131 of the file are ``DICM`` (a DICOM Part 10 file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def scan_kind(path: str | Path, image_extensions: tuple[str, ...] | None = None) -> ScanKind | None:
    """Which reader handles ``path``: by extension, or the DICM preamble for files without one.

    Returns ``None`` for files no reader handles (unknown extension, or no extension and no
    DICOM preamble).
    """
    from segapp.io.images import IMAGE_EXTENSIONS

    path = Path(path)
    name = path.name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS:
        return "dicom"
    if suffix in (image_extensions or IMAGE_EXTENSIONS):
        return "image"
    if (not suffix or not suffix[1:].isalpha()) and has_dicm_preamble(path):
        return "dicom"  # extension-less (or numbered, e.g. IM.0001) DICOM export
    return None


def is_scan_file(path: Path) -> bool:
    """True for DICOM or NIfTI files (handled here rather than by the PIL/tifffile readers)."""
    return scan_kind(path, image_extensions=()) in ("dicom", "nifti")


def _check_frames(path: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    if not frames:
        raise ReadError(path, "the file holds no image frames")
    h, w = frames[0].shape[:2]
    if h < 2 or w < 2:
        raise ReadError(path, f"degenerate image of {h}x{w} pixels; expected at least 2x2 pixels")
    return frames


def _to_uint16(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linearly map ``[lo, hi]`` to 0-65535 (clipped); a constant image maps to 0."""
    if not hi > lo:
        return np.zeros(arr.shape, np.uint16)
    scaled = (np.asarray(arr, np.float64) - lo) * (65535.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)


def _first_value(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _dicom_gray(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """Modality LUT, first VOI window (or min-max), MONOCHROME1 inversion -> uint16."""
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(pixels, ds), np.float64)
    center, width = _first_value(ds.get("WindowCenter")), _first_value(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = float(values.min()), float(values.max())
    out = _to_uint16(values, lo, hi)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = np.uint16(65535) - out
    return out


def read_dicom(path: str | Path) -> Scan:
    """Read a DICOM file into frames (one per frame of a multi-frame file).

    Raises:
        ReadError: not DICOM, no pixel data, or pixel data that cannot be decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=not path.suffix)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as e:
        raise ReadError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    if "PixelData" not in ds:
        raise ReadError(path, "DICOM file has no pixel data (e.g. a structured report or DICOMDIR)")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as e:  # pydicom raises many types for missing decoders / corrupt data
        raise ReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames == 1:
        pixels = pixels[None]
    if spp == 1:
        frames = [f[:, :, None] for f in _dicom_gray(ds, pixels)]
    else:
        frames = [np.ascontiguousarray(f[:, :, :3]) for f in pixels]
    meta = {
        "n_frames": len(frames),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
    }
    return Scan(path, "dicom", _check_frames(path, frames), meta)


def read_nifti(path: str | Path, axis: int = 2) -> Scan:
    """Read a 2D or 3D NIfTI file; 3D volumes give one frame per index along ``axis``.

    Raises:
        ReadError: unreadable file, or data that is not 2D/3D (4D with one volume is accepted).
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ReadError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    shape = tuple(int(s) for s in data.shape)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ReadError(path, f"NIfTI data has shape {shape}; expected a 2D image or a 3D volume")
    if data.ndim == 3 and not -3 <= axis < 3:
        raise ValueError(f"NIfTI slice axis must be 0, 1 or 2, got {axis}")
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    vol = _to_uint16(np.nan_to_num(data, nan=lo), lo, hi)
    if vol.ndim == 2:
        frames = [vol[:, :, None]]
    else:
        frames = [np.ascontiguousarray(np.take(vol, i, axis=axis))[:, :, None] for i in range(vol.shape[axis])]
    meta = {"n_frames": len(frames), "shape": shape, "axis": axis % 3, "affine": img.affine, "header": img.header}
    return Scan(path, "nifti", _check_frames(path, frames), meta)


def read_scan(path: str | Path, nifti_axis: int = 2) -> Scan:
    """Read any supported file (images, DICOM, NIfTI) into a :class:`Scan`.

    Raises:
        ReadError: for empty, missing, unsupported or undecodable files, with the reason.
    """
    from segapp.io.images import read_image

    path = Path(path)
    if not path.is_file():
        raise ReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty (0 bytes)")
    kind = scan_kind(path)
    if kind == "dicom":
        return read_dicom(path)
    if kind == "nifti":
        return read_nifti(path, axis=nifti_axis)
    if kind is None:
        raise ReadError(path, "unsupported file type; expected an image, DICOM or NIfTI file")
    return Scan(path, "image", [read_image(path)], {"n_frames": 1})


def read_first_frame(path: str | Path) -> np.ndarray:
    """The first 2D frame (``H x W x C``) of a DICOM or NIfTI file."""
    return read_scan(path).frames[0]
