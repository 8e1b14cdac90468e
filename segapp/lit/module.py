"""SegmentationModule: binary lesion segmentation as a LightningModule."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from segapp.errors import SettingError, check_range
from segapp.io import PreprocessSpec
from segapp.lit import finetune
from segapp.lit.checkpoint_meta import SCHEMA_VERSION, build_meta
from segapp.lit.losses import LossName, create_loss
from segapp.lit.metrics import PerImageDice, PerImageIoU
from segapp.lit.schedule_length import ScheduleFollower
from segapp.lit.schedulers import WarmupCosine
from segapp.lit.threshold import ThresholdSweep
from segapp.nets import UNet

log = logging.getLogger(__name__)


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


class SegmentationModule(L.LightningModule):
    """Trains a net that maps ``(N, C, H, W)`` images to ``(N, 1, H, W)`` lesion logits.

    Args:
        net: A registered segapp net (``class_path`` + ``init_args`` in YAML).
        loss: ``dice_bce`` (MONAI DiceCELoss, sigmoid), ``dice``, ``bce``, ``dice_focal`` or
            ``tversky`` (:func:`segapp.lit.losses.create_loss`).
        optimizer: Optimiser factory (LightningCLI ``OptimizerCallable``).
        scheduler: Optional LR scheduler factory; ``ReduceLROnPlateau`` watches ``monitor``.
        monitor: Metric for the plateau scheduler (and the checkpoint callback by default).
        threshold: Probability threshold for metrics during training.
        tune_threshold: After each validation, pick the threshold on a small grid that
            maximises mean validation Dice; stored in the checkpoint for inference.
        channels_last: Use the channels-last memory format for the net and its inputs
            (faster convolutions with bf16/fp16 on recent CPUs and GPUs).
        compile: Wrap the net's forward in ``torch.compile`` (first steps are slower).
        freeze_encoder_epochs: Transfer learning: train with the encoder frozen (no gradients,
            BatchNorm in eval mode) for this many epochs, then fine-tune everything.
        encoder_lr_mult: Encoder learning rate = optimiser LR x this (discriminative LR;
            e.g. 0.1 for a pretrained encoder). Weight decay and gradient clipping are set on
            the optimiser (``weight_decay``) and the trainer (``gradient_clip_val``).
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        loss: LossName = "dice_bce",
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/dice",
        threshold: float = 0.5,
        tune_threshold: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        freeze_encoder_epochs: int = 0,
        encoder_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net if net is not None else UNet()
        self.loss_fn = create_loss(loss)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_dice = PerImageDice(threshold)
        self.val_dice = PerImageDice(threshold)
        self.val_iou = PerImageIoU(threshold)
        self.test_dice = PerImageDice(threshold)
        self.test_iou = PerImageIoU(threshold)
        self.sweep = ThresholdSweep()
        self.tuned_threshold: float = threshold
        self.preprocess_spec: PreprocessSpec | None = None
        self.data_fingerprint: str | None = None
        self.run_info: dict[str, Any] = {}
        self.temperature: float = 1.0  # from a loaded checkpoint's trust block (reported probabilities only)
        self._schedule = ScheduleFollower()
        self._epoch_t0: float | None = None  # set at each epoch start (not on a mid-epoch resume)
        check_range("model.freeze_encoder_epochs", freeze_encoder_epochs, 0)
        check_range("model.threshold", threshold, 0.0, 1.0, lo_open=True, hi_open=True)
        if freeze_encoder_epochs > 0 or encoder_lr_mult != 1.0:
            finetune.require_encoder(self.net, "freeze_encoder_epochs / encoder_lr_mult")
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module tree so the state dict has no duplicate "_compiled.*" keys
        self.__dict__["_compiled"] = torch.compile(self.net) if compile else None

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._compiled(x) if self._compiled is not None else self.net(x)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "preprocess_spec"):
            self.preprocess_spec = dm.preprocess_spec()
            self.data_fingerprint = getattr(dm, "fingerprint", None)
            rule = getattr(dm, "mask_rule", None)
            if rule is not None:  # how the masks' values became foreground (recorded with the run)
                self.run_info["mask_rule"] = rule.to_dict()

    def _shared_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self(batch["image"])
        loss = self.loss_fn(logits.float(), batch["mask"])
        return loss, torch.sigmoid(logits.float())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, probs = self._shared_step(batch)
        self.train_dice(probs.detach(), batch["mask"])
        n = batch["image"].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("train/dice", self.train_dice, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, probs = self._shared_step(batch)
        self.val_dice(probs, batch["mask"])
        self.val_iou(probs, batch["mask"])
        if self.hparams.tune_threshold:
            self.sweep.update(probs, batch["mask"])
        n = batch["image"].shape[0]
        self.log("val/loss", loss, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("val/dice", self.val_dice, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val/iou", self.val_iou, on_epoch=True, batch_size=n)

    def on_validation_epoch_end(self) -> None:
        if not self.hparams.tune_threshold or self.trainer.sanity_checking:
            self.sweep.reset()
            return
        best_t, best_dice = self.sweep.compute()
        self.sweep.reset()
        self.tuned_threshold = float(best_t)
        self.log("val/best_threshold", best_t, sync_dist=True)
        self.log("val/dice_at_best_threshold", best_dice, sync_dist=True)

    def on_validation_start(self) -> None:
        """``segapp validate``: score at the checkpoint's tuned threshold (in fit, 0.5 chooses best.ckpt)."""
        if self.trainer.state.fn == "validate":
            self._score_at(self.tuned_threshold, self.val_dice, self.val_iou)

    def on_test_start(self) -> None:
        """``segapp test``: score at the checkpoint's tuned threshold, the one segapp-predict uses
        (``test/dice`` was at ``model.threshold``: 0.066 against the report's 0.144 at a tuned 0.30)."""
        self._score_at(self.tuned_threshold, self.test_dice, self.test_iou)

    def _score_at(self, threshold: float, *metrics: PerImageDice | PerImageIoU) -> None:
        for m in metrics:
            m.threshold = threshold
        rank_zero_info(f"dice/iou at the checkpoint's threshold {threshold:.3f} (the one segapp-predict uses)")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, probs = self._shared_step(batch)
        self.test_dice(probs, batch["mask"])
        self.test_iou(probs, batch["mask"])
        n = batch["image"].shape[0]
        self.log("test/loss", loss, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("test/dice", self.test_dice, on_epoch=True, batch_size=n)
        self.log("test/iou", self.test_iou, on_epoch=True, batch_size=n)
        return probs  # the EvalReport callback writes these at original resolution

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Probabilities ``(N, 1, H, W)`` at training resolution."""
        return torch.sigmoid(self(batch["image"]).float())

    def _warmup_cosine(self) -> WarmupCosine | None:
        configs = self.trainer.lr_scheduler_configs if self._trainer is not None else []
        return next((c.scheduler for c in configs if isinstance(c.scheduler, WarmupCosine)), None)

    def on_train_start(self) -> None:
        """Set the cosine's length from the run's limits (after a checkpoint's state is restored)."""
        sched = self._warmup_cosine()
        if sched is not None:
            self._schedule.start(self.trainer, sched, self.run_info)
        sizes = getattr(getattr(self.trainer, "datamodule", None), "size_schedule", None)
        if sizes is not None:  # a schedule by shares needs a length: refuse now, not after epoch 0
            pending = sched is not None and sched.follows_trainer and sched.max_epochs is None
            sizes.require_length(self.trainer.max_epochs, pending)
        if getattr(self.trainer.fit_loop, "restarted_mid_epoch", False):
            # Lightning skips on_train_epoch_start when it resumes mid-epoch (a checkpoint saved on an
            # exception or every_n_train_steps): set the encoder's freeze state for this epoch here
            self._set_encoder_frozen()

    def on_train_epoch_end(self) -> None:
        """With ``trainer.max_time``, re-project the cosine's length from this epoch's duration."""
        sched = self._warmup_cosine()
        seconds = None if self._epoch_t0 is None else time.monotonic() - self._epoch_t0
        self._epoch_t0 = None
        if sched is not None:
            self._schedule.epoch_end(self.trainer, sched, self.run_info, seconds)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """With ``trainer.max_time``, end the last (partial) epoch in time for its validation."""
        sched = self._warmup_cosine()
        if sched is not None:
            self._schedule.batch_end(self.trainer, sched, self.run_info, batch_idx)

    def on_train_epoch_start(self) -> None:
        """Freeze the encoder for the first ``freeze_encoder_epochs`` epochs, then unfreeze (logged)."""
        self._epoch_t0 = time.monotonic()
        n = self.hparams.freeze_encoder_epochs
        lrs = finetune.group_lrs(self.trainer.optimizers[0]) if self.trainer.optimizers else {}
        if self.hparams.encoder_lr_mult != 1.0:
            for name, lr in lrs.items():
                self.log(f"train/lr_{name}", lr, on_step=False, on_epoch=True)
        if n <= 0:
            return
        frozen = self._set_encoder_frozen()
        if self.current_epoch == n:
            rank_zero_info(f"epoch {n}: encoder unfrozen for fine-tuning; learning rates {lrs}")
        self.log("train/encoder_frozen", float(frozen), on_step=False, on_epoch=True)

    def _set_encoder_frozen(self) -> bool:
        """Freeze the encoder in the first ``freeze_encoder_epochs`` epochs, else unfreeze; the state set."""
        n = self.hparams.freeze_encoder_epochs
        if n <= 0:
            return False
        frozen = self.current_epoch < n
        enc = finetune.require_encoder(self.net, "freeze_encoder_epochs")
        finetune.set_encoder_frozen(enc, frozen, self.training, keep_grads=self.trainer.world_size > 1)
        return frozen

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.current_epoch < self.hparams.freeze_encoder_epochs:
            finetune.keep_bn_eval(finetune.require_encoder(self.net, "freeze_encoder_epochs"))

    def on_after_backward(self) -> None:
        # distributed runs keep requires_grad (see finetune.set_encoder_frozen): drop the grads here
        if self.current_epoch < self.hparams.freeze_encoder_epochs and self.trainer.world_size > 1:
            finetune.drop_grads(finetune.require_encoder(self.net, "freeze_encoder_epochs"))

    def configure_optimizers(self) -> Any:
        try:
            optimizer = finetune.build_optimizer(self.optimizer_factory, self.net, self.hparams.encoder_lr_mult)
        except ValueError as e:  # torch: "Invalid learning rate: -0.1" and the like
            raise SettingError(
                f"model.optimizer: expected valid optimiser settings (lr >= 0, weight_decay >= 0, ...), got {e}; "
                "fix: correct model.optimizer.init_args"
            ) from e
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the plain-JSON ``segapp`` block that inference reads without Lightning."""
        checkpoint["segapp"] = build_meta(
            self.net, self.preprocess_spec, self.tuned_threshold, self.data_fingerprint, self.run_info
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the threshold and temperature; the preprocessing and data fingerprint only where no
        datamodule gave them in :meth:`setup` (which runs first): what the data is fed with is what a
        resumed run saves, never the checkpoint's old description."""
        meta = checkpoint.get("segapp")
        if meta and meta.get("schema_version") == SCHEMA_VERSION:
            self.tuned_threshold = float(meta["threshold"])
            if meta.get("preprocess") and self.preprocess_spec is None:
                self.preprocess_spec = PreprocessSpec.from_dict(meta["preprocess"])
            if self.data_fingerprint is None:
                self.data_fingerprint = meta.get("data_fingerprint")
            self.temperature = float((meta.get("trust") or {}).get("temperature", 1.0))
