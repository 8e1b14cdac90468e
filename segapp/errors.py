"""User-error types shared by the rooms below the CLI (imports nothing).

The console scripts turn these into one ``error:`` line and exit code 2 (``segapp.cli``);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix (a setting, a file); the message says expected, got and the fix."""


class SettingError(UserError, ValueError):
    """A configuration value out of range or not among the valid choices."""


class OutputWriteError(UserError):
    """An output could not be written (disk full, folder not writable); what was written before is kept."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` valid names closest to ``name`` (for "did you mean" hints)."""
    choices = list(choices)
    hits = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not hits:
        low = name.lower()
        hits = [c for c in choices if low in c.lower() or c.lower() in low][:n]
    return hits


def check_range(
    setting: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    fix: str = "",
) -> None:
    """Raise :class:`SettingError` unless ``lo (<|<=) value (<|<=) hi``.

    Args:
        setting: The config key as the user writes it, e.g. ``data.val_fraction``.
        value: The value given.
        lo: Lower bound (``None``: unbounded).
        hi: Upper bound (``None``: unbounded).
        lo_open: Exclude ``lo`` itself.
        hi_open: Exclude ``hi`` itself.
        fix: Extra advice appended after ``fix:``.
    """
    ok = True
    if lo is not None:
        ok &= value > lo if lo_open else value >= lo
    if hi is not None:
        ok &= value < hi if hi_open else value <= hi
    if ok:
        return
    if lo is not None and hi is not None:
        want = f"a value in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        want = f"a value {'>' if lo_open else '>='} {lo}"
    else:
        want = f"a value {'<' if hi_open else '<='} {hi}"
    tail = f"; fix: {fix}" if fix else ""
    raise SettingError(f"{setting}: expected {want}, got {value!r}{tail}")


def check_choice(setting: str, value: object, choices: Iterable[object], fix: str = "") -> None:
    """Raise :class:`SettingError` unless ``value`` is one of ``choices``, suggesting close matches.

    Args:
        setting: The config key as the user writes it, e.g. ``model.net.init_args.norm``.
        value: The value given.
        choices: The valid values (e.g. ``typing.get_args`` of a ``Literal``).
        fix: Extra advice appended after ``fix:``.
    """
    choices = list(choices)
    if value in choices:
        return
    names = [str(c) for c in choices]
    near = close_matches(str(value), names) if isinstance(value, str) else []
    listed = ", ".join(names) if len(names) <= 12 else f"{len(names)} names"
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    tail = f"; fix: {fix}" if fix else ""
    raise SettingError(f"{setting}: expected one of {listed}, got {value!r}{hint}{tail}")
