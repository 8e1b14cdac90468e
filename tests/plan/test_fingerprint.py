"""The fingerprint: the check's numbers on a hand-made folder whose lesion sizes are known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segapp.data.errors import DataError
from segapp.plan.fingerprint import fingerprint_folder
from tests.plan.conftest import lesion_folder

# 10 masks on 100x100 frames: 2 empty, the rest squares of known area
FRACTIONS = [0.0, 0.0, 0.0004, 0.01, 0.04, 0.09, 0.16, 0.25, 0.36, 0.49]


def test_fingerprint_values_on_a_hand_made_folder(tmp_path):
    grey = [True] * 9 + [False]
    root = lesion_folder(tmp_path / "d", FRACTIONS, grey=grey)
    fp, rep, disc = fingerprint_folder(str(root))
    lesions = np.array([f for f in FRACTIONS if f > 0])
    assert fp.pairs == 10 and len(disc.pairs) == 10 and rep.ok
    assert fp.empty_share == pytest.approx(0.2)
    assert fp.lesion_median == pytest.approx(np.median(lesions), abs=1e-5)
    assert fp.lesion_p10 == pytest.approx(np.percentile(lesions, 10), abs=1e-5)
    assert fp.small_share == pytest.approx(2 / 8)  # 0.04 % and 1 % are under 2 %
    assert fp.grey_share == pytest.approx(0.9) and fp.grey
    assert fp.short_side == 100 and fp.aspect == pytest.approx(1.0)


def test_aspect_and_colour_and_jpeg_masks(tmp_path):
    """Wide colour images with JPEG masks: noise below the threshold is no lesion."""
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(4):
        mask = np.zeros((60, 120), np.uint8)
        mask[:30, :60] = 255  # a quarter of the frame
        Image.fromarray(rng.integers(0, 256, (60, 120, 3), dtype=np.uint8)).save(tmp_path / f"d/images/w{i}.png")
        Image.fromarray(mask).save(tmp_path / f"d/masks/w{i}.jpg", quality=90)
    fp, _, _ = fingerprint_folder(str(tmp_path / "d"))
    assert fp.short_side == 60 and fp.aspect == pytest.approx(2.0)
    assert not fp.grey and fp.grey_share == 0.0
    assert fp.lesion_median == pytest.approx(0.25, abs=0.01) and fp.empty_share == 0.0


def test_a_folder_without_lesions_is_refused_with_the_fix(tmp_path):
    root = lesion_folder(tmp_path / "d", [0.0, 0.0, 0.0])
    with pytest.raises(DataError, match="fix:"):
        fingerprint_folder(str(root))


def test_check_report_prints_the_lesion_sizes(tmp_path):
    from segapp.data.check import format_report

    _, rep, _ = fingerprint_folder(str(lesion_folder(tmp_path / "d", FRACTIONS)))
    text = format_report(rep)
    assert "lesion size" in text and "10th percentile" in text and "aspect ratio median 1.0" in text
