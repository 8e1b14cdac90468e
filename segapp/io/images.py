"""Decode 2D images and masks into numpy arrays, the same way for training and inference.

Images come back as ``H x W x C`` arrays in their native dtype (uint8, uint16 or float32);
masks come back as ``H x W`` boolean arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segapp.io.formats.common import IMAGE_EXTENSIONS, LOSSY_EXTENSIONS, MASK_EXTENSIONS
from segapp.io.limits import ReadLimits
from segapp.io.scans import read_first_frame

__all__ = [
    "IMAGE_EXTENSIONS",
    "LOSSY_EXTENSIONS",
    "MASK_EXTENSIONS",
    "mask_values",
    "read_image",
    "to_channels",
]


def to_channels(arr: np.ndarray, in_channels: int) -> np.ndarray:
    """Return ``arr`` (H x W x C) with exactly ``in_channels`` channels.

    Alpha is dropped; grayscale is repeated to 3 channels; RGB becomes gray by luminance
    (ITU-R 601 weights) when ``in_channels == 1``.

    Raises:
        ValueError: if ``in_channels`` is not 1 or 3.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c = arr.shape[2]
    if c in (2, 4):  # gray+alpha or RGBA: drop alpha
        arr = arr[:, :, : c - 1]
        c -= 1
    if c == in_channels:
        return arr
    if in_channels == 3:
        return np.repeat(arr[:, :, :1], 3, axis=2)
    gray = arr[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return gray[:, :, None].astype(arr.dtype) if arr.dtype != np.float32 else gray[:, :, None]


def read_image(path: str | Path, limits: ReadLimits | None = None) -> np.ndarray:
    """Read a 2D image as ``H x W x C`` in its native dtype.

    Supports PNG, JPEG (EXIF orientation applied), BMP, GIF and TIFF (8/16-bit, gray, RGB,
    RGBA, palette, 1-bit; Orientation tag applied); a 16-bit file that declares a 9-15-bit depth
    is scaled to the full 16-bit range. DICOM and NIfTI files give their first frame (only that
    frame of a multi-frame DICOM is decoded). A thin name for :func:`segapp.io.scans.read_first_frame`.

    Args:
        path: The file.
        limits: Size limits checked from the header; defaults (see :mod:`segapp.io.limits`) when None.

    Raises:
        ReadError: naming the file and the reason when it cannot be decoded or is too large.
    """
    return read_first_frame(path, limits)


def _alpha_or_colour(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The channels a mask with alpha is drawn in: its colour, unless the colour is one value
    everywhere; then the alpha when it varies (a mask drawn as transparency, on black or on a
    white layer), or nothing when the layer is fully transparent (an empty mask)."""
    if colour.size == 0 or colour.min() != colour.max():
        return colour
    if alpha.min() != alpha.max():
        return alpha
    return np.zeros_like(alpha) if alpha.max() == 0 else colour


def mask_values(arr: np.ndarray) -> np.ndarray:
    """Raw mask pixels (``H x W x C``, any dtype) on the 0-255 scale as float32 ``H x W``.

    Colour masks use the maximum over RGB; alpha is used when the colour is one value everywhere
    and the alpha varies (a mask drawn as transparency, on black or on a white layer: the colour's
    maximum would make every pixel a lesion); a fully transparent layer is empty, and an opaque
    black one stays empty (its alpha used to make it all lesion). 16-bit masks are divided by 257. The values are not
    binarised or rescaled per image: which values are foreground is the dataset's mask value
    rule (:mod:`segapp.io.masks`).
    """
    if arr.ndim == 2:
        arr = arr[:, :, None]
    colour = arr[:, :, :-1] if arr.shape[2] in (2, 4) else arr
    if arr.shape[2] in (2, 4):
        colour = _alpha_or_colour(colour, arr[:, :, -1:])
    values = colour.max(axis=2).astype(np.float32)
    if arr.dtype == np.uint16 and values.size and float(values.max()) > 255:
        values = values / 257.0
    return values
