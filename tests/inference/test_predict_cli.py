"""``segapp-predict`` as users run it: a subprocess over a folder of every format."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.io import read_mask
from tests.conftest import flags
from tests.inference.formats import SECRET_NAME, make_scan_folder

pytestmark = pytest.mark.slow


def predict(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "segapp.cli.predict", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def predict_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The same CLI in this process (no interpreter start-up): ``(exit code, stdout, stderr)``."""
    from segapp.cli.predict import main

    with pytest.raises(SystemExit) as info:
        main(["--no-progress", *args])
    captured = capsys.readouterr()
    return int(info.value.code), captured.out, captured.err


def read_rows(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in csv.DictReader((out / "predictions.csv").read_text().splitlines()):
        rows.setdefault(r["input"], []).append(r)
    return rows


@pytest.fixture(scope="module")
def every_format(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats") / "in"
    return root, make_scan_folder(root)


def test_every_format_gets_a_mask_at_its_size_and_broken_files_get_reasons(tiny_ckpt, every_format, tmp_path):
    import nibabel as nib

    inp, expected = every_format
    out = tmp_path / "out"
    res = predict(
        *flags(checkpoint=tiny_ckpt, input=inp, output=out, workers=2, overlay=True, save_probs=True, batch_size=4)
    )
    assert res.returncode == 1, res.stderr  # some inputs failed, others succeeded
    rows = read_rows(out)
    for rel, exp in expected.items():
        if "error" in exp:
            assert rows[rel][0]["status"] == "error" and exp["error"] in rows[rel][0]["reason"], rows[rel]
            continue
        assert all(r["status"] == "ok" for r in rows[rel]), rows[rel]
        if "nifti_shape" in exp:
            src, mask = nib.load(str(inp / rel)), nib.load(str(out / rows[rel][0]["output"]))
            assert mask.shape == exp["nifti_shape"] and np.allclose(mask.affine, src.affine)
            assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
            continue
        assert len(rows[rel]) == exp.get("frames", 1)
        for r in rows[rel]:
            assert read_mask(out / r["output"]).shape == exp["shape"], rel
            assert int(r["height"]) == exp["shape"][0] and int(r["width"]) == exp["shape"][1]
            prob = np.asarray(Image.open(out / r["output"].replace(".mask.", ".prob.")))
            assert prob.dtype == np.uint16 and prob.shape == exp["shape"]
            assert (out / r["output"].replace(".mask.", ".overlay.")).is_file()
    assert rows["multi.dcm"][2]["output"] == "multi.dcm.f002.mask.png" and rows["multi.dcm"][2]["frame"] == "2"
    assert rows["mono1.dcm"][0]["sop_instance_uid"].startswith("1.2.")
    assert rows["a.png"][0]["output"] != rows["a.tiff"][0]["output"]
    assert "notes.txt" not in rows and "1 skipped" in res.stdout
    everything = res.stdout + res.stderr + (out / "run.json").read_text() + (out / "predictions.csv").read_text()
    assert SECRET_NAME not in everything and "SECRET-ID" not in everything
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["failed"] == 6 and run["exit_code"] == 1 and len(run["model_sha256"]) == 64
    assert set(run["stages_s"]) >= {"decode", "preprocess", "forward", "postprocess", "write"}


def test_exit_codes_all_ok_nothing_readable_and_bad_usage(tiny_ckpt, tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(good / "x.png")
    (bad / "y.png").write_bytes(b"junk")
    ckpt = ("--checkpoint", str(tiny_ckpt), "--workers", "0")
    assert predict_in_process(capsys, *ckpt, "--input", str(good), "--output", str(tmp_path / "o1"))[0] == 0
    assert predict_in_process(capsys, *ckpt, "--input", str(bad), "--output", str(tmp_path / "o2"))[0] == 3
    code, _, err = predict_in_process(capsys, *ckpt, "--input", str(good), "--output", str(good / "o3"))
    assert code == 2 and "inside the input folder" in err
    code, _, err = predict_in_process(
        capsys, "--model", str(tmp_path / "nope.onnx"), "--input", str(good), "--output", str(tmp_path / "o4")
    )
    assert code == 2 and "not found" in err


def test_segapp_model_names_the_model_when_no_source_is_given(tmp_path, capsys, monkeypatch):
    """The container sets SEGAPP_MODEL; `docker run -e SEGAPP_MODEL=v2.onnx` ran the CMD's hard-coded
    baked-in model instead. Now the variable is the model whenever no --checkpoint/--model is given."""
    good = tmp_path / "good"
    good.mkdir()
    io = ("--input", str(good), "--output", str(tmp_path / "o"))
    monkeypatch.delenv("SEGAPP_MODEL", raising=False)
    code, _, err = predict_in_process(capsys, *io)
    assert code == 2 and "expected --checkpoint or --model (or the SEGAPP_MODEL environment variable)" in err
    monkeypatch.setenv("SEGAPP_MODEL", str(tmp_path / "v2.onnx"))
    code, _, err = predict_in_process(capsys, *io)
    assert code == 2 and "v2.onnx" in err and "not found" in err  # the variable's model was the one opened
    cmd = (Path(__file__).resolve().parents[2] / "docker" / "Dockerfile").read_text().split("\nCMD ")[1]
    assert "--model" not in cmd.splitlines()[0]


def test_resume_after_a_killed_run_completes_the_rest_and_leaves_no_temp_files(tiny_ckpt, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(inp / f"img{i:03d}.png")
    args = flags(checkpoint=tiny_ckpt, input=inp, output=out, workers=0, batch_size=1)
    args += flags(tta="flip4", save_probs=True, overlay=True, no_progress=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "segapp.cli.predict", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("*.mask.png"))) < 5 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*.mask.png")))
    if proc.returncode == 0 or done_before >= 60:
        pytest.skip("the run finished before it could be killed")
    assert not (out / "predictions.csv").exists()
    code, stdout, stderr = predict_in_process(capsys, *args[:-1], "--resume")
    assert code == 0, stderr
    skipped = int(stdout.split(" already done")[0].rsplit("/ ", 1)[1])
    assert 0 < skipped <= done_before
    assert len(list(out.glob("*.mask.png"))) == 60 and not list(out.rglob(".tmp-*"))
    rows = read_rows(out)
    assert len(rows) == 60 and all(r[0]["status"] == "ok" for r in rows.values())


def test_tta_and_tile_modes_keep_the_input_size(tiny_ckpt, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (150, 97, 3), dtype=np.uint8)).save(inp / "big.png")
    Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(inp / "small.png")
    for i, extra in enumerate(
        (["--tta", "flip"], ["--tta", "flip4", "--keep-largest"], ["--mode", "tile", "--tta", "flip"])
    ):
        out = tmp_path / f"out{i}"
        args = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0", *extra)
        if "tile" in extra:
            with pytest.warns(UserWarning, match="trained on whole images resized"):
                code, _, err = predict_in_process(capsys, *args)
        else:
            code, _, err = predict_in_process(capsys, *args)
        assert code == 0, err
        assert read_mask(out / "big.png.mask.png").shape == (150, 97)
        assert read_mask(out / "small.png.mask.png").shape == (30, 20)
        if "--keep-largest" in extra:
            assert all(int(r[0]["components"]) <= 1 for r in read_rows(out).values())


def test_dicom_named_ima_is_predicted_hidden_folders_are_not_and_skipped_files_are_named(tiny_ckpt, tmp_path, capsys):
    """A Siemens ``.IMA`` export was skipped as 'unsupported' and vanished from the CSV with exit 0,
    and an old copy in a hidden ``.snapshot/`` folder was predicted as a scan."""
    from tests.inference.formats import write_dicom

    src = tmp_path / "in"
    (src / ".snapshot").mkdir(parents=True)
    write_dicom(src / "scan1.IMA", np.arange(24 * 20, dtype=np.uint16).reshape(24, 20))
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(src / ".snapshot" / "old.png")
    (src / "notes.xyz").write_text("not a scan")
    code, _, err = predict_in_process(
        capsys, "--checkpoint", str(tiny_ckpt), "--workers", "0", "--input", str(src), "--output", str(tmp_path / "o")
    )
    rows = read_rows(tmp_path / "o")
    assert code == 0 and list(rows) == ["scan1.IMA"] and rows["scan1.IMA"][0]["status"] == "ok"
    assert "skipped 1 file(s) no reader handles" in err and "notes.xyz" in err
