"""The raster readers give the image as displayed and on one scale: TIFF orientation, declared depths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segapp.io import read_scan, to_float01
from segapp.io.formats.raster import _tiff_declared_bits
from segapp.io.masks import mask_pixels
from tests.inference.formats import write_png16

T = Image.Transpose
# the stored pixels whose display under orientation o is the original image (the inverse of o)
STORED_FOR = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}


def _stored(img: Image.Image, orientation: int) -> Image.Image:
    method = STORED_FOR[orientation]
    return img if method is None else img.transpose(method)


def _frame(path: Path) -> np.ndarray:
    return read_scan(path).frames[0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_tiff_orientation_reads_as_the_png_of_the_displayed_image(tmp_path, orientation):
    displayed = np.random.default_rng(orientation).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    Image.fromarray(displayed).save(tmp_path / "plain.png")
    stored = _stored(Image.fromarray(displayed), orientation)
    tifffile.imwrite(tmp_path / "o.tif", np.asarray(stored), extratags=[(274, "H", 1, orientation, True)])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "exif.png", exif=exif.tobytes())  # Pillow's exif_transpose path, same stored pixels
    png = _frame(tmp_path / "plain.png")
    assert png.shape == (72, 96, 3)
    assert np.array_equal(_frame(tmp_path / "o.tif"), png)
    assert np.array_equal(_frame(tmp_path / "exif.png"), png)


@pytest.mark.parametrize("orientation", [6, 7])
def test_a_tiff_mask_is_oriented_like_its_image(tmp_path, orientation):
    mask = np.zeros((72, 96), np.uint8)
    mask[10:30, 5:60] = 255  # off-centre, so any wrong turn or flip shows
    stored = np.asarray(_stored(Image.fromarray(mask), orientation))
    assert stored.shape == (96, 72)
    tifffile.imwrite(tmp_path / "m.tif", stored, extratags=[(274, "H", 1, orientation, True)])
    assert np.array_equal(mask_pixels(tmp_path / "m.tif"), mask.astype(np.float32))


def _eight_and_twelve_bit(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A grey 8-bit image and the same image as 12-bit values."""
    v8 = np.random.default_rng(seed).integers(0, 256, (40, 52), dtype=np.uint8)
    return v8, np.rint(v8.astype(np.float64) * 4095 / 255).astype(np.uint16)


@pytest.mark.parametrize("declaration", ["MaxSampleValue", "SMaxSampleValue", "sBIT"])
def test_a_declared_12_bit_file_reads_as_its_8_bit_version(tmp_path, declaration):
    v8, v12 = _eight_and_twelve_bit()
    Image.fromarray(v8).save(tmp_path / "v8.png")
    if declaration == "sBIT":
        path = write_png16(tmp_path / "v12.png", v12, sbit=12)
    else:
        path = tmp_path / "v12.tif"
        tifffile.imwrite(path, v12, extratags=[(281 if declaration == "MaxSampleValue" else 341, "H", 1, 4095, True)])
    scan = read_scan(path)
    assert scan.meta["declared_bits"] == 12 and scan.frames[0].dtype == np.uint16
    eight = to_float01(_frame(tmp_path / "v8.png"))
    assert np.abs(to_float01(scan.frames[0]) - eight).max() <= 0.6 / 4095  # the 12-bit rounding, no more


def test_without_a_declaration_or_against_the_data_nothing_is_scaled(tmp_path):
    _, v12 = _eight_and_twelve_bit()
    write_png16(tmp_path / "plain.png", v12)
    tifffile.imwrite(tmp_path / "plain.tif", v12)
    full = (v12.astype(np.uint32) * 16).astype(np.uint16)  # a PNG as the spec stores sBIT 12: scaled up
    write_png16(tmp_path / "spec.png", full, sbit=12)
    dark = np.minimum(v12, 3000)  # MaxSampleValue = the image's own maximum, as some writers store it
    tifffile.imwrite(tmp_path / "own_max.tif", dark, extratags=[(281, "H", 1, 3000, True)])
    for name, pixels in (("plain.png", v12), ("plain.tif", v12), ("spec.png", full), ("own_max.tif", dark)):
        scan = read_scan(tmp_path / name)
        assert scan.meta["declared_bits"] is None, name
        assert np.array_equal(scan.frames[0][..., 0], pixels), name


def test_which_tiff_tags_declare_a_depth():
    assert _tiff_declared_bits(12, None) == 12 and _tiff_declared_bits(10, None) == 10
    assert _tiff_declared_bits(16, 4095) == 12 and _tiff_declared_bits(16, 16383) == 14
    assert _tiff_declared_bits(16, 4000) is None  # an image's own maximum, not a depth
    assert _tiff_declared_bits(16, 65535) is None and _tiff_declared_bits(16, None) is None
    assert _tiff_declared_bits(8, 255) is None and _tiff_declared_bits(16, 0) is None
