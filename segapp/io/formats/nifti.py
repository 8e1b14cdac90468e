"""NIfTI (``.nii``, ``.nii.gz``) 2D images and 3D volumes into uint16 gray frames.

Scaled data (``scl_slope``/``scl_inter`` applied), volume-wide min-max, 2D images give one
frame and 3D volumes one frame per index along ``axis``. The shape comes from the header and
is checked (dimensions, size limits) before the data is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segapp.io.errors import ReadError
from segapp.io.formats.common import Scan, check_frames, to_uint16
from segapp.io.limits import ReadLimits, check_size


def _check_shape(path: Path, shape: tuple[int, ...], axis: int, limits: ReadLimits | None) -> None:
    """Dimensions and size from the header, before any voxel is read."""
    dims = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
    if len(dims) not in (2, 3):
        raise ReadError(path, f"NIfTI data has shape {shape}; expected a 2D image or a 3D volume")
    if len(dims) == 3 and not -3 <= axis < 3:
        raise ValueError(f"NIfTI slice axis must be 0, 1 or 2, got {axis}")
    if len(dims) == 2:
        check_size(path, dims[0], dims[1], 1, limits)
        return
    h, w = (d for i, d in enumerate(dims) if i != axis % 3)
    check_size(path, h, w, dims[axis % 3], limits)


def read_nifti(path: str | Path, axis: int = 2, limits: ReadLimits | None = None, first_only: bool = False) -> Scan:
    """Read a 2D or 3D NIfTI file; 3D volumes give one frame per index along ``axis``.

    Args:
        path: The file.
        axis: Slice axis of a 3D volume (0, 1 or 2).
        limits: Size limits, checked from the header shape; defaults when None.
        first_only: Keep only frame 0 (the volume is still read: its min-max sets the scale).

    Raises:
        ReadError: unreadable file, data that is not 2D/3D (4D with one volume is accepted),
            or over the size limits.
        ValueError: ``axis`` outside 0-2 for a 3D volume.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as e:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ReadError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    _check_shape(path, shape, axis, limits)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as e:
        raise ReadError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    if data.ndim == 4:
        data = data[..., 0]
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    vol = to_uint16(np.nan_to_num(data, nan=lo), lo, hi)
    if vol.ndim == 2:
        frames = [vol[:, :, None]]
    else:
        n = min(1, vol.shape[axis]) if first_only else vol.shape[axis]
        frames = [np.ascontiguousarray(np.take(vol, i, axis=axis))[:, :, None] for i in range(n)]
    meta = {"n_frames": len(frames), "shape": shape, "axis": axis % 3, "affine": img.affine, "header": img.header}
    return Scan(path, "nifti", check_frames(path, frames), meta)
