"""Progressive resizing: which training size each epoch uses (``data.train_size_schedule``).

A key is where a size starts, in one of two units, never mixed in one schedule:

- an **epoch** (an integer: ``{0: 224, 7: 320}`` trains epochs 0-6 at 224 px);
- a **share of the run's epochs** (a number between 0 and 1: ``{0: 224, 0.5: 320}`` trains the
  first half at 224 px). The share is of the length the LR schedule follows, which
  ``trainer.max_time`` re-projects after every epoch (:mod:`segapp.lit.schedule_length`), so the
  switch moves with the run when epochs are faster or slower than planned; without such a
  length, ``trainer.max_epochs``. An epoch once trained keeps its size, and a share schedule never
  goes back to a smaller size than one already trained.

A key that is neither (``1.5``, ``-1``) is refused: jsonargparse used to read ``{0: 224, 0.5:
320}`` under an integer key type as ``{0: 320}``, silently training at full size from epoch 0.
"""

from __future__ import annotations

import math
from typing import Any

from segapp.errors import SettingError

EPS = 1e-9  # 0.3 x 10 is 3.0000000000000004 and 0.7 x 10 is 7.000000000000001: floor on a small slack


def share_epoch(share: float, length: int) -> int:
    """The first epoch at ``share`` of a ``length``-epoch run (floor: 0.5 of 13 epochs -> epoch 6)."""
    return math.floor(share * length + EPS)


def _key(key: Any) -> int | float:
    """An epoch (int) or a share in (0, 1) (float) from a YAML key (number or its text)."""
    try:
        x = float(key)
    except (TypeError, ValueError):
        x = math.nan
    if x >= 1 and x.is_integer() and isinstance(key, float):
        raise SettingError(
            f"data.train_size_schedule: key {key!r} is ambiguous (epoch {int(x)}, or the whole run?); expected an "
            f"epoch written as an integer ({int(x)}) or a share below 1 (e.g. 0.5); fix the key"
        )
    if x >= 0 and x.is_integer():
        return int(x)
    if 0 < x < 1:
        return x
    raise SettingError(
        f"data.train_size_schedule: key {key!r} is neither a first epoch nor a share of the run; expected an "
        "integer epoch >= 0 (e.g. {0: 224, 7: 320}) or a share between 0 and 1 (e.g. {0: 224, 0.5: 320}: the "
        "second half of the epochs at 320 px); fix the key"
    )


class SizeSchedule:
    """The checked schedule of one run, and the sizes its epochs trained at."""

    def __init__(self, schedule: dict[Any, int] | None, image_size: int) -> None:
        pairs = sorted((_key(k), int(s)) for k, s in (schedule or {}).items())
        for key, size in pairs:
            if not 8 <= size <= image_size:
                raise SettingError(
                    f"data.train_size_schedule: size {size} at key {key} is outside 8..{image_size} "
                    "(data.image_size); training images are downscaled from image_size, so raise data.image_size "
                    "to train larger"
                )
        self.shares = any(isinstance(k, float) for k, _ in pairs)
        if self.shares and any(isinstance(k, int) and k > 0 for k, _ in pairs):
            raise SettingError(
                f"data.train_size_schedule: {schedule} mixes epochs and shares of the run; expected one unit "
                "(key 0 aside); fix: write every key as an epoch or every key as a share"
            )
        if self.shares and [s for _, s in pairs] != sorted(s for _, s in pairs):
            raise SettingError(
                f"data.train_size_schedule: {schedule} shrinks; a schedule by shares of the run must not get "
                "smaller (its switch moves with the run's length, and a trained size is never undone); fix: "
                "order the sizes smallest first"
            )
        if pairs and pairs[-1][1] != image_size:
            raise SettingError(
                f"data.train_size_schedule: {schedule} ends at {pairs[-1][1]} px, not at data.image_size "
                f"{image_size}; the last epochs would train at {pairs[-1][1]} px while validation, the threshold and "
                f"prediction run at {image_size} px, where every lesion looks {image_size / pairs[-1][1]:.2g}x its "
                f"trained size; fix: end the schedule at {image_size} (e.g. add a key with {image_size}), or set "
                f"data.image_size {pairs[-1][1]}"
            )
        self.pairs = pairs
        self.image_size = image_size
        self.length: int | None = None  # the run's length in epochs, pushed by the LR schedule
        self.trained: dict[int, int] = {}  # epoch -> size it trained at

    def progressive(self) -> bool:
        return any(s != self.image_size for _, s in self.pairs)

    def first_epochs(self, length: int | None) -> list[tuple[int, int]]:
        """``(first epoch, size)`` pairs for a run of ``length`` epochs (shares not yet placeable dropped)."""
        out = []
        for key, size in self.pairs:
            if isinstance(key, int):
                out.append((key, size))
            elif length is not None:
                out.append((share_epoch(key, length), size))
        return out

    def size(self, epoch: int, length: int | None = None, fallback: int | None = None) -> int:
        """Training size at ``epoch``; shares placed on ``length`` (else the pushed length, else ``fallback``).

        Raises:
            SettingError: a share schedule past epoch 0 with no length to place its shares on.
        """
        if epoch in self.trained:
            return self.trained[epoch]
        length = length or self.length or (fallback if fallback and fallback > 0 else None)
        if self.shares and length is None and epoch > 0:
            raise self._no_length()
        sizes = [s for e, s in self.first_epochs(length) if e <= epoch]
        size = sizes[-1] if sizes else self.image_size
        if self.shares:  # a share schedule never undoes a larger size already trained
            size = max([size] + [s for e, s in self.trained.items() if e < epoch])
        return size

    def require_length(self, fallback: int | None, pending: bool) -> None:
        """At the start of a fit: refuse a share schedule that no length will ever place.

        ``fallback``: ``trainer.max_epochs``; ``pending``: the LR schedule follows the trainer and will
        push a length from ``trainer.max_time`` after epoch 0. Without this check the run trained its
        first epoch and then stopped on :meth:`size` at epoch 1.
        """
        if self.shares and not pending and not self.has_length(fallback):
            raise self._no_length()

    def has_length(self, fallback: int | None) -> bool:
        """Whether shares can be placed now: a length pushed by the LR schedule, or ``trainer.max_epochs`` > 0."""
        return bool(self.length) or bool(fallback and fallback > 0)

    def _no_length(self) -> SettingError:
        return SettingError(
            f"data.train_size_schedule: {dict(self.pairs)} places sizes by shares of the run, but the run's "
            "length in epochs is not known; expected trainer.max_epochs, or trainer.max_time with the "
            "WarmupCosine scheduler following the trainer; fix: set one, or write the keys as epochs"
        )

    def start_epoch(self, epoch: int, fallback: int | None = None) -> int:
        """Size of the epoch now starting, recorded so a later re-placed switch does not rewrite it.

        Records of this epoch and later ones are dropped first: they belong to an earlier fit of the
        same data module (a resumed fit restores only epochs before the one it starts).
        """
        self.trained = {e: s for e, s in self.trained.items() if e < epoch}
        self.trained[epoch] = self.size(epoch, fallback=fallback)
        return self.trained[epoch]

    def key_of(self, epoch: int) -> str:
        """Where ``epoch``'s size comes from, for the console (shares: of how many epochs)."""
        if not self.shares or not self.length:
            return "data.train_size_schedule"
        return f"data.train_size_schedule, placed on {self.length} epochs"

    def state_dict(self) -> dict[str, Any]:
        return {"trained": dict(self.trained), "length": self.length}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.trained = {int(e): int(s) for e, s in state.get("trained", {}).items()}
            self.length = state.get("length")
