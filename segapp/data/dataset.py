"""Torch dataset over :class:`~segapp.data.layouts.Pair` lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segapp.data.cache import ResizedCache
from segapp.data.layouts import Pair
from segapp.io import PreprocessSpec, normalize, read_image, read_mask, resize_image
from segapp.io.preprocess import resize_mask


def load_mask(pair: Pair, threshold: float) -> np.ndarray:
    """OR together every mask file of a pair (bool ``H x W``)."""
    mask = read_mask(pair.masks[0], threshold)
    for extra in pair.masks[1:]:
        mask = mask | read_mask(extra, threshold)
    return mask


class LesionDataset(Dataset):
    """Image and mask tensors: ``image (C, H, W)`` float32, ``mask (1, H, W)`` float32 0/1.

    Validation/test use the shared :func:`segapp.io.preprocess` steps (resize, normalise);
    training inserts ``augment`` (an albumentations pipeline) between the two. With ``cache``
    the resized arrays come from the user cache folder (:class:`~segapp.data.cache.ResizedCache`).
    """

    def __init__(self, pairs: Sequence[Pair], spec: PreprocessSpec, augment=None, mask_threshold: float = 127, cache: bool = False):
        self.pairs = list(pairs)
        self.spec = spec
        self.augment = augment
        self.mask_threshold = mask_threshold
        self.cache = ResizedCache("resized", tuple(spec.size), spec.in_channels, float(mask_threshold)) if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Resized float image ``(H, W, C)`` in [0, 1] and uint8 0/1 mask ``(H, W)`` (from the cache if on)."""
        if self.cache is None:
            return self._load(i)
        pair = self.pairs[i]
        return self.cache.get((pair.image, *pair.masks), lambda: self._load(i))

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[i]
        img = resize_image(read_image(pair.image), self.spec.size, self.spec.in_channels)
        mask = resize_mask(load_mask(pair, self.mask_threshold), self.spec.size)
        return img, mask

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        img, mask = self.load(i)
        if self.augment is not None:
            out = self.augment(image=img, mask=mask)
            img, mask = out["image"], out["mask"]
        x = normalize(img, self.spec.mean, self.spec.std)
        return {
            "image": torch.from_numpy(x),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            "key": self.pairs[i].key,
        }
