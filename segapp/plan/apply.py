"""The app's planning step: the parsed ``segapp fit --budget ...`` config in, a planned config out.

Called by :meth:`segapp.app.SegappCLI.before_instantiate_classes`: it fingerprints the dataset,
times the candidates, applies the rules, writes ``plan.yaml``/``plan.md``/``plan.json`` to the
run folder and prints the summary. The app then parses ``plan.yaml`` as if the user had typed
``segapp fit --config <run>/plan.yaml`` (a replay, into another folder), so a planned run and its
replay are the same config.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segapp.app_errors import refuse_trained_folder
from segapp.data.splits import make_splits
from segapp.errors import SettingError
from segapp.plan.budget import parse_budget
from segapp.plan.device import Device, detect_device
from segapp.plan.fingerprint import Fingerprint, fingerprint_folder, fingerprint_pairs
from segapp.plan.given import Given, given, refuse_plans, without
from segapp.plan.nets import lite0_weights
from segapp.plan.records import Base, Plan
from segapp.plan.report import summary
from segapp.plan.rules import plan_base
from segapp.plan.rules_timed import plan_run
from segapp.plan.timing import Candidate, StepTimer, calibrate, measure_chosen
from segapp.plan.torch_timer import TorchStepTimer
from segapp.plan.writer import input_config, plan_config, replaced, write_plan

CALIBRATION_SHARE = 0.015
"""Measuring may take 1.5 % of the budget, within [CALIBRATION_MIN_S, CALIBRATION_MAX_S] seconds
(the smallest size is always measured once)."""
REFINE_SHARE = 0.01
"""Measuring the size a plan chose, when the calibration extrapolated it, may take what is left of
the calibration's allowance or 1 % of the budget, whichever is more, for all its rounds (a 256 px
bf16 step on 2 cores: about 3 s to measure)."""
REFINE_ROUNDS = 3
"""A size measured cheaper than extrapolated may move the plan to a larger unmeasured one: measured too."""
CALIBRATION_MIN_S = 2.0
CALIBRATION_MAX_S = 45.0
BUSY_LOAD = 1.5
"""A load average above 1.5x the cores while measuring is noted in the plan (other jobs share them)."""


@dataclass
class ActivePlan:
    """A plan the app is running: the plan, its files, when the command began, and plan-only mode."""

    plan: Plan
    paths: dict[str, Path]
    started: float
    plan_only: bool


def _dump(parser: Any, cfg: Any) -> dict[str, Any]:
    return yaml.safe_load(parser.dump(cfg, skip_none=False)) or {}


def _timer(base: Base, splits: dict, rule: Any) -> StepTimer:
    return TorchStepTimer(splits["train"] or splits["val"], base.in_channels, rule, read_size=max(base.timing_sizes()))


IMPORTS_AT_MOST_S = 30.0
"""CPU time a fresh ``segapp fit`` process spends before the app starts (imports) is counted;
more than this means a long-lived process (pytest, ``segapp-cv``, the ablation runner) whose
earlier work is not this run's."""


def command_start() -> float:
    """``time.monotonic()`` at which this run's budget clock starts: now, less the imports of a fresh process."""
    cpu = time.process_time()
    return time.monotonic() - (cpu if cpu <= IMPORTS_AT_MOST_S else 0.0)


def plan_fit(
    parser: Any,
    cfg: Any,
    make_timer: Callable[..., StepTimer] = _timer,
    started: float | None = None,
    user_keys: Iterable[str] = (),
) -> ActivePlan:
    """Plan the ``segapp fit`` config ``cfg`` (parsed by ``parser``) to its ``budget``.

    The budget clock starts at ``started`` (default :func:`command_start`; the app passes the
    moment it was built, so a process that ran other work first does not count it). ``user_keys``: the
    dotted keys the user gave (:func:`~segapp.plan.given.given_keys`), theirs even at a default value.

    Raises:
        SettingError: a bad budget, a budget too small for one epoch, ``--plan_only`` without a
            budget, ``--budget`` with ``--ckpt_path``, a trainer setting the plan does not model
            (:data:`UNMODELLED`), or no ``data.root``.
        DataError: a dataset that fails its pre-flight check.
    """
    started = command_start() if started is None else started
    full = _dump(parser, cfg)
    budget_s = _budget(full)
    refuse_plans(cfg.get("config"))
    refuse_trained_folder((full.get("trainer") or {}).get("default_root_dir"), planned=True)
    data = full.get("data") or {}
    if not data.get("root"):
        raise SettingError("data.root: expected your dataset folder, got nothing; fix: --data.root /path/to/folder")
    fp, rep, disc = fingerprint_folder(
        data["root"],
        data.get("layout", "auto"),
        data.get("mask_threshold", 127),
        data.get("foreground_labels"),
        mask_suffix=data.get("mask_suffix"),
        mask_dir=data.get("mask_dir"),
        csv_name=data.get("csv_name"),
    )
    keys = ("val_fraction", "test_fraction", "seed", "group_regex", "num_folds", "fold", "train_subset")
    splits = make_splits(disc.pairs, **{k: data[k] for k in keys if k in data})
    if splits["test"]:  # checked above with the rest; the plan is chosen on what training sees
        fp = fingerprint_pairs(
            disc, [*splits["train"], *splits["val"]], data.get("mask_threshold", 127), data.get("foreground_labels")
        )
    device = detect_device((full.get("trainer") or {}).get("accelerator"))

    def timer(base: Base) -> StepTimer:
        return make_timer(base, splits, rep.rule())

    defaults = _dump(parser, parser.get_defaults())
    mine = given(full)
    counts = (len(splits["train"]), len(splits["val"]))
    load = _load_average()
    plan = make_plan(fp, device, lite0_weights(), counts, timer, budget_s, lambda: time.monotonic() - started, mine)
    if load is not None and load > BUSY_LOAD * device.cores:
        plan.notes.append(
            f"the machine was busy while measuring (load average {load:.1f} on {device.cores} cores): the plan "
            "assumes it stays so; plan again when it is quiet for a plan sized to the idle machine"
        )
    if splits["test"]:
        plan.notes.append(
            f"the fingerprint is of the {fp.pairs} training and validation pairs; the {len(splits['test'])} test "
            "pairs were checked for errors but do not choose the plan"
        )
    yours = without(defaults, user_keys)  # a key the user gave counts as theirs even at its default value
    plan.notes.extend(replaced(plan, full, yours))
    root = str(Path(data["root"]).resolve())
    config = plan_config(plan, full, defaults, root)
    folder = Path((full.get("trainer") or {}).get("default_root_dir") or "runs/default")
    paths = write_plan(plan, config, folder, input_config(full, yours, root))
    print(summary(plan, paths), flush=True)
    return ActivePlan(plan, paths, started, bool(full.get("plan_only")))


def make_plan(
    fp: Fingerprint,
    device: Device,
    weights: tuple[bool, str],
    counts: tuple[int, int],
    make_timer: Callable[[Base], StepTimer],
    budget_s: float,
    spent_s: Callable[[], float],
    mine: Given | None = None,
) -> Plan:
    """The plan for a fingerprinted dataset: base rules, calibration within its allowance, timed rules.

    Args:
        fp: The dataset's fingerprint.
        device: The device to plan for.
        weights: Whether pretrained weights are available, and where or why not.
        counts: Training and validation images.
        make_timer: Builds the step timer for the base decisions (tests pass a fake).
        budget_s: The budget, seconds.
        spent_s: Seconds spent so far, asked after the calibration.
        mine: What the user gave that shapes the plan (a cap on the epochs, their own inference choice).
    """
    base, mine = plan_base(fp, device, weights, *counts), mine or Given()
    allowance = min(max(CALIBRATION_SHARE * budget_s, CALIBRATION_MIN_S), CALIBRATION_MAX_S)
    dev = "cuda" if device.kind == "cuda" else "cpu"
    first = Candidate(base.net.key, base.smallest, base.batches[0], base.precisions[0], base.channels_last, dev)
    timer = make_timer(base)
    costs = calibrate(timer, first, base.timing_sizes(), allowance, base.precisions, base.batches)
    plan = plan_run(base, fp, device, costs, budget_s, spent_s(), mine)
    left = max(allowance - costs.spent_s, REFINE_SHARE * budget_s)
    for _ in range(REFINE_ROUNDS):  # a chosen size that was extrapolated: measure it and plan again
        before = costs.spent_s
        if not measure_chosen(timer, costs, plan.schedule.size, left):
            break
        left -= costs.spent_s - before
        plan = plan_run(base, fp, device, costs, budget_s, spent_s(), mine)
    return plan


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None


def _whole(v: Any) -> bool:
    """``limit_train_batches`` / ``val_check_interval`` left at a whole epoch (an int means batches)."""
    return v is None or (isinstance(v, float) and v == 1.0)


UNMODELLED = {
    "limit_train_batches": (_whole, "1.0 (every training batch)"),
    "accumulate_grad_batches": (lambda v: v in (None, 1), "1 (one optimiser step per batch)"),
    "check_val_every_n_epoch": (lambda v: v in (None, 1), "1 (a validation after every epoch)"),
    "val_check_interval": (_whole, "1.0 (validation at the end of each epoch)"),
    "max_steps": (lambda v: v in (None, -1), "-1 (the budget's time ends the run)"),
    "min_epochs": (lambda v: v in (None, 0), "none (a minimum switches off trainer.max_time's stop)"),
    "min_steps": (lambda v: v in (None, -1, 0), "none (a minimum switches off trainer.max_time's stop)"),
    "fast_dev_run": (lambda v: v in (None, False, 0), "false (a debugging run of a few batches, not a plan)"),
    "overfit_batches": (lambda v: v in (None, 0, 0.0), "0 (every training image, as planned)"),
}
"""Trainer settings the planner's time model assumes: epochs of every batch, one step per batch, a
validation after each. Another value would make the planned epochs, the step floor and the EMA decay
wrong without a word, so it is refused with ``--budget`` (a plan.yaml replayed without it may set them)."""


def _modelled(trainer: dict[str, Any]) -> None:
    for key, (ok, expected) in UNMODELLED.items():
        if not ok(trainer.get(key)):
            raise SettingError(
                f"trainer.{key}: expected {expected} with --budget (the plan's epochs and steps assume it), "
                f"got {trainer.get(key)!r}; fix: drop it, or plan without it and set it in the written "
                "plan.yaml, then run segapp fit --config plan.yaml "
                "--trainer.default_root_dir <a new folder> (no --budget)"
            )


def _budget(full: dict[str, Any]) -> float:
    _modelled(full.get("trainer") or {})
    if (full.get("model") or {}).get("compile"):
        raise SettingError(
            "model.compile: expected false with --budget (the step timer measures the net without torch.compile, "
            "whose first steps compile for minutes on a CPU, unplanned), got true; fix: drop it, or plan without "
            "it and set it in the written plan.yaml, then run segapp fit --config plan.yaml "
            "--trainer.default_root_dir <a new folder> (no --budget)"
        )
    if full.get("ckpt_path"):
        raise SettingError(
            f"--budget: expected a new run, got --ckpt_path {full['ckpt_path']}; fix: resume a planned run with "
            "`segapp fit --config <run>/plan.yaml --ckpt_path last`"
        )
    if full.get("budget") in (None, ""):
        raise SettingError("--plan_only: expected --budget as well, got none; fix: e.g. --budget 40m --plan_only true")
    return parse_budget(full["budget"])
