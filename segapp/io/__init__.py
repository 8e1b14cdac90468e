"""Readers, writers and the one preprocessing function shared by training and inference.

This room imports nothing else of segapp, so a slim inference container can use it alone.
"""

from segapp.io.errors import ReadError
from segapp.io.images import IMAGE_EXTENSIONS, MASK_EXTENSIONS, read_image, to_channels
from segapp.io.limits import DEFAULT_MAX_FILE_PIXELS, DEFAULT_MAX_PIXELS, ReadLimits
from segapp.io.masks import MaskRule, MaskStats, decide_rule, read_mask, read_masks, scan_masks
from segapp.io.preprocess import (
    IMAGENET_STATS,
    PreprocessSpec,
    Stats,
    normalize,
    preprocess,
    resize_array,
    resize_image,
    to_float01,
)
from segapp.io.scans import Scan, read_scan, scan_kind
from segapp.io.writers import atomic_write, write_mask_png

__all__ = [
    "DEFAULT_MAX_FILE_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_STATS",
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "MaskRule",
    "MaskStats",
    "PreprocessSpec",
    "ReadError",
    "ReadLimits",
    "Scan",
    "Stats",
    "atomic_write",
    "decide_rule",
    "normalize",
    "preprocess",
    "read_image",
    "read_mask",
    "read_masks",
    "read_scan",
    "resize_array",
    "resize_image",
    "scan_kind",
    "scan_masks",
    "to_channels",
    "to_float01",
    "write_mask_png",
]
