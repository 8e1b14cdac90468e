"""``--workers/--batch-size auto`` (segapp.inference.sizing) and the pipelined writer thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from segapp.inference import FolderOptions, Predictor, TorchEngine, predict_folder
from segapp.inference.sizing import choose, parse_count
from segapp.inference.writer import Writer

ORT_CPU = {"engine": "onnxruntime", "providers": ["CPUExecutionProvider"]}
TORCH_CPU = {"engine": "torch", "device": "cpu"}


def test_small_cpus_decode_in_the_main_process_and_onnx_runs_batch_1():
    s = choose(ORT_CPU, cores=2)
    assert (s.workers, s.batch_size) == (0, 1) and "2 CPU cores" in s.reason
    assert choose(TORCH_CPU, cores=4).batch_size == 8 and choose(TORCH_CPU, cores=4).workers == 0


def test_large_cpus_and_gpus_get_workers():
    assert choose(ORT_CPU, cores=16).workers == 2 and choose(ORT_CPU, cores=64).workers == 4
    gpu = choose({"engine": "torch", "device": "cuda:0"}, cores=3)
    assert (gpu.workers, gpu.batch_size) == (2, 16)
    assert choose({"engine": "onnxruntime", "providers": ["CUDAExecutionProvider", "CPU"]}, cores=8).batch_size == 16


def test_explicit_numbers_are_kept():
    s = choose(ORT_CPU, workers=3, batch_size=5, cores=2)
    assert (s.workers, s.batch_size, s.reason) == (3, 5, "given on the command line")


@pytest.mark.parametrize("text", ["0", "-1", "x", "2.5"])
def test_parse_count_refuses_with_the_option_name(text):
    with pytest.raises(ValueError, match=r"--batch-size expects 'auto' or an integer >= 1"):
        parse_count("--batch-size", text, 1)
    assert parse_count("--workers", "0", 0) == 0 and parse_count("--workers", "auto", 0) == "auto"


def test_cli_names_a_bad_workers_value(tmp_path):
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--model", "m.onnx", "--input", str(tmp_path)]
    res = subprocess.run([*cmd, "--output", str(tmp_path / "o"), "--workers", "two"], capture_output=True, text=True)
    assert res.returncode == 2 and "--workers expects 'auto' or an integer >= 0, got 'two'" in res.stderr


def test_writer_keeps_order_runs_in_another_thread_and_reraises():
    seen, threads = [], set()
    w = Writer()
    for i in range(7):
        w.submit(lambda i=i: (seen.append(i), threads.add(threading.current_thread().name)))
    w.drain()
    assert seen == list(range(7)) and all(t.startswith("segapp-writer") for t in threads)

    def boom():
        raise OSError(28, "No space left on device")

    w.submit(boom)
    with pytest.raises(OSError, match="No space left"):
        w.drain()
    w.stop()
    inline = Writer(threaded=False)
    inline.submit(lambda: threads.add(threading.current_thread().name))
    assert threading.current_thread().name in threads


def _rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    col = lines[0].split(",").index("seconds")
    return [",".join(c for j, c in enumerate(line.split(",")) if j != col) for line in lines]


def test_pipelined_and_plain_runs_write_the_same_outputs(tiny_ckpt, holdout_root, tmp_path):
    engine = TorchEngine.from_checkpoint(tiny_ckpt, device="cpu", precision="fp32")
    outs = {}
    for pipeline in (True, False):
        out = tmp_path / f"p{int(pipeline)}"
        predict_folder(Predictor(engine, batch_size=3), holdout_root / "images", out, FolderOptions(pipeline=pipeline))
        outs[pipeline] = out
    assert _rows(outs[True] / "predictions.csv") == _rows(outs[False] / "predictions.csv")
    masks = sorted(p.name for p in outs[True].glob("*.mask.png"))
    assert masks and masks == sorted(p.name for p in outs[False].glob("*.mask.png"))
    for name in masks:
        assert (outs[True] / name).read_bytes() == (outs[False] / name).read_bytes()
