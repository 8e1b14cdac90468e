"""The LR schedule follows the trainer: its length comes from the run's own limits (issue 14.1)."""

import csv
import json
import math
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback, Timer

from segapp.errors import SettingError
from segapp.lit.schedule_length import ScheduleFollower, ScheduleLength, from_limits, project_time
from segapp.lit.schedulers import WarmupCosine
from tests.conftest import tiny_fit_args

LR = 0.003  # configs/quickstart.yaml


def _factor(epoch: int, length: int, warmup: int = 1, floor: float = 0.01) -> float:
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    t = min(1.0, (epoch - warmup) / (length - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _epoch_lrs(run) -> dict[int, float]:
    """``lr-AdamW`` logged at the start of each epoch, by epoch, across every log version."""
    out = {}
    for version in sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        rows = list(csv.DictReader((version / "metrics.csv").read_text().splitlines()))
        steps = sorted({int(r["step"]): int(r["epoch"]) for r in rows if r.get("epoch")}.items())
        for r in rows:
            if r.get("lr-AdamW"):
                step = int(r["step"])
                epoch = next((e for s, e in steps if s >= step), None)
                out[epoch] = float(r["lr-AdamW"])
    return out


def _run_info(run) -> dict:
    latest = max((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return json.loads((latest / "run_info.json").read_text())


def _sched(opt_lr: float = 1.0, **kw) -> WarmupCosine:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=opt_lr)
    return WarmupCosine(opt, **kw)


def test_length_from_epoch_and_step_limits():
    assert from_limits(50, -1, 10) == ScheduleLength(50, "trainer.max_epochs=50")
    both = from_limits(50, 95, 10)  # the step limit ends the run first: 10 epochs (the last one partial)
    assert both.epochs == 10 and "max_steps=95" in both.source
    assert from_limits(4, 1000, 10).epochs == 4
    assert from_limits(-1, -1, 10).epochs is None


def test_time_projection_never_exceeds_the_epoch_limit():
    limits = ScheduleLength(50, "trainer.max_epochs=50")
    short = project_time(limits, epochs_done=3, seconds_left=700, last_epoch_seconds=100)
    assert short.epochs == 10 and "max_time" in short.source
    assert project_time(limits, 3, seconds_left=1e6, last_epoch_seconds=100) is limits


def test_set_length_applies_to_the_current_epoch_at_once():
    s = _sched(warmup_epochs=1, max_epochs=None)
    s.set_length(12)
    for _ in range(5):
        s.step()
    s.set_length(6)  # a shorter projection after epoch 4: the next epoch's LR changes now
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(_factor(5, 6))
    assert s.get_last_lr()[0] == pytest.approx(_factor(5, 6))


def test_explicit_length_survives_a_checkpoint_with_another_length():
    old = _sched(max_epochs=None)
    old.set_length(4)
    old.step()
    new = _sched(max_epochs=9)
    new.load_state_dict(old.state_dict())
    assert new.max_epochs == 9 and new.last_epoch == 1
    follow = _sched(max_epochs=None)
    follow.load_state_dict(old.state_dict())
    assert follow.follows_trainer and follow.last_epoch == 1


@pytest.mark.parametrize("kw", [{"warmup_epochs": -1}, {"min_lr_ratio": 1.5}, {"max_epochs": 1, "warmup_epochs": 1}])
def test_bad_schedule_settings_are_setting_errors(kw):
    with pytest.raises(SettingError, match="model.scheduler"):
        _sched(**kw)


def _fake_trainer(max_epochs, remaining=None, epoch=0, datamodule=None, **kw):
    timer = Timer(duration=timedelta(seconds=1000)) if remaining is not None else None
    if timer is not None:
        timer.time_remaining = lambda *a, **k: remaining
    fields = {
        "max_epochs": max_epochs,
        "max_steps": -1,
        "num_training_batches": 10,
        "accumulate_grad_batches": 1,
        "callbacks": [timer] if timer else [],
        "current_epoch": epoch,
        "is_global_zero": True,
        "strategy": SimpleNamespace(broadcast=lambda x, src=0: x),
        "datamodule": datamodule,
        "should_stop": False,
    }
    return SimpleNamespace(**{**fields, **kw})


def test_max_time_shortens_the_cosine_after_a_slow_epoch():
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    assert sched.max_epochs == 20
    follower.epoch_end(_fake_trainer(20, remaining=800, epoch=1), sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 2 + 8
    assert info["lr_schedule"]["epochs"] == 10 and len(info["lr_schedule"]["history"]) == 2
    # a one-off slow epoch (a cache being built) does not shorten the cosine for good
    follower.epoch_end(_fake_trainer(20, remaining=700, epoch=2), sched, info, epoch_seconds=20.0)
    assert sched.max_epochs == 20 and info["lr_schedule"]["source"] == "trainer.max_epochs=20"


def test_the_run_stops_when_the_next_epoch_does_not_fit_in_max_time(capsys):
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    t = _fake_trainer(20, remaining=320, epoch=5)
    follower.epoch_end(t, sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 9 and not t.should_stop  # 3 more epochs fit; 20 s is too little for a 4th
    t = _fake_trainer(20, remaining=20, epoch=8)
    follower.epoch_end(t, sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 9 and t.should_stop
    assert "stopping after epoch 8: the next epoch (~100 s) does not fit in the 20 s left" in capsys.readouterr().out


def test_an_unmet_min_epochs_is_said_once_not_a_stop_said_after_every_epoch(capsys):
    """With trainer.min_epochs unmet Lightning does not stop: the log said "stopping" after each of
    12 epochs while the run went on (a 60 s plan ran 82 s)."""
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    loop = SimpleNamespace(_can_stop_early=False)
    follower.epoch_end(_fake_trainer(20, remaining=320, epoch=5, fit_loop=loop), sched, info, epoch_seconds=100.0)
    for epoch in (8, 9, 10):
        t = _fake_trainer(20, remaining=20, epoch=epoch, fit_loop=loop)
        follower.epoch_end(t, sched, info, epoch_seconds=100.0)
        assert not t.should_stop
    out = capsys.readouterr().out
    assert "stopping" not in out and out.count("min_epochs / min_steps not met") == 1


def test_the_time_after_the_last_whole_epoch_holds_a_partial_one():
    limits = ScheduleLength(50, "trainer.max_epochs=50")
    # 7 whole 100 s epochs, then 58 s: less the 28 s kept for a 20 s tail (x1.25 + 3 s), 30 s of
    # training = 3/8 of the next epoch's 80 s
    part = project_time(limits, 3, seconds_left=758, last_epoch_seconds=100, tail_seconds=20)
    assert part.epochs == 11 and part.partial == pytest.approx(0.375) and "partial (~38% of its steps)" in part.source
    none = project_time(limits, 3, 748, 100, tail_seconds=20)  # 20 s of training = 1/4: no partial epoch
    assert none.epochs == 10 and none.partial is None and "partial" not in none.source
    near = project_time(ScheduleLength(11, "trainer.max_epochs=11"), 3, 758, 100, tail_seconds=20)
    assert near.epochs == 11 and near.partial is not None  # the epoch limit's last epoch is the partial one
    assert project_time(limits, 3, 758, 100, tail_seconds=None).epochs == 10  # no validation to stop for


def test_a_partial_epoch_once_counted_stays_while_its_share_hovers_near_the_threshold():
    """Shares 0.375 -> 0.25 -> 0.31: without hysteresis the cosine would go 9 -> 8 -> 9 epochs."""
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    follower._last_batch_end = time.monotonic() - 20.0  # a 20 s tail: 28 s kept, 80 s of training per epoch
    follower.epoch_end(_fake_trainer(20, remaining=358, epoch=4), sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 9 and info["lr_schedule"]["partial_share"] == pytest.approx(0.375, abs=0.01)
    for epoch, left in ((5, 248.0), (6, 152.8)):  # shares 0.25, then 0.31
        follower._last_batch_end = time.monotonic() - 20.0
        t = _fake_trainer(20, remaining=left, epoch=epoch)
        follower.epoch_end(t, sched, info, epoch_seconds=100.0)
        assert sched.max_epochs == 9 and not t.should_stop, epoch
    assert len(info["lr_schedule"]["history"]) == 2  # start, then one change: never dropped and re-added
    follower._last_batch_end = time.monotonic() - 20.0  # under KEEP_PARTIAL (0.15): dropped
    t = _fake_trainer(20, remaining=40.0, epoch=7)
    follower.epoch_end(t, sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 8 and info["lr_schedule"]["partial_share"] is None and t.should_stop
    # a share of 0.25 adds no partial epoch: not in a fresh projection, nor a later epoch than the one held
    limits = ScheduleLength(50, "x")
    assert project_time(limits, 3, 748, 100, tail_seconds=20).partial is None
    later = project_time(limits, 6, 348, 100, tail_seconds=20, keep=9)  # held: epoch 9; this would be a 10th
    assert later.epochs == 9 and later.partial is None
    assert project_time(limits, 6, 248, 100, tail_seconds=20, keep=9).partial == pytest.approx(0.25)


def test_the_partial_last_epoch_stops_in_time_for_its_validation(capsys):
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    follower._last_batch_end = time.monotonic() - 20.0  # validation and checkpoint took 20 s
    follower.epoch_end(_fake_trainer(20, remaining=258, epoch=5), sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 9 and info["lr_schedule"]["partial_share"] == pytest.approx(0.375, abs=0.01)
    for epoch, left in ((6, 200.0), (7, 10.0)):  # before the cosine's last epoch: never stopped mid-way
        t = _fake_trainer(20, remaining=left, epoch=epoch)
        follower.batch_end(t, sched, info, batch_idx=3)
        assert not t.should_stop
    t = _fake_trainer(20, remaining=30.0, epoch=8)  # the last epoch, 30 s left: more than 1.25 x 20 s + 3 s
    follower.batch_end(t, sched, info, batch_idx=2)
    assert not t.should_stop
    t.callbacks[0].time_remaining = lambda *a, **k: 27.0  # 27 s: no more than the validation needs
    follower.batch_end(t, sched, info, batch_idx=3)
    assert t.should_stop and info["lr_schedule"]["stopped_mid_epoch"] == {"epoch": 8, "batches": 4, "of": 10}
    assert "epoch 8 ends after 4 of 10 batches" in capsys.readouterr().out
    follower.epoch_end(t, sched, info, epoch_seconds=50.0)  # the stopped epoch's end changes nothing
    assert sched.max_epochs == 9 and info["lr_schedule"]["stopped_mid_epoch"]["batches"] == 4


def _at_the_last_epoch(**kw):
    """A follower in the cosine's last epoch (9 of 9) with a 20 s tail, and a trainer with 27 s left."""
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(9, remaining=900, **kw), sched, info)
    follower.tail = 20.0
    return sched, info, follower, _fake_trainer(9, remaining=27.0, epoch=8, **kw)


def test_a_partial_epoch_ends_on_a_whole_accumulated_step():
    sched, info, follower, t = _at_the_last_epoch(accumulate_grad_batches=2)
    follower.batch_end(t, sched, info, batch_idx=2)  # 3 batches: half an optimizer step
    assert not t.should_stop
    follower.batch_end(t, sched, info, batch_idx=3)
    assert t.should_stop and info["lr_schedule"]["stopped_mid_epoch"]["batches"] == 4


def test_no_mid_epoch_stop_without_validation_every_epoch_or_before_min_epochs():
    sched, info, follower, t = _at_the_last_epoch(check_val_every_n_epoch=2)
    follower.batch_end(t, sched, info, batch_idx=3)  # nothing to end in time for: max_time decides
    assert not t.should_stop and not follower.partial_ok
    sched, info, follower, t = _at_the_last_epoch(fit_loop=SimpleNamespace(_can_stop_early=False))
    follower.batch_end(t, sched, info, batch_idx=3)
    assert not t.should_stop and follower.stopped is None  # trainer.min_epochs not met: Lightning goes on


def test_a_one_off_slow_epoch_does_not_end_the_run():
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=900), sched, info)
    t = _fake_trainer(20, remaining=250, epoch=0)  # a 360 s first epoch (the cache); later ones are faster
    follower.epoch_end(t, sched, info, epoch_seconds=360.0)
    assert not t.should_stop and sched.max_epochs == 2  # the cosine ends after epoch 1; epoch 1 still runs
    follower.epoch_end(_fake_trainer(20, remaining=210, epoch=1), sched, info, epoch_seconds=40.0)
    t = _fake_trainer(20, remaining=90, epoch=2)  # a stall: 120 s; the fastest epoch (40 s) still fits
    follower.epoch_end(t, sched, info, epoch_seconds=120.0)
    assert not t.should_stop and sched.max_epochs == 4  # 90 s at the stall's pace: a partial 4th epoch
    t = _fake_trainer(20, remaining=10, epoch=3)  # now not even a partial epoch at the fastest pace fits
    follower.epoch_end(t, sched, info, epoch_seconds=40.0)
    assert t.should_stop


def test_a_cheap_small_size_epoch_is_not_taken_for_the_pace_of_a_large_one(capsys):
    """Progressive resizing (256 px, then 384 px from epoch 7): the fast 256 px epochs must not make a
    384 px epoch look like it fits. Before the fix the stop test took the fastest epoch's seconds (a
    102 s one at 256 px) for the next 384 px epoch (~230-265 s): the run went on and max_time cut it
    mid-epoch (a Kvasir Lite1 run, 2026-11-29: 48 of 80 steps of its last epoch). The epoch times
    are that run's; the budget is 96 s shorter than its, so that the time left after epoch 11 (60 s)
    holds a quarter of a 384 px epoch, too little for a partial one, but more than half of a 256 px
    one."""
    dm = SimpleNamespace(train_size=lambda e: (256, 256) if e < 7 else (384, 384))
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(22, remaining=2140, datamodule=dm), sched, info)
    left, epochs = 2140.0, [102.0] + [118.0] * 6 + [254.0] * 5  # as that run measured them
    for epoch, seconds in enumerate(epochs):
        left -= seconds
        t = _fake_trainer(22, remaining=left, epoch=epoch, datamodule=dm)
        follower.epoch_end(t, sched, info, epoch_seconds=seconds)
        assert t.should_stop == (epoch == 11), epoch  # 60 s is a quarter of a 384 px epoch: too little
    assert sched.max_epochs == 12 and left == pytest.approx(60.0)
    assert left / 102.0 > 0.5  # the old rule's "next epoch" (the 256 px epoch's seconds) would have gone on
    assert "stopping after epoch 11: the next epoch (~230 s) does not fit in the 60 s left" in capsys.readouterr().out


def test_the_epoch_limit_ends_the_run_without_a_time_stop():
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(5, remaining=900), sched, info)
    t = _fake_trainer(5, remaining=50, epoch=4)  # the last epoch of max_epochs: Lightning stops by itself
    follower.epoch_end(t, sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 5 and not t.should_stop


def test_the_projection_counts_a_larger_training_size_as_dearer():
    dm = SimpleNamespace(train_size=lambda e: (160, 160) if e < 3 else (256, 256))
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(50, remaining=2000, datamodule=dm), sched, info)
    follower.epoch_end(_fake_trainer(50, remaining=1000, epoch=1, datamodule=dm), sched, info, epoch_seconds=100.0)
    # epoch 2 at 160 px (100 s), then 256 px epochs at 2.56x (256 s): 100 + 3 x 256 = 868 <= 1000,
    # and the 132 s left hold half of a 4th 256 px epoch
    assert sched.max_epochs == 2 + 1 + 3 + 1 and info["lr_schedule"]["partial_share"] == pytest.approx(0.504)
    assert project_time(ScheduleLength(50, "x"), 2, 1000, 100.0).epochs == 12  # without the sizes


def test_a_size_schedule_by_shares_is_projected_with_its_switch_moving():
    """``{0: 8, 0.5: 16}``: a 16 px epoch costs 4x an 8 px one. Planned for 20 epochs (switch at 10),
    the run turns out slow: 2 epochs of 100 s done, 1000 s left. On the planned switch 8 more 8 px
    epochs would fit (epochs 2-9, 800 s) and half the run would never reach 16 px; with the switch
    at half of the length projected, 4 epochs fit (epochs 2-3 at 16 px: 800 s, the switch at 2)."""
    from segapp.data.size_schedule import SizeSchedule

    ss = SizeSchedule({0: 8, 0.5: 16}, 16)
    ss.trained = {0: 8, 1: 8}
    dm = SimpleNamespace(
        size_schedule=ss,
        train_size=lambda e, length=None: (ss.size(e, length),) * 2,
        follow_length=lambda n: setattr(ss, "length", n),
    )
    kw = {"datamodule": dm, "enable_validation": False}  # whole epochs only: no partial last epoch
    sched, info, follower = _sched(max_epochs=None), {}, ScheduleFollower()
    follower.start(_fake_trainer(20, remaining=1200, **kw), sched, info)
    assert ss.length == 20 and ss.size(9) == 8
    follower.epoch_end(_fake_trainer(20, remaining=1000, epoch=1, **kw), sched, info, epoch_seconds=100.0)
    assert sched.max_epochs == 4 and ss.length == 4 and [ss.size(e) for e in range(4)] == [8, 8, 16, 16]
    ss2 = SizeSchedule({0: 8, 10: 16}, 16)
    dm2 = SimpleNamespace(size_schedule=ss2, train_size=lambda e, length=None: (ss2.size(e, length),) * 2)
    kw2 = {"datamodule": dm2, "enable_validation": False}
    sched2, follower2 = _sched(max_epochs=None), ScheduleFollower()
    follower2.start(_fake_trainer(20, remaining=1200, **kw2), sched2, {})
    follower2.epoch_end(_fake_trainer(20, remaining=1000, epoch=1, **kw2), sched2, {}, epoch_seconds=100.0)
    assert sched2.max_epochs == 10 and ss2.size(9) == 8


def test_no_limit_at_all_is_refused():
    with pytest.raises(SettingError, match="no limit"):
        ScheduleFollower().start(_fake_trainer(-1), _sched(max_epochs=None), {})


def test_quickstart_with_only_max_epochs_changed_ends_its_cosine_at_the_last_epoch(synth_root, tmp_path, capsys):
    from segapp.app import cli

    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "5"))
    lrs = _epoch_lrs(run)
    assert sorted(lrs) == [0, 1, 2, 3, 4]
    for epoch, lr in lrs.items():
        assert lr == pytest.approx(LR * _factor(epoch, 5), rel=1e-5), epoch
    info = _run_info(run)
    assert info["lr_schedule"]["epochs"] == 5
    assert info["mask_rule"]["kind"] in ("grey", "binary")  # the dataset's mask value rule is recorded too
    assert "cosine to epoch 5 (trainer.max_epochs=5)" in capsys.readouterr().out


def test_step_limit_ends_the_run_first(synth_root, tmp_path):
    from segapp.app import cli

    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "6", "--trainer.max_steps", "6"))  # 2 steps per epoch
    info = _run_info(run)["lr_schedule"]
    assert info["epochs"] == 3 and "max_steps=6" in info["source"]
    lrs = _epoch_lrs(run)
    assert lrs[2] == pytest.approx(LR * _factor(2, 3), rel=1e-5)


def _fit_with_time_only_at_first(synth_root, tmp_path, monkeypatch, max_epochs: int):
    """A tiny fit with ``trainer.max_time`` whose clock has plenty of time at its first question, none later."""
    from segapp.app import cli

    calls = []

    def remaining(self, stage="train"):
        calls.append(stage)
        return 1e6 if len(calls) == 1 else 0.0

    monkeypatch.setattr(Timer, "time_remaining", remaining)
    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", str(max_epochs), "--trainer.max_time", "00:01:00:00"))
    return run


def test_a_real_run_stops_after_the_last_epoch_that_fits_max_time(synth_root, tmp_path, capsys, monkeypatch):

    run = _fit_with_time_only_at_first(synth_root, tmp_path, monkeypatch, max_epochs=10)  # none after epoch 1
    assert "lr schedule: stopping after epoch 1: the next epoch" in capsys.readouterr().out
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["segapp"]["run"]["lr_schedule"]["epochs"] == 2
    assert _epoch_lrs(run)[1] == pytest.approx(LR, rel=1e-5)  # epoch 1: the top of the cosine (warm-up done)


def test_a_real_run_ends_its_last_epoch_mid_way_and_still_validates_it(synth_root, tmp_path, capsys, monkeypatch):

    run = _fit_with_time_only_at_first(synth_root, tmp_path, monkeypatch, max_epochs=2)
    assert "lr schedule: epoch 1 ends after 1 of 2 batches" in capsys.readouterr().out
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 3  # 2 steps, then 1 of 2
    assert ckpt["segapp"]["run"]["lr_schedule"]["stopped_mid_epoch"] == {"epoch": 1, "batches": 1, "of": 2}
    # validated, so Lightning counts the epoch as done: a resume starts the next epoch, not the rest of this one
    assert ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 2
    latest = max((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows = list(csv.DictReader((latest / "metrics.csv").read_text().splitlines()))
    assert {int(r["epoch"]) for r in rows if r.get("val/dice")} == {0, 1}  # the partial epoch was validated


class StopMidEpoch(Callback):
    """Raises in the first batch of epoch 1: with ``checkpoint.save_on_exception`` a mid-epoch checkpoint."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 0:
            raise RuntimeError("stopped mid-epoch by the test")


def test_a_mid_epoch_resume_keeps_the_encoder_frozen(synth_root, tmp_path):
    """Lightning skips on_train_epoch_start when it resumes mid-epoch, which left the encoder training
    through the rest of an epoch meant to be frozen (found 2026-11-30)."""
    from segapp.app import cli

    run, resumed, frozen = tmp_path / "run", tmp_path / "resumed", ("--model.freeze_encoder_epochs", "2")
    crash = ("--checkpoint.save_on_exception", "true", "--trainer.callbacks+=tests.test_schedule_length.StopMidEpoch")
    with pytest.raises(RuntimeError, match="stopped mid-epoch"):
        cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "2", *frozen, *crash))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 1
    cli(
        tiny_fit_args(
            synth_root,
            resumed,
            "--trainer.max_epochs",
            "2",
            *frozen,
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
        )
    )
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["global_step"] == 4  # the rest of epoch 1 was trained
    enc = [k for k in ckpt["state_dict"] if k.startswith("net.down.")]  # the scratch U-Net's encoder
    assert enc and all(torch.equal(ckpt["state_dict"][k], after["state_dict"][k]) for k in enc)
    dec = [k for k in ckpt["state_dict"] if k.startswith("net.up") and k.endswith("weight")]
    assert dec and any(not torch.equal(ckpt["state_dict"][k], after["state_dict"][k]) for k in dec)


def test_resume_into_a_longer_run_stretches_the_cosine(synth_root, tmp_path, capsys):
    from segapp.app import cli

    run = tmp_path / "run"
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "3"))
    cli(tiny_fit_args(synth_root, run, "--trainer.max_epochs", "6", "--ckpt_path", "last"))
    assert "resumed at epoch 3: length 3 -> 6 epochs" in capsys.readouterr().out
    lrs = _epoch_lrs(run)
    for epoch in (3, 4, 5):
        assert lrs[epoch] == pytest.approx(LR * _factor(epoch, 6), rel=1e-5), epoch
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["lr_schedulers"][0]["max_epochs"] == 6
    assert ckpt["segapp"]["run"]["lr_schedule"]["epochs"] == 6


def test_a_resume_under_max_time_keeps_the_projected_length_not_the_epoch_cap(capsys):
    """A plan's trainer.max_epochs is a cap (1.5x its epochs + 1); on --ckpt_path the cosine once
    jumped to it (14 -> 22 epochs), nearly tripling the learning rate of the resumed epochs."""
    sched, info = _sched(max_epochs=None), {}
    sched.set_length(14)  # as restored from the checkpoint
    ScheduleFollower().start(_fake_trainer(22, remaining=300, epoch=10), sched, info)
    assert sched.max_epochs == 14 and "-> 22" not in capsys.readouterr().out
    assert info["lr_schedule"]["source"].startswith("restored from the checkpoint")
    capped = _sched(max_epochs=None)
    capped.set_length(14)
    ScheduleFollower().start(_fake_trainer(12, remaining=300, epoch=10), capped, {})  # the user lowered the cap
    assert capped.max_epochs == 12
    stretched = _sched(max_epochs=None)
    stretched.set_length(14)
    ScheduleFollower().start(_fake_trainer(22, epoch=10), stretched, {})  # no max_time: the new limit
    assert stretched.max_epochs == 22


def test_resume_uses_this_runs_warmup_and_floor():
    old = _sched(max_epochs=None, warmup_epochs=1, min_lr_ratio=0.01)
    old.set_length(6)
    new = _sched(max_epochs=None, warmup_epochs=2, min_lr_ratio=0.1)
    new.load_state_dict(old.state_dict())
    assert (new.warmup_epochs, new.min_lr_ratio) == (2, 0.1)
