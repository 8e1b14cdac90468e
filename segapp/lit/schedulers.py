"""Learning-rate schedules that torch lacks, usable from YAML as ``LRSchedulerCallable``."""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from segapp.errors import SettingError


class WarmupCosine(LambdaLR):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` at the run's end.

    Stepped once per epoch (Lightning's default interval). By default (``max_epochs=None``) the
    cosine *follows the trainer*: ``SegmentationModule`` sets its length at the start of fit from
    the run's own limits (``trainer.max_epochs``, ``trainer.max_steps``, and with
    ``trainer.max_time`` the measured epoch time), so one setting changes the length of the run
    and of the schedule together (see :mod:`segapp.lit.schedule_length`).

    Args:
        optimizer: Wrapped optimiser (injected by LightningCLI).
        warmup_epochs: Epochs of linear warm-up from ``1/(warmup_epochs+1)`` of the base LR.
        max_epochs: Epoch at which the cosine reaches its floor. ``None`` (default): the run's
            last epoch, resolved from the trainer. An explicit value wins over the trainer.
        min_lr_ratio: Floor as a fraction of the base LR.

    Raises:
        SettingError: a negative warm-up, a floor outside [0, 1], or an explicit length that
            does not leave one epoch of cosine after the warm-up.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int = 1,
        max_epochs: int | None = None,
        min_lr_ratio: float = 0.01,
    ):
        if warmup_epochs < 0:
            raise SettingError(f"model.scheduler warmup_epochs: expected >= 0, got {warmup_epochs}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise SettingError(f"model.scheduler min_lr_ratio: expected a fraction in [0, 1], got {min_lr_ratio}")
        if max_epochs is not None and max_epochs <= warmup_epochs:
            raise SettingError(
                f"model.scheduler max_epochs: expected more than warmup_epochs ({warmup_epochs}), got {max_epochs}; "
                "fix: leave max_epochs unset so the cosine follows trainer.max_epochs"
            )
        self.warmup_epochs = warmup_epochs
        self.requested_epochs = max_epochs
        self.max_epochs: int | None = max_epochs
        self.min_lr_ratio = min_lr_ratio
        self.hold_until_resolved = False
        super().__init__(optimizer, self._factor)

    @property
    def follows_trainer(self) -> bool:
        """True when the length comes from the trainer's limits (no explicit ``max_epochs``)."""
        return self.requested_epochs is None

    def set_length(self, epochs: int) -> None:
        """Set the epoch at which the cosine reaches its floor (at least one epoch past warm-up).

        The optimiser's learning rates are recomputed at once for the current epoch, so a length
        set after Lightning stepped the scheduler still applies to the next epoch.
        """
        self.max_epochs = max(int(epochs), self.warmup_epochs + 1)
        lrs = [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs, strict=True)]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _factor(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        if epoch == self.warmup_epochs:
            return 1.0
        if self.max_epochs is None:
            if self.hold_until_resolved:  # a max_time-only run: the length comes after epoch 0
                return 1.0
            raise RuntimeError(
                "WarmupCosine(max_epochs=None) follows the trainer, but no length was set; "
                "SegmentationModule sets it at the start of fit; outside segapp pass max_epochs"
            )
        t = min(1.0, (epoch - self.warmup_epochs) / (self.max_epochs - self.warmup_epochs))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position (epoch, LRs) but keep *this* run's choice of length.

        A checkpoint stores the length it resolved; on ``--ckpt_path`` the length is re-resolved
        from the new run's limits (follow mode) or taken from the new explicit value. The shape
        settings (``warmup_epochs``, ``min_lr_ratio``) are also this run's, as configured.
        """
        mine = {k: getattr(self, k) for k in ("requested_epochs", "warmup_epochs", "min_lr_ratio")}
        mine["hold_until_resolved"] = self.hold_until_resolved
        super().load_state_dict(state_dict)
        self.__dict__.update(mine)
        if self.requested_epochs is not None:
            self.max_epochs = self.requested_epochs
