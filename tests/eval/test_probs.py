"""``segapp-eval --probs``: probability maps paired like the masks, calibration and uncertainty in the report."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from segapp.cli.eval import main
from segapp.eval.calibration import calibration_error, uncertainty_score
from segapp.eval.pairing import EvalCase, attach_probs

SHIFTS = {"a": 0, "b": 1, "c": 3, "d": 6, "e": 9, "f": 12}  # prediction = GT square shifted right by k px
FORMATS = {"a": "png", "b": "npy", "c": "png", "d": "npy", "e": "png", "f": None}  # f: no map


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _soft(mask: np.ndarray, k: int) -> np.ndarray:
    """A probability map that is unsure along the predicted edge, more so the larger the shift ``k``."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    return (1 / (1 + np.exp(-dist / (0.5 + k / 3)))).astype(np.float32)


def _write_probs(path, probs, fmt):
    if fmt == "npy":
        np.save(path.with_name(path.name + ".prob.npy"), probs)
    else:
        _png(path.with_name(path.name + ".prob.png"), np.rint(probs * 65535).astype(np.uint16))


@pytest.fixture
def run(tmp_path):
    """Ground truth in ``gt/{images,masks}``; segapp-predict style ``pred/<name>.png.mask.png`` with
    ``.prob.png`` (16-bit) or ``.prob.npy`` maps beside them (none for ``f``). Returns the written maps."""
    maps = {}
    for name, k in SHIFTS.items():
        gt = np.zeros((40, 48), np.uint8)
        gt[10:30, 10:30] = 255
        pred = np.roll(gt, k, axis=1)
        _png(tmp_path / "gt" / "images" / f"{name}.png", np.dstack([gt] * 3))
        _png(tmp_path / "gt" / "masks" / f"{name}.png", gt)
        _png(tmp_path / "pred" / f"{name}.png.mask.png", pred)
        if FORMATS[name]:
            maps[name] = _soft(pred > 0, k)
            _write_probs(tmp_path / "pred" / f"{name}.png", maps[name], FORMATS[name])
    return maps


def _eval(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _args(tmp_path, *extra: str) -> list[str]:
    return ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "rep")] + [
        "--n-boot",
        "50",
        "--worst",
        "3",
        *extra,
    ]


def _stored(p: np.ndarray, fmt: str) -> np.ndarray:
    """The map as read back from its file (16-bit PNG quantises to 1/65535)."""
    return np.rint(p * 65535) / 65535 if fmt == "png" else p


def test_probs_cli_writes_calibration_and_uncertainty(run, tmp_path, capsys):
    rc, out, err = _eval(capsys, *_args(tmp_path, "--probs"))  # DIR defaults to --pred
    assert rc == 0, err
    assert "calibration on 5 images: ECE" in out and "AUROC" in out and "1 image(s) without a probability map" in out
    doc = json.loads((tmp_path / "rep" / "summary.json").read_text())
    cal, unc = doc["calibration"], doc["uncertainty"]
    gt = np.zeros((40, 48), bool)
    gt[10:30, 10:30] = True
    want = calibration_error(
        np.concatenate([_stored(p, FORMATS[n]).ravel() for n, p in run.items()]), np.tile(gt.ravel(), len(run))
    )
    for k in ("ece", "mce", "brier", "nll"):
        assert cal[k] == pytest.approx(want[k], rel=1e-5)
    assert cal["n_images"] == 5 and cal["n_pixels"] == 5 * 40 * 48 == sum(b["count"] for b in cal["bins"])
    assert [m["image"] for m in cal["missing"]] == ["f"]
    assert set(unc) >= {"auroc", "spearman_rho", "n_failures", "failure_dice"} and unc["n"] == 5
    assert unc["spearman_rho"] < 0  # more shift: lower Dice, softer map
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "rep" / "metrics.csv").read_text().splitlines())}
    assert rows["f"]["uncertainty"] == "nan"
    for n, p in run.items():
        pred = np.array(Image.open(tmp_path / "pred" / f"{n}.png.mask.png")) > 0
        assert float(rows[n]["uncertainty"]) == pytest.approx(uncertainty_score(_stored(p, FORMATS[n]), pred), rel=1e-5)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<h2>Calibration</h2>" in html and "<h2>Uncertainty</h2>" in html and 'alt="reliability diagram"' in html
    assert 'class="case wide"' in html  # worst cases: uncertainty map beside the contours
    assert (tmp_path / "rep" / "figures" / "reliability.png").is_file()
    assert (tmp_path / "rep" / "figures" / "uncertainty.png").is_file()


def test_without_probs_the_report_is_unchanged(run, tmp_path, capsys):
    rc, out, err = _eval(capsys, *_args(tmp_path))
    assert rc == 0, err
    doc = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert "calibration" not in doc and "uncertainty" not in doc and "calibration" not in out
    header = (tmp_path / "rep" / "metrics.csv").read_text().splitlines()[0]
    assert "uncertainty" not in header
    assert "<h2>Calibration</h2>" not in (tmp_path / "rep" / "report.html").read_text()


def test_probs_size_mismatch_is_refused(run, tmp_path, capsys):
    bad = tmp_path / "pred" / "c.png.prob.png"
    _png(bad, np.zeros((20, 24), np.uint16))
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs", str(tmp_path / "pred")))
    assert rc == 2 and err.count("\n") == 1
    assert str(bad) in err and "24x20" in err and "48x40" in err and "expected" in err and "fix:" in err


def test_probs_out_of_range_is_refused(run, tmp_path, capsys):
    np.save(tmp_path / "pred" / "b.png.prob.npy", np.full((40, 48), 3.0, np.float32))  # logits, not probabilities
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs"))
    assert rc == 2 and err.count("\n") == 1 and "b.png.prob.npy" in err and "[0, 1]" in err and "fix:" in err


def test_probs_folder_without_maps_is_refused(run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs", str(tmp_path / "empty")))
    assert rc == 2 and err.count("\n") == 1 and "no probability maps" in err and "--save-probs" in err
    other = tmp_path / "other"
    _png(other / "zzz.png.prob.png", np.zeros((40, 48), np.uint16))
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs", str(other)))
    assert rc == 2 and err.count("\n") == 1 and "none of the 6 paired images" in err and "zzz.png.prob.png" in err
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs", str(tmp_path / "nope")))
    assert rc == 2 and "is not a folder" in err


def test_probs_in_another_folder_pair_by_name(tmp_path):
    """Plain prediction masks (not segapp-predict names) and maps elsewhere: paired by the case key;
    a multi-frame map beside its ``.f003.mask.png`` is taken by the mask's own name."""
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.jpg.prob.npy", np.zeros((4, 4), np.float32))
    np.save(maps / "b.prob.npy", np.zeros((4, 4), np.float32))
    np.save(maps / "scan.dcm.f003.prob.npy", np.zeros((4, 4), np.float32))
    pred = tmp_path / "pred"
    cases = [
        EvalCase("a", pred / "a.png", (tmp_path / "gt" / "a.png",)),
        EvalCase("b", pred / "b.png", (tmp_path / "gt" / "b.png",)),
        EvalCase("c", pred / "c.png", (tmp_path / "gt" / "c.png",)),
        EvalCase("scan", pred / "scan.dcm.f003.mask.png", (tmp_path / "gt" / "scan.png",)),
    ]
    out, missing = attach_probs(cases, maps, pred)
    got = {c.key: c.probs.name if c.probs else None for c in out}
    assert got == {"a": "a.jpg.prob.npy", "b": "b.prob.npy", "c": None, "scan": "scan.dcm.f003.prob.npy"}
    assert [m["image"] for m in missing] == ["c"]


def test_probs_summary_is_strict_json_and_compare_reads_the_column(run, tmp_path, capsys):
    rc, _, err = _eval(capsys, *_args(tmp_path, "--probs"))
    assert rc == 0, err

    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    doc = json.loads((tmp_path / "rep" / "summary.json").read_text(), parse_constant=bad)
    assert all(b["mean_prob"] is None or 0 <= b["mean_prob"] <= 1 for b in doc["calibration"]["bins"])
    assert not math.isnan(doc["uncertainty"]["stats"]["mean"])
    rep = str(tmp_path / "rep")
    rc, out, err = _eval(capsys, "--compare", rep, rep, "--metric", "uncertainty", "--n-boot", "50")
    assert rc == 0, err
    assert "uncertainty (no better direction):" in out and "on 5 paired images" in out  # the image without a map
    assert "left out: 1 of 6 common images where uncertainty is undefined (0 in B only, 0 in A only, 1 in both)" in out
