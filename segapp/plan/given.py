"""What the user gave the planner, told apart from what an earlier plan wrote.

Two of the user's settings shape a plan rather than being replaced by it: ``trainer.max_epochs``
(a cap on the planned epochs) and an ``InferenceChoice`` callback of their own (its
``max_images`` is kept, so the plan prices it: scoring 200 validation images with four flips can
take minutes the planned epochs would otherwise have). Planning again from a written
``plan.yaml`` (``segapp fit --config run/plan.yaml --budget 20m``) must not read that plan's
``max_epochs`` (1.5x its epochs + 1) as the user's cap, nor its inference choice as the user's:
the values a config took from an earlier plan's planned settings are reset to the defaults first,
and the user's own settings in it (and anything given on the command line) stay.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segapp.inference.choice import MAX_IMAGES
from segapp.plan.writer import PLAN_HEADER, same

PLANNED_KEYS = (
    "trainer.accelerator",
    "trainer.devices",
    "trainer.precision",
    "trainer.max_epochs",
    "trainer.max_time",
    "model.net",
    "model.channels_last",
    "model.optimizer",
    "model.scheduler",
    "model.freeze_encoder_epochs",
    "model.encoder_lr_mult",
    "model.loss",
    "data.in_channels",
    "data.batch_size",
    "data.num_workers",
    "data.cache",
    "data.image_size",
    "data.train_size_schedule",
    "data.augment",
)
"""The settings a plan writes besides its callbacks (``tests/plan`` checks a plan sets no other)."""
PLANNED_CALLBACKS = ("WeightAveraging", "InferenceChoice")


@dataclass(frozen=True)
class Given:
    """The user's settings that shape the plan.

    Attributes:
        max_epochs: ``trainer.max_epochs`` given with ``--budget``: a cap on the planned epochs.
        choice_images: ``max_images`` of the user's own ``InferenceChoice``: kept and priced as given.
        earlier: The earlier ``plan.yaml`` the config was read from, if any (its planned values were reset).
    """

    max_epochs: int | None = None
    choice_images: int | None = None
    earlier: str | None = None


def earlier_plans(configs: Iterable[Any] | None) -> list[Path]:
    """The ``--config`` files that a plan wrote (their first line is the plan header)."""
    out = []
    for c in configs or []:
        path = Path(str(c))
        try:
            with path.open(encoding="utf-8") as f:
                first = f.readline()
        except OSError:
            continue
        if first.startswith(PLAN_HEADER):
            out.append(path)
    return out


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _as_written(value: Any, written: Any) -> bool:
    """``value`` (parsed: every init arg filled in) is what the plan wrote (only the args it set)."""
    if isinstance(value, dict) and isinstance(written, dict):
        return all(k in value and _as_written(value[k], w) for k, w in written.items())
    return same(value, written)


def _planned_callback(c: Any) -> bool:
    return str((c or {}).get("class_path", "")).endswith(PLANNED_CALLBACKS)


def without_earlier(full: dict[str, Any], defaults: dict[str, Any], earlier: Path) -> dict[str, Any]:
    """``full`` with the planned values it holds as the earlier plan ``earlier`` wrote them reset to ``defaults``.

    A planned setting whose value differs from the file's (given on the command line) stays the
    user's; one edited in the file is the file's value, so planning again plans it anew. The
    earlier plan's weight average and inference choice callbacks are dropped (the new plan adds its own).
    """
    old = yaml.safe_load(earlier.read_text(encoding="utf-8")) or {}
    out = copy.deepcopy(full)
    for key in PLANNED_KEYS:
        if _get(out, key) is not None and _as_written(_get(out, key), _get(old, key)):
            _set(out, key, copy.deepcopy(_get(defaults, key)))
    old_cbs = [c for c in _get(old, "trainer.callbacks") or [] if _planned_callback(c)]
    cbs = _get(out, "trainer.callbacks")
    if cbs:
        kept = [c for c in cbs if not any(_as_written(c, o) for o in old_cbs)]
        _set(out, "trainer.callbacks", kept or None)
    return out


def given(full: dict[str, Any], earlier: Path | None = None) -> Given:
    """The cap and the inference choice the user gave, from the (earlier-plan-free) config ``full``."""
    cap = _get(full, "trainer.max_epochs")
    choice = None
    for c in _get(full, "trainer.callbacks") or []:
        if str((c or {}).get("class_path", "")).endswith("InferenceChoice"):
            n = (c.get("init_args") or {}).get("max_images")
            choice = MAX_IMAGES if n is None else int(n)
    return Given(cap if isinstance(cap, int) and cap > 0 else None, choice, str(earlier) if earlier else None)
