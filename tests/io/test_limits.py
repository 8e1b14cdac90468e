"""Size limits: every reader refuses oversized frames and files from the header, before decoding."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.io import DEFAULT_MAX_FILE_PIXELS, DEFAULT_MAX_PIXELS, ReadError, ReadLimits, read_image, read_scan
from segapp.io.limits import check_size
from tests.inference.formats import write_dicom, write_nifti

MB = 1 << 20


def _big_tiff(path: Path, side: int = 15000) -> Path:
    """A ``side x side`` uint8 TIFF of zeros, zlib-tiled: a few hundred KB on disk, written tile by tile."""
    import tifffile

    tile = np.zeros((1024, 1024), np.uint8)
    n = ((side + 1023) // 1024) ** 2
    tiles = (tile for _ in range(n))
    tifffile.imwrite(path, tiles, shape=(side, side), dtype=np.uint8, tile=(1024, 1024), compression="zlib")
    return path


def _nifti_header_only(path: Path, shape: tuple[int, ...]) -> Path:
    """A ``.nii.gz`` whose header claims ``shape`` (uint8) but which holds no voxel data."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_shape(shape)
    hdr["vox_offset"] = 352
    with gzip.open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4)
    return path


def test_defaults_match_pillow_refusal_and_leave_room_for_a_ct_volume():
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # where Pillow itself refuses a bomb
    assert DEFAULT_MAX_FILE_PIXELS >= 512 * 512 * 400 * 4
    check_size("ct.nii.gz", 512, 512, 400)  # an ordinary CT volume passes with room to spare
    with pytest.raises(ReadError, match="per-file limit"):
        check_size("huge.nii.gz", 512, 512, 2049)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_limits_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        ReadLimits(max_pixels=bad)
    with pytest.raises(ValueError, match="max_file_pixels"):
        ReadLimits(max_file_pixels=bad)


def test_a_15000_square_tiff_is_refused_from_its_header_without_decoding(tmp_path):
    path = _big_tiff(tmp_path / "bomb.tif")
    assert path.stat().st_size < 2 * MB  # tiny on disk, 225 MB decoded
    for read in (read_image, read_scan):
        with pytest.raises(ReadError) as info:
            read(path)
        reason = info.value.reason
        assert "15000x15000 (HxW) = 225 Mpx per frame exceeds the 179 Mpx limit" in reason
        assert "--max-pixels 225000000" in reason and info.value.path == path
    with pytest.raises(ReadError):
        tracemalloc.start()
        try:
            read_image(path)
        finally:
            peak = tracemalloc.get_traced_memory()[1] / MB
            tracemalloc.stop()
    assert peak < 20, f"refusing the TIFF allocated {peak:.0f} MB; the pixels were decoded"


def test_png_bomb_is_a_read_error_naming_its_size(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (15000, 12000)).save(path)  # 1-bit zeros: 22 MB in memory, ~30 KB on disk
    with pytest.raises(ReadError, match=r"12000x15000 \(HxW\) = 180 Mpx per frame exceeds the 179 Mpx limit"):
        read_scan(path)
    with pytest.raises(ReadError, match=r"12000x15000 .* --max-pixels 180000000"):
        read_image(path)


def test_the_limit_is_ours_in_both_directions_and_pillow_is_left_as_found(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.full((60, 80), 7, np.uint8)).save(path)
    with pytest.raises(ReadError, match=r"60x80 \(HxW\) = 0.0048 Mpx per frame exceeds the 0.004 Mpx limit"):
        read_image(path, ReadLimits(max_pixels=4000))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 4800 px
    assert read_image(path, ReadLimits(max_pixels=5000)).shape == (60, 80, 1)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_tiff_and_masks_take_the_per_frame_limit(tmp_path):
    import tifffile

    from segapp.io import read_mask

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 50), np.uint16))
    with pytest.raises(ReadError, match=r"40x50 \(HxW\) = 0.002 Mpx per frame"):
        read_scan(tmp_path / "a.tif", limits=ReadLimits(max_pixels=1999))
    assert read_scan(tmp_path / "a.tif", limits=ReadLimits(max_pixels=2000)).frames[0].shape == (40, 50, 1)
    with pytest.raises(ReadError, match="per frame"):
        read_mask(tmp_path / "a.tif", limits=ReadLimits(max_pixels=100))


def test_multiframe_dicom_over_the_file_budget_is_refused_before_decoding(tmp_path, monkeypatch):
    import pydicom.pixels

    path = tmp_path / "cine.dcm"
    write_dicom(path, np.zeros((6, 32, 32), np.uint8))
    limits = ReadLimits(max_pixels=32 * 32, max_file_pixels=32 * 32 * 5)
    assert len(read_scan(path, limits=ReadLimits(max_file_pixels=32 * 32 * 6)).frames) == 6

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixel data decoded before the size check")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    monkeypatch.setattr(pydicom.pixels, "pixel_array", no_decoding)
    for read in (read_scan, read_image):
        with pytest.raises(
            ReadError, match=r"6 frames of 32x32 \(HxW\) = 0.00614 Mpx in the file exceeds the 0.00512 Mpx per-file"
        ):
            read(path, limits=limits)
    with pytest.raises(ReadError, match=r"32x32 \(HxW\) = 0.00102 Mpx per frame"):
        read_scan(path, limits=ReadLimits(max_pixels=1000))


def test_dicom_whose_header_claims_a_huge_frame_is_refused_with_default_limits(tmp_path):
    import pydicom

    path = tmp_path / "huge.dcm"
    write_dicom(path, np.zeros((4, 4), np.uint8))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 20000, 20000  # the pixel data stays 16 bytes
    ds.save_as(path)
    with pytest.raises(ReadError, match=r"20000x20000 \(HxW\) = 400 Mpx per frame exceeds the 179 Mpx limit"):
        read_scan(path)


def test_nifti_over_the_budget_is_refused_from_its_header(tmp_path):
    huge = _nifti_header_only(tmp_path / "huge.nii.gz", (1024, 1024, 1024))
    with pytest.raises(
        ReadError, match=r"1024 frames of 1024x1024 \(HxW\) = 1,074 Mpx in the file exceeds the 537 Mpx"
    ):
        read_scan(huge)
    flat = _nifti_header_only(tmp_path / "flat.nii.gz", (20000, 20000))
    with pytest.raises(ReadError, match=r"20000x20000 \(HxW\) = 400 Mpx per frame"):
        read_image(flat)
    # the slice is what the axis makes it: 10 x 20 slices along axis 0 of a 30 x 10 x 20 volume
    write_nifti(tmp_path / "v.nii.gz", np.zeros((30, 10, 20), np.float32))
    with pytest.raises(ReadError, match="30 frames of 10x20 "):
        read_scan(tmp_path / "v.nii.gz", nifti_axis=0, limits=ReadLimits(max_file_pixels=5999))
    assert len(read_scan(tmp_path / "v.nii.gz", nifti_axis=0, limits=ReadLimits(max_file_pixels=6000)).frames) == 30


def test_a_512x512x400_nifti_header_is_under_the_file_budget(tmp_path):
    path = _nifti_header_only(tmp_path / "ct.nii.gz", (512, 512, 400))
    with pytest.raises(ReadError) as info:  # passes the size check, then finds no voxel data
        read_scan(path)
    assert "limit" not in info.value.reason and "not a readable NIfTI" in info.value.reason
