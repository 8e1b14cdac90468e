"""``EvalReport``: during ``segapp test``, write the ``segapp-eval`` report for the test split.

With ``split="val"`` it does the same for the validation split during ``segapp validate``
(never during the validation loops of ``fit``).

Predictions are scored at each image's ORIGINAL resolution, as ``segapp-predict --tta none
--no-keep-largest`` would write them: probabilities are resized to the ground-truth size
(bilinear, as the Predictor does) and thresholded at the module's ``tuned_threshold``. The
model's own TTA and clean-up (:mod:`segapp.inference.choice`) are not applied here. Masks go to
``<log_dir>/test_report/predictions/<key>.mask.png`` and the calibrated probabilities (the
checkpoint's temperature; masks never use it) to ``<key>.prob.npy``, so the report (``metrics.csv``,
``summary.json``, ``report.html``, ``figures/``) in ``<log_dir>/test_report/`` has its
calibration and uncertainty sections.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from segapp.eval import EmptyPolicy, EvalCase, MetricConfig, ReportOptions, write_report
from segapp.eval.pairing import PRED_SUFFIX
from segapp.eval.report import load_gt
from segapp.inference.postprocess import upsample
from segapp.io import atomic_write, write_mask_png

log = logging.getLogger(__name__)
PROB_SUFFIX = ".prob.npy"  # calibrated probabilities, paired with the masks by segapp-eval's rules


class EvalReport(Callback):
    """Collect test predictions at original resolution and write the evaluation report.

    Args:
        folder: Sub-folder of ``trainer.log_dir`` for the report (default ``<split>_report``).
        split: ``test`` (report during ``segapp test``) or ``val`` (during ``segapp validate``).
        worst: Worst cases (lowest Dice) in the gallery.
        tolerance: Boundary F1/NSD tolerance in pixels.
        empty_empty: Score when ground truth and prediction are both empty (1.0 or nan).
        distance_empty: HD95/ASSD when exactly one mask is empty: ``nan`` or ``max``.
        min_lesion_area: Smaller components are not lesions for the detection counts (pixels).
        n_boot: Bootstrap resamples for the confidence intervals.
        seed: Bootstrap seed.
    """

    def __init__(
        self,
        folder: str | None = None,
        split: Literal["test", "val"] = "test",
        worst: int = 12,
        tolerance: float = 2.0,
        empty_empty: float = 1.0,
        distance_empty: str = "nan",
        min_lesion_area: int = 10,
        n_boot: int = 2000,
        seed: int = 0,
    ) -> None:
        if split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        self.split = split
        self.folder = folder or f"{split}_report"
        policy = EmptyPolicy(empty_empty, distance_empty)  # type: ignore[arg-type]
        self.cfg = MetricConfig(policy=policy, tolerance=tolerance, min_lesion_area=min_lesion_area)
        self.opts = ReportOptions(worst=worst, n_boot=n_boot, seed=seed, title=f"segapp {split} report")
        self.out: Path | None = None
        self._pairs: dict = {}
        self._mask_threshold: float = 127
        self._mask_rule = None

    def _root(self, trainer: L.Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / self.folder

    def _start(self, trainer: L.Trainer) -> None:
        dm = trainer.datamodule
        splits = getattr(dm, "splits", None)
        if not splits or self.split not in splits:
            raise RuntimeError(f"TestReport needs a datamodule with splits[{self.split!r}] (segapp's LesionDataModule)")
        self._pairs = {p.key: p for p in splits[self.split]}
        self._mask_threshold = float(getattr(dm, "hparams", {}).get("mask_threshold", 127))
        self._mask_rule = getattr(dm, "mask_rule", None)  # the mask value rule training read the masks with
        self.out = self._root(trainer)

    def _probs(self, outputs, batch: dict, pl_module: L.LightningModule) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor) and outputs.ndim == 4:
            return outputs
        if isinstance(outputs, dict) and isinstance(outputs.get("probs"), torch.Tensor):
            return outputs["probs"]
        with torch.no_grad():  # test_step returned no probabilities: run the net again
            return torch.sigmoid(pl_module(batch["image"]).float())

    def _batch(self, pl_module: L.LightningModule, outputs, batch: dict) -> None:
        probs = self._probs(outputs, batch, pl_module).detach().float().cpu()[:, 0]
        threshold = float(getattr(pl_module, "tuned_threshold", 0.5))
        temperature = float(getattr(pl_module, "temperature", 1.0))
        calibrated = torch.sigmoid(torch.logit(probs.double(), eps=1e-7) / temperature).float().numpy()
        for key, p, q in zip(batch["key"], probs.numpy(), calibrated, strict=True):
            pair = self._pairs[key]
            h, w = load_gt(pair.masks, self._mask_threshold).shape
            full = upsample(p, (h, w))  # as segapp-predict does: the mask from the uncalibrated probability
            write_mask_png(self.out / "predictions" / f"{key}{PRED_SUFFIX}", full > threshold)
            with atomic_write(self.out / "predictions" / f"{key}{PROB_SUFFIX}", suffix=".npy") as tmp:
                np.save(tmp, upsample(q, (h, w)))  # calibrated, as segapp-predict --save-probs npy

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier()
        if not trainer.is_global_zero or self.out is None:
            return
        cases, missing = [], []
        for key, pair in sorted(self._pairs.items()):
            pred = self.out / "predictions" / f"{key}{PRED_SUFFIX}"
            if pred.is_file():
                prob = self.out / "predictions" / f"{key}{PROB_SUFFIX}"
                prob = prob if prob.is_file() else None
                cases.append(EvalCase(key=key, pred=pred, gt=tuple(pair.masks), image=pair.image, probs=prob))
            else:
                missing.append(
                    {"side": "prediction", "file": str(pair.image), "reason": f"not predicted in this {self.split} run"}
                )
        opts = ReportOptions(**{**self.opts.__dict__, "gt_threshold": self._mask_threshold, "gt_rule": self._mask_rule})
        source = {
            "checkpoint": str(getattr(trainer, "ckpt_path", None) or ""),
            "split": self.split,
            "threshold": str(getattr(pl_module, "tuned_threshold", 0.5)),
            "temperature": str(getattr(pl_module, "temperature", 1.0)),
        }
        doc = write_report(self.out, cases, self.cfg, opts, missing, source=source)
        s = doc["summary"]
        log.info(
            f"{self.split} report: Dice macro %.4f, micro %.4f on %d images -> %s/report.html",
            s["dice_macro"] or float("nan"),
            s["dice_micro"] or float("nan"),
            s["n_images"],
            self.out,
        )
        print(f"{self.split} report ({s['n_images']} images at original resolution): {self.out}/report.html")

    # Lightning hooks: test split during `test`; validation split only during `validate`.
    def _active(self, trainer: L.Trainer, split: str) -> bool:
        if split != self.split or trainer.sanity_checking:
            return False
        return split == "test" or trainer.state.fn == "validate"

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer, "test"):
            self._start(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._active(trainer, "test"):
            self._batch(pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer, "test"):
            self._end(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer, "val"):
            self._start(trainer)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._active(trainer, "val"):
            self._batch(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer, "val"):
            self._end(trainer, pl_module)


class TestReport(EvalReport):
    """Deprecated name of :class:`EvalReport` (``segapp.lit.test_report.TestReport`` class paths)."""

    __test__ = False  # not a pytest test class

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn(
            "segapp.lit.test_report.TestReport is deprecated: use segapp.lit.report_callback.EvalReport "
            "(same arguments); the old class path will be removed in segapp 0.3",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
