"""The one dispatcher: any supported file (image, DICOM, NIfTI) into 2D frames plus metadata.

:func:`read_scan` returns every 2D frame of a file as ``H x W x C`` arrays, and
:func:`read_first_frame` (behind :func:`segapp.io.read_image`) only the first, decoding no
other frame where the format allows; both go through :func:`_read`, so a file is checked
(missing, empty, size limits) and decoded identically for training and inference.
Grayscale scans come back as ``uint16`` scaled to the full 0-65535 range:

- Images (PNG, JPEG, BMP, GIF, TIFF): as displayed (EXIF / TIFF orientation applied), in their
  native dtype; a 16-bit image that declares a 9-15-bit depth is scaled to the full range
  (``meta["declared_bits"]``). One without a declaration whose values stop below 4096 is kept as
  it is, and :func:`low_range_max` names it for the checks that flag it.

- DICOM: rescale slope/intercept (modality LUT), then the first VOI window when the file has
  one (else the file's min-max), MONOCHROME1 inverted so bright means dense as in
  MONOCHROME2. Multi-frame files give one frame per slice. RGB/YBR files give RGB.
- NIfTI (``.nii``, ``.nii.gz``): scaled data (``scl_slope``/``scl_inter`` applied), volume-wide
  min-max, 2D images give one frame and 3D volumes one frame per index along ``axis``.

Metadata holds no patient data: only technical fields (kind, frame count, SOPInstanceUID,
photometric interpretation; for NIfTI the shape, affine and header needed to write a mask back).

Dependencies point one way: this module -> ``formats/{raster,dicom,nifti}`` -> ``formats/common``,
``limits``, ``errors``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segapp.io.errors import ReadError
from segapp.io.formats.common import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    NIFTI_EXTENSIONS,
    Scan,
    ScanKind,
    check_file,
)
from segapp.io.formats.dicom import read_dicom
from segapp.io.formats.nifti import read_nifti
from segapp.io.formats.raster import read_raster
from segapp.io.limits import ReadLimits

LOW_RANGE_TOP = 4095
"""A 16-bit image whose values all stay at or below this uses at most 12 of its 16 bits."""

__all__ = [
    "DICOM_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "Scan",
    "ScanKind",
    "LOW_RANGE_TOP",
    "depth_known",
    "has_dicm_preamble",
    "is_scan_file",
    "low_range_max",
    "read_dicom",
    "read_first_frame",
    "read_first_scan",
    "read_nifti",
    "read_scan",
    "scan_kind",
]


def has_dicm_preamble(path: Path) -> bool:
    """True when bytes 128-131 of the file are ``DICM`` (a DICOM Part 10 file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def scan_kind(path: str | Path, image_extensions: tuple[str, ...] | None = None) -> ScanKind | None:
    """Which reader handles ``path``: by extension, else the DICM preamble.

    The preamble is read for every file whose extension names no reader, not only for
    extension-less ones: PACS exports come as ``IM.0001``, Siemens ``.IMA``, ``.dc3`` or
    ``.ser``, and a DICOM file skipped for its name vanished from the run without an error row.
    Returns ``None`` for files no reader handles (no known extension and no DICOM preamble).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS:
        return "dicom"
    if suffix in (IMAGE_EXTENSIONS if image_extensions is None else image_extensions):
        return "image"
    if suffix not in IMAGE_EXTENSIONS and has_dicm_preamble(path):
        return "dicom"  # IM.0001, scan.IMA, extension-less: a DICOM export by its content
    return None


def is_scan_file(path: Path) -> bool:
    """True for DICOM or NIfTI files (handled here rather than by the PIL/tifffile readers)."""
    return scan_kind(path, image_extensions=()) in ("dicom", "nifti")


def _read(path: Path, kind: ScanKind, nifti_axis: int, limits: ReadLimits | None, first_only: bool) -> Scan:
    """Check the file once, then hand it to its format's reader."""
    check_file(path)
    if kind == "dicom":
        return read_dicom(path, limits=limits, first_only=first_only)
    if kind == "nifti":
        return read_nifti(path, axis=nifti_axis, limits=limits, first_only=first_only)
    return read_raster(path, limits)


def depth_known(scan: Scan) -> bool:
    """Whether the reader knows the scale of ``scan``'s values, not just their dtype.

    DICOM and NIfTI readers scale grey values to the full 16-bit range themselves (a NIfTI edge
    slice may still be dark); an image knows its scale only when its file declared a 9-15-bit
    depth (then the reader scaled it too).
    """
    return scan.kind != "image" or scan.meta.get("declared_bits") is not None


def low_range_max(frame: np.ndarray) -> int | None:
    """The maximum of a 16-bit ``H x W x C`` frame that uses at most 12 of its bits; None otherwise.

    Alpha is left out (an opaque alpha is 65535). Such a frame, read by its dtype (``/ 65535``),
    looks near-black to a model trained on full-range scans; whether it is 12-bit data or a dark
    16-bit scan, the file alone cannot tell. 8-bit and float frames give None.
    """
    if frame.dtype != np.uint16 or not frame.size:
        return None
    colour = frame[:, :, :-1] if frame.ndim == 3 and frame.shape[2] in (2, 4) else frame
    top = int(colour.max())
    return top if top <= LOW_RANGE_TOP else None


def read_scan(path: str | Path, nifti_axis: int = 2, limits: ReadLimits | None = None) -> Scan:
    """Read any supported file (images, DICOM, NIfTI) into a :class:`Scan` with all its frames.

    Args:
        path: The file.
        nifti_axis: Slice axis of 3D NIfTI volumes.
        limits: Size limits (pixels per frame, pixels per multi-frame file), checked from the
            header before decoding; :data:`segapp.io.limits.DEFAULT_LIMITS` when None.

    Raises:
        ReadError: for empty, missing, unsupported, oversized or undecodable files, with the reason.
    """
    path = Path(path)
    kind = scan_kind(path)
    if kind is None:
        check_file(path)
        raise ReadError(path, "unsupported file type; expected an image, DICOM or NIfTI file")
    return _read(path, kind, nifti_axis, limits, first_only=False)


def read_first_frame(path: str | Path, limits: ReadLimits | None = None) -> np.ndarray:
    """The first 2D frame (``H x W x C``) of any file, decoding no other frame where possible.

    DICOM and NIfTI files are recognised as in :func:`scan_kind`; any other file goes to the
    raster reader (Pillow or tifffile), whatever its extension. NIfTI volumes are sliced along
    axis 2. The frame is identical to ``read_scan(path).frames[0]``.

    Raises:
        ReadError: as :func:`read_scan`.
    """
    return read_first_scan(path, limits).frames[0]


def read_first_scan(path: str | Path, limits: ReadLimits | None = None) -> Scan:
    """:func:`read_first_frame` with its :class:`Scan`: the first frame only, and the file's ``meta``.

    Raises:
        ReadError: as :func:`read_scan`.
    """
    path = Path(path)
    kind = scan_kind(path, image_extensions=()) or "image"
    return _read(path, kind, 2, limits, first_only=True)
