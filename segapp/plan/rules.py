"""The planner's rules: each choice with its reason and its evidence (docs/planner.md lists them).

No Lightning and no files here: the inputs are the dataset's fingerprint, the device, whether
pretrained weights are installed, the measured step times and the budget; the output is a
:class:`~segapp.plan.records.Plan`, i.e. dotted config settings (``data.image_size`` ...) with a
:class:`~segapp.plan.records.Choice` per setting saying why. Two stages: :func:`plan_base` (here)
decides what does not depend on time (net, channels, precision and batch candidates, the size
range to time) and :func:`segapp.plan.rules_timed.plan_run` what the measured times allow (size,
schedule, epochs, and what follows from them).
"""

from __future__ import annotations

import math

from segapp.plan import sizing
from segapp.plan.device import Device
from segapp.plan.fingerprint import Fingerprint
from segapp.plan.nets import NETS, NetChoice
from segapp.plan.records import Base, Choice

LESION_SPAN_PX = 56
"""The 10th-percentile lesion should span this many pixels (square root of its area) at the net's
size. Kvasir's p10 polyp (3.4 % of the frame) spans 47 px at 256 px and 59 px at 320 px; 320 px cut
the images scoring below 0.5 Dice, mostly small polyps, from 10 to 8 (docs/benchmarks.md)."""
MIN_SIZE = 128
"""Below it a depth-5 U-Net's bottleneck is 4x4; smaller images are used at their own size."""
MAX_SIZE = {"cpu": 512, "cuda": 1024}
CPU_BATCH = 8
GPU_BATCHES = [16, 32]


def _grid(x: float, up: bool = False) -> int:
    step = sizing.SIZE_STEP
    return int(math.ceil(x / step) * step) if up else int(x // step * step)


def plan_base(fp: Fingerprint, device: Device, weights: tuple[bool, str], n_train: int, n_val: int) -> Base:
    """Net, input channels, precision and batch candidates, memory format, workers, size range."""
    choices: list[Choice] = []
    net = _net_rule(weights, choices)
    in_channels = 1 if fp.grey else 3
    choices.append(
        Choice(
            "data.in_channels",
            in_channels,
            f"{fp.grey_share:.0%} of the images are grey: one input channel (a pretrained first conv's RGB filters "
            "are summed, the same as feeding the grey image three times)"
            if fp.grey
            else "colour images: three input channels",
            "docs/models.md (SmpUnet, in_channels: 1)",
        )
    )
    precisions = _precision_rule(device, choices)
    batches = _batch_rule(device, n_train, choices)
    choices.append(
        Choice(
            "model.channels_last",
            True,
            "channels-last memory format: faster convolutions in fp32 on AVX2 and with mixed precision",
            "docs/benchmarks.md 'fp32: channels-last and input size': 1.15-1.32x (bench/step_bench.py)",
        )
    )
    workers = min(2 if device.kind == "cpu" else 8, device.cores)
    top = max(sizing.SIZE_STEP, min(MAX_SIZE[device.kind], _grid(fp.short_side)))
    lo = min(MIN_SIZE, top)
    need = min(max(_grid(LESION_SPAN_PX / math.sqrt(max(fp.lesion_p10, 1e-6)), up=True), lo), top)
    return Base(net, in_channels, precisions, batches, True, workers, lo, need, top, n_train, n_val, fp.pairs, choices)


def _net_rule(weights: tuple[bool, str], choices: list[Choice]) -> NetChoice:
    ok, why = weights
    if ok:
        net = NETS["effl0"]
        choices.append(
            Choice(
                "model.net",
                net.key,
                f"{net.title}: {why}; pretrained is far ahead of scratch at every training-set size and converges "
                "faster",
                "docs/tricks.md study 7 (Kvasir, 720 images: 0.775 vs 0.521; frozen on 50 images beats scratch on "
                "720); docs/benchmarks.md 10-minute budget: 0.834 vs 0.434; Lite1 / Lite2 instead of Lite0 in the "
                "40-minute Kvasir plan: 0.874 / 0.889 vs 0.882, level (one epoch fewer each), so not a larger encoder",
            )
        )
        return net
    net = NETS["scratch"]
    choices.append(
        Choice(
            "model.net",
            net.key,
            f"fallback to the {net.title}: no pretrained weights, because {why}; expect a weaker model at the same "
            "budget",
            "docs/tricks.md study 3 (residual depth 5 best) and docs/benchmarks.md (scratch 0.434 vs pretrained "
            "0.834 in 10 minutes)",
        )
    )
    return net


def _precision_rule(device: Device, choices: list[Choice]) -> list[str]:
    if device.kind == "cuda":
        prec = "bf16-mixed" if device.bf16 else "16-mixed"
        choices.append(
            Choice(
                "trainer.precision",
                prec,
                "GPU: mixed precision (tensor cores)" + ("" if device.bf16 else "; fp16 as this GPU has no bf16"),
                "docs/tricks.md 'Precision': bf16 and fp32 reach the same Dice on Kvasir",
            )
        )
        return [prec]
    if device.bf16:
        return ["32-true", "bf16-mixed"]  # the measured faster one wins (plan_run records it)
    choices.append(
        Choice(
            "trainer.precision",
            "32-true",
            "fp32: this CPU has neither AMX-BF16 nor AVX512-BF16, so bf16 autocast would be emulated",
            "docs/benchmarks.md: bf16 8-25x slower than fp32 on AVX2; same Dice (docs/tricks.md 'Precision')",
        )
    )
    return ["32-true"]


def _batch_rule(device: Device, n_train: int, choices: list[Choice]) -> list[int]:
    if device.kind == "cuda":
        return [b for b in GPU_BATCHES if b <= max(n_train, 2)] or [max(2, n_train)]
    batch = CPU_BATCH if n_train >= 2 * CPU_BATCH else max(2, n_train // 2)
    why = (
        "the Kvasir recipes' batch; on a few CPU cores images/s hardly changes with the batch"
        if batch == CPU_BATCH
        else f"half of the {n_train} training images, so an epoch has two steps"
    )
    choices.append(Choice("data.batch_size", batch, why, "configs/experiment/kvasir_effl0_320.yaml"))
    return [batch]
