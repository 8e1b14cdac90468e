"""The raster readers give the image as displayed: the TIFF Orientation tag as Pillow applies EXIF's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segapp.io import read_scan
from segapp.io.masks import mask_pixels

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
