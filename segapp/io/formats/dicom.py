"""DICOM (single- and multi-frame, gray or colour) into uint16 gray or RGB frames.

Gray pixels: rescale slope/intercept (modality LUT), then the first VOI window when the file
has one (else the min-max of all its frames), MONOCHROME1 inverted so bright means dense as in
MONOCHROME2. The size is checked from ``Rows``/``Columns``/``NumberOfFrames`` before the pixel
data is read (large elements are read lazily) or decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segapp.io.errors import ReadError
from segapp.io.formats.common import Scan, check_frames, to_uint16
from segapp.io.limits import ReadLimits, check_size

_DEFER = "1 MB"  # elements larger than this (the pixel data) stay on disk until needed


_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR")


def _first_value(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _window(ds: Any) -> tuple[float, float] | None:
    """The first VOI window as ``(lo, hi)``, or None when the file has no usable one."""
    center, width = _first_value(ds.get("WindowCenter")), _first_value(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return center - width / 2.0, center + width / 2.0
    return None


def _modality(ds: Any, pixels: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(pixels, ds), np.float64)


def _gray(ds: Any, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Modality-LUT values -> uint16 over ``[lo, hi]``, MONOCHROME1 inverted."""
    out = to_uint16(values, lo, hi)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = np.uint16(65535) - out
    return out


def _open(path: Path, limits: ReadLimits | None) -> tuple[Any, int]:
    """Read the header (pixel data deferred), check the size; returns the dataset and frame count."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=not path.suffix, defer_size=_DEFER)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as e:
        raise ReadError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    if "PixelData" not in ds:
        raise ReadError(path, "DICOM file has no pixel data (e.g. a structured report or DICOMDIR)")
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as e:
        raise ReadError(path, f"DICOM header has an unreadable Rows/Columns/NumberOfFrames ({e})") from e
    check_size(path, rows, cols, n_frames, limits)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if not photometric.startswith(_PHOTOMETRIC):  # e.g. PALETTE COLOR: the values are indices, not intensities
        raise ReadError(
            path,
            f"PhotometricInterpretation {photometric} is not supported; expected MONOCHROME1/2, RGB or YBR_*; "
            "fix: convert the image to grey or RGB",
        )
    return ds, n_frames


def _decode_all(path: Path, ds: Any, n_frames: int) -> list[np.ndarray]:
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as e:  # pydicom raises many types for missing decoders / corrupt data
        raise ReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    if n_frames == 1:
        pixels = pixels[None]
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return [np.ascontiguousarray(f[:, :, :3]) for f in pixels]
    values = _modality(ds, pixels)
    lo, hi = _window(ds) or (float(values.min()), float(values.max()))
    return [f[:, :, None] for f in _gray(ds, values, lo, hi)]


def _decode_first(path: Path, ds: Any, n_frames: int) -> np.ndarray:
    """Frame 0 only, mapped exactly as :func:`_decode_all` maps it.

    Without a VOI window the gray range is the min-max of every frame: those are streamed one
    frame at a time (never all in memory), and only frame 0 is kept.
    """
    from pydicom.pixels import iter_pixels, pixel_array

    try:
        first = np.asarray(pixel_array(ds, index=0) if n_frames > 1 else ds.pixel_array)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            return np.ascontiguousarray(first[:, :, :3])
        values = _modality(ds, first)
        window = _window(ds)
        if window is None and n_frames > 1:
            lo, hi = np.inf, -np.inf
            for frame in iter_pixels(ds):
                v = _modality(ds, frame)
                lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
            window = (lo, hi)
    except Exception as e:  # pydicom raises many types for missing decoders / corrupt data
        raise ReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    lo, hi = window or (float(values.min()), float(values.max()))
    return _gray(ds, values, lo, hi)[:, :, None]


def read_dicom(path: str | Path, limits: ReadLimits | None = None, first_only: bool = False) -> Scan:
    """Read a DICOM file into frames (one per frame of a multi-frame file).

    Args:
        path: The file.
        limits: Size limits, checked from the header; defaults when None.
        first_only: Decode only frame 0 (what :func:`segapp.io.read_image` keeps); it is
            identical to frame 0 of the full read.

    Raises:
        ReadError: not DICOM, no pixel data, over the size limits, or undecodable pixel data.
    """
    path = Path(path)
    ds, n_frames = _open(path, limits)
    frames = [_decode_first(path, ds, n_frames)] if first_only else _decode_all(path, ds, n_frames)
    meta = {
        "n_frames": len(frames),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
    }
    return Scan(path, "dicom", check_frames(path, frames), meta)
