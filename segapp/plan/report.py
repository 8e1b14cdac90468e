"""A plan in words: the console summary, ``plan.md`` and the ``plan.json`` record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segapp.plan.budget import format_duration
from segapp.plan.records import Plan
from segapp.plan.sizing import LOW_SHARE


def _measured_line(plan: Plan) -> str:
    c = plan.costs
    sizes = ", ".join(f"{c.times[s].train_s:.2f} s/step at {s} px" for s in sorted(c.times))
    load = f"read {1000 * c.load.read_s:.0f} ms/image"
    ratio = c.post_ratio_at(plan.schedule.size)
    post = f"; fp32 evaluation {ratio:.2f}x slower at {plan.schedule.size} px (trust, choice)" if ratio > 1 else ""
    return (
        f"{plan.net.key} {c.base.precision} batch {c.base.batch}: {sizes} (others ~pixels^{c.exponent:.2f}, "
        f"{c.exponent_source}){post}; {load}; {c.spent_s:.1f} s of measuring"
    )


def _size_line(plan: Plan) -> str:
    s = plan.schedule
    if s.low is None:
        return f"{s.size} px"
    low = f"{s.low} px for the first {LOW_SHARE:.0%} of the epochs (0-{s.switch - 1} as planned)"
    return f"{s.size} px, progressive: {low}"


def _timeline(plan: Plan) -> dict[str, float]:
    s = plan.schedule
    ends = plan.epoch_ends()
    epochs = (ends[-1] if ends else 0.0) - plan.spent_s - s.startup_s - s.first_read_s
    return {
        "planning": plan.spent_s,
        "start-up": s.startup_s,
        "first read": s.first_read_s,
        "epochs": epochs,
        "trust calibration and inference choice": s.trust_s,
    }


def summary(plan: Plan, paths: dict[str, Path]) -> str:
    """The plan in about ten lines, printed before training."""
    f, s = plan.fingerprint, plan.schedule
    val = {c.setting: c.value for c in plan.choices}
    phases = " + ".join(f"{n} x {sec / 60:.1f} min at {px} px" for n, px, sec in s.phases if n)
    times = _timeline(plan)
    total = plan.predicted_total_s()
    lines = [
        f"segapp plan · {format_duration(plan.budget_s)} on {plan.device.describe()} · {f.root}",
        f"  data      {f.describe()}",
        f"  measured  {_measured_line(plan)}",
        f"  net       {plan.net.key}: {plan.net.title}",
        f"  size      {_size_line(plan)}",
        f"  epochs    {s.epochs} ({phases}); max_time {plan.settings['trainer.max_time']}",
        f"  training  {val.get('model.optimizer')}, {plan.settings['trainer.precision']}, augment "
        f"{val.get('data.augment')}, loss dice_bce, frozen encoder {val.get('model.freeze_encoder_epochs')}, "
        f"{val.get('trainer.callbacks')}",
        "  time      "
        + " + ".join(f"{k} {v / 60:.1f}" for k, v in times.items() if v >= 0.5)
        + f" = {total / 60:.1f} of {plan.budget_s / 60:.1f} min",
        *(f"  note      {n}" for n in plan.notes),
        f"  written   {paths['yaml']} (the config), {paths['md'].name} (the reasons), {paths['input'].name} (what it "
        "was planned from); replay: segapp fit --config "
        f"{paths['yaml']} --trainer.default_root_dir {paths['yaml'].parent}_2",
    ]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    return str(v).replace("|", "/").replace("\n", " ")


def plan_markdown(plan: Plan, yaml_path: Path) -> str:
    """``plan.md``: fingerprint, measurements, each choice with its reason and evidence, the timeline."""
    f, c = plan.fingerprint, plan.costs
    out = [
        f"# segapp plan: {format_duration(plan.budget_s)} for {f.root}",
        "",
        f"Device: {plan.device.describe()}. Replay without planning, into a new folder: `segapp fit --config "
        f"{yaml_path} --trainer.default_root_dir {Path(yaml_path).parent}_2`.",
        "",
        "## Dataset fingerprint",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in f.to_dict().items()),
        "",
        "## Measured on this machine",
        "",
        "| net | size | precision | batch | train s/step | eval s/batch | measuring s |",
        "|---|---:|---|---:|---:|---:|---:|",
        *(
            f"| {k.net} | {k.size} | {k.precision} | {k.batch} | {t.train_s:.3f} | {t.val_s:.3f} | {t.spent_s:.1f} |"
            for k, t in c.tried
        ),
        "",
        f"Other sizes: step time ~ pixels^{c.exponent:.2f} ({c.exponent_source}). Reading an original image "
        f"{1000 * c.load.read_s:.1f} ms, augmenting {1000 * c.load.item_s:.1f} ms per image.",
        "",
        "## Choices",
        "",
        "| setting | value | reason | evidence |",
        "|---|---|---|---|",
        *(f"| `{ch.setting}` | {_cell(ch.value)} | {_cell(ch.reason)} | {_cell(ch.evidence)} |" for ch in plan.choices),
        "",
        "## Predicted time",
        "",
        "| phase | epochs | train size | minutes |",
        "|---|---:|---:|---:|",
        *(f"| {k} | | | {v / 60:.2f} |" for k, v in _timeline(plan).items() if k != "epochs"),
        *(f"| epochs | {n} | {px} | {n * sec / 60:.2f} |" for n, px, sec in plan.schedule.phases if n),
        f"| **total** | {plan.schedule.epochs} | | **{plan.predicted_total_s() / 60:.2f}** of "
        f"{plan.budget_s / 60:.2f} |",
        "",
        *(f"Note: {n}" for n in plan.notes),
    ]
    return "\n".join(out) + "\n"


def plan_record(plan: Plan) -> dict[str, Any]:
    """``plan.json``: everything in :func:`plan_markdown`, for programs (bench/ compares it with the run)."""
    c, s = plan.costs, plan.schedule
    return {
        "budget_s": plan.budget_s,
        "planning_s": plan.spent_s,
        "fingerprint": plan.fingerprint.to_dict(),
        "device": plan.device.to_dict(),
        "measured": [{**vars(k), **vars(t)} for k, t in c.tried],
        "exponent": c.exponent,
        "exponent_source": c.exponent_source,
        "post_ratio": c.post_ratio,
        "post_size": c.post_size,
        "post_growth": c.post_growth,
        "post_ratio_at_size": c.post_ratio_at(s.size),
        "load": vars(c.load),
        "schedule": {
            "size": s.size,
            "low": s.low,
            "switch": s.switch,
            "epochs": s.epochs,
            "epoch_s": list(s.epoch_s),
            "startup_s": s.startup_s,
            "first_read_s": s.first_read_s,
            "trust_s": s.trust_s,
            "max_time_s": s.max_time_s,
        },
        "epoch_ends_s": plan.epoch_ends(),
        "predicted_total_s": plan.predicted_total_s(),
        "choices": [vars(ch) for ch in plan.choices],
        "settings": plan.settings,
        "notes": plan.notes,
    }
