"""DICOM gray values: rescale and window from functional groups (Enhanced CT/MR), padding left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segapp.io import read_image, read_scan
from segapp.io.formats.common import to_uint16
from tests.inference.formats import write_dicom

SOFT = (40.0, 400.0)  # CT soft-tissue window (center, width): -160..240 HU
BONE = (300.0, 1500.0)  # -450..1050 HU


def _hu(n_frames: int) -> np.ndarray:
    """CT-like frames in HU (even values, so a slope of 2 stores them exactly): tissue, air, bone."""
    hu = 2 * np.random.default_rng(7).integers(-25, 50, (n_frames, 16, 18))
    hu[:, :3] = -1000
    hu[:, -2:] = 1500
    return hu


def _span(window: tuple[float, float]) -> tuple[float, float]:
    center, width = window
    return center - width / 2, center + width / 2


def _groups(rescale: tuple[float, float] | None = None, window: tuple[float, float] | None = None):
    """One functional-groups item holding a Pixel Value Transformation and/or a Frame VOI LUT."""
    from pydicom.dataset import Dataset

    item = Dataset()
    if rescale is not None:
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = *rescale, "HU"
        item.PixelValueTransformationSequence = [pvt]
    if window is not None:
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = window
        item.FrameVOILUTSequence = [voi]
    return item


def _enhanced_ct(path: Path, stored: np.ndarray, shared: dict | None, per_frame: list[dict] | None, **top) -> Path:
    """``stored`` as an Enhanced CT whose rescale/window sit in functional groups; ``top``: top-level ones."""
    import pydicom
    from pydicom.uid import EnhancedCTImageStorage

    write_dicom(path, stored.astype(np.uint16), bits=16, **top)
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.Modality = "CT"
    if shared is not None:
        ds.SharedFunctionalGroupsSequence = [_groups(**shared)]
    if per_frame is not None:
        ds.PerFrameFunctionalGroupsSequence = [_groups(**g) for g in per_frame]
    ds.save_as(path, enforce_file_format=True)
    return path


def _gray(path: Path) -> np.ndarray:
    """All frames of ``path`` as ``frames x H x W``; frame 0 of the full read is what read_image gives."""
    frames = np.stack([f[:, :, 0] for f in read_scan(path).frames])
    assert np.array_equal(read_image(path)[:, :, 0], frames[0])
    return frames


def test_enhanced_ct_takes_rescale_and_window_from_the_shared_groups(tmp_path):
    """The same HU data decodes the same as classic CT and as Enhanced CT (window 40/400 in the shared groups).

    Before: the enhanced file's window and rescale were not seen, so its frames were min-max
    scaled over air and bone (the soft-tissue contrast squeezed), unlike the classic file's.
    """
    hu = _hu(2)
    classic = tmp_path / "classic.dcm"
    write_dicom(classic, (hu + 1024).astype(np.uint16), bits=16, slope=1.0, intercept=-1024.0, window=SOFT)
    shared = {"rescale": (1.0, -1024.0), "window": SOFT}
    enhanced = _enhanced_ct(tmp_path / "enhanced.dcm", hu + 1024, shared, None)
    expected = to_uint16(hu, *_span(SOFT))
    assert np.array_equal(_gray(classic), expected)
    assert np.array_equal(_gray(enhanced), expected)


def test_per_frame_groups_come_before_shared_groups_and_the_top_level(tmp_path):
    """Each frame gets its own rescale and window: per-frame group, else shared group, else top level."""
    hu = _hu(3)
    stored = np.stack([hu[0] + 1024, (hu[1] + 2048) // 2, (hu[2] + 2048) // 2])
    shared = {"rescale": (1.0, -1024.0), "window": SOFT}
    per_frame = [{}, {"rescale": (2.0, -2048.0), "window": BONE}, {"rescale": (2.0, -2048.0)}]
    # top-level values an enhanced reader must not use while the groups have them
    path = _enhanced_ct(tmp_path / "e.dcm", stored, shared, per_frame, slope=10.0, intercept=7.0, window=(5e3, 10.0))
    got = _gray(path)
    assert np.array_equal(got[0], to_uint16(hu[0], *_span(SOFT)))
    assert np.array_equal(got[1], to_uint16(hu[1], *_span(BONE)))
    assert np.array_equal(got[2], to_uint16(hu[2], *_span(SOFT)))


def test_frames_with_different_rescales_and_no_window_share_one_range_of_real_values(tmp_path):
    """Without a window the min-max is over the rescaled values: equal HU frames decode equal."""
    hu = np.stack([_hu(1)[0]] * 2)
    stored = np.stack([hu[0] + 1024, (hu[1] + 2048) // 2])
    per_frame = [{"rescale": (1.0, -1024.0)}, {"rescale": (2.0, -2048.0)}]
    got = _gray(_enhanced_ct(tmp_path / "e.dcm", stored, None, per_frame))
    expected = to_uint16(hu[0], float(hu.min()), float(hu.max()))
    assert np.array_equal(got[0], expected) and np.array_equal(got[1], expected)


def _with_padding(path: Path, value: int, limit: int | None, signed: bool) -> Path:
    import pydicom

    ds = pydicom.dcmread(path)
    vr = "SS" if signed else "US"
    ds.add_new(0x00280120, vr, value)  # PixelPaddingValue: its VR follows PixelRepresentation
    if limit is not None:
        ds.add_new(0x00280121, vr, limit)  # PixelPaddingRangeLimit
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("limit", "photometric", "window"),
    [
        (None, "MONOCHROME2", None),
        (-1500, "MONOCHROME2", None),
        (None, "MONOCHROME1", None),
        (None, "MONOCHROME1", SOFT),
    ],
)
def test_padding_is_left_out_of_the_range_and_written_as_zero(tmp_path, limit, photometric, window):
    """A CT border of -2000 (or -2000..-1500) set as padding neither widens the gray range nor shows as tissue.

    Before: the padding was part of the min-max, squeezing the tissue into 0.86-1.00 of the range.
    """
    rng = np.random.default_rng(1)
    hu = rng.integers(-100, 200, (2, 20, 20)).astype(np.int16)
    pad = np.zeros(hu.shape, bool)
    pad[:, :4], pad[:, :, -3:] = True, True
    hu[pad] = -2000 if limit is None else rng.integers(-2000, limit + 1, int(pad.sum()))
    path = tmp_path / "pad.dcm"
    write_dicom(path, hu, photometric, bits=16, slope=1.0, intercept=0.0, window=window)
    got = _gray(_with_padding(path, -2000, limit, signed=True))
    tissue = to_uint16(hu, *(_span(window) if window else (hu[~pad].min(), hu[~pad].max())))
    if photometric == "MONOCHROME1":
        tissue = 65535 - tissue
    assert np.array_equal(got[~pad], tissue[~pad])
    assert (got[pad] == 0).all()
    if window is None:
        assert got[~pad].min() == 0 and got[~pad].max() == 65535


def test_padding_is_matched_on_the_stored_values_before_the_rescale(tmp_path):
    """PixelPaddingValue 0 with intercept -1024 pads the stored 0 (-1024 HU), not the tissue at 0 HU."""
    hu = np.random.default_rng(2).integers(-100, 200, (20, 20))
    hu[:5] = -1024  # padding: stored 0
    hu[10, :] = 0  # tissue at 0 HU: stored 1024
    path = tmp_path / "pad.dcm"
    write_dicom(path, (hu + 1024).astype(np.uint16), bits=16, slope=1.0, intercept=-1024.0)
    got = _gray(_with_padding(path, 0, None, signed=False))[0]
    tissue = hu[5:]
    assert (got[:5] == 0).all()
    assert np.array_equal(got[5:], to_uint16(tissue, float(tissue.min()), float(tissue.max())))
