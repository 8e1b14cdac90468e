"""DICOM (single- and multi-frame, gray or colour) into uint16 gray or RGB frames.

Gray pixels: each frame's rescale slope/intercept (modality LUT), then its first VOI window when
it has one (else the min-max of all frames), MONOCHROME1 inverted so bright means dense as in
MONOCHROME2. Enhanced multi-frame objects (Enhanced CT/MR) keep rescale and window in functional
groups: a frame's per-frame group is used first, then the shared group, then the top-level
attributes. Padding pixels (``PixelPaddingValue`` up to ``PixelPaddingRangeLimit``, compared on
the stored values) are left out of the min-max and written as 0.

The size is checked from ``Rows``/``Columns``/``NumberOfFrames`` before the pixel data is read
(large elements are read lazily) or decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
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


def _has_rescale(item: Any) -> bool:
    """Whether ``item`` holds a modality LUT or a complete rescale (slope and intercept)."""
    return "ModalityLUTSequence" in item or ("RescaleSlope" in item and "RescaleIntercept" in item)


def _has_window(item: Any) -> bool:
    """Whether ``item`` holds a VOI window (center and width)."""
    return "WindowCenter" in item and "WindowWidth" in item


def _frame_item(ds: Any, frame: int, group: str, usable: Callable[[Any], bool]) -> Any:
    """Where frame ``frame``'s values of a functional group live: per-frame, else shared, else top level.

    Enhanced (multi-frame) objects keep rescale and window in functional groups
    (``group`` is e.g. ``PixelValueTransformationSequence`` or ``FrameVOILUTSequence``), not in
    the top-level attributes that classic objects and pydicom's LUT functions read; the
    standard lets a per-frame item override the shared one. Returns the first item that
    ``usable`` accepts, or ``ds`` itself.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    groups = ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared[:1])
    for fg in groups:
        items = fg.get(group) or []
        if items and usable(items[0]):
            return items[0]
    return ds


def _window(ds: Any, frame: int) -> tuple[float, float] | None:
    """Frame ``frame``'s first VOI window as ``(lo, hi)``, or None when it has no usable one."""
    item = _frame_item(ds, frame, "FrameVOILUTSequence", _has_window)
    center, width = _first_value(item.get("WindowCenter")), _first_value(item.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return center - width / 2.0, center + width / 2.0
    return None


def _modality(ds: Any, frame: int, pixels: np.ndarray) -> np.ndarray:
    """Frame ``frame``'s stored values through its own modality LUT or rescale (float64)."""
    from pydicom.pixels import apply_modality_lut

    item = _frame_item(ds, frame, "PixelValueTransformationSequence", _has_rescale)
    return np.asarray(apply_modality_lut(pixels, item), np.float64)


def _padding(ds: Any, stored: np.ndarray) -> np.ndarray | None:
    """Mask of the padding pixels (``PixelPaddingValue`` up to ``PixelPaddingRangeLimit``), or None.

    Compared on the stored values, before the modality LUT, as the standard defines them:
    padding (e.g. the -2000 border outside a CT's field of view) is not image, so it must not
    widen the gray range.
    """
    value = _first_value(ds.get("PixelPaddingValue"))
    if value is None:
        return None
    limit = _first_value(ds.get("PixelPaddingRangeLimit"))
    lo, hi = (value, value) if limit is None else (min(value, limit), max(value, limit))
    mask = (stored >= lo) & (stored <= hi)
    return mask if mask.any() else None


def _value_range(values: np.ndarray, pad: np.ndarray | None) -> tuple[float, float]:
    """Min and max of the non-padding values; ``(inf, -inf)`` when every pixel is padding."""
    kept = values if pad is None else values[~pad]
    return (float(kept.min()), float(kept.max())) if kept.size else (np.inf, -np.inf)


def _union(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The range covering both ranges (``(inf, -inf)`` is the empty one)."""
    return min(a[0], b[0]), max(a[1], b[1])


def _gray(ds: Any, values: np.ndarray, window: tuple[float, float], pad: np.ndarray | None) -> np.ndarray:
    """Modality-LUT values -> ``H x W x 1`` uint16 over ``window``, MONOCHROME1 inverted, padding 0."""
    out = to_uint16(values, *window) if np.isfinite(window).all() else np.zeros(values.shape, np.uint16)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = np.uint16(65535) - out
    if pad is not None:
        out[pad] = 0
    return out[:, :, None]


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
    """Every frame; a gray frame goes through its own rescale and window (else the file's range)."""
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as e:  # pydicom raises many types for missing decoders / corrupt data
        raise ReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    if n_frames == 1:
        pixels = pixels[None]
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return [np.ascontiguousarray(f[:, :, :3]) for f in pixels]
    values = [_modality(ds, i, f) for i, f in enumerate(pixels)]
    pads = [_padding(ds, f) for f in pixels]
    windows = [_window(ds, i) for i in range(len(pixels))]
    full = reduce(_union, map(_value_range, values, pads)) if None in windows else None
    return [_gray(ds, v, w or full, p) for v, w, p in zip(values, windows, pads, strict=True)]


def _streamed_range(ds: Any) -> tuple[float, float]:
    """The non-padding min-max of every frame, decoded one frame at a time (never all in memory)."""
    from pydicom.pixels import iter_pixels

    found = (np.inf, -np.inf)
    for i, frame in enumerate(iter_pixels(ds)):
        found = _union(found, _value_range(_modality(ds, i, frame), _padding(ds, frame)))
    return found


def _decode_first(path: Path, ds: Any, n_frames: int) -> np.ndarray:
    """Frame 0 only, mapped exactly as :func:`_decode_all` maps it.

    Without a VOI window for frame 0 the gray range is the min-max of every frame: those are
    streamed one frame at a time, and only frame 0 is kept.
    """
    from pydicom.pixels import pixel_array

    try:
        first = np.asarray(pixel_array(ds, index=0) if n_frames > 1 else ds.pixel_array)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            return np.ascontiguousarray(first[:, :, :3])
        values, pad = _modality(ds, 0, first), _padding(ds, first)
        window = _window(ds, 0) or (_streamed_range(ds) if n_frames > 1 else _value_range(values, pad))
    except Exception as e:  # pydicom raises many types for missing decoders / corrupt data
        raise ReadError(path, f"cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    return _gray(ds, values, window, pad)


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
