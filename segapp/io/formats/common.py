"""What every format reader shares: extensions, the :class:`Scan` type and the checks written once.

The format readers (``raster``, ``dicom``, ``nifti``) import only this module,
:mod:`segapp.io.errors` and :mod:`segapp.io.limits`; the dispatcher in :mod:`segapp.io.scans`
sits on top of them, so the dependencies of ``segapp/io`` point one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segapp.io.errors import ReadError

ScanKind = Literal["image", "dicom", "nifti"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = IMAGE_EXTENSIONS + (".gif",)
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
TIFF_EXTENSIONS = (".tif", ".tiff")
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
            ``shape``, ``axis``, ``affine`` (4x4 array) and ``header`` (nibabel header); for
            images ``declared_bits``, the 9-15-bit depth the file declared and the reader scaled
            to the full 16-bit range, or None.
    """

    path: Path
    kind: ScanKind
    frames: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def check_file(path: Path) -> None:
    """Refuse a missing or empty file before any reader opens it.

    Raises:
        ReadError: ``file not found`` or ``file is empty (0 bytes)``.
    """
    if not path.is_file():
        raise ReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty (0 bytes)")


def check_frames(path: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Refuse a file with no frames or with frames that are not ``H x W x C`` of at least 2x2.

    Raises:
        ReadError: naming the shape found.
    """
    if not frames:
        raise ReadError(path, "the file holds no image frames")
    shape = frames[0].shape
    if len(shape) != 3 or shape[0] < 2 or shape[1] < 2:
        raise ReadError(path, f"degenerate image of shape {shape}; expected at least 2x2 pixels")
    return frames


def to_uint16(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linearly map ``[lo, hi]`` to 0-65535 (clipped); a constant image maps to 0."""
    if not hi > lo:
        return np.zeros(arr.shape, np.uint16)
    scaled = (np.asarray(arr, np.float64) - lo) * (65535.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)
