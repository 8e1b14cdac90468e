"""Per-channel mean/std of a training split, the named normalisation presets, explicit stats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from segapp.data.cache import digest, file_stamp, load_json, save_json
from segapp.data.errors import DataError
from segapp.data.layouts import Pair
from segapp.io import IMAGENET_STATS, Stats, read_image, resize_image

NormalizeMode = Literal["auto", "imagenet", "dataset", "none"]


def channel_stats(pairs: Sequence[Pair], size: tuple[int, int], in_channels: int) -> Stats:
    """Mean and std per channel on the [0, 1] scale, over all pixels of the resized images."""
    total = np.zeros(in_channels, np.float64)
    total_sq = np.zeros(in_channels, np.float64)
    n = 0
    for p in pairs:
        img = resize_image(read_image(p.image), size, in_channels).reshape(-1, in_channels).astype(np.float64)
        total += img.sum(0)
        total_sq += (img**2).sum(0)
        n += img.shape[0]
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-3)) for s in std)


def cached_channel_stats(
    pairs: Sequence[Pair], size: tuple[int, int], in_channels: int, use_cache: bool = True
) -> Stats:
    """:func:`channel_stats`, computed once per training split and size, then read from the user cache."""
    key = digest(["stats", tuple(size), in_channels, *(file_stamp(p.image) for p in pairs)])
    hit = load_json("stats", key) if use_cache else None
    if hit is not None:
        return tuple(hit["mean"]), tuple(hit["std"])
    mean, std = channel_stats(pairs, size, in_channels)
    if use_cache:
        save_json("stats", key, {"mean": list(mean), "std": list(std)})
    return mean, std


def explicit_stats(value: dict, in_channels: int) -> Stats:
    """Validate ``data.normalize: {mean: [...], std: [...]}`` (0-1 scale, one value per channel).

    Raises:
        DataError: on missing keys, a wrong number of values or a non-positive std.
    """
    if set(value) != {"mean", "std"}:
        raise DataError(
            f"data.normalize has keys {sorted(value)}; expected exactly mean and std, e.g. "
            f"{{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}"
        )
    mean, std = (tuple(float(v) for v in value[k]) for k in ("mean", "std"))
    if len(mean) != in_channels or len(std) != in_channels:
        raise DataError(
            f"data.normalize has {len(mean)} mean / {len(std)} std values; expected {in_channels} each "
            f"(data.in_channels)"
        )
    if min(std) <= 0:
        raise DataError(f"data.normalize std {list(std)} has a value <= 0; expected positive values on the 0-1 scale")
    return mean, std


def imagenet_stats(in_channels: int) -> Stats:
    """ImageNet mean/std; averaged over RGB for one channel."""
    m, s = IMAGENET_STATS
    return (m, s) if in_channels == 3 else ((sum(m) / 3,), (sum(s) / 3,))
