"""Torch dataset over :class:`~segapp.data.layouts.Pair` lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segapp.data.cache import ResizedCache
from segapp.data.layouts import Pair
from segapp.io import MaskRule, PreprocessSpec, normalize, read_image, read_masks, resize_image
from segapp.io.preprocess import resize_mask


def load_mask(pair: Pair, rule: MaskRule) -> np.ndarray:
    """OR together every mask file of a pair with the dataset's mask rule (bool ``H x W``)."""
    return read_masks(pair.masks, rule)


class LesionDataset(Dataset):
    """Image and mask tensors: ``image (C, H, W)`` float32, ``mask (1, H, W)`` float32 0/1.

    Validation/test use the shared :func:`segapp.io.preprocess` steps (resize, normalise);
    training inserts ``augment`` (an albumentations pipeline) between the two. With ``cache``
    the resized arrays come from the user cache folder (:class:`~segapp.data.cache.ResizedCache`).
    Masks are read with ``mask_rule``, the dataset's value rule (decided once for the whole
    dataset, see :mod:`segapp.io.masks`); default: grey at 127.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        spec: PreprocessSpec,
        augment=None,
        mask_rule: MaskRule | None = None,
        cache: bool = False,
    ):
        self.pairs = list(pairs)
        self.spec = spec
        self.augment = augment
        self.mask_rule = mask_rule or MaskRule()
        rule = self.mask_rule
        self.cache = (
            ResizedCache("resized", tuple(spec.size), spec.in_channels, rule.kind, float(rule.threshold), rule.labels)
            if cache
            else None
        )

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
        mask = resize_mask(load_mask(pair, self.mask_rule), self.spec.size)
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
