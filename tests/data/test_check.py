"""Pre-flight check: counts, listed problems, errors vs warnings, JSON CLI, cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

import segapp.data.check as check_mod
from segapp.cli.data import main as data_main
from segapp.data.check import check_dataset, format_report
from segapp.data.errors import DataError
from segapp.data.layouts import discover
from tests.conftest import REPO
from tests.data.conftest import disk, make_paired, save
from tests.inference.formats import write_png16


def test_messy_dataset_report(messy_root):
    rep = check_dataset(discover(messy_root))
    assert rep.pairs == 7
    assert [u["path"].endswith("broken.png") for u in rep.unreadable] == [True]
    assert "not a readable image" in rep.unreadable[0]["reason"]
    assert rep.images_without_mask[0].endswith("lonely.png") and rep.masks_without_image[0].endswith("orphan.png")
    assert rep.duplicates == [["dup", "rgb"]]
    assert rep.image_types == {"uint8x3": 4, "uint8x4": 1, "uint16x1": 1}
    assert rep.sizes["most_common"] == {"32x32": 6}
    # palette (0/128), JPEG and 0/255 masks make the dataset grey; the lone 0/1 mask does not fit
    # that rule: it is read as empty, listed and warned about, never silently scaled per image
    assert rep.mask_rule["kind"] == "grey" and rep.empty_masks == 1
    assert [m["path"].endswith("gray16.png") for m in rep.mask_misfits] == [True]
    assert any("do not fit the dataset's mask rule" in w for w in rep.warnings)
    assert (
        rep.errors
        and rep.errors[0].startswith("1 unreadable file(s), e.g.")
        and "fix: replace or delete" in rep.errors[0]
    )
    text = "\n".join(rep.warnings)
    assert "without a mask" in text and "without an image" in text and "identical images" in text
    assert "FAILED" in format_report(rep)


def test_clean_dataset_is_ok_and_binary(paired_root):
    rep = check_dataset(discover(paired_root))
    assert rep.ok and rep.warnings == []
    assert rep.mask_values["0"] + rep.mask_values["255"] == pytest.approx(1.0)


def test_all_empty_masks_is_an_error(paired_root):
    rep = check_dataset(discover(paired_root), threshold=255)
    assert any("all 10 masks are empty under the mask rule grey 0-255, foreground above 255" in e for e in rep.errors)


def test_result_is_cached_by_files(paired_root, monkeypatch):
    disc = discover(paired_root)
    first = check_dataset(disc)
    monkeypatch.setattr(check_mod, "_inspect", lambda *a: pytest.fail("re-read a file although the check is cached"))
    assert check_dataset(disc) == first
    (paired_root / "masks" / "img00.png").write_bytes((paired_root / "masks" / "img01.png").read_bytes())
    with pytest.raises(pytest.fail.Exception):
        check_dataset(discover(paired_root))  # a changed file invalidates the cached result


def test_cli_json_has_integer_pairs(messy_root, capsys):
    with pytest.raises(SystemExit) as e:
        data_main(["check", str(messy_root), "--json"])
    assert e.value.code == 1  # errors: the unreadable file
    obj = json.loads(capsys.readouterr().out)
    assert obj["pairs"] == 7 and isinstance(obj["pairs"], int)


def test_cli_bad_folder_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        data_main(["check", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segapp-data: error:") and "nowhere does not exist" in err[0]


def test_cli_subprocess_readable_report(paired_root, isolated_cache):
    env = {"SEGAPP_CACHE_DIR": str(isolated_cache), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "segapp.cli.data", "check", str(paired_root)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert "pairs        10" in out.stdout and "result       OK" in out.stdout


def test_datamodule_stops_on_errors_and_on_warnings_when_strict(messy_root, paired_root, tmp_path):
    from segapp.data import LesionDataModule

    with pytest.raises(DataError, match=r"unreadable file.*broken\.png.*segapp-data check"):
        LesionDataModule(root=str(messy_root), image_size=32).setup()
    (paired_root / "images" / "extra.png").write_bytes((paired_root / "images" / "img00.png").read_bytes())
    LesionDataModule(root=str(paired_root), image_size=32, normalize="none").setup()  # warnings only
    with pytest.raises(DataError, match="data.strict is true"):
        LesionDataModule(root=str(paired_root), image_size=32, strict=True).setup()


def test_cached_report_names_paths_as_reached_this_time(paired_root, tmp_path, isolated_cache):
    """The same dataset reached through another relative path replays paths valid from the new cwd."""
    (paired_root / "images" / "img03.jpg").write_bytes(b"not a jpeg")
    a, b = paired_root.parent, tmp_path / "elsewhere"
    b.mkdir()
    run = lambda cwd, path: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "segapp.cli.data", "check", path, "--json"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    first = json.loads(run(a, "paired").stdout)
    assert first["unreadable"][0]["path"] == "paired/images/img03.jpg"
    second = json.loads(run(b, "../paired").stdout)
    assert len(list((isolated_cache / "checks").iterdir())) == 1  # one entry, replayed the second time
    assert second["root"] == "../paired"
    bad = second["unreadable"][0]
    assert bad["path"] == "../paired/images/img03.jpg" and (b / bad["path"]).is_file()
    assert "paired/images/img03.jpg" not in bad["reason"].replace("../paired/images/img03.jpg", "")
    assert "../paired/images/img03.jpg" in second["errors"][0]


def test_16_bit_images_below_4096_without_a_declared_depth_are_named(tmp_path):
    root = make_paired(tmp_path / "d", n=2)
    g = (np.random.default_rng(0).integers(0, 4081, (32, 32))).astype(np.uint16)
    for i in range(5):
        path = root / "images" / f"low{i}.{'tif' if i % 2 else 'png'}"
        tifffile.imwrite(path, g) if i % 2 else write_png16(path, g)
    tifffile.imwrite(root / "images" / "declared.tif", g, extratags=[(281, "H", 1, 4095, True)])
    write_png16(root / "images" / "full.png", g * 16)
    for stem in ("low0", "low1", "low2", "low3", "low4", "declared", "full"):
        save(root / "masks" / f"{stem}.png", (disk(32, 6) * 255).astype(np.uint8))
    rep = check_dataset(discover(root), use_cache=False)
    assert sorted(p.rsplit("/", 1)[1] for p in rep.low_range) == [
        "low0.png",
        "low1.tif",
        "low2.png",
        "low3.tif",
        "low4.png",
    ]
    warning = next(w for w in rep.warnings if "below 4096" in w)
    assert warning.startswith("5 image(s) are 16-bit with values below 4096 and no declared bit depth, e.g. ")
    assert "and 2 more" in warning and "fix: if they hold 12-bit data" in warning and "low0.png" in warning
    assert "declared.tif" not in warning and "full.png" not in warning
    assert "16-bit images with values below 4096 and no declared depth (5):" in format_report(rep)


def test_in_place_edit_that_keeps_size_and_mtime_is_not_served_from_the_cache(tmp_path):
    """``cp -p`` / ``rsync -t`` / unzip over a same-size BMP kept size and mtime: the stale check was reused."""
    root = tmp_path / "bmp"
    for i in range(3):
        save(root / "images" / f"c{i}.png", np.full((32, 32), 40 * i, np.uint8))
        save(root / "masks" / f"c{i}.bmp", (disk(32, 6) * 255).astype(np.uint8))
    assert check_dataset(discover(root)).empty_masks == 0
    mask = root / "masks" / "c0.bmp"
    before = mask.stat()
    save(mask, np.zeros((32, 32), np.uint8))  # the annotator emptied it; same BMP size
    os.utime(mask, ns=(before.st_atime_ns, before.st_mtime_ns))  # what cp -p does
    while mask.stat().st_ctime_ns == before.st_ctime_ns:  # a coarse clock: wait for the change time to move
        time.sleep(0.01)
        os.utime(mask, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = mask.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert check_dataset(discover(root)).empty_masks == 1


def test_the_check_cache_follows_a_csv_that_pairs_the_same_files_differently(tmp_path):
    """The cache key held the files' stamps only: a CSV edited to pair a.png with the 64 px mask
    replayed the old report, without its 'mask size differs' warning."""
    root = tmp_path / "ds"
    save(root / "a.png", np.zeros((32, 32, 3), np.uint8))
    save(root / "am.png", (disk(32, 6) * 255).astype(np.uint8))
    save(root / "b.png", np.zeros((64, 64, 3), np.uint8))
    save(root / "bm.png", (disk(64, 6) * 255).astype(np.uint8))
    (root / "list.csv").write_text("image,mask\na.png,am.png\nb.png,bm.png\n")
    assert check_dataset(discover(root)).size_mismatch == []
    (root / "list.csv").write_text("image,mask\na.png,bm.png\nb.png,am.png\n")
    assert sorted(check_dataset(discover(root)).size_mismatch) == ["a", "b"]
