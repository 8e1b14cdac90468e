"""Budget strings: the spellings users write, and one-line refusals of everything else."""

from __future__ import annotations

import pytest

from segapp.errors import SettingError
from segapp.plan.budget import format_duration, max_time_text, parse_budget


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("40m", 2400),
        ("1h30m", 5400),
        ("90s", 90),
        ("2400", 2400),
        (2400, 2400),
        ("1h", 3600),
        ("1h0m30s", 3630),
        ("1.5h", 5400),
        (" 40M ", 2400),
        ("2m30s", 150),
    ],
)
def test_good_spellings(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["40 minutes", "m40", "30m1h", "1h1h", "", "-5m", "40min", "1d", "abc", "0", "0m"])
def test_bad_spellings_are_one_line_with_the_fix(text):
    with pytest.raises(SettingError) as e:
        parse_budget(text)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--budget: expected")
    assert repr(text) in msg and "fix: e.g. --budget 40m" in msg


@pytest.mark.parametrize("text", ["99999999999999h", "9" * 400, "721h", "2592001"])
def test_budgets_past_a_month_or_infinite_are_refused_in_one_line(text):
    """99999999999999h was planned and then overflowed Lightning's timer; 400 digits gave NaN epochs."""
    with pytest.raises(SettingError) as e:
        parse_budget(text)
    assert str(e.value).startswith("--budget: expected at most 30 days") and "fix:" in str(e.value)
    assert parse_budget("720h") == 30 * 86400


@pytest.mark.parametrize("seconds", [90, 2400, 5400, 3630, 59])
def test_format_reads_back(seconds):
    assert parse_budget(format_duration(seconds)) == seconds


def test_max_time_text_is_lightnings_format():
    assert max_time_text(2330.7) == "00:00:38:50"
    assert max_time_text(90061) == "01:01:01:01"
    assert max_time_text(-3) == "00:00:00:01"


def test_the_budget_clock_counts_imports_of_a_fresh_process_but_not_earlier_work(monkeypatch):
    import time

    from segapp.plan import apply

    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
    monkeypatch.setattr(time, "process_time", lambda: 4.0)  # a fresh `segapp fit`: 4 s of imports
    assert apply.command_start() == 996.0
    monkeypatch.setattr(time, "process_time", lambda: 322.0)  # pytest or segapp-cv after other work
    assert apply.command_start() == 1000.0
