"""LightningDataModule for lesion datasets: layouts, pre-flight check, splits, stats, loaders."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, get_args

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Sampler

from segapp.data.check import CheckReport, check_dataset
from segapp.data.dataset import LesionDataset
from segapp.data.errors import DataError
from segapp.data.from_checkpoint import CheckpointData, check_settings, check_split, split_record
from segapp.data.layouts import Discovery, LayoutName, Pair, discover
from segapp.data.maskrule import dataset_mask_rule
from segapp.data.sampling import (
    SamplingName,
    bin_shares,
    lesion_fractions,
    lesion_size_sampler,
    size_balanced_weights,
)
from segapp.data.size_schedule import SizeSchedule
from segapp.data.splits import data_fingerprint, make_splits
from segapp.data.stats import NormalizeMode, Stats, cached_channel_stats, explicit_stats, imagenet_stats
from segapp.data.transforms import AugmentPreset, build_augment
from segapp.data.transforms import augment_params as check_augment
from segapp.errors import SettingError, check_choice, check_range
from segapp.io import MaskRule, MaskStats, PreprocessSpec, decide_rule
from segapp.io.masks import values_text

log = logging.getLogger(__name__)


def _seed_worker(worker_id: int) -> None:
    """Seed a worker's albumentations pipeline from torch's per-worker seed (set by seed_everything)."""
    info = torch.utils.data.get_worker_info()
    aug = getattr(info.dataset, "augment", None) if info else None
    if aug is not None:
        aug.set_random_seed(torch.initial_seed() % 2**32)


def _check_settings(hp: Any) -> None:
    """Refuse out-of-range data settings with the config key, what was expected and what came."""
    check_choice("data.in_channels", hp.in_channels, (1, 3))
    check_range("data.image_size", hp.image_size, 8, fix="use the side length in pixels the net trains at")
    check_range("data.val_fraction", hp.val_fraction, 0.0, 1.0, hi_open=True, fix="e.g. 0.2 for 20 % validation")
    check_range("data.test_fraction", hp.test_fraction, 0.0, 1.0, hi_open=True)
    if hp.val_fraction + hp.test_fraction >= 1.0:
        raise SettingError(
            f"data.val_fraction + data.test_fraction: expected a sum below 1 (images left to train "
            f"on), got {hp.val_fraction} + {hp.test_fraction}"
        )
    check_range("data.batch_size", hp.batch_size, 1)
    check_range("data.num_workers", hp.num_workers, 0)
    check_range("data.mask_threshold", hp.mask_threshold, 0.0, 255.0)
    check_choice("data.sampling", hp.sampling, get_args(SamplingName))
    if hp.train_subset is not None:
        check_range("data.train_subset", hp.train_subset, 1)


MIN_LESION_PX = 4.0
"""Below about this many pixels at the net's size a lesion may not survive nearest-neighbour
downscaling (a 5 x 5 lesion at 512 -> 64 px survives or not by where it sits)."""


def vanishing_lesion_note(lesions: dict, image_size: int) -> str | None:
    """A warning when the smallest lesion (share of its frame, from the pre-flight check) spans fewer
    than :data:`MIN_LESION_PX` pixels at ``image_size``: its mask may come out empty, and the image
    then trains as "no lesion" and validates an empty prediction as Dice 1, without a word."""
    smallest = lesions.get("min")
    if not smallest or smallest * image_size**2 >= MIN_LESION_PX:
        return None
    return (
        f"the smallest lesion is {smallest:.3%} of its frame, about {smallest * image_size**2:.1f} px at "
        f"data.image_size {image_size}: nearest-neighbour downscaling can erase a lesion that small, and its image "
        "then trains and validates as 'no lesion'; fix: a larger data.image_size, or check that mask "
        "(segapp-data check lists the lesion sizes)"
    )


class LesionDataModule(L.LightningDataModule):
    """Reads a lesion dataset, checks it, splits it reproducibly and serves resized, normalised tensors.

    Args:
        root: Dataset folder (or CSV manifest).
        layout: How image and mask files are paired; ``auto`` detects it.
        mask_suffix: ``suffix`` layout: mask file stem = image stem + this (+ ``_1``, ``_2``...).
        mask_dir: ``suffix`` layout: folder (relative to root) holding the masks, if apart.
        csv_name: ``csv`` layout: manifest file name when ``root`` holds several CSVs.
        image_size: Network input size (square), pixels; a multiple of ``2**depth``.
        train_size_schedule: Progressive resizing: ``{first epoch: training size}``, e.g.
            ``{0: 192, 10: 256}``, or ``{share of the run's epochs: size}``, e.g. ``{0: 192, 0.5:
            256}`` (the switch follows the epoch count ``trainer.max_time`` holds;
            :mod:`segapp.data.size_schedule`); sizes up to ``image_size`` (images are read at
            ``image_size`` and downscaled after augmentation), ``image_size`` before the first key.
            Validation, test and inference stay at ``image_size``. The training loader is rebuilt
            every epoch.
        in_channels: 3 (gray images repeated) or 1 (RGB to gray). Linked to the model.
        val_fraction: Share of pairs held out for validation (ignored with k-fold).
        test_fraction: Share of pairs held out for testing.
        seed: Split seed: the same files and seed give the same split and folds.
        group_regex: Regex on image file names giving a group id (first capture group), so a
            patient or lesion never spans two splits or folds. A CSV ``group`` column wins.
        num_folds: k-fold cross-validation when >= 2 (the test split stays out of the folds).
        fold: Which fold is validation, ``0..num_folds-1``.
        train_subset: Keep a seeded subset of this many training pairs (small-data experiments).
        batch_size: Training and evaluation batch size.
        num_workers: DataLoader worker processes.
        augment: Augmentation preset for training: none, light, standard, strong.
        augment_params: Overrides of preset knobs (see :data:`segapp.data.transforms.PRESETS`).
        sampling: How each training epoch draws its images: ``uniform`` (each once, shuffled) or
            ``lesion_size`` (empty masks keep their share; the lesion images' draws half uniform,
            half even over lesion-size bins, with replacement, so rare sizes are seen more often;
            see :mod:`segapp.data.sampling`).
        normalize: ``auto`` (the net's pretrained statistics, else ``dataset``), ``imagenet``,
            ``dataset`` (mean/std of the training split, cached), ``none``, or ``{mean, std}``.
        mask_threshold: Threshold on the 0-255 scale for grey masks (0-255 PNG/JPEG). The mask
            value rule (binary 0/1, label map or grey) is decided once per dataset from the
            values of all its masks; see docs/data.md.
        foreground_labels: Label-map masks: the label values that are lesion (e.g. ``[1, 2]``);
            ``None`` (default): any non-zero label. Setting it reads the masks as label maps.
        strict: Treat pre-flight warnings (unpaired files, non-binary masks...) as errors.
        check: Run the pre-flight check in ``setup()`` (cached by data fingerprint).
        cache: Keep resized copies of images and masks in the user cache folder.
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        layout: LayoutName = "auto",
        mask_suffix: str = "_mask",
        mask_dir: str | None = None,
        csv_name: str | None = None,
        image_size: int = 256,
        train_size_schedule: dict[float, int] | None = None,
        in_channels: int = 3,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 42,
        group_regex: str | None = None,
        num_folds: int = 0,
        fold: int = 0,
        train_subset: int | None = None,
        batch_size: int = 8,
        num_workers: int = 2,
        augment: AugmentPreset = "light",
        augment_params: dict[str, Any] | None = None,
        sampling: SamplingName = "uniform",
        normalize: NormalizeMode | dict[str, list[float]] = "auto",
        mask_threshold: float = 127.0,
        foreground_labels: list[int] | None = None,
        strict: bool = False,
        check: bool = True,
        cache: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_settings(self.hparams)
        check_augment(augment, augment_params)
        if foreground_labels is not None:
            try:
                decide_rule(MaskStats(), mask_threshold, foreground_labels)  # validates the labels
            except ValueError as e:
                raise SettingError(str(e)) from e
        self.size_schedule = SizeSchedule(train_size_schedule, image_size)
        if isinstance(normalize, dict):
            explicit_stats(normalize, in_channels)
        self.size = (image_size, image_size)
        self.discovery: Discovery | None = None
        self.report: CheckReport | None = None
        self.splits: dict[str, list[Pair]] = {}
        self.split_ids: dict[str, list[str]] | None = None
        self.checkpoint: CheckpointData | None = None
        self.spec: PreprocessSpec | None = None
        self.fingerprint: str | None = None
        self.mask_rule: MaskRule | None = None
        self._fractions: np.ndarray | None = None

    def discover(self) -> Discovery:
        """Find the pairs on disk (raises :class:`DataError` with a one-line fix)."""
        h = self.hparams
        return discover(h.root, h.layout, mask_suffix=h.mask_suffix, mask_dir=h.mask_dir, csv_name=h.csv_name)

    def _net_stats(self) -> Stats | None:
        module = getattr(self.trainer, "lightning_module", None) if self.trainer else None
        return getattr(getattr(module, "net", None), "pretrained_stats", None)

    def _resolve_stats(self) -> Stats:
        c = self.hparams.in_channels
        mode = self.hparams.normalize
        if isinstance(mode, dict):
            return explicit_stats(mode, c)
        if mode == "auto":
            stats = self._net_stats()
            if stats is not None:
                return tuple(stats[0]), tuple(stats[1])
            mode = "dataset"
        if mode == "imagenet":
            return imagenet_stats(c)
        if mode == "none":
            return (0.0,) * c, (1.0,) * c
        return cached_channel_stats(self.splits["train"], self.size, c)

    def preflight(self) -> CheckReport:
        """Run (or read from the cache) the pre-flight check; raise on errors, log warnings.

        Raises:
            DataError: on errors, or on warnings with ``data.strict: true``.
        """
        h = self.hparams
        rep = check_dataset(self.discovery, h.mask_threshold, self.fingerprint, foreground_labels=h.foreground_labels)
        if rep.errors:
            raise DataError(
                f"{self.hparams.root}: {rep.errors[0]} (run `segapp-data check {self.hparams.root}` for the "
                f"full report)"
            )
        if rep.warnings and self.hparams.strict:
            raise DataError(
                f"{self.hparams.root}: {rep.warnings[0]}; data.strict is true: fix the data or set data.strict: false"
            )
        for w in rep.warnings:
            log.warning("data: %s", w)
        tiny = vanishing_lesion_note(rep.lesions, self.hparams.image_size)
        if tiny:
            log.warning("data: %s", tiny)
        return rep

    def setup(self, stage: str | None = None) -> None:
        """Discover, check and split the pairs; decide the preprocessing (a followed checkpoint's, else
        this data's), checking the split against a followed checkpoint for ``stage``."""
        if self.spec is not None:
            return
        h = self.hparams
        self.discovery = self.discover()
        self.fingerprint = data_fingerprint(self.discovery)
        if h.check:
            self.report = self.preflight()
        self.mask_rule = self._decide_mask_rule()
        self.splits = make_splits(
            self.discovery.pairs,
            h.val_fraction,
            h.test_fraction,
            h.seed,
            group_regex=h.group_regex,
            num_folds=h.num_folds,
            fold=h.fold,
            train_subset=h.train_subset,
        )
        self.split_ids = split_record(self.splits)
        self.spec = self._checked_spec(stage)
        n = [len(self.splits[k]) for k in ("train", "val", "test")]
        rank_zero_info(f"data: {n[0]} train / {n[1]} val / {n[2]} test pairs from {h.root} ({self.discovery.layout})")

    def follow_checkpoint(self, ckpt: CheckpointData, resume: bool, given: Iterable[str] | None = None) -> None:
        """Feed the data as checkpoint ``ckpt`` was fed, and check the split against it in :meth:`setup`.

        Called by the app on ``--ckpt_path`` before the trainer runs. ``resume``: ``segapp fit``;
        ``given``: the ``data.*`` keys the user set (``None``: all), see :func:`check_settings`.

        Raises:
            SettingError: on an ``image_size`` / ``in_channels`` / ``normalize`` other than the checkpoint's.
        """
        check_settings(ckpt, self.hparams, resume, given)
        self.checkpoint = ckpt

    def _checked_spec(self, stage: str | None) -> PreprocessSpec:
        """Following a checkpoint: its split checked, its preprocessing; otherwise this data's own."""
        ckpt = self.checkpoint
        if ckpt is not None:
            check_split(ckpt, self.split_ids, stage)
            if ckpt.spec is not None:
                log.info("data: fed as checkpoint %s was: %s", ckpt.path, ckpt.spec)
                return ckpt.spec
        mean, std = self._resolve_stats()
        return PreprocessSpec(size=self.size, in_channels=self.hparams.in_channels, mean=mean, std=std)

    def _decide_mask_rule(self) -> MaskRule:
        """The dataset's mask value rule: from the check report, else from one (cached) scan of the masks."""
        h = self.hparams
        if self.report is not None and self.report.mask_rule:
            rule, values = self.report.rule(), self.report.mask_rule.get("values")
        else:
            rule, stats = dataset_mask_rule(
                [p.masks for p in self.discovery.pairs], h.mask_threshold, h.foreground_labels
            )
            if stats.files and stats.top == 0:  # what the check refuses as "all masks are empty"
                raise DataError(
                    f"every one of the {stats.files} masks of {h.root} is all zero, so there is no lesion to learn; "
                    "expected masks with lesion pixels; fix: check the mask folder (or data.layout / "
                    "data.mask_suffix), or run segapp-data check"
                )
            values = values_text(stats)
        rank_zero_info(f"data: mask rule {rule.describe()} (values found {values})")
        return rule

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints by Lightning: the data fingerprint, the mask rule trained with and the
        split (:func:`split_record`: which images trained, validated, tested; checked on ``--ckpt_path``)."""
        return {
            "fingerprint": self.fingerprint,
            "split": self.split_ids,
            "mask_rule": self.mask_rule.to_dict() if self.mask_rule else None,
            "size_schedule": self.size_schedule.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On ``--ckpt_path``: the sizes the run's epochs trained at (the rest is re-derived from the data)."""
        self.size_schedule.load_state_dict(state_dict.get("size_schedule"))

    def preprocess_spec(self) -> PreprocessSpec:
        if self.spec is None:
            raise RuntimeError("LesionDataModule.setup() must run before preprocess_spec()")
        return self.spec

    def train_size(self, epoch: int, length: int | None = None) -> tuple[int, int]:
        """Training input size at ``epoch`` under ``train_size_schedule`` (else ``image_size``).

        ``length``: the run's length in epochs to place shares on (default: the one the LR schedule
        pushed through :meth:`follow_length`, else ``trainer.max_epochs``).
        """
        fallback = self.trainer.max_epochs if self.trainer is not None else None
        return (self.size_schedule.size(epoch, length, fallback),) * 2

    def follow_length(self, epochs: int | None) -> None:
        """The run's length in epochs (called by the LR schedule whenever it changes)."""
        self.size_schedule.length = epochs

    def _progressive(self) -> bool:
        return self.size_schedule.progressive()

    def dataset(self, split: str, train: bool) -> LesionDataset:
        """The dataset of a split; ``train`` adds the augmentation pipeline."""
        h = self.hparams
        pairs = self.splits[split]
        if not pairs:
            raise DataError(self._empty_split(split))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        out_size = self.train_size(epoch) if train else None
        if train and self.trainer is not None:  # recorded: a later re-placed switch does not rewrite it
            out_size = (self.size_schedule.start_epoch(epoch, self.trainer.max_epochs),) * 2
        aug = build_augment(h.augment, self.size, h.in_channels, h.augment_params, out_size) if train else None
        if aug is not None:
            aug.set_random_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        return LesionDataset(pairs, self.spec, augment=aug, mask_rule=self.mask_rule, cache=h.cache)

    def _empty_split(self, split: str) -> str:
        """Why ``split`` has no images, and the fix; scoring a checkpoint, a split cut now would hold
        images it learnt from (refused in :meth:`setup`), so the fix is the training run's or other images."""
        fix = f"set data.{split}_fraction > 0 to hold out images for it"
        if self.checkpoint is not None and self.trainer is not None and self.trainer.state.fn != "fit":
            fix = (
                f"a run holds out its {split} images when it trains (data.{split}_fraction, split folders, a CSV split "
                f"column): {self.checkpoint.path} was trained without; score images it never saw with segapp-predict "
                "and segapp-eval"
            )
        return f"the {split} split is empty; expected images to score; fix: {fix}"

    def _eval_sampler(self, ds) -> Sampler | None:
        """Under DDP, give each rank a disjoint share of an evaluation split, without padding.

        Lightning's default DistributedSampler pads the last batch with repeated samples so that
        every rank gets the same count; those repeats would enter the per-image Dice. Our metrics
        sum states across ranks, so uneven shares are exact.
        """
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(
            ds, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )

    def _train_sampler(self) -> Sampler | None:
        """``data.sampling: lesion_size``: a size-balanced sampler (lesion shares read once per fit)."""
        if self.hparams.sampling == "uniform":
            return None
        if self._fractions is None:
            self._fractions = lesion_fractions(self.splits["train"], self.mask_rule)
            shares = bin_shares(self._fractions, size_balanced_weights(self._fractions))
            text = ", ".join(f"{k} {img:.0%} of images -> {draw:.0%} of draws" for k, (img, draw) in shares.items())
            rank_zero_info(f"data.sampling lesion_size: lesion share of the frame {text}")
        return lesion_size_sampler(self._fractions, int(torch.randint(0, 2**31 - 1, (1,)).item()))

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.dataset(split, train)
        nw = self.hparams.num_workers
        sampler = self._train_sampler() if train else self._eval_sampler(ds)
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(ds) > self.hparams.batch_size,
            num_workers=nw,
            persistent_workers=nw > 0,
            worker_init_fn=_seed_worker if nw > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", train=True)  # records this epoch's size
        if self._progressive() and self.trainer is not None:
            self.trainer.reload_dataloaders_every_n_epochs = 1  # rebuild the loader (new size) each epoch
            epoch = self.trainer.current_epoch
            size, before = self.train_size(epoch)[0], self.train_size(epoch - 1)[0]
            if epoch == 0 or size != before:
                rank_zero_info(f"epoch {epoch}: training at {size} px ({self.size_schedule.key_of(epoch)})")
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)
