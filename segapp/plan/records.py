"""The planner's records: a :class:`Choice` per setting, the pre-timing :class:`Base`, the :class:`Plan`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segapp.plan import sizing
from segapp.plan.device import Device
from segapp.plan.fingerprint import Fingerprint
from segapp.plan.nets import NetChoice
from segapp.plan.timing import Costs


@dataclass(frozen=True)
class Choice:
    """One planned setting: the config key, its value as printed, why, and the evidence."""

    setting: str
    value: Any
    reason: str
    evidence: str = ""


@dataclass
class Base:
    """What the rules decide before timing (see :func:`plan_base`)."""

    net: NetChoice
    in_channels: int
    precisions: list[str]
    batches: list[int]
    channels_last: bool
    workers: int
    smallest: int
    need: int
    largest: int
    n_train: int
    n_val: int
    n_pairs: int
    choices: list[Choice] = field(default_factory=list)

    def timing_sizes(self) -> list[int]:
        """The sizes worth timing: the smallest, the lesion-driven size and one between (the calibration
        measures the smallest and the largest of the others that its allowance affords; the rest are
        extrapolated)."""
        mid = (self.smallest + self.need) // 2 // sizing.SIZE_STEP * sizing.SIZE_STEP
        return sorted({self.smallest, mid, self.need})


@dataclass
class Plan:
    """The planned run: settings, their reasons, and the predicted timeline."""

    budget_s: float
    spent_s: float
    fingerprint: Fingerprint
    device: Device
    costs: Costs
    schedule: sizing.Schedule
    net: NetChoice
    settings: dict[str, Any]
    choices: list[Choice]
    notes: list[str] = field(default_factory=list)

    def epoch_ends(self) -> list[float]:
        """Predicted seconds since planning began at the end of each epoch."""
        return self.schedule.epoch_ends(self.spent_s)

    def predicted_total_s(self) -> float:
        """Predicted wall seconds of the whole command, planning, trust calibration and inference choice included."""
        ends = self.epoch_ends()
        return (ends[-1] if ends else self.spent_s) + self.schedule.trust_s
