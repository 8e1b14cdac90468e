"""Augmentation presets (albumentations), applied between resize and normalise in training only.

Each preset is a set of knobs (:data:`PRESETS`); ``data.augment_params`` overrides any knob
from YAML, e.g. ``{vflip: 0.0, rotate: 30, dropout_p: 0.5}``. A probability of 0 drops the
transform.
"""

from __future__ import annotations

from typing import Any, Literal

import albumentations as A
import cv2

from segapp.errors import SettingError, check_choice

AugmentPreset = Literal["none", "light", "standard", "strong"]

# Every knob at its "off" value, by kind (a preset switches some on; data.augment_params sets any).
_FLIPS = {"hflip": 0.0, "vflip": 0.0, "rotate90": 0.0}
_AFFINE = {"affine_p": 0.0, "scale": (0.9, 1.1), "shift": 0.06, "rotate": 15.0}
_CROP = {"crop_p": 0.0, "crop_scale": (0.6, 1.0)}
_COLOUR = {"brightness": 0.15, "contrast": 0.15, "color_p": 0.0, "hue": 5.0, "saturation": 10.0, "hue_p": 0.0}
_NOISE = {"blur_noise_p": 0.0, "noise_std": (0.01, 0.04), "elastic_p": 0.0, "grid_p": 0.0}
_DROPOUT = {"dropout_p": 0.0, "dropout_holes": (1, 6), "dropout_size": (0.04, 0.12)}
_OFF = {**_FLIPS, **_AFFINE, **_CROP, **_COLOUR, **_NOISE, **_DROPOUT}
PRESETS: dict[str, dict[str, Any]] = {"none": dict(_OFF)}
PRESETS["light"] = {**PRESETS["none"], "hflip": 0.5, "vflip": 0.5, "rotate90": 0.5, "affine_p": 0.5}
PRESETS["standard"] = {**PRESETS["light"], "crop_p": 0.5, "color_p": 0.5, "hue_p": 0.3, "blur_noise_p": 0.3}
PRESETS["strong"] = {
    **PRESETS["standard"],
    "affine_p": 0.7,
    "rotate": 30.0,
    "scale": (0.8, 1.2),
    "elastic_p": 0.2,
    "grid_p": 0.2,
    "dropout_p": 0.3,
}


def augment_params(preset: AugmentPreset, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The knobs of ``preset`` with ``overrides`` applied.

    Raises:
        SettingError: on an unknown preset or knob name (a ValueError).
    """
    check_choice("data.augment", preset, PRESETS)
    unknown = sorted(set(overrides or {}) - set(_OFF))
    if unknown:
        raise SettingError(
            f"unknown data.augment_params key(s) {', '.join(unknown)}; expected some of: {', '.join(_OFF)}"
        )
    return {**PRESETS[preset], **(overrides or {})}


def _geometric(k: dict[str, Any], size: tuple[int, int]) -> list:
    t = []
    if k["crop_p"] > 0:
        t.append(A.RandomResizedCrop(size=size, scale=tuple(k["crop_scale"]), ratio=(0.8, 1.25), p=k["crop_p"]))
    t += [A.HorizontalFlip(p=k["hflip"]), A.VerticalFlip(p=k["vflip"]), A.RandomRotate90(p=k["rotate90"])]
    if k["affine_p"] > 0:
        s = k["shift"]
        t.append(
            A.Affine(
                scale=tuple(k["scale"]), translate_percent=(-s, s), rotate=(-k["rotate"], k["rotate"]), p=k["affine_p"]
            )
        )
    if k["elastic_p"] > 0:
        t.append(A.ElasticTransform(alpha=30, sigma=6, p=k["elastic_p"]))
    if k["grid_p"] > 0:
        t.append(A.GridDistortion(num_steps=5, distort_limit=0.2, p=k["grid_p"]))
    return [x for x in t if x.p > 0]


def _photometric(k: dict[str, Any], in_channels: int) -> list:
    t = []
    if k["color_p"] > 0:
        t.append(A.RandomBrightnessContrast(k["brightness"], k["contrast"], p=k["color_p"]))
    if k["hue_p"] > 0 and in_channels == 3:
        t.append(A.HueSaturationValue(k["hue"], k["saturation"], 0, p=k["hue_p"]))
    if k["blur_noise_p"] > 0:
        t.append(
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=tuple(k["noise_std"]))], p=k["blur_noise_p"]
            )
        )
    if k["dropout_p"] > 0:
        t.append(
            A.CoarseDropout(
                num_holes_range=tuple(k["dropout_holes"]),
                hole_height_range=tuple(k["dropout_size"]),
                hole_width_range=tuple(k["dropout_size"]),
                fill=0,
                p=k["dropout_p"],
            )
        )
    return t


def build_augment(
    preset: AugmentPreset,
    size: tuple[int, int],
    in_channels: int = 3,
    overrides: dict[str, Any] | None = None,
    out_size: tuple[int, int] | None = None,
) -> A.Compose | None:
    """Albumentations pipeline on float32 images in [0, 1] of shape ``size`` (masks follow geometry).

    ``none``: nothing. ``light``: flips, 90-degree rotations, small affine (shift-scale-rotate).
    ``standard``: light + random resized crop, brightness/contrast, hue (RGB only), blur or noise.
    ``strong``: standard + stronger affine, elastic and grid distortion, coarse dropout (image only).
    ``out_size`` (smaller than ``size``) ends the pipeline with a downscale (area for the image,
    nearest for the mask): progressive resizing trains early epochs on cheaper, smaller inputs.

    Returns:
        The pipeline, or ``None`` when no transform is active.

    Raises:
        ValueError: on an unknown preset or override key.
    """
    k = augment_params(preset, overrides)
    t = _geometric(k, size) + _photometric(k, in_channels)
    if out_size is not None and tuple(out_size) != tuple(size):
        t.append(A.Resize(*out_size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST))
    return A.Compose(t) if t else None
