"""Progressive resizing by shares of the run: the switch follows the run's length (segapp.data.size_schedule)."""

from __future__ import annotations

import pytest

from segapp.data.size_schedule import SizeSchedule
from segapp.errors import SettingError
from tests.conftest import fit_args
from tests.data.conftest import TrainSizes


def test_a_share_places_the_switch_on_the_runs_length():
    s = SizeSchedule({0: 224, 0.5: 320}, 320)
    s.length = 14
    assert [s.size(e) for e in range(14)] == [224] * 7 + [320] * 7
    s.length = 9  # a slower machine: 9 epochs fit, the switch moves with them (floor: 4 of 9 at 224 px)
    assert [s.size(e) for e in range(9)] == [224] * 4 + [320] * 5
    assert s.size(5, length=20) == 224  # a candidate length, as the LR schedule's projection asks
    assert SizeSchedule({0: 224, 7: 320}, 320).size(7) == 320  # epochs stay epochs


def test_a_trained_epoch_keeps_its_size_and_a_share_schedule_never_goes_back():
    s = SizeSchedule({0: 224, 0.5: 320}, 320)
    s.length = 10
    s.trained = {e: s.size(e) for e in range(6)}  # 0-4 at 224, 5 at 320
    s.length = 20  # the run turned out faster: its half way is now epoch 10
    assert [s.size(e) for e in range(8)] == [224] * 5 + [320] * 3  # epoch 5 trained at 320: no way back
    restored = SizeSchedule({0: 224, 0.5: 320}, 320)
    restored.load_state_dict(s.state_dict())  # --ckpt_path
    assert restored.trained == s.trained and restored.length == 20 and restored.size(6) == 320


@pytest.mark.parametrize(
    "schedule, said",
    [
        ({0: 224, 1.5: 320}, r"key 1.5 is neither a first epoch nor a share.*\{0: 224, 0.5: 320\}"),
        ({0: 224, -1: 320}, r"key -1 is neither"),
        ({0: 224, 1.0: 320}, r"key 1.0 is ambiguous.*an integer \(1\) or a share below 1"),
        ({0: 224, 0.5: 256, 9: 320}, r"mixes epochs and shares.*fix: write every key"),
        ({0: 320, 0.5: 224}, r"shrinks.*fix: order the sizes smallest first"),
        ({0: 224, 0.5: 640}, r"size 640 at key 0.5 is outside 8\.\.320 \(data.image_size\)"),
    ],
)
def test_bad_schedules_are_refused_with_the_key_and_the_fix(schedule, said):
    with pytest.raises(SettingError, match=said):
        SizeSchedule(schedule, 320)


def test_a_new_fit_of_the_same_data_module_forgets_the_sizes_of_the_last_one():
    s = SizeSchedule({0: 224, 0.5: 320}, 320)
    s.length = 4
    assert [s.start_epoch(e) for e in range(4)] == [224, 224, 320, 320]
    s.length = 10  # a second, longer fit: its epoch 2 is not the first fit's epoch 2
    assert [s.start_epoch(e) for e in range(6)] == [224] * 5 + [320]


def test_a_share_with_no_run_length_is_refused_past_the_first_epoch():
    s = SizeSchedule({0: 224, 0.5: 320}, 320)
    assert s.size(0) == 224  # the length is known after the first timed epoch
    with pytest.raises(SettingError, match=r"length in epochs is not known.*trainer.max_epochs"):
        s.size(1)


def _share_run(root, tmp_path, *extra: str):
    """A tiny fit under ``{0: 32, 0.5: 64}`` (2 training batches) and a callback recording its sizes."""
    from segapp.app import cli

    args = fit_args(
        root,
        tmp_path / "run",
        *("--data.train_size_schedule", "{0: 32, 0.5: 64}", *extra),
        *("--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"),
    )
    run = cli(args[1:], run=False)
    sizes = TrainSizes()
    run.trainer.callbacks.append(sizes)
    return run, sizes


@pytest.mark.parametrize("scheduler", ["null", "{class_path: segapp.lit.schedulers.WarmupCosine, init_args: {}}"])
def test_a_share_schedule_no_length_can_place_is_refused_before_the_first_step(synth_root, tmp_path, scheduler):
    """``trainer.max_time`` only. With no LR schedule to turn the time into epochs, the run used to train all
    of epoch 0 and then stop at epoch 1: now it stops before the first step. With a WarmupCosine following
    the trainer it stopped at epoch 1 too (the first projection placed the shares on no length): now it runs."""
    limits = ("--model.scheduler", scheduler, "--trainer.max_epochs", "-1", "--trainer.max_time", "00:00:00:08")
    run, sizes = _share_run(synth_root, tmp_path, *limits)
    if scheduler == "null":
        with pytest.raises(SettingError, match=r"length in epochs is not known.*fix: set one, or write the keys as"):
            run.trainer.fit(run.model, run.datamodule)
        assert sizes.seen == {} and run.trainer.global_step == 0
    else:  # the cosine follows the trainer: the length comes from max_time after epoch 0
        run.trainer.fit(run.model, run.datamodule)
        assert sizes.seen[0] == {32} and len(sizes.seen) >= 2, sizes.seen  # it used to stop here, at epoch 1
        order = [size for e in sorted(sizes.seen) for size in sizes.seen[e]]
        assert set(order) <= {32, 64} and order == sorted(order)


def test_the_cli_keeps_a_share_key(paired_root, tmp_path):
    """jsonargparse read ``{0: 32, 0.5: 64}`` under the old ``dict[int, int]`` hint as ``{0: 64}``: full size from
    epoch 0, silently. The key is now kept and placed on the run's length."""
    from segapp.app import cli

    args = fit_args(paired_root, tmp_path / "run", "--data.train_size_schedule", "{0: 32, 0.5: 64}")  # 64: image_size
    run = cli(args[1:], run=False)
    assert run.datamodule.size_schedule.pairs == [(0, 32), (0.5, 64)]


def test_a_share_schedule_in_fit_switches_half_way(synth_root, tmp_path, caplog):
    import logging

    run, sizes = _share_run(synth_root, tmp_path, "--trainer.max_epochs", "4")
    with caplog.at_level(logging.INFO):
        run.trainer.fit(run.model, run.datamodule)
    assert sizes.seen == {0: {32}, 1: {32}, 2: {64}, 3: {64}}
    said = [r.getMessage() for r in caplog.records if "data.train_size_schedule" in r.getMessage()]
    assert said[-1] == "epoch 2: training at 64 px (data.train_size_schedule, placed on 4 epochs)"
