"""Study files: schema, expansion into variants, and validation against the CLI's own parser.

A study YAML::

    name: init                      # optional; default: the file name
    seeds: [0, 1]                   # or an int N meaning seeds 0..N-1 (>= 2 for real studies)
    budget: {epochs: 6}             # and/or {minutes: 10} -> trainer.max_epochs / trainer.max_time
    subset: 100                     # optional -> data.train_subset
    target_dice: 0.7                # optional: epochs needed to reach it are reported
    evaluate: true                  # optional: boundary metrics of best.ckpt on the val split
    overrides: {data.image_size: 48}    # dotted CLI keys applied to every variant
    variants:                       # name -> dotted CLI keys (optional)
      he: {model.net.init_args.init: he}
    grid:                           # key -> list of values; crossed with the variants (optional)
      model.net.init_args.dropout: [0.0, 0.3]
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segapp.errors import UserError

_TOP_KEYS = {
    "name",
    "description",
    "seeds",
    "budget",
    "subset",
    "target_dice",
    "evaluate",
    "overrides",
    "variants",
    "grid",
}


class StudyError(UserError, ValueError):
    """A study file that cannot run: bad schema, unknown key or invalid value."""


@dataclass
class Variant:
    """One arm of a study: a name and the dotted CLI overrides that define it."""

    name: str
    overrides: dict[str, Any]


@dataclass
class Study:
    """A parsed study: what to run, how long, and with which seeds."""

    name: str
    variants: list[Variant]
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    target_dice: float | None = None
    description: str = ""
    evaluate: bool = False

    def run_overrides(self, variant: Variant) -> dict[str, Any]:
        """Overrides of one variant: study-wide ones first, the variant's win."""
        return {**self.overrides, **variant.overrides}


def _budget_overrides(budget: Any) -> dict[str, Any]:
    if budget is None:
        return {}
    if not isinstance(budget, dict) or not budget or set(budget) - {"epochs", "minutes"}:
        raise StudyError(
            f"budget: expected a mapping with 'epochs' and/or 'minutes', got {budget!r}; fix: e.g. budget: "
            f"{{epochs: 5}}"
        )
    out: dict[str, Any] = {}
    if "epochs" in budget:
        if not isinstance(budget["epochs"], int) or budget["epochs"] < 1:
            raise StudyError(f"budget.epochs: expected a positive integer, got {budget['epochs']!r}")
        out["trainer.max_epochs"] = budget["epochs"]
    if "minutes" in budget:
        m = budget["minutes"]
        if not isinstance(m, int | float) or m <= 0:
            raise StudyError(f"budget.minutes: expected a positive number, got {m!r}")
        total = int(round(m * 60))
        out["trainer.max_time"] = (
            f"{total // 86400:02d}:{total // 3600 % 24:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
        )
    return out


def _short(key: str, value: Any) -> str:
    val = value if isinstance(value, str) else json.dumps(value)
    return f"{key.rsplit('.', 1)[-1]}={val}"


def _expand(variants: Any, grid: Any) -> list[Variant]:
    if variants is not None and not isinstance(variants, dict):
        raise StudyError(f"variants: expected a mapping name -> {{dotted.key: value}}, got {type(variants).__name__}")
    if grid is not None and not (isinstance(grid, dict) and all(isinstance(v, list) and v for v in grid.values())):
        raise StudyError(f"grid: expected a mapping dotted.key -> non-empty list of values, got {grid!r}")
    for name, body in (variants or {}).items():
        if body is not None and not isinstance(body, dict):
            raise StudyError(f"variant {name!r}: expected a mapping of dotted keys to values, got {body!r}")
    base = [Variant(str(k), dict(v or {})) for k, v in (variants or {}).items()] or [Variant("", {})]
    combos = list(itertools.product(*[[(k, x) for x in vals] for k, vals in (grid or {}).items()]))
    out = []
    for v, combo in itertools.product(base, combos):
        parts = ([v.name] if v.name else []) + [_short(k, x) for k, x in combo]
        out.append(Variant("-".join(parts) or "base", {**v.overrides, **dict(combo)}))
    if len(out) < 1 or (len(out) == 1 and not out[0].overrides and variants is None):
        raise StudyError("a study needs 'variants' and/or 'grid'")
    names = [v.name for v in out]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.=+,-]+", n)]
    if bad or len(set(names)) != len(names):
        raise StudyError(f"variant names must be unique and use only letters, digits and _.=+,-; got {names}")
    return out


def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds) and len(set(seeds)) == len(seeds):
        return list(seeds)
    raise StudyError(f"seeds: expected a positive count or a list of distinct integers, got {seeds!r}")


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise StudyError(f"evaluate: expected true or false, got {value!r}")
    return value


def load_study(path: str | Path) -> Study:
    """Read and expand a study YAML (schema only; :func:`validate_study` checks the CLI keys).

    Raises:
        StudyError: Unknown top-level keys, malformed variants/grid/budget/seeds.
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise StudyError(f"{path}: unknown study keys {sorted(unknown)}; valid keys: {sorted(_TOP_KEYS)}")
    overrides = {**_budget_overrides(data.get("budget")), **dict(data.get("overrides") or {})}
    if data.get("subset") is not None:
        overrides["data.train_subset"] = data["subset"]
    target = data.get("target_dice")
    if target is not None and not (isinstance(target, int | float) and 0 < target <= 1):
        raise StudyError(f"target_dice: expected a number in (0, 1], got {target!r}")
    return Study(
        name=str(data.get("name") or path.stem),
        variants=_expand(data.get("variants"), data.get("grid")),
        seeds=_seeds(data.get("seeds", 1)),
        overrides=overrides,
        target_dice=target,
        description=str(data.get("description") or ""),
        evaluate=_flag(data.get("evaluate", False)),
    )


def cli_args(overrides: dict[str, Any]) -> list[str]:
    """``--key=value`` arguments; non-strings are passed as JSON (``null``, ``true``, lists, dicts)."""
    return [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


def _explain(key: str, value: Any, message: str) -> str:
    hint = ""
    if "not accepted" in message or "unrecognized arguments" in message.lower():
        hint = " The key does not exist; see `segapp fit --help` / `--print_config` for the valid keys."
    return f"study key {key!r} with value {value!r} is rejected by the segapp CLI: {message.strip()}{hint}"


def validate_study(study: Study, base_configs: list[str]) -> None:
    """Parse every variant with the CLI's own parser (nothing is instantiated or trained).

    A rejected variant is re-parsed key by key (in order) so the error names the first bad key.

    Raises:
        StudyError: Naming the variant, key, value and, for ``Literal`` keys, the valid choices.
    """
    from segapp.app import parse_only

    base = [a for c in base_configs for a in ("--config", str(c))]
    for variant in study.variants:
        merged = study.run_overrides(variant)
        err = parse_only(base + cli_args(merged))
        if err is None:
            continue
        items = list(merged.items())
        for i, (key, value) in enumerate(items):
            key_err = parse_only(base + cli_args(dict(items[: i + 1])))
            if key_err is not None:
                raise StudyError(f"variant {variant.name!r}: " + _explain(key, value, key_err))
        raise StudyError(f"variant {variant.name!r}: its overrides are rejected:\n{err.strip()}")
