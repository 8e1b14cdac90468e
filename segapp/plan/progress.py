"""``PlanProgress``: the plan's progress against the budget, one console line per epoch.

    plan: epoch 5/14 · 12.3 of 40.0 min · on plan (+0.4 min)

The app adds it when a run was planned with ``--budget``; a replayed ``plan.yaml`` has no plan
to compare with and runs without it. Minutes count from the start of the command; "on plan"
means within 3 % of the budget (at least 30 s) of the planned end of that epoch; a line past the
budget itself says ``OVER BUDGET`` whatever the plan said.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback

TOLERANCE = 0.03
MIN_TOLERANCE_S = 30.0


def progress_line(epoch: int, epochs: int, elapsed_s: float, planned_s: float, budget_s: float) -> str:
    """The line for the end of ``epoch`` (1-based), ``elapsed_s`` into the run, planned ``planned_s``."""
    delta = elapsed_s - planned_s
    tol = max(MIN_TOLERANCE_S, TOLERANCE * budget_s)
    status = "on plan" if abs(delta) <= tol else "behind plan" if delta > 0 else "ahead of plan"
    count = f"{epoch}/{epochs}" if epoch <= epochs else f"{epoch} ({epochs} planned; the epochs ran faster)"
    line = f"plan: epoch {count} · {elapsed_s / 60:.1f} of {budget_s / 60:.1f} min · {status}"
    line += f" ({delta / 60:+.1f} min)"
    if elapsed_s > budget_s:  # past the plan the "planned end" is extrapolated and can hide this
        line += f"; OVER BUDGET by {(elapsed_s - budget_s) / 60:.1f} min"
    elif epoch < epochs and delta > tol:
        line += "; the run will end before the last planned epoch (the cosine is shortened to fit)"
    return line


def partial_line(epoch: int, elapsed_s: float, budget_s: float, stopped: dict) -> str:
    """The line for a last epoch stopped mid-way in time for its validation (no plan to compare with)."""
    return (
        f"plan: epoch {epoch}, the last, partial ({stopped['batches']} of {stopped['of']} batches: the time was up) "
        f"· {elapsed_s / 60:.1f} of {budget_s / 60:.1f} min"
    )


def planned_end(epoch_ends: Sequence[float], epoch: int) -> float:
    """Planned end of ``epoch`` (1-based); past the plan, the last planned epoch's length is repeated."""
    n = len(epoch_ends)
    if epoch <= n:
        return epoch_ends[epoch - 1]
    last = epoch_ends[-1] - (epoch_ends[-2] if n > 1 else 0.0)
    return epoch_ends[-1] + (epoch - n) * last


class PlanProgress(Callback):
    """Prints :func:`progress_line` after every training epoch (its validation included), rank 0 only.

    Args:
        epoch_ends: Planned seconds since ``started`` at the end of each epoch.
        budget_s: The budget in seconds.
        started: ``clock()`` value at the start of the command.
        clock: The clock (tests pass a fake).
    """

    def __init__(
        self,
        epoch_ends: Sequence[float],
        budget_s: float,
        started: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epoch_ends = list(epoch_ends)
        self.budget_s = budget_s
        self.started = started
        self.clock = clock
        self.lines: list[str] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.epoch_ends:
            return
        k = trainer.current_epoch + 1
        elapsed = self.clock() - self.started
        stopped = (getattr(pl_module, "run_info", None) or {}).get("lr_schedule", {}).get("stopped_mid_epoch")
        if stopped and stopped.get("epoch") == trainer.current_epoch:  # a partial epoch: its "plan" is meaningless
            line = partial_line(k, elapsed, self.budget_s, stopped)
        else:
            line = progress_line(k, len(self.epoch_ends), elapsed, planned_end(self.epoch_ends, k), self.budget_s)
        self.lines.append(line)
        print(line, flush=True)
