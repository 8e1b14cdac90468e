"""The rules that depend on the measured step times: size, progressive resizing, epochs, max_time,
schedule, EMA, freezing, augmentation, loss (reasons and evidence: docs/planner.md)."""

from __future__ import annotations

import math
from typing import Any

from segapp.errors import SettingError
from segapp.inference.choice import MAX_IMAGES, MIN_IMAGES
from segapp.plan import sizing
from segapp.plan.budget import format_duration, max_time_text
from segapp.plan.device import Device
from segapp.plan.fingerprint import Fingerprint
from segapp.plan.given import Given
from segapp.plan.records import Base, Choice, Plan
from segapp.plan.rules import LESION_SPAN_PX
from segapp.plan.timing import MIXED_EDGE, Costs

EPOCH_FLOOR = {True: (6, 500), False: (12, 1500)}
"""(epochs, optimiser steps) a size must leave before a smaller size is preferred; pretrained /
scratch. Pretrained Kvasir runs reached 0.83-0.84 val Dice by epoch 5 (90 steps an epoch) and 0.834
after 3 epochs at 10 minutes; the scratch net was far from converged after 8 (docs/benchmarks.md)."""
RICH = 3
"""Above the lesion-driven size only while the budget still leaves RICH x the floor epochs there:
epochs first, since past the lesion-driven size resolution serves only the lesions smaller than
the 10th percentile. RICH was 2 until bf16 made CPU steps 1.5x faster and the spare time went to
480 px x 14 epochs on Kvasir: on its validation split 384 px x 13 epochs scored 0.890 against
0.874, and on the ultrasound-like set 160 px x 21 epochs was level with 256 px x 10
(docs/planner.md, data.image_size)."""
MAX_EPOCHS = 500
ROOM = 1.5
"""``trainer.max_epochs`` is this x the planned epochs (+1): room for epochs that run faster than measured."""
EMA_MIN_EPOCHS = 6
FULL_FREEZE_BELOW = 100
STANDARD_AUG_FROM = 150
WEIGHT_DECAY = 1e-4

Settings = dict[str, Any]


def plan_run(
    base: Base,
    fp: Fingerprint,
    device: Device,
    costs: Costs,
    budget_s: float,
    spent_s: float,
    mine: Given | None = None,
) -> Plan:
    """Size, schedule and epochs the measured ``costs`` allow in ``budget_s``, and what follows from them.

    Args:
        base: The pre-timing decisions (:func:`segapp.plan.rules.plan_base`).
        fp: The dataset's fingerprint.
        device: The device planned for.
        costs: The measured (and extrapolated) step times.
        budget_s: The budget, seconds.
        spent_s: Seconds already spent (imports, fingerprint, measuring).
        mine: What the user gave: a cap on the epochs (``trainer.max_epochs`` with ``--budget``) and
            their own ``InferenceChoice.max_images``, priced as given.

    Raises:
        SettingError: when the budget does not fit one epoch at the smallest size (the minimum is named).
    """
    mine = mine or Given()
    work = sizing.Work(base.n_train, base.n_val, base.n_pairs, costs.base.batch, mine.choice_images)
    ep, steps = EPOCH_FLOOR[base.net.pretrained]
    floor = max(ep, math.ceil(steps / work.steps))
    cap = min(MAX_EPOCHS, mine.max_epochs) if mine.max_epochs else MAX_EPOCHS
    sched, (why, evidence) = _size_rule(base, fp, costs, work, (budget_s, spent_s), floor, cap)
    settings: Settings = _base_settings(base, costs, device)
    choices = list(base.choices) + _measured_choices(base, costs, device, settings)
    choices.append(Choice("data.image_size", sched.size, why, evidence))
    settings["data.image_size"] = sched.size
    choices += _schedule_choices(sched, work, settings, cap if cap < MAX_EPOCHS else None)
    choices += _training_choices(base, fp, sched, work, settings)
    choices.append(_inference_choice(costs, work, sched, budget_s, settings))
    notes = [] if sched.epochs >= floor else [_under_floor(sched.epochs, floor, cap if cap < MAX_EPOCHS else None)]
    return Plan(budget_s, spent_s, fp, device, costs, sched, base.net, settings, choices, notes)


def _base_settings(base: Base, costs: Costs, device: Device) -> Settings:
    net = base.net
    return {
        "trainer.accelerator": "gpu" if device.kind == "cuda" else "cpu",
        "trainer.devices": 1,
        "trainer.precision": costs.base.precision,
        "model.net": {"class_path": net.class_path, "init_args": dict(net.init_args)},
        "model.channels_last": base.channels_last,
        "data.in_channels": base.in_channels,
        "data.batch_size": costs.base.batch,
        "data.num_workers": base.workers,
        "data.cache": True,
    }


def _size_rule(
    base: Base, fp: Fingerprint, costs: Costs, work: sizing.Work, time_s: tuple[float, float], floor: int, cap: int
) -> tuple[sizing.Schedule, tuple[str, str]]:
    """The largest size up to the lesion-driven one that leaves ``floor`` epochs (more when rich)."""
    budget_s, spent_s = time_s
    floor = min(floor, cap)

    def fit(size: int) -> sizing.Schedule:
        return sizing.fit_schedule(costs, work, size, base.smallest, budget_s, spent_s, cap)

    sizes = list(range(base.smallest, base.largest + 1, sizing.SIZE_STEP))
    smallest = fit(base.smallest)
    if smallest.epochs < 1:
        need = sizing.minimum_budget(costs, work, base.smallest, spent_s)
        fix = format_duration(math.ceil(need / 60) * 60)
        raise SettingError(
            f"--budget {format_duration(budget_s)}: expected at least {format_duration(need)} on this machine for one "
            f"epoch at {base.smallest} px ({work.n_train} training images, {spent_s:.0f} s of planning, "
            f"{smallest.epoch_s[1]:.0f} s an epoch), got {format_duration(budget_s)}; fix: --budget {fix} or more"
        )
    span = math.sqrt(fp.lesion_p10)
    why = f"the 10th-percentile lesion covers {fp.lesion_p10:.1%} of the frame; at {base.need} px it spans "
    why += f"{span * base.need:.0f} px (>= {LESION_SPAN_PX} px wanted"
    why += (
        f", capped at {base.largest} px: the images' short side or the device's limit)"
        if base.need == base.largest
        else ")"
    )
    chosen = next((s for s in (fit(x) for x in reversed(sizes) if x <= base.need) if s.epochs >= floor), None)
    if chosen is None:
        chosen = smallest
        why += f"; the budget leaves only {smallest.epochs} epochs even at {smallest.size} px (floor {floor})"
    elif chosen.size < base.need:
        why += f"; {base.need} px would leave {fit(base.need).epochs} epochs (floor {floor}): {chosen.size} px is the "
        why += f"largest that leaves {chosen.epochs}"
    else:
        for s in (fit(x) for x in sizes if x > base.need):
            if s.epochs < RICH * floor:
                break
            chosen = s
        if chosen.size > base.need:
            why += (
                f"; the budget leaves >= {RICH * floor} epochs up to {chosen.size} px: the extra time buys resolution"
            )
    evidence = (
        "docs/benchmarks.md run 3: 320 px instead of 256 px cut the small-polyp failures; run 2: more epochs at 256 "
        "px plateaued (0.86-0.88 from epoch 10)"
    )
    return chosen, (why, evidence)


def _per_image_ms(costs: Costs) -> str:
    return ", ".join(
        f"{c.precision} batch {c.batch}: {1000 * t.train_s / c.batch:.0f} ms/image"
        for c, t in costs.tried
        if c.size == costs.base.size
    )


def _measured_choices(base: Base, costs: Costs, device: Device, settings: Settings) -> list[Choice]:
    out = []
    b = costs.base
    if len(base.precisions) > 1:
        out.append(
            Choice(
                "trainer.precision",
                b.precision,
                f"this CPU has native bf16; measured at {b.size} px ({_per_image_ms(costs)}): the faster, bf16 "
                f"kept unless fp32 is over {MIXED_EDGE:g}x faster (bf16's lead grows with the size)",
                "docs/benchmarks.md 'bf16 on AVX512-BF16': 1.1-1.5x faster without AMX; with AMX 1.1x at 128 px "
                "and 1.5x at 320 px for this EfficientNet-Lite0 U-Net ('An AMX CPU'); same Dice (docs/tricks.md "
                "'Precision')",
            )
        )
    if len(base.batches) > 1:
        out.append(
            Choice(
                "data.batch_size",
                b.batch,
                f"measured at {b.size} px ({_per_image_ms(costs)}): the fastest per image",
                "GPU throughput grows with the batch until the device is full",
            )
        )
    lr = round(base.net.lr * math.sqrt(b.batch / 8), 6)
    scaled = f" x sqrt({b.batch}/8)" if b.batch != 8 else ""
    out.append(
        Choice(
            "model.optimizer",
            f"AdamW lr {lr:g}",
            f"the {base.net.key} recipe's lr {base.net.lr:g} at batch 8{scaled}, weight decay {WEIGHT_DECAY:g}",
            "configs/experiment/kvasir_effl0_320.yaml, kvasir_scratch.yaml"
            + ("; square-root scaling for a larger batch is a rule of thumb, not measured here" if scaled else ""),
        )
    )
    settings["model.optimizer"] = {
        "class_path": "torch.optim.AdamW",
        "init_args": {"lr": lr, "weight_decay": WEIGHT_DECAY},
    }
    return out


def _schedule_choices(sched: sizing.Schedule, work: sizing.Work, settings: Settings, cap: int | None) -> list[Choice]:
    out = []
    if sched.low is not None:
        settings["data.train_size_schedule"] = {0: sched.low, sizing.LOW_SHARE: sched.size}
        ratio = sched.epoch_s[0] / sched.epoch_s[1]
        out.append(
            Choice(
                "data.train_size_schedule",
                f"{{0: {sched.low}, {sizing.LOW_SHARE:g}: {sched.size}}}",
                f"progressive resizing: the first {sizing.LOW_SHARE:.0%} of the epochs at {sched.low} px (an epoch "
                f"costs {ratio:.0%} of one at {sched.size} px), the rest at {sched.size} px: {sched.switch} + "
                f"{sched.epochs - sched.switch} of the {sched.epochs} planned; the switch follows the epochs "
                "trainer.max_time holds as the run goes; validation at the final size",
                "configs/experiment/kvasir_effl0_320.yaml (224 -> 320 px, 0.879 vs 0.870-0.876 at 256 px)",
            )
        )
    else:
        settings["data.train_size_schedule"] = None
    phases = " + ".join(f"{n} x {s / 60:.1f} min at {px} px" for n, px, s in sched.phases if n)
    room = epoch_room(sched.epochs, cap)
    settings["trainer.max_epochs"] = room
    out.append(
        Choice(
            "trainer.max_epochs",
            room,
            f"{sched.epochs} planned: what {sched.max_time_s / 60:.1f} min of training holds: {phases} (the first "
            f"epoch +{sched.first_read_s:.0f} s reading the originals into the cache); up to {room} when the epochs "
            "run faster than measured: after every epoch the cosine is re-projected to the epochs "
            "trainer.max_time still holds, the last one cut short in time for its validation",
            "the measured step times below; segapp/lit/schedule_length.py (the cosine follows trainer.max_time); "
            "bench/auto_compare.sh: a fixed epoch count ended Kvasir runs at 0.78x the budget"
            + (f"; at most {cap}, the trainer.max_epochs you set" if cap else ""),
        )
    )
    settings["trainer.max_time"] = max_time_text(sched.max_time_s)
    out.append(
        Choice(
            "trainer.max_time",
            settings["trainer.max_time"],
            "a hard stop: the budget less planning, start-up, the trust calibration and inference choice after "
            "training and a 3 % margin",
            "Lightning stops at max_time even when an epoch runs slower than measured",
        )
    )
    warmup = 1 if sched.epochs >= 3 else 0
    settings["model.scheduler"] = {
        "class_path": "segapp.lit.schedulers.WarmupCosine",
        "init_args": {"warmup_epochs": warmup},
    }
    out.append(
        Choice(
            "model.scheduler",
            f"WarmupCosine, {warmup} warm-up epoch(s), cosine over the epochs trainer.max_time holds "
            f"({sched.epochs} planned)",
            "a schedule sized to the run: it reaches its floor at the last epoch that fits the budget",
            "docs/tricks.md study 6: cosine gave the lowest training loss; step decay sized wrong was the worst",
        )
    )
    out.append(_ema_choice(sched, work, settings))
    return out


def epoch_room(planned: int, cap: int | None) -> int:
    """``trainer.max_epochs`` of a plan: ``planned`` with room to grow (:data:`ROOM`), within the user's cap."""
    room = math.ceil(ROOM * planned) + 1
    return min(room, cap) if cap else room


def _ema_choice(sched: sizing.Schedule, work: sizing.Work, settings: Settings) -> Choice:
    if sched.epochs < EMA_MIN_EPOCHS:
        settings["trainer.callbacks"] = []
        return Choice(
            "trainer.callbacks",
            "no EMA",
            f"under {EMA_MIN_EPOCHS} epochs an average of the weights would still hold the first epochs' weights",
            "docs/benchmarks.md run 3: with EMA the first epochs validated low (0.415, 0.666)",
        )
    decay = round(min(max(1 - 1 / (2 * work.steps), 0.9), 0.999), 4)
    settings["trainer.callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": decay}}
    ]
    return Choice(
        "trainer.callbacks",
        f"EMAWeightAveraging decay {decay}",
        f"an average of the weights over the last ~{_ema_span(decay, work.steps)} ({work.steps} steps per epoch); "
        "it is what is validated and saved",
        "configs/experiment/kvasir_effl0_320.yaml: epoch-to-epoch swings of +-0.01 became 0.005, the last epoch best",
    )


def _ema_span(decay: float, steps: int) -> str:
    """The averaging window of ``decay`` (``1 / (1 - decay)`` steps) in epochs: 2 epochs by the rule,
    more where the decay is held at its floor of 0.9 (10 steps: 5 epochs of 2 steps, not 2)."""
    epochs = 1 / (1 - decay) / max(steps, 1)
    return f"{epochs:.0f} epochs" if epochs >= 1.5 else f"{1 / (1 - decay):.0f} steps"


def _training_choices(
    base: Base, fp: Fingerprint, sched: sizing.Schedule, work: sizing.Work, settings: Settings
) -> list[Choice]:
    return [_freeze_choice(base, sched, settings), _augment_choice(sched, work, settings), _loss_choice(fp, settings)]


def _under_floor(epochs: int, floor: int, cap: int | None) -> str:
    """The note for a plan under the epoch floor: what to change (a cap of the user's is not the budget)."""
    if cap is not None and epochs >= cap:  # "more budget helps" was wrong: 12 epochs of 250 at any budget
        return (
            f"{epochs} epochs is under the floor of {floor} because your trainer.max_epochs={cap} caps it, not the "
            "budget: drop trainer.max_epochs (from your config or command line) to let the budget decide"
        )
    return f"{epochs} epochs is under the floor of {floor}: more budget helps"


def _freeze_choice(base: Base, sched: sizing.Schedule, settings: Settings) -> Choice:
    ev = "docs/tricks.md study 7"
    if not base.net.pretrained:
        settings.update({"model.freeze_encoder_epochs": 0, "model.encoder_lr_mult": 1.0})
        return Choice("model.freeze_encoder_epochs", 0, "no pretrained encoder to keep", ev)
    if base.n_train < FULL_FREEZE_BELOW:
        whole = settings["trainer.max_epochs"]  # every epoch the run may take
        settings.update({"model.freeze_encoder_epochs": whole, "model.encoder_lr_mult": 1.0})
        return Choice(
            "model.freeze_encoder_epochs",
            whole,
            f"{base.n_train} training images (< {FULL_FREEZE_BELOW}): the encoder stays frozen (feature extraction)",
            ev + ": at 50 images fine-tuning was no better (Kvasir 0.537 vs 0.538) or worse (synthetic 0.843 vs 0.905)",
        )
    frozen = 1 if sched.epochs >= 2 else 0
    settings.update({"model.freeze_encoder_epochs": frozen, "model.encoder_lr_mult": 0.3})
    return Choice(
        "model.freeze_encoder_epochs",
        f"{frozen}, then encoder at 0.3x the lr",
        f"{base.n_train} training images: {frozen} epoch with the encoder frozen while the decoder settles, then "
        "fine-tuning with a lower encoder lr",
        ev + ": fine-tuned +0.03-0.04 over frozen from 200 images (Kvasir); the Kvasir recipes' 1 epoch and 0.3x; "
        "the whole net at the full lr from the first step: level on validation (docs/benchmarks.md 'Augmentation "
        "preset and encoder fine-tuning')",
    )


def _inference_choice(
    costs: Costs, work: sizing.Work, sched: sizing.Schedule, budget_s: float, settings: Settings
) -> Choice:
    n = sizing.choice_images(costs, work, sched.size, budget_s)
    share = f"{sizing.CHOICE_SHARE:.0%} of the budget"
    if work.given_choice is not None:  # the user's callback stays (segapp.plan.writer); its time is planned
        secs = sizing.choice_seconds(costs, work, sched.size, budget_s)
        return Choice(
            "InferenceChoice.max_images",
            work.given_choice,
            f"yours: {n} of the {work.n_val} validation images scored after training, planned at {secs:.0f} s "
            f"(the plan's own rule keeps it within {share})",
            "docs/benchmarks.md 'The model's own TTA': +0.000 to +0.002 test Dice where chosen",
        )
    cb = {"class_path": "segapp.lit.choose_inference.InferenceChoice", "init_args": {"max_images": n}}
    settings["trainer.callbacks"] = [*settings.get("trainer.callbacks", []), cb]
    if n == 0:
        why = f"off: {share} scores fewer than {MIN_IMAGES} validation images at {sched.size} px"
    elif n < min(work.n_val, MAX_IMAGES):
        why = f"{n} of the {work.n_val} validation images: what {share} holds at {sched.size} px"
    else:
        why = f"all {n} validation images (within {share})"
    return Choice(
        "InferenceChoice.max_images",
        n,
        why + "; after training it chooses TTA and keep_largest on them (docs/inference.md)",
        "docs/benchmarks.md 'The model's own TTA': +0.000 to +0.002 test Dice where chosen; not worth epochs",
    )


def _augment_choice(sched: sizing.Schedule, work: sizing.Work, settings: Settings) -> Choice:
    standard = work.n_train >= STANDARD_AUG_FROM and sched.epochs >= EMA_MIN_EPOCHS
    settings["data.augment"] = "standard" if standard else "light"
    if standard:
        return Choice(
            "data.augment",
            "standard",
            f"{work.n_train} training images and {sched.epochs} epochs: flips, affine, crops, colour, blur/noise",
            "docs/tricks.md study 5 (Kvasir: augmentation closed the train-val gap +0.26 -> +0.06); the Kvasir "
            "recipes; light instead: validation Dice -0.026 on the ultrasound-like set (docs/benchmarks.md "
            "'Augmentation preset and encoder fine-tuning')",
        )
    return Choice(
        "data.augment",
        "light",
        f"{work.n_train} training images / {sched.epochs} epochs: a harder augmented problem under-fits short runs",
        "docs/tricks.md study 5: on 100 images no preset raised val Dice in 12 epochs; light + flips kept it steadiest",
    )


def _loss_choice(fp: Fingerprint, settings: Settings) -> Choice:
    settings["model.loss"] = "dice_bce"
    why = ["Dice + BCE per image, the loss of every measured recipe"]
    if fp.empty_share >= 0.05:
        why.append(f"{fp.empty_share:.0%} empty masks: the BCE half gives them a gradient where Dice is flat")
    if fp.small_share > 0 or fp.lesion_p10 < 0.05:
        why.append("small lesions: the per-image Dice half weighs a small lesion like a large one, which BCE does not")
    return Choice(
        "model.loss",
        "dice_bce",
        "; ".join(why),
        "docs/benchmarks.md 'Auto-configuration': on the ultrasound-like set Dice + focal scored 0.019 [0.002, "
        "0.039] lower (small lesions -0.016 [-0.040, 0.006]) and Tversky 0.020 [0.005, 0.038] lower (small "
        "lesions -0.020 [-0.042, 0.000])",
    )
