"""PNG, JPEG, BMP, GIF (Pillow) and TIFF (tifffile, 8/16-bit) into ``H x W x C`` arrays.

The size is checked from the header (Pillow's ``size`` right after ``open``, tifffile's page
shape) before any pixel is decoded; see :mod:`segapp.io.limits`.

Both readers give the image as displayed: Pillow applies the EXIF orientation
(``ImageOps.exif_transpose``), the TIFF reader the Orientation tag (274) with the same eight
transforms, so a TIFF and a PNG of one displayed image read identically (images and masks).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segapp.io.errors import ReadError
from segapp.io.formats.common import TIFF_EXTENSIONS
from segapp.io.limits import ReadLimits, check_size

_PIL_LOCK = threading.Lock()

# The TIFF/EXIF orientations as numpy views of an ``H x W [x C]`` array: the transposes Pillow's
# ``ImageOps.exif_transpose`` applies (2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM,
# 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90), so a TIFF and a PNG agree.
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@contextlib.contextmanager
def _our_limit_not_pillows() -> Iterator[None]:
    """Switch off Pillow's own bomb check while opening, so :func:`check_size` decides.

    Pillow refuses above ``2 * Image.MAX_IMAGE_PIXELS`` inside ``Image.open``, before we see the
    size; with the check off for the header read, the user's ``max_pixels`` (larger or smaller)
    is the one limit, and the error names the size and the fix.
    """
    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


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


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The stored ``H x W [x C]`` pixels as displayed under a TIFF/EXIF orientation (1-8; others: as stored)."""
    transform = _ORIENTATIONS.get(orientation)
    return arr if transform is None else np.ascontiguousarray(transform(arr))


def _read_pillow(path: Path, limits: ReadLimits | None) -> np.ndarray:
    """Pillow's pixels as displayed (EXIF orientation applied)."""
    try:
        with _our_limit_not_pillows():
            img = Image.open(path)
        with img:
            width, height = img.size
            check_size(path, height, width, 1, limits)
            img = ImageOps.exif_transpose(img)  # honour JPEG/PNG EXIF orientation
            img.load()
            return _pil_to_array(img)
    except ReadError:
        raise
    except Image.DecompressionBombError as e:  # a later GIF frame larger than the first
        raise ReadError(path, f"refused as a decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ReadError(path, f"not a readable image ({e})") from e


def _read_tiff(path: Path, limits: ReadLimits | None) -> np.ndarray:
    """tifffile's first page as displayed (Orientation tag applied)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.keyframe
            h, w = int(page.imagelength), int(page.imagewidth)
            per_frame = max(1, h * w * int(page.samplesperpixel))
            check_size(path, h, w, max(1, int(series.size) // per_frame), limits)
            arr = np.asarray(page.asarray())  # the first page only: a multi-page stack is not colour
            planar = int(page.planarconfig) == 2  # tifffile.PLANARCONFIG.SEPARATE: (C, H, W)
            orientation = int(page.tags[274].value) if 274 in page.tags else 1
    except ReadError:
        raise
    except Exception as e:  # tifffile raises many types for broken files
        raise ReadError(path, f"not a readable TIFF ({type(e).__name__}: {e})") from e
    if arr.ndim == 3 and planar:
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    return _orient(arr, orientation)


def read_raster(path: Path, limits: ReadLimits | None = None) -> np.ndarray:
    """Decode a 2D image file: tifffile for ``.tif``/``.tiff``, Pillow for everything else.

    Returns:
        The pixels as displayed (EXIF / TIFF orientation applied) in their native dtype,
        ``H x W`` or ``H x W x C`` (not yet checked for shape).

    Raises:
        ReadError: undecodable, or over the size limits (checked from the header).
    """
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return _read_tiff(path, limits)
    return _read_pillow(path, limits)
