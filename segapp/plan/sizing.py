"""The time model and the size/epoch rule: what the measured step times buy within a budget.

Every second of the budget is accounted for, in the order a run spends it: planning (measured),
start-up (net build, data set-up, the sanity-check batches), the first epoch's reading of the
original files into the resized cache, the epochs (training steps with Lightning's overhead,
augmentation, validation, checkpoints), and after training the trust calibration (a forward
pass over the training and validation images) and the inference choice (the validation
originals through four flips). ``trainer.max_time`` is what is left for the
epochs, so the run stops in time even when the model is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from segapp.data.size_schedule import share_epoch
from segapp.inference.choice import FLIPS, MAX_IMAGES, MIN_IMAGES
from segapp.plan.timing import Costs

SIZE_STEP = 32
"""Sizes are multiples of 32: the scratch U-Net (depth 5) needs it; SMP encoders halve 5 times."""
LIGHTNING_OVERHEAD = 1.05
"""The LightningModule step measured 3.2 % slower than a plain loop (docs/benchmarks.md); 5 % kept."""
PER_EPOCH_S = 1.5
"""Checkpoints (best + last), logging, and the loader rebuilt each epoch under progressive resizing."""
STARTUP_S = 8.0
"""Trainer, loggers and data module set-up (check and statistics read from the cache) besides the net."""
TRUST_FACTOR = 1.2
"""Trust calibration after fit: one forward pass with features over train + val, ~1.2 evaluation passes."""
CHOICE_SETUP_S = 3.0  # the inference choice: loading the checkpoint into a predictor
CHOICE_SHARE = 0.03
"""The inference choice may take this share of the budget: its expected gain is small (none to
+0.002 test Dice on Kvasir, docs/benchmarks.md), so on a short budget it scores fewer images
rather than take epochs from training."""
MARGIN = 0.03
"""Share of the budget kept back for noise on a shared machine."""
PROGRESSIVE_FROM = 256
PROGRESSIVE_MIN_EPOCHS = 4
LOW_SIZE_RATIO = 0.7
LOW_SHARE = 0.5
"""Progressive resizing trains this share of the run's epochs at the low size; written as a share
(``{0: 224, 0.5: 320}``) so the switch follows the epochs the run actually holds."""


@dataclass(frozen=True)
class Work:
    """The dataset's work per epoch (training images, validation images, batch size) and after training.

    ``given_choice`` is the ``max_images`` of the user's own ``InferenceChoice``: scored as given
    (and priced so), where the plan otherwise sizes it to :data:`CHOICE_SHARE` of the budget."""

    n_train: int
    n_val: int
    n_pairs: int
    batch: int
    given_choice: int | None = None

    @property
    def steps(self) -> int:
        """Optimiser steps per epoch (the training loader drops a last partial batch)."""
        return max(1, self.n_train // self.batch)


@dataclass(frozen=True)
class Schedule:
    """A size schedule and what it costs.

    Attributes:
        size: Final (and validation) size.
        low: Training size of the first epochs under progressive resizing, else None.
        switch: First epoch at ``size`` when progressive, else None.
        epochs: Epochs that fit.
        epoch_s: Seconds per epoch, ``(low phase, final phase)``.
        startup_s: Start-up seconds (incl. the sanity check at ``size``).
        first_read_s: Extra seconds of the first epoch (original files into the cache).
        trust_s: Seconds after training: the trust calibration and the inference choice.
        max_time_s: ``trainer.max_time``: what is left for the epochs.
    """

    size: int
    low: int | None
    switch: int | None
    epochs: int
    epoch_s: tuple[float, float]
    startup_s: float
    first_read_s: float
    trust_s: float
    max_time_s: float

    @property
    def phases(self) -> list[tuple[int, int, float]]:
        """``(epochs, training size, seconds per epoch)`` per phase."""
        if self.low is None:
            return [(self.epochs, self.size, self.epoch_s[1])]
        return [(self.switch, self.low, self.epoch_s[0]), (self.epochs - self.switch, self.size, self.epoch_s[1])]

    def epoch_ends(self, spent_s: float) -> list[float]:
        """Predicted seconds since planning began at the end of each epoch."""
        t, out = spent_s + self.startup_s + self.first_read_s, []
        for n, _, s in self.phases:
            for _ in range(n):
                t += s
                out.append(t)
        return out


def epoch_seconds(costs: Costs, work: Work, train_size: int, val_size: int) -> float:
    """One epoch: training steps (+ Lightning's overhead) and augmentation, validation, checkpoints."""
    train = work.steps * costs.train_step(train_size) * LIGHTNING_OVERHEAD
    items = work.n_train * costs.load.item_s * (train_size / costs.base.size) ** 2
    val = math.ceil(work.n_val / work.batch) * costs.val_step(val_size)
    return train + items + val + PER_EPOCH_S


def _fixed(costs: Costs, work: Work, size: int, budget_s: float, spent_s: float) -> tuple[float, float, float, float]:
    """``(start-up, first read, trust, max_time)`` seconds for a run validating at ``size``."""
    startup = STARTUP_S + 2 * costs.val_step(size)
    trust = math.ceil((work.n_train + work.n_val) / work.batch) * costs.post_val_step(size) * TRUST_FACTOR
    trust += choice_seconds(costs, work, size, budget_s)
    first_read = work.n_pairs * costs.load.read_s
    max_time = budget_s * (1 - MARGIN) - spent_s - startup - trust
    return startup, first_read, trust, max_time


def choice_per_image(costs: Costs, work: Work, size: int) -> float:
    """Seconds of the inference choice per validation image: four fp32 flips at ``size`` (one image
    per pass on a CPU, about as fast per image as a validation batch) and, counted as a second
    read of the original, its scoring at original resolution (0.07 s per megapixel, capped at 1 MP,
    against 0.022 s to read a Kvasir original)."""
    return FLIPS["flip4"] * costs.post_val_step(size) / work.batch * TRUST_FACTOR + 2 * costs.load.read_s


def choice_images(costs: Costs, work: Work, size: int, budget_s: float) -> int:
    """Validation images the inference choice scores: all (at most ``MAX_IMAGES``) while it stays
    within :data:`CHOICE_SHARE` of the budget, else fewer; 0 (off) when that leaves under
    ``MIN_IMAGES``."""
    if work.given_choice is not None:
        n = min(work.n_val, work.given_choice)  # segapp.lit.choose_inference spreads max_images over val
        return n if n >= MIN_IMAGES else 0
    fit = int((CHOICE_SHARE * budget_s - CHOICE_SETUP_S) // choice_per_image(costs, work, size))
    n = min(work.n_val, MAX_IMAGES, fit)
    return n if n >= MIN_IMAGES else 0


def choice_seconds(costs: Costs, work: Work, size: int, budget_s: float) -> float:
    """Seconds of the inference choice after training (:mod:`segapp.inference.choice`)."""
    n = choice_images(costs, work, size, budget_s)
    return CHOICE_SETUP_S + n * choice_per_image(costs, work, size) if n else 0.0


def low_size(size: int, smallest: int) -> int:
    """The first phase's size: 0.7x, on the 32 grid (kvasir_effl0_320: 224 for 320; a 224 px step
    costs 40 % of a 320 px one, docs/benchmarks.md)."""
    return max(smallest, int(size * LOW_SIZE_RATIO) // SIZE_STEP * SIZE_STEP)


def fit_schedule(
    costs: Costs, work: Work, size: int, smallest: int, budget_s: float, spent_s: float, max_epochs: int
) -> Schedule:
    """The most epochs at ``size`` within the budget; progressive (low size for the first
    :data:`LOW_SHARE` of the epochs) from
    :data:`PROGRESSIVE_FROM` px when it still leaves :data:`PROGRESSIVE_MIN_EPOCHS` epochs."""
    startup, first_read, trust, max_time = _fixed(costs, work, size, budget_s, spent_s)
    room = max_time - first_read
    high = epoch_seconds(costs, work, size, size)
    n = min(max_epochs, max(0, int(room // high)))
    plain = Schedule(size, None, None, n, (high, high), startup, first_read, trust, max_time)
    low = low_size(size, smallest)
    if size < PROGRESSIVE_FROM or low >= size:
        return plain
    lo = epoch_seconds(costs, work, low, size)
    n = min(max_epochs, max(0, int(room // ((lo + high) / 2))))
    while n > 0 and share_epoch(LOW_SHARE, n) * lo + (n - share_epoch(LOW_SHARE, n)) * high > room:
        n -= 1
    if n < max(PROGRESSIVE_MIN_EPOCHS, plain.epochs):
        return plain
    return Schedule(size, low, share_epoch(LOW_SHARE, n), n, (lo, high), startup, first_read, trust, max_time)


def minimum_budget(costs: Costs, work: Work, size: int, spent_s: float) -> float:
    """The smallest budget that fits one epoch at ``size`` (seconds)."""
    startup, first_read, trust, _ = _fixed(costs, work, size, 0.0, 0.0)
    need = spent_s + startup + first_read + trust + epoch_seconds(costs, work, size, size)
    return need / (1 - MARGIN)
