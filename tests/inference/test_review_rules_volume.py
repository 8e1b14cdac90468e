"""The ``blank`` input check: a robust spread for non-8-bit frames, and a NIfTI volume blank only
when every slice is (reviewer findings 4 and 8)."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.inference.trust import input_checks
from tests.inference.formats import predict_rows, write_nifti


def test_one_dead_pixel_or_a_small_float_spread_is_not_blank():
    rng = np.random.default_rng(0)
    content = rng.normal(1000, 5, (64, 64, 1)).round().astype(np.uint16)
    content[3, 4, 0] = 65535  # one dead pixel at the maximum beside real content (std 5)
    assert input_checks(content, 1, False) == []
    subtle = rng.normal(0.5, 0.003, (64, 64, 1)).astype(np.float32)  # std 0.003 around 0.5
    assert input_checks(subtle, 1, False) == []


def test_one_value_with_one_dead_pixel_and_a_constant_float_frame_are_blank():
    flat = np.full((64, 64, 1), 1200, np.uint16)
    flat[10, 10, 0] = 65535  # the dead pixel does not make a frame of one value real content
    assert input_checks(flat, 1, False) == ["blank"]
    assert input_checks(np.full((64, 64, 3), 0.25, np.float32), 3, False) == ["blank"]
    assert input_checks(np.zeros((64, 64, 1), np.float32), 1, False) == ["blank"]
    nan = np.ones((64, 64, 1), np.float32)
    nan[0, 0, 0] = np.nan
    assert input_checks(nan, 1, False) == ["blank"]


@pytest.mark.slow
def test_a_volume_is_blank_only_when_every_slice_is(tiny_ckpt, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    vol = np.random.default_rng(1).normal(100, 30, (40, 36, 4)).astype(np.float32)
    vol[..., 0] = 0  # an all-zero edge slice, as in a padded or skull-stripped scan
    write_nifti(inp / "edge.nii.gz", vol)
    write_nifti(inp / "zero.nii.gz", np.zeros((40, 36, 4), np.float32))
    rows, _ = predict_rows(tiny_ckpt, inp, out)
    assert "blank" not in rows["edge.nii.gz"]["input_check"].split()
    assert rows["zero.nii.gz"]["input_check"].split() == ["blank"]
