"""Size limits every reader applies from the file's header, before any pixel is decoded.

A 15000 x 15000 TIFF of zeros is 251 KB on disk and 6.9 GB once decoded; a NIfTI header can
claim any shape. Each reader therefore asks :func:`check_size` with the size its header states
(Pillow's ``size`` before ``load``, tifffile's page shape, DICOM ``Rows``/``Columns``/
``NumberOfFrames``, nibabel's header shape) and refuses the file with a :class:`ReadError`
that names the size, the limit and the fix.

Two limits:

- ``max_pixels`` per 2D frame or slice (default :data:`DEFAULT_MAX_PIXELS`, 178,956,970 =
  ``2 * PIL.Image.MAX_IMAGE_PIXELS``, exactly where Pillow itself refuses a decompression bomb),
  for every format.
- ``max_file_pixels`` per file with more than one frame (multi-frame DICOM, 3D NIfTI,
  multi-page TIFF): default :data:`DEFAULT_MAX_FILE_PIXELS` = 512 x 512 x 2048 voxels
  (537 Mpx), so an ordinary 512 x 512 x 400 CT volume (105 Mvox) reads, while a header
  that claims terabytes does not. Decoding a volume peaks at about 14 bytes per voxel
  (float32 data, a float64 rescale, uint16 frames), so the default allows ~7.5 GB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segapp.io.errors import ReadError

DEFAULT_MAX_PIXELS = 2 * 89_478_485  # Pillow's refusal limit (2 * Image.MAX_IMAGE_PIXELS)
DEFAULT_MAX_FILE_PIXELS = 512 * 512 * 2048


@dataclass(frozen=True)
class ReadLimits:
    """How large a file the readers accept (picklable: it travels to decoding workers).

    Attributes:
        max_pixels: Most pixels in one 2D frame or slice (height x width; channels not counted).
        max_file_pixels: Most pixels in all frames of one file with more than one frame.

    Raises:
        ValueError: when a limit is not a positive integer.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_pixels: int = DEFAULT_MAX_FILE_PIXELS

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_file_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name} must be a positive integer number of pixels, got {value!r}; fix: e.g. {name}=100000000"
                )


DEFAULT_LIMITS = ReadLimits()


def _mpx(n: int) -> str:
    """Megapixels in words: ``225 Mpx``, ``1,074 Mpx``, ``0.0048 Mpx``."""
    mpx = n / 1e6
    return f"{mpx:,.0f} Mpx" if mpx >= 100 else f"{mpx:.3g} Mpx"


def check_size(path: str | Path, height: int, width: int, n_frames: int = 1, limits: ReadLimits | None = None) -> None:
    """Refuse a file whose header states frames or a total over the limits.

    Args:
        path: The file (named in the error).
        height: Rows of one frame, from the header.
        width: Columns of one frame, from the header.
        n_frames: Frames (slices, pages) in the file; the per-file budget applies when > 1.
        limits: The limits; :data:`DEFAULT_LIMITS` when None.

    Raises:
        ReadError: with the size, the limit and the option that raises it.
    """
    limits = limits or DEFAULT_LIMITS
    frame = int(height) * int(width)
    if frame > limits.max_pixels:
        raise ReadError(
            path,
            f"{height}x{width} (HxW) = {_mpx(frame)} per frame exceeds the {_mpx(limits.max_pixels)} limit "
            f"(max_pixels={limits.max_pixels}); fix: check the file, or raise the limit "
            f"(segapp-predict --max-pixels {frame})",
        )
    total = frame * int(n_frames)
    if n_frames > 1 and total > limits.max_file_pixels:
        raise ReadError(
            path,
            f"{n_frames} frames of {height}x{width} (HxW) = {_mpx(total)} in the file exceeds the "
            f"{_mpx(limits.max_file_pixels)} per-file limit (max_file_pixels={limits.max_file_pixels}); "
            f"fix: check the file, or raise the limit (segapp-predict --max-file-pixels {total})",
        )
