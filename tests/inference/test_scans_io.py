"""Scan readers (DICOM, NIfTI, images), the OpenCV-free resize and the SciPy-free labeller."""

import numpy as np
import pytest

from segapp.inference.postprocess import _label_runs, clean_mask, label_components
from segapp.io import ReadError, read_image, read_scan, scan_kind
from tests.inference.formats import make_scan_folder, write_dicom, write_nifti


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    return root, make_scan_folder(root)


def test_every_valid_file_decodes_to_its_expected_frames_and_every_broken_one_gives_a_reason(folder):
    root, expected = folder
    for rel, exp in expected.items():
        if "error" in exp:
            with pytest.raises(ReadError) as info:
                read_scan(root / rel)
            assert exp["error"] in info.value.reason, (rel, info.value.reason)
            continue
        scan = read_scan(root / rel)
        assert len(scan.frames) == exp.get("frames", exp.get("nifti_shape", (0, 0, 1))[2]), rel
        assert all(f.shape[:2] == exp["shape"] for f in scan.frames), rel
    assert scan_kind(root / "notes.txt") is None
    assert scan_kind(root / "sub" / "deep" / "IM0001") == "dicom"


def test_monochrome1_is_inverted_and_rescale_window_are_applied(tmp_path):
    raw = np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (4, 1))  # 4 x 80
    write_dicom(tmp_path / "m2.dcm", raw, "MONOCHROME2", bits=12)
    write_dicom(tmp_path / "m1.dcm", raw, "MONOCHROME1", bits=12)
    m2, m1 = read_scan(tmp_path / "m2.dcm").frames[0], read_scan(tmp_path / "m1.dcm").frames[0]
    assert m2.dtype == np.uint16 and m2[0, 0, 0] == 0 and m2[0, -1, 0] == 65535
    np.testing.assert_array_equal(m1.astype(int), 65535 - m2.astype(int))
    # value = 2 * raw - 1000; window [0, 2000] -> raw 500 is black, raw 1500 is white, raw 1000 mid-grey
    write_dicom(tmp_path / "w.dcm", raw, "MONOCHROME2", bits=12, slope=2.0, intercept=-1000.0, window=(1000.0, 2000.0))
    w = read_scan(tmp_path / "w.dcm").frames[0][0, :, 0].astype(int)
    cols = {int(v): i for i, v in enumerate(raw[0])}
    assert w[cols[450]] == 0 and w[cols[1550]] == 65535 and abs(w[cols[1000]] - 32768) < 40


def test_read_image_dispatches_dicom_and_nifti_to_their_first_frame(folder, tmp_path):
    root, _ = folder
    assert read_image(root / "multi.dcm").shape == (32, 36, 1)
    assert read_image(root / "sub" / "deep" / "IM0001").shape == (40, 44, 1)
    write_nifti(tmp_path / "v.nii", np.arange(5 * 6 * 2, dtype=np.float32).reshape(5, 6, 2))
    first = read_image(tmp_path / "v.nii")
    assert first.shape == (5, 6, 1) and first[0, 0, 0] == 0 and first.dtype == np.uint16


def test_nifti_axis_selects_the_slicing_direction(tmp_path):
    write_nifti(tmp_path / "v.nii.gz", np.zeros((5, 6, 7), np.float32))
    assert [f.shape[:2] for f in read_scan(tmp_path / "v.nii.gz", nifti_axis=0).frames][0] == (6, 7)
    assert len(read_scan(tmp_path / "v.nii.gz", nifti_axis=1).frames) == 6


def test_pillow_resize_matches_opencv_on_smooth_images():
    """segapp resizes with Pillow everywhere (host and slim container alike); it agrees with
    OpenCV, the usual reference, within a stated tolerance."""
    cv2 = pytest.importorskip("cv2")
    from segapp.io.preprocess import resize_array

    flags = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
    yy, xx = np.mgrid[0:300, 0:410].astype(np.float32)
    img = np.stack([np.sin(xx / 23) * 0.5 + 0.5, np.cos(yy / 17) * 0.5 + 0.5, (xx + yy) / 710], -1).astype(np.float32)
    for interp, size, tol in [
        ("area", (64, 64), 0.02),
        ("area", (256, 200), 0.02),
        ("linear", (64, 80), 1e-5),
        ("linear", (600, 500), 1e-5),
        ("area", (600, 500), 0.02),
    ]:
        ours = resize_array(img, size, interp)
        ref = cv2.resize(img, (size[1], size[0]), interpolation=flags[interp])
        assert ours.shape == ref.shape == (*size, 3)
        assert np.abs(ours - ref).max() < tol, (interp, size)


def test_run_labeller_matches_scipy_and_cleaning_keeps_what_it_should():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for density in (0.2, 0.5, 0.7):
        mask = rng.random((40, 53)) < density
        ours, n = _label_runs(mask)
        ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3), bool))
        assert n == n_ref
        assert sorted(np.bincount(ours.ravel())[1:]) == sorted(np.bincount(ref.ravel())[1:])
    mask = np.zeros((20, 20), bool)
    mask[1:3, 1:3] = True  # 4 px
    mask[10:18, 10:18] = True  # 64 px
    mask[5, 15] = True  # 1 px
    assert label_components(mask)[1] == 3
    big, n = clean_mask(mask, keep_largest=True)
    assert n == 1 and big.sum() == 64
    no_dots, n = clean_mask(mask, min_size=4)
    assert n == 2 and no_dots.sum() == 68


def test_tiff_miniswhite_and_palette_read_as_displayed_and_cmyk_is_refused(tmp_path):
    """tifffile leaves MinIsWhite uninverted and palettes unapplied: a scanner's negative and palette
    indices reached the model as the picture; CMYK samples were read as RGB."""
    import tifffile

    x = np.random.default_rng(0).integers(0, 256, (16, 20), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "white.tif", 255 - x, photometric="miniswhite")
    assert np.array_equal(read_image(tmp_path / "white.tif")[..., 0], x)
    x16 = x.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "white16.tif", 65535 - x16, photometric="miniswhite")
    assert np.array_equal(read_image(tmp_path / "white16.tif")[..., 0], x16)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0, 1] = 65535  # index 1 = red
    idx = (x > 128).astype(np.uint8)
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    pal = read_image(tmp_path / "pal.tif")
    assert pal.shape == (16, 20, 3) and np.array_equal(pal[..., 0] == 255, idx == 1) and not pal[..., 1:].any()
    tifffile.imwrite(tmp_path / "cmyk.tif", np.zeros((16, 20, 4), np.uint8), photometric="separated")
    with pytest.raises(ReadError, match=r"TIFF colour model SEPARATED \(CMYK\) is not supported"):
        read_image(tmp_path / "cmyk.tif")


def test_a_miniswhite_tiff_inverts_against_its_declared_depth_and_tiff_masks_keep_their_samples(tmp_path):
    """12-bit data in 16-bit MinIsWhite samples (MaxSampleValue 4095) inverted to 61440-65535: white.
    An ImageJ mask saved with an inverting LUT is MinIsWhite with 255 = object: a mask keeps it."""
    import tifffile

    from segapp.io.masks import mask_pixels

    x = np.random.default_rng(1).integers(0, 4096, (16, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "w12.tif", 4095 - x, photometric="miniswhite", extratags=[(281, "H", 1, 4095, True)])
    tifffile.imwrite(tmp_path / "b12.tif", x, photometric="minisblack", extratags=[(281, "H", 1, 4095, True)])
    black = read_image(tmp_path / "b12.tif")
    assert black.max() > 4095  # the declared 12 bits were scaled to the 16-bit range
    assert np.array_equal(read_image(tmp_path / "w12.tif"), black)
    m = np.zeros((16, 20), np.uint8)
    m[4:9, 5:12] = 255
    tifffile.imwrite(tmp_path / "mask.tif", m, photometric="miniswhite")
    assert np.array_equal(mask_pixels(tmp_path / "mask.tif") > 127, m > 0)
