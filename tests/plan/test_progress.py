"""The per-epoch progress line against the budget."""

from __future__ import annotations

from types import SimpleNamespace

from segapp.plan.progress import PlanProgress, planned_end, progress_line


def test_progress_line_says_on_behind_or_ahead_of_plan():
    assert (
        progress_line(5, 14, 12.3 * 60, 11.9 * 60, 2400) == "plan: epoch 5/14 · 12.3 of 40.0 min · on plan (+0.4 min)"
    )
    behind = progress_line(5, 14, 20 * 60, 12 * 60, 2400)
    assert "behind plan (+8.0 min)" in behind and "end before the last planned epoch" in behind
    assert "ahead of plan (-5.0 min)" in progress_line(5, 14, 7 * 60, 12 * 60, 2400)
    assert "end before" not in progress_line(14, 14, 45 * 60, 38 * 60, 2400)  # the last epoch: nothing left to stop


def test_the_callback_prints_one_line_per_epoch_from_the_plan(capsys):
    clock = iter([100.0 + 60, 100.0 + 200])
    cb = PlanProgress([70.0, 130.0], budget_s=300, started=100.0, clock=lambda: next(clock))
    for epoch in (0, 1):
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=epoch)
        cb.on_train_epoch_end(trainer, None)
    out = capsys.readouterr().out.splitlines()
    assert out == cb.lines and len(out) == 2
    assert out[0].startswith("plan: epoch 1/2 · 1.0 of 5.0 min · on plan")
    assert out[1].startswith("plan: epoch 2/2 · 3.3 of 5.0 min · behind plan (+1.2 min)")
    quiet = PlanProgress([1.0], 10, 0.0, clock=lambda: 1.0)
    quiet.on_train_epoch_end(SimpleNamespace(sanity_checking=False, is_global_zero=False, current_epoch=0), None)
    assert quiet.lines == []


def test_epochs_past_the_plan_are_counted_at_the_last_planned_epochs_length():
    ends = [100.0, 160.0, 220.0]
    assert planned_end(ends, 2) == 160.0 and planned_end(ends, 5) == 340.0
    line = progress_line(5, 3, 330.0, planned_end(ends, 5), 600)
    assert line.startswith("plan: epoch 5 (3 planned; the epochs ran faster)") and "on plan" in line


def test_a_line_past_the_budget_says_over_budget_even_when_on_the_extrapolated_plan():
    """Past the planned epochs the planned end is extrapolated: 1.3 of 1.0 min read "on plan"."""
    ends = [2.0 * k for k in range(1, 22)]  # 21 planned epochs of a 60 s budget
    line = progress_line(32, 21, 78.0, planned_end(ends, 32), 60)
    assert "on plan" in line and line.endswith("; OVER BUDGET by 0.3 min")
    assert "OVER BUDGET" not in progress_line(21, 21, 59.0, 42.0, 60)


def test_a_partial_last_epoch_says_so_instead_of_ahead_of_plan(capsys):
    """The 40-minute Kvasir run's 16th epoch, stopped at 33 of 80 batches, printed "ahead of plan
    (-2.9 min)" against a whole epoch's planned end."""
    cb = PlanProgress([60.0 * k for k in range(1, 16)], budget_s=2400, started=0.0, clock=lambda: 37.6 * 60)
    stopped = {"epoch": 15, "batches": 33, "of": 80}
    module = SimpleNamespace(run_info={"lr_schedule": {"stopped_mid_epoch": stopped}})
    cb.on_train_epoch_end(SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=15), module)
    out = capsys.readouterr().out.strip()
    assert out == "plan: epoch 16, the last, partial (33 of 80 batches: the time was up) · 37.6 of 40.0 min"
    cb.on_train_epoch_end(SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=14), module)
    assert "plan: epoch 15/15" in capsys.readouterr().out  # an epoch that was not stopped: the usual line
