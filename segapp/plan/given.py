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

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


def given_keys(argv: Iterable[str]) -> set[str]:
    """Dotted keys the user set on the command line or in a ``--config`` file, whatever their value.

    A value equal to the parser's default is still the user's: ``--data.image_size 256`` or
    ``--model.freeze_encoder_epochs 0`` were taken for "not given" (a comparison with the defaults)
    and replaced by the plan without the note every other replaced setting gets.
    """
    keys: set[str] = set()
    args = iter(argv)
    for tok in args:
        if tok in ("-c", "--config") or tok.startswith("--config="):
            path = tok.partition("=")[2] if "=" in tok else next(args, None)
            keys |= _config_keys(path)
        elif tok.startswith("--"):
            keys.add(tok[2:].partition("=")[0].rstrip("+"))
    return keys


def _config_keys(path: str | None) -> set[str]:
    try:
        tree = yaml.safe_load(Path(str(path)).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()  # the parser has already read it, or refused it with its own message
    return set(_dotted(tree)) if isinstance(tree, dict) else set()


def _dotted(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    """The leaves' dotted keys (a section's own key would claim every default in it)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def without(defaults: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``defaults`` less the ``keys`` the user gave, so that comparing with it keeps them all."""
    out = copy.deepcopy(defaults)
    for key in keys:
        *parents, last = key.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out
