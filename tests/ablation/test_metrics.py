"""Per-run numbers from a Lightning metrics.csv (hand-written file, independent expectations)."""

from __future__ import annotations

import math

import pytest

from segapp.ablation.metrics import fit_metrics_csv, read_epochs, summarize_run

CSV = """epoch,step,train/dice,train/loss_epoch,train/loss_step,val/dice,val/loss
,0,,,,,
0,4,,,0.9,,
0,9,,,,0.40,0.8
0,9,0.50,0.70,,,
1,14,,,0.5,,
1,19,,,,0.75,0.5
1,19,0.85,0.45,,,
2,29,,,,0.70,0.55
2,29,0.95,0.30,,,
"""


@pytest.fixture
def epochs(tmp_path):
    path = tmp_path / "logs" / "version_3" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text(CSV)
    (tmp_path / "logs" / "version_10").mkdir()
    (tmp_path / "logs" / "version_10" / "metrics.csv").write_text(CSV)
    assert fit_metrics_csv(tmp_path).parent.name == "version_3"  # lowest by number, not by text
    return read_epochs(path)


def test_read_epochs_merges_rows_per_epoch(epochs):
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert [e["val_dice"] for e in epochs] == [0.40, 0.75, 0.70]
    assert [e["train_loss"] for e in epochs] == [0.70, 0.45, 0.30]


def test_summary_numbers(epochs):
    row = summarize_run(epochs, target_dice=0.7, wall_s=12.34)
    assert row["best_val_dice"] == 0.75 and row["last_val_dice"] == 0.70
    assert row["epochs_to_target"] == 2
    assert row["final_train_loss"] == 0.30
    assert math.isclose(row["train_val_gap"], 0.95 - 0.70)
    assert row["epochs"] == 3 and row["wall_s"] == 12.3


def test_target_never_reached_or_unset_is_empty(epochs):
    assert summarize_run(epochs, target_dice=0.9, wall_s=1)["epochs_to_target"] == ""
    assert summarize_run(epochs, target_dice=None, wall_s=1)["epochs_to_target"] == ""


def test_missing_log_says_what_is_needed(tmp_path):
    with pytest.raises(FileNotFoundError, match="CSV logger"):
        fit_metrics_csv(tmp_path)


def test_eval_numbers_read_report_means_and_nan_for_missing(tmp_path):
    import json

    from segapp.ablation.metrics import eval_numbers

    path = tmp_path / "summary.json"
    path.write_text(
        json.dumps(
            {
                "summary": {
                    "n_images": 12,
                    "metrics": {"hd95": {"mean": 3.5, "n": 8}, "bf1": {"mean": 0.8}, "nsd": {"mean": None}},
                }
            }
        )
    )
    got = eval_numbers(path)
    assert got["val_hd95"] == 3.5 and got["val_bf1"] == 0.8
    assert math.isnan(got["val_nsd"]) and math.isnan(got["val_assd"])
    assert got["val_hd95_n"] == 8 and got["val_images"] == 12  # HD95 is a mean over 8 of the 12 images
