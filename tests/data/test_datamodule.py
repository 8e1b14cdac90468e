"""LesionDataModule: normalisation modes, seeded augmentation, k-fold, resized cache, CLI typing."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

import segapp.data.stats as stats_mod
from segapp.data import DataError, LesionDataModule
from segapp.data.transforms import PRESETS, build_augment
from tests.conftest import fit_args
from tests.data.conftest import TrainSizes


def dm(root, **kw) -> LesionDataModule:
    kw = {"image_size": 32, "batch_size": 4, "num_workers": 0, "normalize": "none", **kw}
    m = LesionDataModule(root=str(root), **kw)
    m.setup()
    return m


def first_batch(root, seed: int, **kw) -> dict:
    L.seed_everything(seed, verbose=False)
    return next(iter(dm(root, augment="strong", **kw).train_dataloader()))


@pytest.mark.parametrize("workers", [0, 1])
def test_same_seed_same_first_augmented_batch(paired_root, workers):
    a, b = first_batch(paired_root, 0, num_workers=workers), first_batch(paired_root, 0, num_workers=workers)
    assert a["key"] == b["key"] and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    c = first_batch(paired_root, 1, num_workers=workers)
    assert not torch.equal(a["image"], c["image"])


def test_normalize_modes(paired_root):
    explicit = dm(paired_root, normalize={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}).spec
    assert explicit.mean == (0.5,) * 3 and explicit.std == (0.25,) * 3
    assert dm(paired_root, normalize="imagenet", in_channels=1).spec.mean == pytest.approx((0.449,), abs=1e-3)
    with pytest.raises(DataError, match=r"data.normalize has 2 mean / 2 std values; expected 3 each"):
        LesionDataModule(root=str(paired_root), normalize={"mean": [0.5, 0.5], "std": [0.2, 0.2]})


def test_dataset_stats_are_computed_once_and_cached(paired_root, monkeypatch):
    first = dm(paired_root, normalize="dataset").spec
    images = np.stack(
        [
            np.asarray(__import__("PIL.Image", fromlist=["x"]).open(p.image).convert("RGB").resize((32, 32)))
            for p in dm(paired_root).splits["train"]
        ]
    )
    assert first.mean == pytest.approx(tuple(images.reshape(-1, 3).mean(0) / 255), abs=0.01)
    monkeypatch.setattr(stats_mod, "channel_stats", lambda *a: pytest.fail("stats recomputed although cached"))
    assert dm(paired_root, normalize="dataset").spec == first


def test_in_channels_one_and_shapes(paired_root):
    batch = next(iter(dm(paired_root, in_channels=1).val_dataloader()))
    assert batch["image"].shape == (2, 1, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}


def test_folds_through_the_datamodule(paired_root):
    vals = [sorted(p.key for p in dm(paired_root, num_folds=5, fold=f).splits["val"]) for f in range(5)]
    assert sorted(k for v in vals for k in v) == [f"img{i:02d}" for i in range(10)]


def test_resized_cache_matches_and_invalidates(paired_root, isolated_cache):
    plain = dm(paired_root).dataset("val", train=False)
    cached = dm(paired_root, cache=True).dataset("val", train=False)
    a, b = plain.load(0), cached.load(0)
    files = list((isolated_cache / "resized").glob("*.npz"))
    assert len(files) == 1
    assert np.abs(a[0] - b[0]).max() < 1e-4 and np.array_equal(a[1], b[1])
    assert np.array_equal(cached.load(0)[0], b[0])  # second read comes from the cache
    pair = cached.pairs[0]
    pair.image.write_bytes((paired_root / "images" / "img02.png").read_bytes())  # the file changes
    c = cached.load(0)
    assert len(list((isolated_cache / "resized").glob("*.npz"))) == 2 and not np.array_equal(c[0], b[0])
    other_size = dm(paired_root, cache=True, image_size=16).dataset("val", train=False).load(0)
    assert other_size[0].shape == (16, 16, 3)


def test_augment_presets_and_overrides():
    assert build_augment("none", (32, 32)) is None
    lengths = [len(build_augment(p, (32, 32)).transforms) for p in ("light", "standard", "strong")]
    assert lengths[0] < lengths[1] < lengths[2]
    assert build_augment("none", (32, 32), overrides={"hflip": 1.0}).transforms[0].p == 1.0
    no_flip = build_augment("light", (32, 32), overrides={"hflip": 0.0, "vflip": 0.0})
    assert "HorizontalFlip" not in [type(t).__name__ for t in no_flip.transforms]
    with pytest.raises(ValueError, match="unknown data.augment_params key.*flipp.*expected some of: hflip"):
        build_augment("light", (32, 32), overrides={"flipp": 1.0})
    assert set(PRESETS) == {"none", "light", "standard", "strong"}


def test_cli_validates_new_options(paired_root, tmp_path):
    from segapp.app import cli

    run = cli(
        fit_args(
            paired_root,
            tmp_path / "run",
            "--data.normalize",
            "{mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}",
            "--data.augment",
            "strong",
            "--data.augment_params",
            "{rotate: 30}",
            "--data.num_folds",
            "5",
            "--data.fold",
            "2",
            "--data.group_regex",
            "^(img)",
        )[1:],  # run=False: no subcommand
        run=False,
    )
    assert run.datamodule.hparams.normalize == {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}
    assert run.datamodule.hparams.augment_params == {"rotate": 30}
    with pytest.raises(SystemExit):
        cli(fit_args(paired_root, tmp_path / "bad", "--data.augment", "wild")[1:], run=False)


def test_progressive_resizing_sizes_and_pixels(paired_root):
    m = dm(paired_root, augment="none", train_size_schedule={0: 16, 2: 32})
    assert [m.train_size(e)[0] for e in range(4)] == [16, 16, 32, 32]
    assert dm(paired_root, train_size_schedule={3: 16, 5: 32}).train_size(0) == (32, 32)  # image_size before key 3
    small, full = m.dataset("train", train=True)[0], m.dataset("train", train=False)[0]
    assert small["image"].shape == (3, 16, 16) and small["mask"].shape == (1, 16, 16)
    pooled = full["image"].reshape(3, 16, 2, 16, 2).mean((2, 4))  # area downscale = 2x2 mean
    assert torch.allclose(small["image"], pooled, atol=1e-5)
    assert torch.equal(small["mask"], full["mask"][:, ::2, ::2])  # nearest keeps masks binary
    assert next(iter(m.val_dataloader()))["image"].shape[-2:] == (32, 32)


def test_progressive_resizing_rejects_bad_schedules(paired_root):
    with pytest.raises(
        ValueError, match=r"size 64 at key 0 is outside 8\.\.32 \(data.image_size\).*raise data.image_size"
    ):
        dm(paired_root, train_size_schedule={0: 64})
    with pytest.raises(ValueError, match="key -1 is neither a first epoch nor a share"):
        dm(paired_root, train_size_schedule={-1: 16})
    with pytest.raises(ValueError, match=r"ends at 16 px, not at data.image_size 32; .* looks 2x its trained size"):
        dm(paired_root, train_size_schedule={0: 8, 2: 16})  # validation and prediction run at 32 px


def test_progressive_resizing_in_fit(synth_root, tmp_path, caplog):
    import logging

    from segapp.app import cli

    run = cli(
        fit_args(
            synth_root,
            tmp_path / "run",
            "--data.train_size_schedule",
            "{0: 32, 2: 64}",
            "--trainer.max_epochs",
            "3",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
        )[1:],
        run=False,
    )
    sizes = TrainSizes()
    run.trainer.callbacks.append(sizes)
    with caplog.at_level(logging.INFO):
        run.trainer.fit(run.model, run.datamodule)
    assert sizes.seen == {0: {32}, 1: {32}, 2: {64}}
    said = [r.getMessage() for r in caplog.records if "data.train_size_schedule" in r.getMessage()]
    assert said == [
        "epoch 0: training at 32 px (data.train_size_schedule)",
        "epoch 2: training at 64 px (data.train_size_schedule)",
    ]
    assert run.trainer.reload_dataloaders_every_n_epochs == 1


def test_a_lesion_too_small_for_the_image_size_is_warned_about():
    """Nearest-neighbour downscaling can erase a tiny lesion: its image then trained as 'no lesion'."""
    from segapp.data.datamodule import vanishing_lesion_note

    note = vanishing_lesion_note({"min": 25 / 512**2}, 64)  # a 5 x 5 lesion in a 512 px frame, at 64 px
    assert note is not None and "about 0.4 px at data.image_size 64" in note and "fix: a larger" in note
    assert vanishing_lesion_note({"min": 25 / 512**2}, 512) is None
    assert vanishing_lesion_note({"nonempty": 0}, 64) is None
