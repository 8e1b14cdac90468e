"""Reader robustness: 1-bit, palette, RGBA, 16-bit, 0/1 and JPEG masks; channel policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segapp.io import read_image, read_mask, resize_image
from tests.data.conftest import disk, rgb, save, save_palette_mask


@pytest.mark.parametrize("name", ["rgb", "pal", "rgba", "gray16", "jpg", "dup"])
def test_mask_kinds_binarise_to_the_disk(messy_root, name):
    mask_file = next((messy_root / "masks").glob(f"{name}.*"))
    got = read_mask(mask_file)
    expected = disk(32, 8)
    assert got.dtype == bool and got.shape == (32, 32)
    assert (got != expected).mean() < 0.02  # JPEG edges may flip a few pixels


def test_threshold_is_on_0_255_scale(tmp_path):
    ramp = np.tile(np.arange(0, 256, 1, dtype=np.uint8)[None, :], (4, 1))
    p = save(tmp_path / "ramp.png", ramp)
    assert read_mask(p).sum() == 4 * 128  # values 128..255
    assert read_mask(p, threshold=200).sum() == 4 * 55  # values 201..255


def test_sixteen_bit_mask_is_rescaled(tmp_path):
    m = disk(16, 4).astype(np.uint16) * 65535
    p = tmp_path / "m16.png"
    Image.fromarray(m).save(p)
    assert np.array_equal(read_mask(p), disk(16, 4))


def test_empty_jpeg_mask_with_noise_stays_empty(tmp_path):
    noise = (np.random.default_rng(0).random((32, 32)) < 0.1).astype(np.uint8)  # 0/1 values
    p = save(tmp_path / "empty.jpg", noise, quality=95)
    assert not read_mask(p).any()
    q = save(tmp_path / "label.png", noise)  # the same 0/1 values, lossless: a real label map
    assert read_mask(q).sum() == noise.sum()


def test_palette_mask_with_dark_colour_uses_colour_max(tmp_path):
    p = save_palette_mask(tmp_path / "voc.png", disk(32, 6))
    assert np.array_equal(read_mask(p), disk(32, 6))


def test_sixteen_bit_gray_image_keeps_depth_and_channel_policy(messy_root):
    img = read_image(messy_root / "images" / "gray16.png")
    assert img.dtype == np.uint16 and img.shape == (32, 32, 1)
    three = resize_image(img, (16, 16), 3)
    assert three.shape == (16, 16, 3) and np.allclose(three[..., 0], three[..., 2])
    assert three.min() >= 0.0 and three.max() <= 1.0 and three.max() > 0.5  # scaled by 65535, not 255


def test_rgba_and_rgb_to_one_channel(messy_root, tmp_path):
    img = read_image(messy_root / "images" / "rgba.png")
    assert img.shape == (32, 32, 4)
    gray = resize_image(img, (32, 32), 1)
    assert gray.shape == (32, 32, 1)
    expected = (rgb(3).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8) / 255.0
    assert np.allclose(gray[..., 0], expected, atol=1 / 255 + 1e-6)


def test_one_bit_image_reads_as_0_255(tmp_path):
    p = save(tmp_path / "bits.png", disk(16, 5).astype(np.uint8) * 255, mode="1")
    arr = read_image(p)
    assert arr.dtype == np.uint8 and set(np.unique(arr)) == {0, 255}


def test_read_mask_of_a_label_map_keeps_its_lesions(tmp_path):
    """One mask on its own gets the dataset rule of a dataset of one: labels {0,1,2} are lesions
    (the old per-image scaling read any mask whose maximum was 2..127 as empty)."""
    labels = np.zeros((16, 16), np.uint8)
    labels[2:6, 2:6], labels[8:12, 8:12] = 1, 2
    p = tmp_path / "labels.png"
    Image.fromarray(labels).save(p)
    assert np.array_equal(read_mask(p), labels > 0)
