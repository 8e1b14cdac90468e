"""Callbacks the CLI adds to every run."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from segapp.lit.run_info import write_run_info


def _fmt(v) -> str:
    return f"{float(v):.4f}" if v is not None else "n/a"


class RunSummary(Callback):
    """Writes ``run_info.json`` beside the logs when training starts (after the LR schedule's
    length is resolved) and again at the end; prints, at the end, the best validation scores and
    where the run's files are."""

    def __init__(self) -> None:
        self._written = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._written:
            self._write(trainer, pl_module)
            self._written = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = self._write(trainer, pl_module)
        if trainer.is_global_zero:
            self._print(trainer, pl_module, log_dir)

    @staticmethod
    def _write(trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        info = getattr(pl_module, "run_info", None)
        if info is not None:
            info["data_fingerprint"] = getattr(pl_module, "data_fingerprint", None)
            if log_dir and trainer.is_global_zero:
                write_run_info(info, log_dir)
        return log_dir

    @staticmethod
    def _print(trainer: L.Trainer, pl_module: L.LightningModule, log_dir: str | None) -> None:
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        metrics = trainer.callback_metrics
        lines = ["", "segapp run summary"]
        if ckpt is not None and ckpt.best_model_path:
            lines.append(f"  best {ckpt.monitor}: {_fmt(ckpt.best_model_score)}")
        lines.append(f"  last val/dice: {_fmt(metrics.get('val/dice'))}   last val/iou: {_fmt(metrics.get('val/iou'))}")
        lines.append(f"  tuned threshold: {getattr(pl_module, 'tuned_threshold', 0.5):.2f}")
        if ckpt is not None:
            lines.append(f"  best checkpoint: {ckpt.best_model_path or 'n/a'}")
            lines.append(f"  last checkpoint: {Path(ckpt.dirpath) / 'last.ckpt'}")
        if log_dir:
            lines.append(f"  logs and config: {log_dir}")
        print("\n".join(lines), flush=True)


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is the end of the latest epoch, as README promises.

    Lightning 2.6 writes ``last.ckpt`` only in a step where a top-k checkpoint was also saved
    ("Only save last checkpoint if a checkpoint was actually saved in this step"). With
    ``monitor: val/dice`` and ``save_top_k: 1`` that made ``last.ckpt`` the *best* epoch: after an
    epoch that did not improve, ``--ckpt_path last`` silently rewound the run to the best epoch,
    and "the last weights" were the best ones. Here ``last.ckpt`` is written after every
    validation (or training epoch end, when that is where checkpoints are saved) that saved
    nothing else.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_too(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_too(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The epochs after the last validation are in ``last.ckpt`` too: with
        ``check_val_every_n_epoch > 1`` they trained and were lost (Lightning's own end-of-training
        save is skipped once any ``last.ckpt`` was written)."""
        self._save_last_too(trainer)
        super().on_train_end(trainer, pl_module)

    def _save_last_too(self, trainer: L.Trainer) -> None:
        # skipped when this step saved already (a new best, with last.ckpt beside it), in sanity checks,
        # fast_dev_run and outside fit: the conditions ModelCheckpoint itself uses
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
