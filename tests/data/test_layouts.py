"""Pairing in every layout: counts, keys, unpaired files, splits from folders, errors."""

from __future__ import annotations

import numpy as np
import pytest

from segapp.cli.data import main as data_main
from segapp.data.errors import DataError, DuplicateFilesError
from segapp.data.layouts import LAYOUTS, detect_layout, discover, find_paired
from tests.data.conftest import make_paired, rgb, save


def test_paired_counts_and_unpaired(messy_root):
    d = discover(messy_root)
    assert d.layout == "paired"
    assert [p.key for p in d.pairs] == ["broken", "dup", "gray16", "jpg", "pal", "rgb", "rgba"]
    assert [p.name for p in d.images_without_mask] == ["lonely.png"]
    assert [p.name for p in d.masks_without_image] == ["orphan.png"]
    jpg = next(p for p in d.pairs if p.key == "jpg")
    assert jpg.image.suffix == ".png" and jpg.masks[0].suffix == ".jpg"  # extensions may differ


def test_find_paired_is_discover_paired(paired_root):
    assert find_paired(paired_root).pairs == discover(paired_root, "paired").pairs


def test_paired_split_folders(tmp_path):
    make_paired(tmp_path / "ds" / "train", n=4)
    make_paired(tmp_path / "ds" / "validation", n=2)
    d = discover(tmp_path / "ds")
    assert d.layout == "paired"
    assert sorted({p.split for p in d.pairs}) == ["train", "val"]
    assert sum(p.split == "val" for p in d.pairs) == 2
    assert len({p.key for p in d.pairs}) == 6  # keys stay unique across split folders


def test_isic2018(isic_root):
    d = discover(isic_root)
    assert d.layout == "isic2018"
    assert len(d.pairs) == 10
    assert {p.split: sum(q.split == p.split for q in d.pairs) for p in d.pairs} == {"train": 6, "val": 2, "test": 2}
    first = d.pairs[0]
    assert first.key == "ISIC_0000000" and first.masks[0].name == "ISIC_0000000_segmentation.png"


def test_suffix_busi_multi_mask(busi_root):
    d = discover(busi_root)
    assert d.layout == "suffix"
    assert len(d.pairs) == 6
    b1 = next(p for p in d.pairs if p.key == "benign/benign (1)")
    assert [m.name for m in b1.masks] == ["benign (1)_mask.png", "benign (1)_mask_1.png"]
    assert [p.name for p in d.images_without_mask] == ["normal (1).png"]


def test_suffix_masks_apart(tmp_path):
    root = tmp_path / "apart"
    for i in range(3):
        save(root / "img" / f"case{i}.png", rgb(i))
        save(root / "gt" / f"case{i}_label.png", rgb(i)[..., 0])
    d = discover(root, "suffix", mask_suffix="_label", mask_dir="gt")
    assert [p.key for p in d.pairs] == ["case0", "case1", "case2"]
    assert all(p.masks[0].parent.name == "gt" for p in d.pairs)


def test_csv_manifest(csv_root):
    d = discover(csv_root)
    assert d.layout == "csv"
    assert len(d.pairs) == 12
    assert [p.name for p in d.missing] == ["ghost.png", "ghost_seg.png"]
    p = next(p for p in d.pairs if p.key == "files/p1_5")
    assert (p.split, p.fold, p.group) == ("train", 2, "patient2")
    assert p.image == csv_root / "files" / "p1_5.png"  # relative to the CSV's folder
    assert discover(csv_root / "manifest.csv").pairs == d.pairs  # the CSV itself as root


def test_csv_multi_mask_rows_are_merged(tmp_path):
    root = tmp_path / "m"
    save(root / "a.png", rgb(0))
    save(root / "a1.png", rgb(1)[..., 0])
    save(root / "a2.png", rgb(2)[..., 0])
    (root / "list.csv").write_text("image,mask\na.png,a1.png\na.png,a2.png\n")
    d = discover(root)
    assert [m.name for m in d.pairs[0].masks] == ["a1.png", "a2.png"]


def test_csv_bad_split_value_names_row(tmp_path):
    root = tmp_path / "bad"
    save(root / "a.png", rgb(0))
    (root / "list.csv").write_text("image,mask,split\na.png,a.png,holdout\n")
    with pytest.raises(DataError, match=r"list\.csv:2: unknown split 'holdout'; expected one of train, val, test"):
        discover(root)


def test_auto_detection_order(paired_root, isic_root, busi_root, csv_root):
    assert [detect_layout(r) for r in (paired_root, isic_root, busi_root, csv_root)] == [
        "paired",
        "isic2018",
        "suffix",
        "csv",
    ]


def test_unknown_folder_lists_layouts(tmp_path):
    (tmp_path / "x").mkdir()
    save(tmp_path / "x" / "a.png", rgb(0))
    with pytest.raises(DataError, match="cannot tell the layout") as e:
        discover(tmp_path / "x")
    assert all(name in str(e.value) for name in LAYOUTS)


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(DataError, match=r"nope does not exist.*set data.root"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown data.layout 'voc'; expected one of: auto, csv"):
        discover(tmp_path, "voc")  # type: ignore[arg-type]


def test_paired_without_pairs_says_what_it_found(tmp_path):
    root = tmp_path / "p"
    save(root / "images" / "a.png", rgb(0))
    save(root / "masks" / "b.png", rgb(1))
    with pytest.raises(
        DataError, match=r"no image/mask pairs .* found 1 images and 1 masks; expected the same file stem"
    ):
        discover(root, "paired")


@pytest.mark.parametrize("mask_name", ["{}_mask.png", "{}_segmentation.png", "{}_mask_1.png"])
def test_paired_folders_whose_masks_carry_a_suffix(tmp_path, mask_name):
    """BUSI / ISIC re-packagings: images/<name>.png + masks/<name>_mask.png are detected and paired."""
    root = tmp_path / "sfx"
    for i in range(3):
        save(root / "images" / f"case {i}.png", rgb(i))
        save(root / "masks" / mask_name.format(f"case {i}"), rgb(i)[..., 0])
    d = discover(root)
    assert d.layout == "paired"
    assert [p.key for p in d.pairs] == ["case 0", "case 1", "case 2"] and not d.masks_without_image


def test_paired_multi_masks_with_suffix_are_ored(tmp_path):
    root = tmp_path / "busi"
    save(root / "images" / "b1.png", rgb(0))
    save(root / "masks" / "b1_mask.png", rgb(1)[..., 0])
    save(root / "masks" / "b1_mask_1.png", rgb(2)[..., 0])
    (pair,) = discover(root).pairs
    assert [m.name for m in pair.masks] == ["b1_mask.png", "b1_mask_1.png"]


def test_no_pairs_error_names_the_layout_and_flags_that_pair(tmp_path):
    root = tmp_path / "gt"
    for i in range(3):
        save(root / "images" / f"c{i}.png", rgb(i))
        save(root / "masks" / f"c{i}_gt.png", rgb(i)[..., 0])
    with pytest.raises(DataError) as e:
        discover(root)
    msg = str(e.value)
    assert "no image/mask pairs" in msg and "closest layout: 'paired', which pairs 3 image(s)" in msg
    assert "--data.layout paired --data.mask_suffix _gt" in msg and "--layout paired --mask-suffix _gt" in msg
    assert len(discover(root, "paired", mask_suffix="_gt").pairs) == 3  # the flags named do pair them
    flat = tmp_path / "flat"
    for i in range(3):
        save(flat / "img" / f"c{i}.png", rgb(i))
        save(flat / "ann" / f"c{i}-label.png", rgb(i)[..., 0])
    with pytest.raises(
        DataError,
        match=r"'suffix', which pairs 3 image\(s\) with: --data.layout suffix --data.mask_suffix -label "
        r"--data.mask_dir ann",
    ):
        discover(flat)
    assert len(discover(flat, "suffix", mask_suffix="-label", mask_dir="ann").pairs) == 3


def test_files_with_one_stem_are_an_error_naming_both(tmp_path):
    """A stale empty ``masks/a.jpg`` beside ``masks/a.png`` was used ("first one wins", ``.jpg`` sorts first)."""
    root = make_paired(tmp_path / "p", n=2)
    save(root / "masks" / "img00.jpg", rgb(0)[..., 0] * 0)
    with pytest.raises(DuplicateFilesError) as e:
        discover(root)
    msg = str(e.value)
    assert "1 pair(s) of files with the same name but another extension: img00.jpg and img00.png" in msg
    assert "expected one file per name" in msg and "fix: remove or rename one" in msg
    assert "closest layout" not in msg  # no other layout fixes a clash
    (root / "masks" / "img00.jpg").unlink()
    for i in range(5):  # images this time, many: a count and the first three
        save(root / "images" / f"x{i}.png", rgb(i))
        save(root / "images" / f"x{i}.bmp", rgb(i))
    with pytest.raises(DuplicateFilesError, match=r"images: 5 pair\(s\) .*: x0.bmp and x0.png; x1.bmp .*; and 2 more;"):
        discover(root, "paired")


def test_isic_files_with_one_stem_are_an_error(isic_root):
    truth = isic_root / "ISIC2018_Task1_Training_GroundTruth"
    save(truth / "ISIC_0000001_segmentation.jpg", rgb(0)[..., 0])
    with pytest.raises(DuplicateFilesError, match="ISIC_0000001_segmentation.jpg and ISIC_0000001_segmentation.png"):
        discover(isic_root)


def test_suffix_mask_dir_images_with_one_name_in_two_folders_are_an_error(tmp_path, capsys):
    """siteA/case_i.png and siteB/case_i.png with masks/case_i_mask.png: siteB vanished, siteA got its mask."""
    root = tmp_path / "md"
    for i in range(8):
        save(root / "siteA" / f"case_{i}.png", rgb(i))
        save(root / "siteB" / f"case_{i}.png", rgb(10 + i))
        save(root / "masks" / f"case_{i}_mask.png", rgb(i)[..., 0])
    with pytest.raises(DuplicateFilesError) as e:
        discover(root, "suffix", mask_dir="masks")
    msg = str(e.value)
    assert "8 pair(s) of images with one pairing key (file name): siteA/case_0.png and siteB/case_0.png;" in msg
    assert "; and 5 more; expected one file per name" in msg
    assert "fix: data.mask_dir matches masks by file name alone" in msg and "data.layout csv" in msg
    with pytest.raises(SystemExit) as e:
        data_main(["check", str(root), "--layout", "suffix", "--mask-dir", "masks"])
    assert e.value.code == 2 and "siteB/case_0.png" in capsys.readouterr().err
    assert len(discover(root / "siteA", "suffix", mask_dir="../masks").pairs) == 8  # one site: paired


def test_suffix_masks_with_one_name_are_an_error(busi_root, tmp_path):
    """``x_mask.jpg`` beside ``x_mask.png`` (or one name in two mask_dir folders) was OR-ed into the truth."""
    save(busi_root / "benign" / "benign (2)_mask.jpg", rgb(0)[..., 0])
    with pytest.raises(DuplicateFilesError, match=r"benign/benign \(2\)_mask.jpg and benign/benign \(2\)_mask.png"):
        discover(busi_root)
    root = tmp_path / "apart"
    save(root / "img" / "c0.png", rgb(0))
    save(root / "gt" / "a" / "c0_label.png", rgb(1)[..., 0])
    save(root / "gt" / "b" / "c0_label.png", rgb(2)[..., 0])
    with pytest.raises(DuplicateFilesError, match=r"masks with one name .*: a/c0_label.png and b/c0_label.png"):
        discover(root, "suffix", mask_suffix="_label", mask_dir="gt")


def test_csv_rows_naming_one_image_with_two_spellings_are_one_pair(tmp_path):
    """``images/a.png`` and ``./images/a.png`` were two pairs with one key, each with one of the masks."""
    root = tmp_path / "m"
    save(root / "images" / "a.png", rgb(0))
    save(root / "masks" / "a1.png", rgb(1)[..., 0])
    save(root / "masks" / "a2.png", rgb(2)[..., 0])
    rows = [
        "image,mask,group",
        "images/a.png,masks/a1.png,p1",
        "./images/a.png,./masks/a2.png;masks/a1.png,",
        "images/../images/a.png,masks/a2.png,p1",
    ]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    (pair,) = discover(root).pairs
    assert pair.key == "images/a" and pair.group == "p1"
    assert [m.name for m in pair.masks] == ["a1.png", "a2.png"]  # every mask once


def test_csv_rows_of_one_image_that_disagree_or_two_images_with_one_key_are_errors(tmp_path):
    root = tmp_path / "m"
    save(root / "a.png", rgb(0))
    save(root / "a.jpg", rgb(1))
    save(root / "m.png", rgb(1)[..., 0])
    (root / "list.csv").write_text("image,mask,split\na.png,m.png,\n./a.png,m.png,train\na.png,m.png,val\n")
    with pytest.raises(DataError, match=r"list\.csv:4: split 'val' for .*a\.png, but .*list\.csv:3 gave 'train'"):
        discover(root)
    (root / "list.csv").write_text("image,mask\na.png,m.png\na.jpg,m.png\n")
    with pytest.raises(DuplicateFilesError, match=r"1 pair\(s\) of images with one key .*: a.jpg and a.png"):
        discover(root)


def test_csv_name_under_auto_reads_that_manifest_only(tmp_path):
    """A folder with images/, masks/, train.csv and test.csv: detection found no single manifest,
    fell through to paired and trained on the test manifest's images; csv_name was dropped."""
    root = make_paired(tmp_path / "ds", n=6)
    rows = {"train": range(0, 4), "test": range(4, 6)}
    for name, idx in rows.items():
        lines = ["image,mask"] + [f"images/img{i:02d}.{'jpg' if i % 2 else 'png'},masks/img{i:02d}.png" for i in idx]
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    assert discover(root).layout == "paired"  # without csv_name: every image (what the user did not ask for)
    d = discover(root, "auto", csv_name="train.csv")
    assert d.layout == "csv" and [p.key for p in d.pairs] == [f"images/img{i:02d}" for i in range(4)]
    with pytest.raises(DataError, match=r"data.csv_name='train.csv' is read by the csv layout only.*data.layout csv"):
        discover(root, "paired", csv_name="train.csv")


def test_a_paired_mask_named_two_ways_is_refused_not_or_ed(tmp_path):
    """``masks/a.png`` (stale) beside ``masks/a_mask.png``: both were OR-ed into a's ground truth."""
    root = make_paired(tmp_path / "ds", n=3)
    save(root / "masks" / "img01_mask.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DuplicateFilesError, match=r"mask files named two ways for one image: img01.png and img01_mask"):
        discover(root)
    (root / "masks" / "img01.png").unlink()
    save(root / "masks" / "img01_mask_1.png", np.zeros((32, 32), np.uint8))  # numbered: several masks, OR-ed
    assert [len(p.masks) for p in discover(root).pairs] == [1, 2, 1]
