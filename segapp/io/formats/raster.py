"""PNG, JPEG, BMP, GIF (Pillow) and TIFF (tifffile, 8/16-bit) into ``H x W x C`` arrays.

The size is checked from the header (Pillow's ``size`` right after ``open``, tifffile's page
shape) before any pixel is decoded; see :mod:`segapp.io.limits`.

Both readers give the image as displayed: Pillow applies the EXIF orientation
(``ImageOps.exif_transpose``), the TIFF reader the Orientation tag (274) with the same eight
transforms, so a TIFF and a PNG of one displayed image read identically (images and masks).
A 16-bit image whose file declares 9-15 significant bits (TIFF BitsPerSample,
MaxSampleValue or SMaxSampleValue of ``2**k - 1``; PNG ``sBIT``) is scaled to the full 16-bit
range here, so :func:`segapp.io.preprocess.to_float01` keeps one rule (uint16 / 65535) and a
12-bit scan is not read 16 times too dark. A depth of 16 bits or none declares nothing beyond
the dtype; the declaration is recorded as ``declared_bits`` in the scan's ``meta``.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segapp.io.errors import ReadError
from segapp.io.formats.common import TIFF_EXTENSIONS, Scan, check_frames
from segapp.io.limits import ReadLimits, check_size

_PIL_LOCK = threading.Lock()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DECLARED_BITS = range(9, 16)  # a declared depth of 16 says no more than the dtype does

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


def _png_sbit(path: Path) -> int | None:
    """The significant bits of a PNG's colour samples from its ``sBIT`` chunk; None without one.

    Pillow does not expose sBIT, and the chunk is simple to find: after the 8-byte signature come
    chunks of ``length, type, data, CRC``, sBIT before the first IDAT, one byte per channel (the
    grey, or the three colour channels, come first; alpha is left out).
    """
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        while len(head := fh.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"sBIT":
                data = fh.read(length)
                colour = data[:3] if len(data) >= 3 else data[:1]
                return max(colour) if colour else None
            if kind in (b"IDAT", b"IEND"):
                return None
            fh.seek(length + 4, 1)
    return None


def _tiff_max_sample(page) -> int | None:
    """A TIFF page's SMaxSampleValue (341), else MaxSampleValue (281), the largest over samples."""
    for code in (341, 281):
        tag = page.tags.get(code)
        if tag is None:
            continue
        try:
            return int(np.max(np.asarray(tag.value, dtype=np.float64)))
        except (TypeError, ValueError):
            return None
    return None


def _tiff_declared_bits(bits: int, max_sample: int | None) -> int | None:
    """The depth (9-15) a TIFF declares: its BitsPerSample, or a maximum sample value of ``2**k - 1``.

    A maximum of another form is taken for what some writers store there, the image's own
    maximum, and ignored: scaling by it would stretch each image by its own brightness, so a dark
    scan and a bright one of the same set would no longer share a scale.
    """
    if bits in _DECLARED_BITS:
        return bits
    if max_sample is not None and max_sample > 0 and (max_sample + 1) & max_sample == 0:
        k = max_sample.bit_length()
        return k if k in _DECLARED_BITS else None
    return None


def _scale_declared(arr: np.ndarray, bits: int | None) -> tuple[np.ndarray, int | None]:
    """A uint16 image of declared ``bits``-bit data scaled to 0-65535; returns it and the depth honoured.

    Values above ``2**bits - 1`` contradict the declaration: such a file is full-range already
    (a PNG whose sBIT follows the PNG spec stores its samples scaled up), so it is left as it is
    and the declaration dropped (None).
    """
    if bits is None or arr.dtype != np.uint16:
        return arr, None
    top = (1 << bits) - 1
    if arr.size and int(arr.max()) > top:
        return arr, None
    return np.rint(arr.astype(np.float32) * np.float32(65535.0 / top)).astype(np.uint16), bits


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The stored ``H x W [x C]`` pixels as displayed under a TIFF/EXIF orientation (1-8; others: as stored)."""
    transform = _ORIENTATIONS.get(orientation)
    return arr if transform is None else np.ascontiguousarray(transform(arr))


def _read_pillow(path: Path, limits: ReadLimits | None) -> tuple[np.ndarray, int | None]:
    """Pillow's pixels as displayed (EXIF orientation applied) and the PNG's declared depth."""
    try:
        with _our_limit_not_pillows():
            img = Image.open(path)
        with img:
            width, height = img.size
            check_size(path, height, width, 1, limits)
            is_png = img.format == "PNG"
            img = ImageOps.exif_transpose(img)  # honour JPEG/PNG EXIF orientation
            img.load()
            arr = _pil_to_array(img)
            return arr, _png_sbit(path) if is_png and arr.dtype == np.uint16 else None
    except ReadError:
        raise
    except Image.DecompressionBombError as e:  # a later GIF frame larger than the first
        raise ReadError(path, f"refused as a decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ReadError(path, f"not a readable image ({e})") from e


_TIFF_UNSUPPORTED = {5: "SEPARATED (CMYK)", 8: "CIELAB", 9: "ICCLAB", 10: "ITULAB"}


def _tiff_as_displayed(path: Path, page, arr: np.ndarray, declared: int | None = None) -> np.ndarray:
    """Apply what tifffile leaves to the caller: MinIsWhite grey inverted, a palette applied;
    CMYK and Lab refused (tifffile returns their raw samples, which read as RGB would be a wrong
    picture: a negative, palette indices as grey, C/M/Y as R/G/B).

    MinIsWhite is inverted against the declared depth (``declared`` bits: MaxSampleValue 4095 in
    16-bit samples inverts to 0-4095, not to 61440-65535), else BitsPerSample.

    Raises:
        ReadError: for a photometric interpretation segapp does not convert.
    """
    photometric = int(page.photometric)
    if photometric in _TIFF_UNSUPPORTED:
        raise ReadError(
            path,
            f"TIFF colour model {_TIFF_UNSUPPORTED[photometric]} is not supported: expected grey, RGB or palette; "
            "fix: save the image as RGB",
        )
    if photometric == 0:  # MINISWHITE: 0 is white
        if arr.dtype == bool:
            return ~arr
        if np.issubdtype(arr.dtype, np.integer):
            bits = min(declared or int(page.bitspersample), np.iinfo(arr.dtype).bits)
            return np.clip((1 << bits) - 1 - arr.astype(np.int64), 0, None).astype(arr.dtype)
        return np.nanmax(arr) - arr
    if photometric == 3 and page.colormap is not None and arr.ndim == 2:  # PALETTE
        cmap = np.asarray(page.colormap)
        rgb = cmap[:, arr.astype(np.int64)].transpose(1, 2, 0)
        return (rgb // 257).astype(np.uint8) if cmap.max() > 255 else rgb.astype(np.uint8)
    return arr


def _read_tiff(path: Path, limits: ReadLimits | None, samples: bool = False) -> tuple[np.ndarray, int | None]:
    """tifffile's first page as displayed (Orientation tag applied; ``samples``: the stored sample
    values, no colour-model conversion) and its declared depth."""
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
            bits = _tiff_declared_bits(int(page.bitspersample), _tiff_max_sample(page))
            arr = arr if samples else _tiff_as_displayed(path, page, arr, bits)
    except ReadError:
        raise
    except Exception as e:  # tifffile raises many types for broken files
        raise ReadError(path, f"not a readable TIFF ({type(e).__name__}: {e})") from e
    if arr.ndim == 3 and planar:
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    return _orient(arr, orientation), bits


def read_raster(path: Path, limits: ReadLimits | None = None, samples: bool = False) -> Scan:
    """Decode a 2D image file: tifffile for ``.tif``/``.tiff``, Pillow for everything else.

    ``samples``: a TIFF's stored sample values, without the colour-model conversion (for masks:
    an ImageJ mask saved with an inverting LUT is MinIsWhite with 255 = object, and a label map
    with a colour LUT is a palette TIFF of label values).

    Returns:
        A one-frame :class:`Scan` of kind ``image``: the pixels as displayed (orientation
        applied), ``H x W x C`` in their native dtype, a declared 9-15-bit depth scaled to the full
        16-bit range; ``meta`` holds ``n_frames`` (1) and ``declared_bits`` (9-15, or None).

    Raises:
        ReadError: undecodable, degenerate, or over the size limits (checked from the header).
    """
    arr, bits = (
        _read_tiff(path, limits, samples) if path.suffix.lower() in TIFF_EXTENSIONS else _read_pillow(path, limits)
    )
    arr, bits = _scale_declared(arr, bits)
    frame = arr[:, :, None] if arr.ndim == 2 else arr
    return Scan(path, "image", check_frames(path, [frame]), {"n_frames": 1, "declared_bits": bits})
