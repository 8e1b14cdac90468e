"""The one preprocessing function: used by the validation pipeline and by inference alike.

Training augments between :func:`resize_image` and :func:`normalize`; validation and inference
call :func:`preprocess`, which is exactly those two steps, so a scan is prepared the same way
everywhere. The parameters travel in the checkpoint as :class:`PreprocessSpec`.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from segapp.io.images import to_channels

SizePolicy = Literal["resize"]
Interpolation = Literal["area", "linear", "nearest"]
Stats = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel ``(mean, std)`` on the 0-1 scale: the one stats type of nets and data."""
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""ImageNet mean/std (RGB, 0-1 scale): the one copy, used by ``segapp.nets`` and ``segapp.data``."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How a raw image becomes network input.

    Attributes:
        size: Network input ``(height, width)``.
        size_policy: ``resize``: stretch the whole image to ``size`` (aspect not kept).
        in_channels: 1 (gray) or 3 (RGB); see :func:`segapp.io.to_channels`.
        mean: Per-channel mean on the 0-1 scale, subtracted after scaling.
        std: Per-channel standard deviation on the 0-1 scale.
    """

    size: tuple[int, int] = (256, 256)
    size_policy: SizePolicy = "resize"
    in_channels: int = 3
    mean: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, ...] = field(default=(1.0, 1.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form stored in checkpoints."""
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = [float(m) for m in self.mean]
        d["std"] = [float(s) for s in self.std]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        return cls(
            size=tuple(int(s) for s in d["size"]),
            size_policy=d.get("size_policy", "resize"),
            in_channels=int(d["in_channels"]),
            mean=tuple(float(m) for m in d["mean"]),
            std=tuple(float(s) for s in d["std"]),
        )


def to_float01(arr: np.ndarray) -> np.ndarray:
    """Scale an image to float32 in [0, 1] by its dtype (uint8 /255, uint16 /65535).

    Float images are min-max scaled per image (they carry no fixed range).
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def _resize_pillow(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Pillow stand-in for OpenCV: area (box) when shrinking, bilinear when enlarging.

    Works on ``H x W`` or ``H x W x C`` float32/uint8 arrays one channel at a time; matches
    ``cv2.INTER_AREA`` / ``INTER_LINEAR`` / ``INTER_NEAREST`` to within interpolation detail
    (see tests/inference/test_scans_io.py for the tolerance).
    """
    h, w = size
    if nearest:
        flt = Image.Resampling.NEAREST
    elif h <= img.shape[0] and w <= img.shape[1]:
        flt = Image.Resampling.BOX
    else:
        flt = Image.Resampling.BILINEAR
    planes = img[:, :, None] if img.ndim == 2 else img
    mode, dtype = ("L", np.uint8) if planes.dtype == np.uint8 else ("F", np.float32)
    out = [
        np.asarray(Image.fromarray(np.ascontiguousarray(planes[:, :, c], dtype), mode).resize((w, h), flt))
        for c in range(planes.shape[2])
    ]
    res = np.stack(out, axis=2).astype(dtype)
    return res[:, :, 0] if img.ndim == 2 else res


def resize_array(img: np.ndarray, size: tuple[int, int], interpolation: Interpolation = "area") -> np.ndarray:
    """Resize ``H x W`` or ``H x W x C`` to ``size = (height, width)``.

    Args:
        img: float32 or uint8 array.
        size: Target ``(height, width)``.
        interpolation: ``area`` (images; box average when shrinking), ``linear``
            (probability maps) or ``nearest`` (masks).

    Always Pillow, never OpenCV, so that training, host inference and the slim container
    (which has no OpenCV) resize identically and give bit-identical masks.

    Raises:
        ValueError: for an unknown ``interpolation`` (naming the close match).
    """
    if interpolation not in get_args(Interpolation):
        close = difflib.get_close_matches(str(interpolation), get_args(Interpolation), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        choices = list(get_args(Interpolation))
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {choices}{hint}")
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    if interpolation == "linear":
        return _resize_pillow(img, size) if (h > img.shape[0] or w > img.shape[1]) else _resize_linear_down(img, size)
    return _resize_pillow(img, size, nearest=interpolation == "nearest")


def _resize_linear_down(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear without antialiasing (as OpenCV) via Pillow's affine transform, per channel."""
    h, w = size
    sy, sx = img.shape[0] / h, img.shape[1] / w
    planes = img[:, :, None] if img.ndim == 2 else img
    coeffs = (sx, 0.0, 0.0, 0.0, sy, 0.0)  # Pillow samples at output pixel centres
    out = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(planes[:, :, c], np.float32), "F").transform(
                (w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
            )
        )
        for c in range(planes.shape[2])
    ]
    res = np.stack(out, axis=2)
    return res[:, :, 0] if img.ndim == 2 else res


def resize_image(arr: np.ndarray, size: tuple[int, int], in_channels: int) -> np.ndarray:
    """Channel policy, scale to [0, 1], then resize to ``size`` (area interpolation).

    Returns:
        float32 array, shape ``(size[0], size[1], in_channels)``.
    """
    img = to_float01(to_channels(arr, in_channels))
    h, w = size
    img = resize_array(img, (h, w), "area")
    return img.reshape(h, w, in_channels)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask with nearest-neighbour; returns uint8 0/1."""
    h, w = size
    return resize_array(mask.astype(np.uint8), (h, w), "nearest")


def normalize(img: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(img - mean) / std`` per channel, then ``H x W x C`` -> ``C x H x W`` float32."""
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    if m.size != img.shape[2] or s.size != img.shape[2]:
        raise ValueError(f"mean/std have {m.size}/{s.size} values but the image has {img.shape[2]} channels")
    return np.ascontiguousarray(((img - m) / s).transpose(2, 0, 1), dtype=np.float32)


def preprocess(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Raw image (any dtype, H x W x C) -> network input ``C x size[0] x size[1]`` float32."""
    return normalize(resize_image(arr, spec.size, spec.in_channels), spec.mean, spec.std)
