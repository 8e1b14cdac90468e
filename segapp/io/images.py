"""Decode 2D images and masks into numpy arrays, the same way for training and inference.

Images come back as ``H x W x C`` arrays in their native dtype (uint8, uint16 or float32);
masks come back as ``H x W`` boolean arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segapp.io.errors import ReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = IMAGE_EXTENSIONS + (".gif",)
_TIFF = (".tif", ".tiff")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as e:  # tifffile raises many types for broken files
        raise ReadError(path, f"not a readable TIFF ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if arr.ndim == 4:  # multi-page: take the first page
        arr = arr[0]
    return arr


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """Convert a PIL image to an array, keeping 16-bit depth and expanding palettes."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.uint16)
    elif img.mode == "I":
        arr = np.asarray(img)
        return arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr.astype(np.float32)
    elif img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    elif img.mode in ("LA", "PA"):
        img = img.convert("L")
    elif img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGB")
    return np.asarray(img)


def _decode(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty (0 bytes)")
    from segapp.io.scans import is_scan_file, read_first_frame  # DICOM / NIfTI: first 2D frame

    if is_scan_file(path):
        return read_first_frame(path)
    if path.suffix.lower() in _TIFF:
        arr = _read_tiff(path)
    else:
        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)  # honour JPEG EXIF orientation
                img.load()
                arr = _pil_to_array(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ReadError(path, f"not a readable image ({e})") from e
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ReadError(path, f"degenerate image of shape {arr.shape}; expected at least 2x2 pixels")
    return arr


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


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2D image as ``H x W x C`` in its native dtype.

    Supports PNG, JPEG (EXIF orientation applied), BMP, GIF and TIFF (8/16-bit, gray, RGB,
    RGBA, palette, 1-bit).

    Raises:
        ReadError: naming the file and the reason when it cannot be decoded.
    """
    return _decode(Path(path))


LOSSY_EXTENSIONS = (".jpg", ".jpeg")


def mask_values(arr: np.ndarray, lossy: bool = False) -> np.ndarray:
    """Raw mask pixels (``H x W x C``, any dtype) on the 0-255 scale as float32 ``H x W``.

    Colour masks use the maximum over RGB; alpha is used only when the colour channels are all
    zero (a mask drawn as transparency). 16-bit masks are divided by 257. Masks whose maximum is
    1 (0/1 label PNGs, 1-bit files) are scaled by 255, except ``lossy`` (JPEG) files, where a
    maximum of 1 is compression noise in an empty mask.
    """
    if arr.ndim == 2:
        arr = arr[:, :, None]
    colour = arr[:, :, :-1] if arr.shape[2] in (2, 4) else arr
    if arr.shape[2] in (2, 4) and not colour.any():
        colour = arr[:, :, -1:]
    values = colour.max(axis=2).astype(np.float32)
    top = float(values.max()) if values.size else 0.0
    if arr.dtype == np.uint16 and top > 255:
        values = values / 257.0
    elif top <= 1 and not lossy:
        values = values * 255.0
    return values


def read_mask(path: str | Path, threshold: float = 127) -> np.ndarray:
    """Read a binary mask as an ``H x W`` bool array.

    The threshold is on the 0-255 scale: a pixel is foreground when its value (see
    :func:`mask_values`) is above ``threshold``. The same threshold is right for JPEG masks
    with artefacts, 0/255 PNGs, 0/1 PNGs, palette, RGBA, 16-bit and 1-bit files.

    Raises:
        ReadError: when the file cannot be decoded.
    """
    path = Path(path)
    return mask_values(_decode(path), lossy=path.suffix.lower() in LOSSY_EXTENSIONS) > threshold
