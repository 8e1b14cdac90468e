"""``data.sampling: lesion_size``: rare lesion sizes are drawn more often, every image still can be."""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import pytest
from torch.utils.data import WeightedRandomSampler

from segapp.data import LesionDataModule
from segapp.data.sampling import lesion_fractions, size_balanced_weights, size_bins
from segapp.errors import SettingError
from segapp.io import MaskRule, ReadError
from tests.data.conftest import disk, rgb, save


def test_a_rare_small_lesion_bin_gets_a_larger_share_of_the_draws():
    fr = np.array([0.001] * 2 + [0.1] * 18)  # 10 % of the images hold a lesion under 0.5 % of the frame
    assert size_bins(fr).tolist() == [0] * 2 + [3] * 18
    w = size_balanced_weights(fr)
    assert w.sum() == pytest.approx(1.0)
    # half uniform (2/20 of it), half even over the two bins present (1/2 of it)
    assert w[:2].sum() == pytest.approx(0.5 * 2 / 20 + 0.5 * 0.5)
    assert w[2:].min() > 0  # the common size keeps its chance
    one_size = size_balanced_weights(np.full(7, 0.1))
    assert np.allclose(one_size, 1 / 7)  # a single bin: uniform


def test_empty_masks_keep_their_share():
    fr = np.array([0.0] * 6 + [0.001] * 1 + [0.1] * 3)
    assert size_bins(fr).tolist() == [-1] * 6 + [0] + [3] * 3
    w = size_balanced_weights(fr)
    assert w[:6].sum() == pytest.approx(0.6)  # as drawn uniformly
    assert w[6] == pytest.approx(0.4 * (0.5 / 4 + 0.5 / 2))  # the lone small lesion: 0.4 x 0.375


def _sized_root(root, n_small: int = 2, n_large: int = 10, size: int = 40):
    """Images with a 1-pixel-radius lesion (small) or a radius-12 one (large)."""
    for i in range(n_small + n_large):
        r = 1 if i < n_small else 12
        save(root / "images" / f"img{i:02d}.png", rgb(i, size))
        save(root / "masks" / f"img{i:02d}.png", (disk(size, r) * 255).astype(np.uint8))
    return root


def test_lesion_fractions_are_read_from_the_masks(tmp_path):
    root = _sized_root(tmp_path / "d", n_small=1, n_large=1)
    dm = LesionDataModule(root=str(root), image_size=32, num_workers=0, val_fraction=0.0, check=False)
    dm.setup()
    fr = lesion_fractions(sorted(dm.splits["train"], key=lambda p: p.key), MaskRule())
    assert fr[0] == pytest.approx(disk(40, 1).mean()) and fr[1] == pytest.approx(disk(40, 12).mean())


def test_the_training_loader_draws_small_lesions_more_often(tmp_path, capsys):
    root = _sized_root(tmp_path / "d")
    L.seed_everything(0, verbose=False)
    kw = {"image_size": 32, "batch_size": 4, "num_workers": 0, "normalize": "none", "val_fraction": 0.0}
    dm = LesionDataModule(root=str(root), sampling="lesion_size", **kw)
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, WeightedRandomSampler) and len(loader.sampler) == len(dm.splits["train"])
    small = {p.key for p in dm.splits["train"] if int(p.key[-2:]) < 2}
    draws = Counter()
    for _ in range(60):  # 60 epochs of 12 draws
        for batch in dm.train_dataloader():
            draws.update(k in small for k in batch["key"])
    share = draws[True] / sum(draws.values())
    assert 0.2 < share < 0.4  # expected 0.5 x 2/12 + 0.5 x 1/2 = 0.33; uniform would be 0.17
    uniform = LesionDataModule(root=str(root), **kw)
    uniform.setup()
    assert not isinstance(uniform.train_dataloader().sampler, WeightedRandomSampler)


def test_an_unknown_sampling_is_refused_with_the_choices(tmp_path):
    with pytest.raises(SettingError, match=r"data.sampling.*lesion_size"):
        LesionDataModule(root=str(tmp_path), sampling="balanced")


def test_only_empty_masks_draw_uniformly_and_an_unreadable_mask_is_named(tmp_path):
    assert np.allclose(size_balanced_weights(np.zeros(5)), 0.2)  # no lesion sizes to balance: uniform
    root = _sized_root(tmp_path / "d", n_small=1, n_large=3)
    bad = root / "masks" / "img02.png"
    bad.write_bytes(b"not a png")
    dm = LesionDataModule(root=str(root), image_size=32, num_workers=0, val_fraction=0.0, check=False)
    dm.setup()
    with pytest.raises(ReadError, match="img02.png"):
        lesion_fractions(dm.splits["train"], MaskRule())
