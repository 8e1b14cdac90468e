"""How long the LR schedule is: the one place that turns the run's limits into a length in epochs.

A schedule that follows the trainer (``WarmupCosine(max_epochs=None)``) ends at the epoch where
the run is projected to stop first:

- ``trainer.max_epochs`` -> that many epochs;
- ``trainer.max_steps`` -> ``ceil(max_steps / optimizer steps per epoch)``;
- ``trainer.max_time`` -> epochs done + the whole epochs that fit in the time left at the
  duration of the last epoch (scaled by the pixels of each coming epoch's training size under
  ``data.train_size_schedule``; a schedule by shares of the run is placed on each candidate length,
  :func:`project_following`), re-projected after every epoch from the latest epoch (so a slower
  epoch shortens the cosine before the time runs out, and a one-off slow first epoch, e.g. while
  a cache is built, does not shorten it for good). The time after the last whole epoch is not
  wasted: when at least :data:`MIN_PARTIAL` of the next epoch's training fits (its validation
  counted whole), that epoch joins the cosine as its last, *partial* epoch (and stays while at
  least :data:`KEEP_PARTIAL` fits, so the cosine does not flip between two lengths when the share
  hovers near the threshold), and the run stops it
  mid-epoch when the time left is what its validation takes (the last epoch's tail, with a
  margin), so the validation and the checkpoint end inside ``max_time`` and the budget is used to
  within about one validation (only in runs that validate every epoch: else whole epochs). When
  less than that fits, even at the fastest pace so far (seconds
  per training pixel, so a small progressive-resizing epoch is not mistaken for a cheap large
  one; from the second timed epoch on), the run stops after the epoch just done, at the cosine's
  floor, instead of starting an epoch that ``max_time`` would cut past the floor.

The length never grows past the epoch and step limits, and the resolved value, its source and
every change are recorded in ``run_info["lr_schedule"]`` (``run_info.json`` and checkpoints).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from segapp.errors import SettingError

MAX_PROJECTED = 100_000
"""Bound on a projection without an epoch or step limit (a guard against a near-zero epoch time)."""

MIN_PARTIAL = 0.3
"""The least share of an epoch's training worth a partial last epoch (it costs a whole validation)."""

KEEP_PARTIAL = 0.2
"""The partial last epoch already in the cosine stays in it down to this share (hysteresis: a
share hovering near :data:`MIN_PARTIAL` must not add and drop that epoch after every epoch)."""

TAIL_MARGIN = 1.25
"""A partial epoch stops when the time left is this many times the last epoch's tail (its validation
and checkpoint, after the last training step), plus :data:`TAIL_PAD_S`."""

TAIL_PAD_S = 3.0


@dataclass
class ScheduleLength:
    """A resolved schedule length and why."""

    epochs: int | None
    source: str
    partial: float | None = None  # the share of the last epoch's training that fits, when under 1

    def as_dict(self) -> dict:
        return asdict(self)


def from_limits(max_epochs: int | None, max_steps: int | None, steps_per_epoch: int | None) -> ScheduleLength:
    """Length from the epoch and step limits (``None``/``-1`` mean unlimited).

    Args:
        max_epochs: ``trainer.max_epochs``.
        max_steps: ``trainer.max_steps`` (optimizer steps in the whole run).
        steps_per_epoch: Optimizer steps per epoch (batches / gradient accumulation).
    """
    candidates: list[tuple[int, str]] = []
    if max_epochs is not None and max_epochs > 0:
        candidates.append((int(max_epochs), f"trainer.max_epochs={max_epochs}"))
    if max_steps is not None and max_steps > 0 and steps_per_epoch:
        n = math.ceil(max_steps / steps_per_epoch)
        candidates.append((n, f"trainer.max_steps={max_steps} at {steps_per_epoch} steps per epoch"))
    if not candidates:
        return ScheduleLength(None, "no epoch or step limit")
    return ScheduleLength(*min(candidates))


def project_time(
    limits: ScheduleLength,
    epochs_done: int,
    seconds_left: float,
    last_epoch_seconds: float,
    cost: Callable[[int], float] | None = None,
    tail_seconds: float | None = 0.0,
    keep: int | None = None,
) -> ScheduleLength:
    """The length when ``trainer.max_time`` may end the run before ``limits`` does.

    Whole epochs first; then, when at least :data:`MIN_PARTIAL` of the next epoch's training fits
    in what is left once the time for its validation is set aside (:func:`reserve`), that epoch
    too, as a partial one.

    Args:
        limits: The length from the epoch/step limits (:func:`from_limits`); never exceeded.
        epochs_done: Epochs completed in the whole run (including any resumed ones).
        seconds_left: Time left of ``trainer.max_time``.
        last_epoch_seconds: Wall time of the epoch just finished (training plus validation).
        cost: Cost of (0-based) epoch ``e`` relative to the epoch just finished (default 1): a
            larger training size under progressive resizing costs more.
        tail_seconds: The part of an epoch after its last training step (validation, checkpoint);
            ``None``: no partial epoch (a run that does not validate every epoch).
        keep: The length of a cosine whose last epoch is already a partial one: that same epoch
            stays down to :data:`KEEP_PARTIAL` (any other needs :data:`MIN_PARTIAL`).
    """
    if last_epoch_seconds <= 0:
        return limits
    cost = cost or (lambda e: 1.0)
    n, left = epochs_done, seconds_left
    cap = limits.epochs if limits.epochs is not None else epochs_done + MAX_PROJECTED
    while n < cap and (need := last_epoch_seconds * cost(n)) <= left:
        left -= need
        n += 1
    partial = None
    if n < cap and tail_seconds is not None:
        share = partial_share(left, last_epoch_seconds * cost(n), tail_seconds)
        if share >= (KEEP_PARTIAL if keep is not None and n + 1 == keep else MIN_PARTIAL):
            n, partial = n + 1, round(share, 3)
    if limits.epochs is not None and n >= limits.epochs and partial is None:
        return limits
    src = (
        f"trainer.max_time: {epochs_done} epochs done, {seconds_left:.0f} s left at "
        f"{last_epoch_seconds:.0f} s per epoch"
    )
    if partial is not None:
        src += f", the last epoch partial (~{partial:.0%} of its steps)"
    return ScheduleLength(n, src, partial)


def reserve(tail_seconds: float) -> float:
    """The time a partial epoch keeps for its tail: where :meth:`ScheduleFollower.batch_end` stops it."""
    return TAIL_MARGIN * tail_seconds + TAIL_PAD_S


def partial_share(seconds_left: float, epoch_seconds: float, tail_seconds: float) -> float:
    """The share of an epoch's training that ``seconds_left`` holds once :func:`reserve` is set aside."""
    train = epoch_seconds - tail_seconds
    if train <= 0:
        return 0.0
    return max(0.0, min(1.0, (seconds_left - reserve(tail_seconds)) / train))


def train_pixels(trainer, epoch: int, length: int | None = None) -> float:
    """Pixels of one training image in (0-based) ``epoch`` under ``data.train_size_schedule``; 1.0 without sizes.

    ``length``: the run's length in epochs to place a schedule by shares on (default: the current one).
    """
    size = getattr(getattr(trainer, "datamodule", None), "train_size", None)
    if not callable(size):
        return 1.0
    h, w = size(epoch, length) if length is not None else size(epoch)
    return float(h * w)


def pixel_cost(trainer, done: int, length: int | None = None) -> Callable[[int], float] | None:
    """Epoch cost relative to epoch ``done - 1`` from the datamodule's training sizes (pixels), if any.

    Pixels overstate a larger size's cost (validation does not change; steps grow ~pixels^0.9),
    so the projection errs short: the run ends a little early rather than being cut mid-epoch.
    ``length``: the run length a size schedule by shares is placed on (its switch moves with it).
    """
    size = getattr(getattr(trainer, "datamodule", None), "train_size", None)
    if not callable(size) or done < 1:
        return None
    last = train_pixels(trainer, done - 1)
    return lambda e: train_pixels(trainer, e, length) / last


FIXED_POINT_TRIES = 8
"""Projections of a length whose size schedule is placed by shares of that same length (a few suffice)."""


def project_following(trainer, done: int, project: Callable[..., ScheduleLength]) -> ScheduleLength:
    """:func:`project_time` (as ``project(cost)``) when the coming epochs' sizes depend on the length itself.

    Under a size schedule by shares of the run (``{0: 224, 0.5: 320}``) a longer run switches later,
    so its epochs are cheaper: the length is projected on the current one's sizes, then again on
    the new length's, until it stops changing; when it does not settle, the shorter of the last two
    (the run re-projects after the next epoch anyway). Without shares, one projection.
    """
    sizes = getattr(getattr(trainer, "datamodule", None), "size_schedule", None)
    shares = getattr(sizes, "shares", False)
    placed = not shares or sizes.has_length(trainer.max_epochs)
    # max_time alone, after epoch 0: nothing to place the shares on yet, so the first guess costs every
    # coming epoch like the last one (too long), and the loop below places the switch on it
    new = project(pixel_cost(trainer, done) if placed else None)
    if not shares:
        return new
    seen = [new]
    for _ in range(FIXED_POINT_TRIES):
        if new.epochs is None:
            return new
        new = project(pixel_cost(trainer, done, new.epochs))
        if new.epochs == seen[-1].epochs:
            return new
        seen.append(new)
    return min(seen[-2:], key=lambda s: s.epochs or 0)


def _say(trainer, text: str) -> None:
    """Print on rank zero (segapp's log lines are not shown by the CLI; prints are)."""
    if trainer.is_global_zero:
        print(f"lr schedule: {text}", flush=True)


def _steps_per_epoch(trainer) -> int | None:
    batches = trainer.num_training_batches
    if not batches or math.isinf(batches):
        return None
    return max(1, math.ceil(batches / max(1, trainer.accumulate_grad_batches)))


def _validates_every_epoch(trainer) -> bool:
    """True when every epoch ends with a validation (what a partial epoch is stopped in time for)."""
    every = getattr(trainer, "check_val_every_n_epoch", 1)
    return bool(getattr(trainer, "enable_validation", True)) and every == 1


def _timer(trainer):
    from lightning.pytorch.callbacks import Timer

    return next((c for c in trainer.callbacks if isinstance(c, Timer) and c._duration is not None), None)


class ScheduleFollower:
    """Keeps a trainer-following :class:`~segapp.lit.schedulers.WarmupCosine` as long as the run.

    ``SegmentationModule`` calls :meth:`start` in ``on_train_start`` (after a checkpoint's
    scheduler state is restored), :meth:`batch_end` after every training batch and
    :meth:`epoch_end` after every training epoch (its validation included).
    """

    def __init__(self) -> None:
        self.length: ScheduleLength | None = None
        self.limits: ScheduleLength | None = None
        self.history: list[dict] = []
        self.fastest_rate: float | None = None  # the fastest epoch so far, seconds per training pixel
        self.seen = 0  # epochs timed in this process
        self._min_said = False  # the note that trainer.min_epochs/min_steps keep the run going
        self.tail: float | None = None  # seconds after the last training step of the last epoch
        self.stopped: dict | None = None  # where batch_end ended the last, partial epoch
        self.partial_ok = True  # validation every epoch: a partial epoch can end in time for it
        self._last_batch_end: float | None = None

    def start(self, trainer, sched, run_info: dict) -> None:
        """Resolve the length from the epoch/step limits (or honour an explicit one) and record it."""
        limits = from_limits(trainer.max_epochs, trainer.max_steps, _steps_per_epoch(trainer))
        self.limits = limits
        self.partial_ok = _validates_every_epoch(trainer)
        if not sched.follows_trainer:
            self.length = ScheduleLength(sched.max_epochs, "model.scheduler.init_args.max_epochs (explicit)")
            if limits.epochs is not None and limits.epochs != sched.max_epochs:
                _say(
                    trainer,
                    f"WARNING: cosine set explicitly to {sched.max_epochs} epochs but the run is "
                    f"limited to {limits.epochs} ({limits.source}); remove model.scheduler.init_args.max_epochs "
                    "to make the schedule follow the trainer",
                )
        else:
            previous = sched.max_epochs  # restored from a checkpoint on --ckpt_path, else None
            self.length = limits
            if trainer.current_epoch > 0 and previous is not None and _timer(trainer) is not None:
                # a run under trainer.max_time resumed: its length was projected from the time, and
                # trainer.max_epochs is only a cap (a plan's is 1.5x its epochs): keep the projection
                # until the next epoch re-projects it from the time the restored Timer has left
                kept = min(previous, limits.epochs) if limits.epochs is not None else previous
                self.length = ScheduleLength(kept, "restored from the checkpoint; trainer.max_time re-projects it")
                sched.set_length(kept)
            elif limits.epochs is not None:
                sched.set_length(limits.epochs)
            elif _timer(trainer) is not None:
                sched.hold_until_resolved = True
            else:
                raise SettingError(
                    "model.scheduler: the cosine follows the trainer, but the run has no limit; expected "
                    "trainer.max_epochs, max_steps or max_time, got none; fix: set one of them (or "
                    "model.scheduler.init_args.max_epochs)"
                )
            if trainer.current_epoch > 0 and previous is not None and previous != sched.max_epochs:
                _say(
                    trainer,
                    f"resumed at epoch {trainer.current_epoch}: length {previous} -> {sched.max_epochs} "
                    "epochs; the cosine continues on the new length from this epoch",
                )
        self._record(trainer, sched, run_info, "start")

    def epoch_end(self, trainer, sched, run_info: dict, epoch_seconds: float | None) -> None:
        """Re-project the length from ``trainer.max_time`` (if set) after an epoch of ``epoch_seconds``.

        ``epoch_seconds`` is ``None`` for an epoch resumed mid-way (not a whole epoch's time). When
        the time left holds less than :data:`MIN_PARTIAL` of a further epoch (less than a whole one
        in a run that does not validate every epoch), not even at the fastest epoch's pace, the
        run stops after this one (the cosine's floor), rather than
        starting an epoch ``max_time`` would cut short; never after the first timed epoch (it
        builds the cache).
        """
        timer = _timer(trainer)
        if self._last_batch_end is not None:
            self.tail = max(0.0, time.monotonic() - self._last_batch_end)
            self._last_batch_end = None
        if not sched.follows_trainer or timer is None or self.length is None or self.stopped is not None:
            return
        if epoch_seconds is None:  # resumed mid-epoch: not a whole epoch's time
            return
        done = trainer.current_epoch + 1
        tail = (self.tail or 0.0) if self.partial_ok else None
        keep = self.length.epochs if self.length.partial is not None else None
        left = timer.time_remaining()
        new = project_following(
            trainer, done, lambda cost: project_time(self.limits, done, left, epoch_seconds, cost, tail, keep)
        )
        # the pace, not the seconds: an epoch at a smaller progressive-resizing size is not "the fastest"
        rate = epoch_seconds / train_pixels(trainer, done - 1)
        self.fastest_rate = rate if self.fastest_rate is None else min(self.fastest_rate, rate)
        self.seen += 1
        epochs = trainer.strategy.broadcast(new.epochs, src=0)  # one length on every rank
        changed = (new.partial is None) != (self.length.partial is None)
        if epochs is not None and (epochs != self.length.epochs or changed):
            self.length = ScheduleLength(epochs, new.source, new.partial)
            sched.set_length(epochs)
            self._record(trainer, sched, run_info, f"after epoch {trainer.current_epoch}")
        limit = self.limits.epochs if self.limits is not None else None
        if epochs is None or done < epochs or (limit is not None and done >= limit) or self.seen < 2:
            return
        # A one-off slow epoch (the first, building a cache; a stall) must not end the run: stop only
        # after two timed epochs, and when even the fastest so far, at the next epoch's size, would
        # not fit a partial epoch (else the run goes on at the cosine's floor, stopped in time by
        # batch_end).
        next_s = self.fastest_rate * train_pixels(trainer, done)
        left = timer.time_remaining()
        short = partial_share(left, next_s, tail) < MIN_PARTIAL if tail is not None else next_s > left
        if not trainer.strategy.broadcast(short, src=0):  # every rank gets here; rank 0 decides
            return
        if not getattr(getattr(trainer, "fit_loop", None), "_can_stop_early", True):
            if not self._min_said:  # it said "stopping" after every epoch and went on (a 60 s run took 82 s)
                self._min_said = True
                _say(trainer, "trainer.min_epochs / min_steps not met: the run goes on past trainer.max_time")
            return
        trainer.should_stop = True
        _say(
            trainer,
            f"stopping after epoch {trainer.current_epoch}: the next epoch (~{next_s:.0f} s) does not fit "
            f"in the {left:.0f} s left of trainer.max_time; the cosine ended here",
        )

    def batch_end(self, trainer, sched, run_info: dict, batch_idx: int) -> None:
        """Stop the last (partial) epoch when the time left is what its validation takes.

        Only in the cosine's last epoch (or past it) of a run with ``trainer.max_time`` and a
        measured tail, so the validation and checkpoint that follow end inside ``max_time``
        (Lightning validates when a run is stopped mid-epoch).
        """
        self._last_batch_end = time.monotonic()
        timer = _timer(trainer)
        if timer is None or self.tail is None or self.length is None or self.length.epochs is None:
            return
        if not sched.follows_trainer or self.stopped is not None or trainer.current_epoch + 1 < self.length.epochs:
            return
        if not self.partial_ok or (batch_idx + 1) % max(1, trainer.accumulate_grad_batches):
            return  # no validation to end in time for, or mid-way through an accumulated step
        left = timer.time_remaining()
        need = reserve(self.tail)
        if not trainer.strategy.broadcast(left <= need, src=0):
            return
        if not getattr(getattr(trainer, "fit_loop", None), "_can_stop_early", True):
            return  # trainer.min_epochs / min_steps not met: Lightning would not stop
        trainer.should_stop = True
        batches = trainer.num_training_batches
        self.stopped = {"epoch": trainer.current_epoch, "batches": batch_idx + 1, "of": batches}
        run_info.setdefault("lr_schedule", {})["stopped_mid_epoch"] = self.stopped
        _say(
            trainer,
            f"epoch {trainer.current_epoch} ends after {batch_idx + 1} of {batches} batches: the {left:.0f} s "
            f"left of trainer.max_time are for its validation (~{self.tail:.0f} s); the cosine ends here",
        )

    def _record(self, trainer, sched, run_info: dict, when: str) -> None:
        follow = getattr(getattr(trainer, "datamodule", None), "follow_length", None)
        if callable(follow) and sched.max_epochs is not None:
            follow(sched.max_epochs)  # a size schedule by shares of the run switches with the cosine's length
        entry = {"when": when, "epochs": sched.max_epochs, "source": self.length.source}
        self.history.append(entry)
        run_info["lr_schedule"] = {
            "epochs": sched.max_epochs,
            "partial_share": self.length.partial,
            "stopped_mid_epoch": self.stopped,
            "warmup_epochs": sched.warmup_epochs,
            "follows_trainer": sched.follows_trainer,
            "source": self.length.source,
            "history": self.history,
        }
        if sched.max_epochs is None:
            _say(
                trainer,
                f"no epoch or step limit yet ({self.length.source}); the length is set after epoch 0 "
                "from trainer.max_time",
            )
        else:
            _say(trainer, f"warm-up {sched.warmup_epochs} + cosine to epoch {sched.max_epochs} ({self.length.source})")
