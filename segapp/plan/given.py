"""What the user gave the planner: the settings that shape a plan rather than being replaced by it.

``trainer.max_epochs`` given with ``--budget`` caps the planned epochs, and an ``InferenceChoice``
callback of the user's own is kept, so the plan prices its ``max_images`` (scoring 200 validation
images with four flips can take minutes the planned epochs would otherwise have).

A written ``plan.yaml`` is refused as the input of ``--budget``: its ``max_epochs`` (1.5x its epochs
+ 1), sizes and callbacks are that plan's choices, and a config cannot tell them from the user's
(a command-line value may equal the plan's). Every plan writes the settings it was planned from
beside it, ``plan_input.yaml``; planning again starts from that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segapp.errors import SettingError
from segapp.inference.choice import MAX_IMAGES
from segapp.plan.writer import INPUT_NAME, PLAN_HEADER


@dataclass(frozen=True)
class Given:
    """The user's settings that shape the plan.

    Attributes:
        max_epochs: ``trainer.max_epochs`` given with ``--budget``: a cap on the planned epochs.
        choice_images: ``max_images`` of the user's own ``InferenceChoice``: kept and priced as given.
    """

    max_epochs: int | None = None
    choice_images: int | None = None


def refuse_plans(configs: Iterable[Any] | None) -> None:
    """Refuse ``--budget`` on a ``--config`` file a plan wrote (its first line is the plan header).

    Raises:
        SettingError: naming the file and the ``plan_input.yaml`` to plan again from.
    """
    for c in configs or []:
        path = Path(str(c))
        try:
            with path.open(encoding="utf-8") as f:
                first = f.readline()
        except OSError:
            continue
        if first.startswith(PLAN_HEADER):
            source = path.parent / INPUT_NAME
            start = (
                f"`segapp fit --config {source} --budget ...` (add your changes to that file or the command line)"
                if source.is_file()
                else f"the config and options you planned with ({source} is not there: plans before 2026-12-07 did "
                "not write it), with --budget"
            )
            raise SettingError(
                f"--budget with --config {path}: expected the settings to plan from, got a plan this planner "
                "wrote (its max_epochs, sizes and callbacks are its choices, not yours); fix: plan again from "
                f"the settings it was planned from, {start}; or train the plan as it is without --budget"
            )


def given(full: dict[str, Any]) -> Given:
    """The cap on the epochs and the inference choice the user gave, from the parsed config ``full``."""
    cap = (full.get("trainer") or {}).get("max_epochs")
    choice = None
    for c in (full.get("trainer") or {}).get("callbacks") or []:
        if str((c or {}).get("class_path", "")).endswith("InferenceChoice"):
            n = (c.get("init_args") or {}).get("max_images")
            choice = MAX_IMAGES if n is None else int(n)
    return Given(cap if isinstance(cap, int) and cap > 0 else None, choice)
