"""Step times of candidate settings on this machine, behind a small timer interface.

:class:`StepTimer` is what the planner needs from a machine: seconds per training step and per
evaluation batch of one :class:`Candidate`, warm-up excluded, and the per-image cost of reading
and augmenting. :class:`~segapp.plan.torch_timer.TorchStepTimer` measures them with real steps
on a real batch; tests pass a fake. :func:`calibrate` decides what to measure within a time
allowance (a few sizes, precisions and batch sizes) and extrapolates the other sizes by pixel
count, ``t(size) = t(measured) * (size / measured) ** (2 * k)`` with ``k`` fitted from two
measured sizes (else :data:`DEFAULT_EXPONENT`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

from segapp.errors import SettingError

DEFAULT_EXPONENT = 1.3
"""Step time ~ pixels ** k when only one size could be measured: bench/step_bench.py gave 2.49x the
time for 2.04x the pixels (224 -> 320 px) for both Kvasir nets on 2 AVX2 cores, k = 1.27-1.28."""
POST_PRECISION = "32-true"
"""The trust calibration and the inference choice run the best checkpoint without autocast."""
MIXED_EDGE = 1.1
"""At the smallest size a mixed precision is kept unless fp32 measures more than this much faster
per image: the mixed precision's lead grows with the size (bf16 on AVX512-BF16: 1.09x at 128 px,
1.49x at 256 px, 1.54x at 384 px; docs/benchmarks.md) and at 128 px it is within the noise of a
few timed steps (two dermoscopy-like plans a minute apart: bf16 0.258 vs fp32 0.251 s/step, then
0.235 vs 0.272), so a plain "faster wins" trained fp32 or bf16 by chance."""
MAX_POST_GROWTH = 0.5
"""Cap on the fitted growth of the fp32 ratio with the pixels (AVX512-BF16 measured 0.16: 1.09x at
128 px, 1.54x at 384 px): two noisy timings must not extrapolate a ratio that refuses the budget."""
WARMUP_STEPS = 1
TIMED_STEPS = 3
VAL_STEPS = 2


@dataclass(frozen=True)
class Candidate:
    """One setting to time: net, input size, batch, precision, memory format, device."""

    net: str
    size: int
    batch: int
    precision: str
    channels_last: bool
    device: str = "cpu"


@dataclass(frozen=True)
class StepTime:
    """Measured on one candidate.

    Attributes:
        train_s: Seconds per training step (forward, loss, backward, optimiser step), warm-up excluded.
        val_s: Seconds per evaluation batch (forward only, no gradients).
        spent_s: Wall seconds the measurement took (net build, warm-up and timed steps).
    """

    train_s: float
    val_s: float
    spent_s: float


@dataclass(frozen=True)
class LoadTime:
    """Per-image data costs: ``read_s`` decoding and resizing an original (the first epoch, which
    fills the resized cache) and ``item_s`` augmenting and normalising a resized image (every epoch)."""

    read_s: float
    item_s: float


class StepTimer(Protocol):
    """What the planner asks of a machine (real: :class:`~segapp.plan.torch_timer.TorchStepTimer`)."""

    def measure(self, cand: Candidate, max_s: float) -> StepTime:
        """Time a few training steps and evaluation batches of ``cand``, warm-up excluded; fewer
        timed steps (at least one) when the warm-up shows that more would take over ``max_s``."""
        ...

    def load_time(self, size: int) -> LoadTime:
        """Per-image reading and augmentation cost at ``size``."""
        ...


@dataclass
class Costs:
    """Measured step times and the extrapolation to sizes not measured.

    Attributes:
        base: The chosen candidate (its precision and batch; ``size`` is the smallest measured).
        times: Measured step times by input size (of ``base``'s other settings).
        tried: Every measurement, for the plan's record: ``(candidate, step time)``.
        exponent: ``k`` in ``t ~ pixels ** k``.
        exponent_source: ``fitted from N and M px`` or ``assumed``.
        load: Per-image data costs.
        spent_s: Seconds the calibration took.
        post_ratio: fp32 evaluation time over ``base``'s at ``post_size``: the passes after
            training (trust calibration, inference choice) run without autocast, so a bf16 plan
            must not cost them at bf16 speed (1.5x faster at 384 px on AVX512-BF16,
            docs/benchmarks.md).
        post_size: The size ``post_ratio`` was measured at.
        post_growth: ``g`` in ``ratio ~ pixels ** g``, fitted when the ratio was measured at two
            sizes (it grows with the size: 1.09x at 128 px, 1.54x at 384 px on AVX512-BF16), so
            a plan whose chosen size is larger than any fp32 measurement does not under-cost them.
    """

    base: Candidate
    times: dict[int, StepTime]
    tried: list[tuple[Candidate, StepTime]] = field(default_factory=list)
    exponent: float = DEFAULT_EXPONENT
    exponent_source: str = "assumed"
    load: LoadTime = LoadTime(0.0, 0.0)
    spent_s: float = 0.0
    post_ratio: float = 1.0
    post_size: int = 0
    post_growth: float = 0.0

    def _scaled(self, size: int, attr: str) -> float:
        ref = min(self.times, key=lambda s: abs(math.log(size / s)))
        return getattr(self.times[ref], attr) * (size / ref) ** (2 * self.exponent)

    def train_step(self, size: int) -> float:
        """Seconds per training step at ``size`` (measured, or extrapolated from the nearest size)."""
        return self._scaled(size, "train_s")

    def val_step(self, size: int) -> float:
        """Seconds per evaluation batch at ``size``."""
        return self._scaled(size, "val_s")

    def post_val_step(self, size: int) -> float:
        """Seconds per evaluation batch at ``size`` in fp32, as the passes after training run."""
        return self._scaled(size, "val_s") * self.post_ratio_at(size)

    def post_ratio_at(self, size: int) -> float:
        """fp32 over ``base``'s evaluation time at ``size`` (never below 1)."""
        if not self.post_size or not self.post_growth:
            return max(self.post_ratio, 1.0)
        return max(self.post_ratio * (size / self.post_size) ** (2 * self.post_growth), 1.0)

    def measured(self, size: int) -> bool:
        return size in self.times


def _cost_of(t: StepTime) -> float:
    """The least that measuring a candidate with these step times costs: the warm-up, one timed
    step and two evaluation batches (the timer adds timed steps only while its allowance lasts)."""
    return (WARMUP_STEPS + 1) * t.train_s + 2 * t.val_s


def _per_image(item: tuple[Candidate, StepTime]) -> float:
    """Seconds per training image, a mixed precision's counted :data:`MIXED_EDGE` x faster."""
    edge = 1.0 if item[0].precision == POST_PRECISION else MIXED_EDGE
    return item[1].train_s / item[0].batch / edge


def calibrate(
    timer: StepTimer,
    base: Candidate,
    sizes: list[int],
    allowance_s: float,
    precisions: list[str] | None = None,
    batches: list[int] | None = None,
) -> Costs:
    """Measure what fits in ``allowance_s`` seconds, smallest first.

    1. Every precision x batch combination at the smallest size (the cheapest measurement) while
       the allowance lasts (the first always: on a busy machine a 60 s plan measured for 45 s);
       the fastest per image wins, a mixed precision counted :data:`MIXED_EDGE` x faster (a candidate
       that fails, e.g. out of GPU memory, times as infinite).
    2. Then the largest of ``sizes`` whose predicted measuring cost fits what is left, so the
       exponent ``k`` is fitted over the widest range; sizes not measured are extrapolated.

    Args:
        timer: The machine (or a fake).
        base: Net, channels-last and device; its precision and batch are the defaults.
        sizes: Candidate input sizes; the smallest is always measured.
        allowance_s: Seconds the calibration may take (checked before each measurement).
        precisions: Precisions to compare (default: ``base.precision``).
        batches: Batch sizes to compare (default: ``base.batch``).
    """
    small, rest = min(sizes), sorted(set(sizes) - {min(sizes)}, reverse=True)
    tried: list[tuple[Candidate, StepTime]] = []
    for prec in precisions or [base.precision]:
        for batch in batches or [base.batch]:
            cand = replace(base, size=small, precision=prec, batch=batch)
            left = allowance_s - sum(t.spent_s for _, t in tried)
            if tried and left <= 0:
                continue  # the allowance is spent (a busy machine): one measurement is what planning needs
            tried.append((cand, timer.measure(cand, left)))
    ok = [t for t in tried if math.isfinite(t[1].train_s)]
    if not ok:
        raise SettingError(
            f"planning: expected one trainable setting, got none: every tried batch size ({batches or [base.batch]}) "
            f"at {small} px failed (out of memory?); fix: free the device, or plan for the CPU with "
            "--trainer.accelerator cpu"
        )
    best, first = min(ok, key=_per_image)
    base = replace(base, size=small, precision=best.precision, batch=best.batch)
    costs = Costs(base=base, times={small: first}, tried=tried)
    spent = sum(t.spent_s for _, t in tried)
    for size in rest:
        if spent + _cost_of(_predicted(costs, size)) > allowance_s:
            continue
        got = timer.measure(replace(base, size=size), allowance_s - spent)
        tried.append((replace(base, size=size), got))
        spent += got.spent_s
        if math.isfinite(got.train_s):
            costs.times[size] = got
            _fit_exponent(costs, small, size)
        break
    spent += _post_ratio(timer, costs, allowance_s - spent)
    costs.load = timer.load_time(small)
    costs.spent_s = spent
    return costs


def measure_chosen(timer: StepTimer, costs: Costs, size: int, allowance_s: float) -> bool:
    """Measure the size a plan chose when it was extrapolated and measuring it fits ``allowance_s``.

    On a short budget the calibration affords only the smaller sizes, and the exponent fitted
    between them undershoots above them (fixed costs weigh more in a small step): the 10-minute
    ultrasound-like plan on an AMX CPU measured 128 and 192 px and its 256 px epochs ran 1.3-1.6
    minutes behind the plan (docs/benchmarks.md 'An AMX CPU'). The exponent is refitted from the
    smallest size to this one. Returns whether a measurement was added (the caller plans again).

    Raises:
        SettingError: when the chosen size fails to run (out of memory?): the plan would fail at its
            first step, so it stops here with the fix.
    """
    if costs.measured(size) or _cost_of(_predicted(costs, size)) > allowance_s:
        return False
    cand = replace(costs.base, size=size)
    got = timer.measure(cand, allowance_s)
    costs.tried.append((cand, got))
    costs.spent_s += got.spent_s
    if not math.isfinite(got.train_s):
        raise SettingError(
            f"planning: expected the chosen {size} px (batch {cand.batch}, {cand.precision}) to train on this "
            f"device, got a failed step (out of memory?) while {costs.base.size} px ran; fix: free the device, "
            "or plan for the CPU with --trainer.accelerator cpu"
        )
    costs.times[size] = got
    _fit_exponent(costs, costs.base.size, size)
    return True


def _post_ratio(timer: StepTimer, costs: Costs, left_s: float) -> float:
    """Set ``costs.post_ratio`` (and its growth) for a plan in another precision than fp32.

    The ratio grows with the size (bf16 on AVX512-BF16: 1.09x at 128 px, 1.54x at 384 px), so it
    is measured at the largest size measured when the allowance still affords an fp32 run there,
    its growth fitted between that size and the smallest (where every precision was measured);
    else it is the smallest size's, else 1 (a GPU plan measures its mixed precision only; its
    passes after training are short). Returns the seconds spent."""
    base = costs.base
    if base.precision == POST_PRECISION:
        return 0.0
    same = (POST_PRECISION, base.size, base.batch)
    at_small = next((t for c, t in costs.tried if (c.precision, c.size, c.batch) == same), None)
    if at_small is None or not (math.isfinite(at_small.train_s) and math.isfinite(at_small.val_s)):
        return 0.0  # fp32 not measured or failed: no ratio to take, and an infinite one would refuse the budget
    small_ratio = _ratio(at_small, costs.times[base.size])
    costs.post_ratio, costs.post_size = max(small_ratio, 1.0), base.size
    large = max(costs.times)
    scale = (large / base.size) ** (2 * costs.exponent)
    if large == base.size or _cost_of(StepTime(at_small.train_s * scale, at_small.val_s * scale, 0.0)) > left_s:
        return 0.0
    cand = replace(base, size=large, precision=POST_PRECISION)
    got = timer.measure(cand, left_s)
    costs.tried.append((cand, got))
    if math.isfinite(got.val_s) and costs.times[large].val_s > 0:
        large_ratio = _ratio(got, costs.times[large])
        costs.post_ratio, costs.post_size = max(large_ratio, 1.0), large
        if small_ratio > 0 and large_ratio > small_ratio:
            growth = math.log(large_ratio / small_ratio) / math.log((large / base.size) ** 2)
            costs.post_growth = min(growth, MAX_POST_GROWTH)
    return got.spent_s


def _ratio(fp32: StepTime, other: StepTime) -> float:
    return fp32.val_s / other.val_s if other.val_s > 0 else 1.0


def _predicted(costs: Costs, size: int) -> StepTime:
    return StepTime(costs.train_step(size), costs.val_step(size), 0.0)


def _fit_exponent(costs: Costs, a: int, b: int) -> None:
    """``k`` from two measured sizes, kept within [0.8, 1.6] (noise on a shared machine)."""
    ta, tb = costs.times[a].train_s, costs.times[b].train_s
    if ta > 0 and tb > 0 and a != b:
        k = math.log(tb / ta) / math.log((b / a) ** 2)
        costs.exponent = min(max(k, 0.8), 1.6)
        costs.exponent_source = f"fitted from {a} and {b} px"
