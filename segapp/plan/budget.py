"""Wall-clock budgets as users write them: ``40m``, ``1h30m``, ``90s``, ``2400`` (seconds)."""

from __future__ import annotations

import math
import re

from segapp.errors import SettingError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}
_EXAMPLES = "e.g. --budget 40m, 1h30m, 90s or 2400 (seconds)"
MAX_BUDGET_S = 30 * 86400.0
"""A month: past it a plan is no plan (99999999999999h planned, then Lightning's timer overflowed,
and a 400-digit budget became ``inf`` and NaN epochs inside planning)."""


def parse_budget(text: str | int | float) -> float:
    """Seconds in a budget string: plain seconds (``2400``) or ``h``/``m``/``s`` parts in that order.

    Raises:
        SettingError: on anything else, or a budget of zero, in one line (expected, got, fix).
    """
    raw = str(text).strip().lower().replace(" ", "")
    seconds = _seconds(raw)
    if seconds is None:
        raise SettingError(
            f"--budget: expected a duration like 40m, 1h30m, 90s or 2400, got {text!r}; fix: {_EXAMPLES}"
        )
    if seconds <= 0:
        raise SettingError(f"--budget: expected a duration above zero, got {text!r}; fix: {_EXAMPLES}")
    if not math.isfinite(seconds) or seconds > MAX_BUDGET_S:
        raise SettingError(
            f"--budget: expected at most 30 days ({MAX_BUDGET_S:.0f} s), got {text!r}; fix: a budget you would wait "
            "for, e.g. --budget 12h (the plan's epochs stop at 500 long before)"
        )
    return seconds


def _seconds(raw: str) -> float | None:
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    parts = _PART.findall(raw)
    units = [u for _, u in parts]
    if not parts or "".join(n + u for n, u in parts) != raw or units != sorted(set(units), key="hms".index):
        return None  # leftovers, a repeated unit, or units out of order (30m1h)
    return sum(float(n) * _UNIT[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """``40m``, ``1h30m``, ``95s``: the short spelling :func:`parse_budget` reads back."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec else "")
    return out or "0s"


def max_time_text(seconds: float) -> str:
    """``DD:HH:MM:SS`` for ``trainer.max_time`` (whole seconds, rounded down, at least 1)."""
    s = max(1, int(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return f"{d:02d}:{h:02d}:{m:02d}:{sec:02d}"
