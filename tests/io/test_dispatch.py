"""segapp/io points one way: one dispatcher over format readers, frame 0 decoded alone, one stats constant."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import segapp.io
from segapp.io import ReadError, read_image, read_scan
from segapp.io.preprocess import resize_array
from tests.inference.formats import write_dicom, write_nifti

IO_DIR = Path(segapp.io.__file__).parent


def _segapp_imports(path: Path) -> set[str]:
    """Every ``segapp...`` module a file imports (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segapp"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("segapp"))
    return names


def _module(path: Path) -> str:
    rel = path.relative_to(IO_DIR.parent.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def test_io_imports_nothing_of_segapp_and_has_no_cycle():
    graph = {_module(p): _segapp_imports(p) for p in IO_DIR.rglob("*.py")}
    for mod, deps in graph.items():
        outside = {d for d in deps if not d.startswith("segapp.io")}
        assert not outside, f"{mod} imports {outside}: segapp/io must import nothing else of segapp"

    def reach(mod: str, seen: set[str]) -> set[str]:
        for dep in graph.get(mod, ()):
            if dep not in seen and dep != "segapp.io":
                seen.add(dep)
                reach(dep, seen)
        return seen

    for mod in graph:
        if mod != "segapp.io":
            assert mod not in reach(mod, set()), f"import cycle through {mod}"
    # the format readers sit below the dispatcher: they never import it (or what imports it)
    for mod, deps in graph.items():
        if mod.startswith("segapp.io.formats"):
            assert deps <= {"segapp.io.errors", "segapp.io.limits", "segapp.io.formats.common"}, (mod, deps)
    assert "segapp.io.images" not in reach("segapp.io.scans", set())


def _multiframe(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 4000, (4, 20, 24), dtype=np.uint16)
    frames[0] = np.clip(frames[0], 1000, 2000)  # frame 0's own range differs from the file's
    files = {
        "nowindow": (frames, "MONOCHROME2", {"slope": 2.0, "intercept": -100.0}),
        "window": (frames, "MONOCHROME2", {"window": (1500.0, 1000.0)}),
        "mono1": (frames, "MONOCHROME1", {}),
        "rgb": (rng.integers(0, 255, (3, 20, 24, 3), dtype=np.uint8), "RGB", {}),
    }
    out = {}
    for name, (arr, photometric, kw) in files.items():
        out[name] = tmp_path / f"{name}.dcm"
        write_dicom(out[name], arr, photometric, bits=12 if arr.dtype == np.uint16 else None, **kw)
    return out


def test_read_image_is_frame_zero_of_read_scan_for_every_multiframe_kind(tmp_path):
    files = _multiframe(tmp_path)
    write_nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).normal(0, 1, (7, 8, 9)).astype(np.float32))
    files["nifti"] = tmp_path / "v.nii.gz"
    for name, path in files.items():
        first, scan = read_image(path), read_scan(path)
        assert first.dtype == scan.frames[0].dtype and np.array_equal(first, scan.frames[0]), name
    # without a window the gray range is the whole file's, not frame 0's own
    assert read_image(files["nowindow"]).max() < 65535


def test_read_image_decodes_only_the_frame_it_keeps(tmp_path, monkeypatch):
    import pydicom.pixels

    files = _multiframe(tmp_path)
    expected = {n: read_scan(p).frames[0] for n, p in files.items()}
    decoded: list[int | None] = []
    real = pydicom.pixels.pixel_array

    def spy(src, **kwargs):
        decoded.append(kwargs.get("index"))
        return real(src, **kwargs)

    def no_full_decode(self):
        raise AssertionError("every frame decoded to keep one")

    def no_streaming(*args, **kwargs):
        raise AssertionError("frames streamed although the file has a window")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_full_decode))
    monkeypatch.setattr(pydicom.pixels, "iter_pixels", no_streaming)
    for name in ("window", "rgb"):
        decoded.clear()
        assert np.array_equal(read_image(files[name]), expected[name]), name
        assert decoded == [0], name


def test_missing_empty_and_unsupported_files_are_checked_once_for_every_entry(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    for read in (read_image, read_scan):
        for name, reason in [("gone.png", "file not found"), ("gone", "file not found"), ("empty.dcm", "empty")]:
            with pytest.raises(ReadError, match=reason):
                read(tmp_path / name)
    with pytest.raises(ReadError, match="unsupported file type"):
        read_scan(tmp_path / "notes.txt")


def test_unknown_interpolation_is_an_error_not_area():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"unknown interpolation 'bilinear'.*did you mean 'linear'"):
        resize_array(img, (4, 4), "bilinear")  # type: ignore[arg-type]


def test_one_imagenet_constant_and_one_stats_type():
    from segapp.data import stats as data_stats
    from segapp.nets import weights

    assert weights.IMAGENET_STATS is segapp.io.IMAGENET_STATS
    assert data_stats.imagenet_stats(3) == segapp.io.IMAGENET_STATS
    assert weights.Stats is data_stats.Stats is segapp.io.Stats
    assert not hasattr(data_stats, "IMAGENET")


def test_atomic_write_interrupted_right_after_creating_its_temp_file_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C/SIGTERM that lands between mkstemp and the write used to leave a .tmp-* file behind."""
    import os

    from segapp.io import writers

    real_close = os.close

    def interrupted_close(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt), writers.atomic_write(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"never")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pages", [3, 5])
def test_a_multi_page_tiff_is_read_as_its_first_page_not_as_colour(tmp_path, pages):
    """A 3-page grey stack used to become one RGB image mixing three slices (5 pages: 48 'channels')."""
    import tifffile

    from segapp.io import read_image

    stack = np.stack([np.full((64, 48), 10 * (k + 1), np.uint8) for k in range(pages)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")  # pages of grey, not planar RGB
    arr = read_image(tmp_path / "stack.tif")
    assert arr.shape[:2] == (64, 48) and arr.reshape(64, 48, -1).shape[-1] in (1, 3)
    assert np.all(arr == 10)  # the first page's value, in every channel


def test_planar_rgb_tiff_is_still_colour(tmp_path):
    import tifffile

    from segapp.io import read_image

    rgb = np.zeros((3, 32, 40), np.uint8)
    rgb[0], rgb[1], rgb[2] = 200, 100, 50
    tifffile.imwrite(tmp_path / "planar.tif", rgb, planarconfig="separate", photometric="rgb")
    arr = read_image(tmp_path / "planar.tif")
    assert arr.shape == (32, 40, 3) and tuple(arr[0, 0]) == (200, 100, 50)


def test_palette_colour_dicom_is_refused_not_read_as_grey(tmp_path):
    """PALETTE COLOR pixels are indices into a colour table; read as intensities they gave a wrong image."""
    from segapp.io import ReadError, read_image
    from tests.inference.formats import write_dicom

    write_dicom(tmp_path / "pal.dcm", np.arange(64, dtype=np.uint8).reshape(8, 8), photometric="PALETTE COLOR")
    with pytest.raises(ReadError, match="PhotometricInterpretation PALETTE COLOR is not supported"):
        read_image(tmp_path / "pal.dcm")
