"""A plan on disk and on the console: ``plan.yaml`` (a normal config), ``plan.md``, ``plan.json``.

``plan.yaml`` is the user's own config (every value that differs from the parser's defaults)
with the planned settings written over it, so ``segapp fit --config <run>/plan.yaml`` runs the
same training without planning again, and it reads like the hand-written recipes in
``configs/experiment/``. ``plan.md`` says why each setting was chosen and ``plan.json`` holds
the same for programs (fingerprint, measurements, predicted timeline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from segapp.io import atomic_write
from segapp.plan.budget import format_duration
from segapp.plan.records import Plan
from segapp.plan.report import plan_markdown, plan_record

PLAN_HEADER = "# segapp plan:"  # the first line of every plan.yaml (segapp.plan.given refuses it with --budget)
INPUT_NAME = "plan_input.yaml"  # beside plan.yaml: the settings it was planned from
PLAN_KEYS = ("budget", "plan_only")  # the planning arguments: never in a plan.yaml
SECTION_ORDER = ("seed_everything", "trainer", "model", "data")


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of plain values in one line (``decoder_channels: [128, 64]``)."""


def _list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(v, (int, float, str, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _list)


def to_yaml(config: dict[str, Any]) -> str:
    """The config as YAML, sections in the recipes' order (seed, trainer, model, data, the rest)."""
    order = [k for k in SECTION_ORDER if k in config] + [k for k in config if k not in SECTION_ORDER]
    return yaml.dump({k: config[k] for k in order}, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"data.image_size": 320}`` -> ``{"data": {"image_size": 320}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down: ``1`` is not ``True`` and ``1`` is not ``1.0``.

    Python's ``1 == True`` dropped ``seed_everything: 1`` from every plan.yaml (its default is
    ``True``: a random seed). Written when in doubt: a value equal to its default costs a line, a
    missing one a different run."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def compact(full: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``full`` that differ from ``defaults`` (recursively; a ``class_path`` block whole)."""
    out: dict[str, Any] = {}
    for key, value in full.items():
        default = defaults.get(key, object())
        if isinstance(value, dict) and isinstance(default, dict) and "class_path" not in value:
            sub = compact(value, default)
            if sub:
                out[key] = sub
        elif not same(value, default):
            out[key] = value
    return out


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"image_size": 320}}`` -> ``{"data.image_size": 320}`` (a ``class_path`` block whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" not in value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def replaced(plan: Plan, user_full: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Notes for the settings the user gave (config or command line) that the plan writes over.

    A planned run must not drop a user's ``--data.image_size 512`` silently: the note says what
    was replaced and how to keep it (edit ``plan.yaml`` and train it without ``--budget``).
    """
    user = _flat(compact(user_full, defaults))
    notes = _averages_replaced(plan, user.get("trainer.callbacks") or [])
    for key, value in plan.settings.items():
        if key == "trainer.callbacks":  # the user's stay, besides a weight average (above)
            continue
        given = user.get(key)
        if key in user and not same(given, value) and given not in ("auto", None):
            notes.append(
                f"your {key}={given!r} was replaced by the plan's {value!r}; to keep yours, set it in "
                "plan.yaml and run `segapp fit --config plan.yaml --trainer.default_root_dir <a new folder>` "
                "(no --budget)"
            )
    return notes


def _averages_replaced(plan: Plan, mine: list[Any]) -> list[str]:
    """Notes for the user's weight-average callbacks: the plan's EMA rule decides whether one runs."""
    planned = [c for c in plan.settings.get("trainer.callbacks", []) if c["class_path"].endswith("WeightAveraging")]
    notes = []
    for c in mine:
        name = str((c or {}).get("class_path", "")).rsplit(".", 1)[-1]
        if not name.endswith("WeightAveraging"):
            continue
        what = (
            f"replaced by the plan's {planned[0]['class_path'].rsplit('.', 1)[-1]}{planned[0].get('init_args') or ''}"
            if planned
            else "dropped: the plan trains too few epochs for a weight average (plan.md, EMA)"
        )
        notes.append(
            f"your callback {name} was {what}; to keep yours, set it in plan.yaml and run "
            "`segapp fit --config plan.yaml --trainer.default_root_dir <a new folder>` (no --budget)"
        )
    return notes


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "class_path" not in value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _callbacks(user: Any, planned: list[dict]) -> list[dict] | None:
    """The user's callbacks without another weight average, then the planned ones (an
    ``InferenceChoice`` of the user's replaces the planned one)."""
    kept = [c for c in user or [] if not str(c.get("class_path", "")).endswith("WeightAveraging")]
    mine = {str(c.get("class_path", "")).rsplit(".", 1)[-1] for c in kept}
    planned = [c for c in planned if not ("InferenceChoice" in mine and c["class_path"].endswith("InferenceChoice"))]
    return [*kept, *planned] or None


def plan_config(plan: Plan, user_full: dict[str, Any], defaults: dict[str, Any], root: str) -> dict[str, Any]:
    """The config a plan trains: the user's non-default settings with the planned ones on top.

    Args:
        plan: The plan.
        user_full: The user's parsed config, dumped (every key).
        defaults: The parser's defaults, dumped the same way.
        root: ``data.root`` as written into the plan (absolute, so the plan runs from any folder).
    """
    settings = dict(plan.settings)
    callbacks = settings.pop("trainer.callbacks", [])
    cfg = _merge(compact(user_full, defaults), nested(settings))
    for key in PLAN_KEYS:
        cfg.pop(key, None)
    cfg.setdefault("data", {})["root"] = root
    cbs = _callbacks(user_full.get("trainer", {}).get("callbacks"), callbacks)
    if cbs:
        cfg.setdefault("trainer", {})["callbacks"] = cbs
    else:
        cfg.get("trainer", {}).pop("callbacks", None)
    return cfg


def input_config(user_full: dict[str, Any], defaults: dict[str, Any], root: str) -> dict[str, Any]:
    """The settings a plan was made from: the user's non-default ones (configs and command line),
    without the planning arguments, ``data.root`` absolute. ``segapp fit --config plan_input.yaml
    --budget B`` plans again from them (on another machine, or with another budget)."""
    cfg = compact(user_full, defaults)
    for key in PLAN_KEYS:
        cfg.pop(key, None)
    cfg.setdefault("data", {})["root"] = root
    return cfg


def _header(plan: Plan, folder: Path) -> str:
    return (
        f"{PLAN_HEADER} {format_duration(plan.budget_s)} on {plan.device.describe()} for {plan.fingerprint.root}\n"
        f"# A normal segapp config: `segapp fit --config {folder / 'plan.yaml'} --trainer.default_root_dir "
        f"{folder}_2` trains it again without planning (a new folder: a trained one is not written over).\n"
        "# Why each setting: plan.md beside this file. Copy and edit freely.\n"
        f"# Plan again (another machine or budget) from {INPUT_NAME} beside it, not from this file.\n"
    )


def write_plan(plan: Plan, config: dict[str, Any], folder: Path, given: dict[str, Any]) -> dict[str, Path]:
    """Write ``plan.yaml``, ``plan.md``, ``plan.json`` and ``plan_input.yaml`` (the settings
    ``given``) into ``folder`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"plan.{k}" for k in ("yaml", "md", "json")} | {"input": folder / INPUT_NAME}
    texts = {
        "input": (
            f"# segapp plan input: the settings {folder / 'plan.yaml'} was planned from (configs, command line).\n"
            f"# Plan again from them: `segapp fit --config {paths['input']} --budget 40m` (any budget).\n"
        )
        + to_yaml(given),
        "yaml": _header(plan, folder) + to_yaml(config),
        "md": plan_markdown(plan, paths["yaml"]),
        "json": json.dumps(plan_record(plan), indent=1, default=str),
    }
    for key, path in paths.items():
        with atomic_write(path) as tmp:
            tmp.write_text(texts[key])
    return paths
