"""``segapp-cv`` end to end on tiny data, and the real Kvasir-SEG folder when present."""

from __future__ import annotations

import json

import pytest

from segapp.cli.cv import format_table, summarize
from segapp.cli.cv import main as cv_main
from tests.conftest import KVASIR, REPO
from tests.data.conftest import make_paired


def test_summary_table_mean_and_std():
    s = summarize(
        [
            {"fold": 0, "val_dice": 0.5, "train": 8, "val": 2, "run_dir": "a"},
            {"fold": 1, "val_dice": 0.7, "train": 8, "val": 2, "run_dir": "b"},
        ]
    )
    assert s["mean_val_dice"] == pytest.approx(0.6) and s["std_val_dice"] == pytest.approx(0.141421, abs=1e-5)
    assert "| mean +- std | | | 0.6000 +- 0.1414 | |" in format_table(s, "segapp-cv x")


@pytest.mark.slow
def _cv_args(out, root) -> list[str]:
    return [
        "--num-folds",
        "2",
        "--out",
        str(out),
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--data.root",
        str(root),
        "--data.image_size",
        "32",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "4",
        "--trainer.max_epochs",
        "1",
        "--model.net.init_args.depth",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        "false",
    ]


def test_segapp_cv_trains_every_fold(tmp_path, capsys):
    root = make_paired(tmp_path / "d", n=12, size=32)
    out = tmp_path / "cv"
    cv_main(_cv_args(out, root))
    summary = json.loads((out / "cv_summary.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert [f["val"] for f in summary["folds"]] == [6, 6]
    assert all(0.0 <= f["val_dice"] <= 1.0 for f in summary["folds"])
    assert (out / "fold_1" / "checkpoints" / "best.ckpt").is_file()
    assert "mean +- std" in (out / "cv_summary.md").read_text()
    best = (out / "fold_1" / "checkpoints" / "best.ckpt").read_bytes()
    with pytest.raises(SystemExit) as e:  # again into the same --out: refused before fold 0 trains
        cv_main(_cv_args(out, root))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "got one holding trained fold_0, fold_1; fix: another --out" in err, err
    assert (out / "fold_1" / "checkpoints" / "best.ckpt").read_bytes() == best


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.skipif(not KVASIR.is_dir(), reason="../shared/data/kvasir-seg is absent")
def test_kvasir_check_reports_900_pairs(capsys):
    from segapp.cli.data import main as data_main

    with pytest.raises(SystemExit) as e:
        data_main(["check", str(KVASIR), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and rep["pairs"] == 900 and rep["layout"] == "paired"
    assert rep["unreadable"] == [] and rep["empty_masks"] == 0
    assert rep["mask_values"]["0"] + rep["mask_values"]["255"] > 0.98  # JPEG masks: near 0/255
    assert rep["sizes"]["max_wh"] == [1920, 1072]
