"""The mask value rule: decided once per dataset, the same in training, check and evaluation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segapp.data.check import check_dataset, format_report
from segapp.data.layouts import discover
from segapp.io import MaskRule, MaskStats, decide_rule, read_masks, scan_masks
from segapp.io.masks import value_stats
from tests.conftest import REPO
from tests.data.conftest import disk, rgb, save

KVASIR = REPO.parent / "shared" / "data" / "kvasir-seg"


def _stats(*value_sets: tuple[int, ...], lossy: bool = False) -> MaskStats:
    total = MaskStats()
    for vals in value_sets:
        total.add(value_stats(np.array(vals, np.float32), lossy))
    return total


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (((0, 1),), "binary"),
        (((0, 1), (0, 255)), "binary"),  # 0/1 masks mixed with 0/255 ones: foreground = non-zero
        (((0, 1, 2),), "labels"),
        (((0, 1), (0, 1, 2)), "labels"),
        (((0, 255),), "grey"),
        (((0, 3, 128, 250, 255),), "grey"),
        (((0, 40),), "grey"),  # above MAX_LABEL: a grey level, not a label
    ],
)
def test_rule_is_decided_from_the_values_of_all_masks(values, kind):
    assert decide_rule(_stats(*values)).kind == kind


def test_jpeg_masks_are_always_grey_and_labels_can_be_chosen():
    assert decide_rule(_stats((0, 1), lossy=True)).kind == "grey"  # JPEG noise is never foreground
    rule = decide_rule(_stats((0, 1, 2)), foreground_labels=[2])
    assert rule == MaskRule("labels", 127.0, (2,))
    assert rule.foreground(np.array([0.0, 1.0, 2.0])).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="data.foreground_labels"):
        decide_rule(MaskStats(), foreground_labels=[0])


def _label_maps(root: Path, n: int = 6, mix: bool = False) -> Path:
    """``images/`` + ``masks/`` with {0,1,2} label maps (two lesions); with ``mix`` every other mask is 0/1."""
    for i in range(n):
        m = disk(32, 5, cx=9).astype(np.uint8) + 2 * disk(32, 5, cx=22).astype(np.uint8)
        if mix and i % 2:
            m = (m > 0).astype(np.uint8)
        save(root / "images" / f"c{i}.png", rgb(i))
        save(root / "masks" / f"c{i}.png", m)
    return root


def _expected() -> np.ndarray:
    return disk(32, 5, cx=9) | disk(32, 5, cx=22)


def test_label_maps_check_and_train_with_their_lesions(tmp_path):
    from segapp.data import LesionDataModule

    root = _label_maps(tmp_path / "labels")
    rep = check_dataset(discover(root))
    assert rep.ok and rep.empty_masks == 0, rep.errors
    assert rep.mask_rule["kind"] == "labels" and rep.mask_rule["values"] == "{0, 1, 2}"
    assert "mask rule    label map, foreground = any non-zero label" in format_report(rep)
    for check in (True, False):  # from the check report, or from its own scan of the masks
        dm = LesionDataModule(root=str(root), image_size=32, normalize="none", check=check, val_fraction=0.5)
        dm.setup()
        ds = dm.dataset("train", train=False)
        for i in range(len(ds)):
            assert np.array_equal(ds.load(i)[1].astype(bool), _expected())
        assert dm.state_dict()["mask_rule"]["kind"] == "labels"
    dm = LesionDataModule(root=str(root), image_size=32, normalize="none", foreground_labels=[2])
    dm.setup()
    assert np.array_equal(dm.dataset("train", train=False).load(0)[1].astype(bool), disk(32, 5, cx=22))


def test_mixed_binary_and_label_masks_get_the_same_foreground(tmp_path):
    root = _label_maps(tmp_path / "mixed", mix=True)
    disc = discover(root)
    rep = check_dataset(disc)
    assert rep.ok and rep.empty_masks == 0 and not rep.mask_misfits and not rep.warnings
    for pair in disc.pairs:
        assert np.array_equal(read_masks(pair.masks, rep.rule()), _expected()), pair.key


def test_grey_mask_with_noise_stays_thresholded_at_127(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 30, (32, 32)).astype(np.uint8)  # noisy background, like a decoded JPEG
    grey[disk(32, 8)] = rng.integers(200, 256, int(disk(32, 8).sum())).astype(np.uint8)
    grey[0, :4] = (100, 127, 128, 160)  # mid-grey edge pixels
    p = save(tmp_path / "m.png", grey)
    save(tmp_path / "e.jpg", np.zeros((32, 32), np.uint8) + rng.integers(0, 2, (32, 32)).astype(np.uint8), quality=50)
    rule = decide_rule(scan_masks([p, tmp_path / "e.jpg"]))
    assert rule.kind == "grey" and rule.threshold == 127
    assert np.array_equal(read_masks([p], rule), grey > 127)
    assert not read_masks([tmp_path / "e.jpg"], rule).any()


def test_misfit_masks_are_listed_and_strict_fails(tmp_path):
    root = tmp_path / "misfit"
    for i in range(4):
        save(root / "images" / f"c{i}.png", rgb(i))
        save(root / "masks" / f"c{i}.png", (disk(32, 6) * (1 if i == 3 else 255)).astype(np.uint8))
    grey = (disk(32, 6) * 180).astype(np.uint8)
    save(root / "masks" / "c0.png", grey)  # a grey level: the dataset is grey, c3's 0/1 mask is a misfit
    cmd = [sys.executable, "-m", "segapp.cli.data", "check", str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "masks that do not fit the rule (1):" in out.stdout and "c3.png" in out.stdout
    assert "warning: 1 mask(s) do not fit the dataset's mask rule" in out.stdout
    assert subprocess.run([*cmd, "--strict"], capture_output=True, text=True, cwd=REPO).returncode == 1


def _old_mask_values(arr: np.ndarray, lossy: bool) -> np.ndarray:
    """Reference: the per-image mask scaling segapp used before the dataset rule (its value
    extraction is unchanged in ``mask_values``; the per-image step was: a maximum of 1 in a
    non-JPEG file is multiplied by 255)."""
    from segapp.io.images import mask_values

    values = mask_values(arr)
    top = float(values.max()) if values.size else 0.0
    return values * 255.0 if top <= 1 and not lossy else values


@pytest.mark.skipif(not KVASIR.is_dir(), reason="Kvasir-SEG not present in ../shared/data")
def test_kvasir_masks_are_bit_identical_to_the_old_reader():
    from segapp.io import read_image

    masks = sorted((KVASIR / "masks").iterdir())[:30]
    rule = decide_rule(scan_masks(masks))
    assert rule.kind == "grey" and rule.threshold == 127
    for m in masks:
        old = _old_mask_values(read_image(m), lossy=m.suffix.lower() in (".jpg", ".jpeg")) > 127
        assert np.array_equal(read_masks([m], rule), old), m.name


def _stats_of(*arrays: np.ndarray, lossy: bool = False) -> MaskStats:
    total = MaskStats()
    for a in arrays:
        total.add(value_stats(a.astype(np.float32), lossy))
    return total


def test_masks_all_empty_under_the_rule_are_refused_also_without_the_check(tmp_path):
    """Lossless {0, 100} masks are grey (threshold 127): with data.check off they trained as empty."""
    from PIL import Image

    from segapp.data.errors import DataError
    from segapp.data.maskrule import dataset_mask_rule

    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:5] = 100
    files = []
    for k in range(3):
        Image.fromarray(m).save(tmp_path / f"m{k}.png")
        files.append([tmp_path / f"m{k}.png"])
    with pytest.raises(DataError, match=r"every mask reads as empty under the dataset's rule \(grey"):
        dataset_mask_rule(files, 127, use_cache=False)
    assert dataset_mask_rule(files, 50, use_cache=False)[0].kind == "grey"


def test_foreground_labels_absent_from_the_masks_or_on_jpeg_masks_are_refused():
    m = np.zeros((8, 8))
    m[1, 1], m[2, 2] = 1, 2
    assert decide_rule(_stats_of(m), foreground_labels=[2]).labels == (2,)
    with pytest.raises(ValueError, match=r"foreground_labels \[7\]: none of these labels occurs"):
        decide_rule(_stats_of(m), foreground_labels=[7])
    with pytest.raises(ValueError, match="expected lossless label-map masks, got JPEG"):
        decide_rule(_stats_of(m, lossy=True), foreground_labels=[1])


def test_a_mask_rule_of_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="mask rule kind: expected one of"):
        MaskRule.from_dict({"kind": "grey ", "threshold": 127})


def test_a_lesion_value_at_or_below_the_grey_threshold_is_a_misfit():
    """{0, 100} (or VOC red read as grey: 38) beside {0, 255} masks: the rule is grey at 127, and the
    lesion read as empty with no word (only 0/1 and label values were flagged)."""
    from segapp.io.masks import misfit_reason

    rule = decide_rule(_stats((0, 255), (0, 100)))
    assert rule.kind == "grey"
    assert "at or below the dataset's grey threshold 127" in misfit_reason(value_stats(np.array([0, 100.0])), rule)
    assert "look like a 0/1 or label mask" in misfit_reason(value_stats(np.array([0, 1.0])), rule)
    assert misfit_reason(value_stats(np.array([0, 255.0])), rule) is None
    assert misfit_reason(value_stats(np.array([0, 0.0])), rule) is None  # an empty mask is not a misfit
    assert misfit_reason(value_stats(np.array([0, 30.0]), lossy=True), rule) is None  # JPEG noise of an empty mask


def test_check_warns_about_masks_read_as_lesion_in_every_pixel(tmp_path):
    """A colour mask on a blue background: the brightest channel made every pixel a lesion."""
    root = tmp_path / "ds"
    for i in range(3):
        save(root / "images" / f"c{i}.png", rgb(i))
        save(root / "masks" / f"c{i}.png", (disk(32, 6) * 255).astype(np.uint8))
    blue = np.zeros((32, 32, 3), np.uint8)
    blue[..., 2] = 255
    blue[disk(32, 6)] = (255, 0, 0)
    save(root / "masks" / "c0.png", blue)
    rep = check_dataset(discover(root))
    assert rep.full_masks == ["c0"]
    assert any("1 mask(s) are lesion in every pixel, e.g. c0" in w for w in rep.warnings)


def test_a_mask_drawn_in_alpha_on_a_white_layer_reads_as_its_alpha():
    """White colour everywhere, the lesion in alpha: the colour maximum made the whole frame a lesion."""
    from segapp.io.images import mask_values

    m = disk(32, 6)
    rgba = np.dstack([np.full((32, 32, 3), 255, np.uint8), (m * 255).astype(np.uint8)])
    assert np.array_equal(mask_values(rgba) > 127, m)
    opaque = np.dstack([(np.dstack([m] * 3) * 255).astype(np.uint8), np.full((32, 32), 255, np.uint8)])
    assert np.array_equal(mask_values(opaque) > 127, m)  # colour carries the mask: alpha ignored
    black = np.dstack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32), 255, np.uint8)])
    assert not (mask_values(black) > 127).any()  # an opaque empty mask: its alpha made it all lesion
    clear = np.dstack([np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32), np.uint8)])
    assert not (mask_values(clear) > 127).any()  # a fully transparent white layer: nothing drawn


def test_all_zero_masks_are_refused_with_the_check_off(tmp_path):
    """data.check: false skipped the check's 'all masks are empty' error: it trained on no lesion."""
    from segapp.data.datamodule import LesionDataModule
    from segapp.data.errors import DataError

    root = tmp_path / "ds"
    for i in range(4):
        save(root / "images" / f"c{i}.png", rgb(i))
        save(root / "masks" / f"c{i}.png", np.zeros((32, 32), np.uint8))
    m = LesionDataModule(root=str(root), image_size=32, num_workers=0, normalize="none", check=False)
    with pytest.raises(DataError, match=r"every one of the 4 masks of .* is all zero"):
        m.setup()
