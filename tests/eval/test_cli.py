"""``segapp-eval`` as users run it (subprocess), end to end after ``segapp-predict``, and ``segapp test``."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from segapp.cli.eval import main
from segapp.io import read_mask
from tests.conftest import dotted, fit_args, flags


def _eval(*args: str) -> subprocess.CompletedProcess:
    """Run ``segapp-eval`` as a user does."""
    return subprocess.run([sys.executable, "-m", "segapp.cli.eval", *args], capture_output=True, text=True, timeout=300)


def _eval_here(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``segapp-eval``'s ``main`` in this process (fast: no second import of the stack)."""
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _dataset(root, shifts: dict[str, int]):
    """GT squares in ``root/{images,masks}`` and predictions shifted by k px in ``root/pred``."""
    for name, k in shifts.items():
        gt = np.zeros((32, 32), np.uint8)
        gt[8:24, 8:24] = 255
        for sub, arr in (("images", np.dstack([gt] * 3)), ("masks", gt), ("pred", np.roll(gt, k, axis=1))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / sub / f"{name}.png")
    return root


def test_eval_and_compare_cli(tmp_path, capsys):
    data = _dataset(tmp_path / "d", {"a": 0, "b": 2, "c": 4, "d": 8})
    rc, out, err = _eval_here(
        capsys,
        "--pred",
        str(data / "pred"),
        "--gt",
        str(data),
        "--out",
        str(tmp_path / "A"),
        "--n-boot",
        "100",
        "--worst",
        "2",
    )
    assert rc == 0, err
    assert "over 4 of 4 ground-truth images" in out
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "A" / "metrics.csv").read_text().splitlines())}
    assert float(rows["c"]["dice"]) == pytest.approx(12 / 16)
    assert json.loads((tmp_path / "A" / "summary.json").read_text())["worst"] == ["d", "c"]
    # a better run B: every prediction shifted by 1 px only
    data_b = _dataset(tmp_path / "e", {"a": 0, "b": 1, "c": 1, "d": 1})
    assert (
        _eval_here(
            capsys, "--pred", str(data_b / "pred"), "--gt", str(data_b), "--out", str(tmp_path / "B"), "--n-boot", "100"
        )[0]
        == 0
    )
    rc, out, err = _eval_here(
        capsys, "--compare", str(tmp_path / "A"), str(tmp_path / "B" / "metrics.csv"), "--out", str(tmp_path / "cmp")
    )
    assert rc == 0, err
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["n_paired"] == 4 and cmp["b_better"] == 3 and cmp["ties"] == 1
    assert cmp["mean_diff"] == pytest.approx((1 / 16 + 3 / 16 + 7 / 16) / 4)
    assert (tmp_path / "cmp" / "compare.png").is_file() and "Wilcoxon p" in out


def test_eval_cli_errors_are_one_line(tmp_path, capsys):
    rc, _, err = _eval_here(
        capsys, "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1
    rc, _, err = _eval_here(capsys, "--compare", str(tmp_path), str(tmp_path))
    assert rc == 2 and "no metrics.csv" in err
    rc, _, err = _eval_here(capsys, "--pred", str(tmp_path))
    assert rc == 2 and "--gt" in err


@pytest.mark.slow
def test_eval_after_segapp_predict_on_holdout(tiny_ckpt, holdout_root, tmp_path):
    pred = tmp_path / "pred"
    args = flags(checkpoint=tiny_ckpt, input=holdout_root / "images", output=pred)
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.predict", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    res = _eval("--pred", str(pred), "--gt", str(holdout_root), "--out", str(tmp_path / "rep"), "--n-boot", "200")
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert doc["summary"]["n_images"] == 24 and doc["unpaired"] == []
    rows = list(csv.DictReader((tmp_path / "rep" / "metrics.csv").read_text().splitlines()))
    for r in rows[:5]:  # independent Dice from the written files
        p = read_mask(pred / f"{r['image']}.png.mask.png")
        g = read_mask(next((holdout_root / "masks").glob(f"{r['image']}.*")))
        want = 2 * (p & g).sum() / (p.sum() + g.sum()) if p.any() or g.any() else 1.0
        assert float(r["dice"]) == pytest.approx(want, abs=1e-5)
    assert doc["summary"]["dice_macro"] > 0.3  # the tiny model segments the synthetic lesions


def _mixed_sizes(src, dst, n: int = 30):
    """The first ``n`` pairs of ``src``; every other one resized to 96 x 80 (W x H)."""
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for i, f in enumerate(sorted((src / sub).iterdir())[:n]):
            im = Image.open(f)
            (im.resize((96, 80), Image.NEAREST) if i % 2 else im).save(dst / sub / f.name)
    return dst


@pytest.mark.slow
def test_segapp_test_writes_the_same_report(tiny_ckpt, holdout_root, tmp_path):
    from segapp.app import cli

    root = _mixed_sizes(holdout_root, tmp_path / "data")  # images it never saw (its own are refused)
    run_dir = tmp_path / "run"
    extra = dotted({"data.test_fraction": 0.2, "model.net.init_args.depth": 3})
    report = ["--trainer.callbacks+=segapp.lit.report_callback.EvalReport", "--trainer.callbacks.worst=4"]
    report += ["--trainer.callbacks.n_boot=100", "--ckpt_path", str(tiny_ckpt)]
    cli(fit_args(root, run_dir, *extra, *report, command="test"))
    reports = list(run_dir.rglob("test_report/summary.json"))
    assert len(reports) == 1
    rep = reports[0].parent
    doc = json.loads(reports[0].read_text())
    n = doc["summary"]["n_images"]
    assert n >= 4 and doc["unpaired"] == [] and len(doc["worst"]) == 4 and (rep / "report.html").is_file()
    shapes = set()
    for mask in sorted((rep / "predictions").glob("*.mask.png")):  # each at its ground truth's size
        key = mask.name[: -len(".mask.png")]
        shape = read_mask(mask).shape
        assert shape == read_mask(root / "masks" / f"{key}.png").shape
        shapes.add(shape)
    assert len(shapes) == 2  # 64 x 64 and 80 x 96 images: upsampled to each original size
    # calibrated probabilities beside the masks (the checkpoint's temperature), scored by the report
    temperature = torch.load(tiny_ckpt, weights_only=True)["segapp"]["trust"]["temperature"]
    assert doc["source"]["temperature"] == str(temperature) and len(list((rep / "predictions").glob("*.prob.npy"))) == n
    assert 0 <= doc["calibration"]["ece"] <= 1 and "Calibration" in (rep / "report.html").read_text()


@pytest.mark.slow
def test_segapp_validate_writes_a_val_report(tiny_ckpt, synth_root, tmp_path):
    from segapp.app import cli

    run_dir = tmp_path / "run"
    extra = dotted({"model.net.init_args.depth": 3})
    report = ["--trainer.callbacks+=segapp.lit.report_callback.EvalReport", "--trainer.callbacks.split=val"]
    report += ["--trainer.callbacks.n_boot=100", "--ckpt_path", str(tiny_ckpt)]
    cli(fit_args(synth_root, run_dir, *extra, *report, command="validate", batch_size=None))
    reports = list(run_dir.rglob("val_report/summary.json"))
    assert len(reports) == 1
    doc = json.loads(reports[0].read_text())
    assert (
        doc["source"]["split"] == "val" and doc["summary"]["n_images"] == 19
    )  # 20 % of 96 pairs (rounded by the splitter)
    assert doc["summary"]["dice_macro"] > 0.3


def test_test_report_rejects_an_unknown_split():
    from segapp.lit.report_callback import EvalReport

    with pytest.raises(ValueError, match="split"):
        EvalReport(split="train")  # type: ignore[arg-type]
