"""One CPU probe (segapp.machine) used by the torch engine and every bench script; bench Dice is segapp.eval's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segapp import machine

ROOT = Path(__file__).resolve().parents[1]
AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n\n"
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    def use(text: str | None) -> None:
        path = tmp_path / "cpuinfo"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(machine, "CPUINFO", path)
        machine.cpu_flags.cache_clear()
        machine.cpu_model.cache_clear()

    yield use
    machine.cpu_flags.cache_clear()
    machine.cpu_model.cache_clear()


def test_amx_cpu_has_native_bf16(cpuinfo):
    cpuinfo(AMX)
    assert machine.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_bf16", "avx2"} <= machine.cpu_flags() and machine.cpu_supports_bf16()


def test_avx2_cpu_and_substring_flags_do_not_count(cpuinfo):
    cpuinfo(AVX2.replace("fma", "fma xamx_bf16x"))
    assert machine.cpu_model() == "AMD EPYC 7B13" and not machine.cpu_supports_bf16()


def test_unreadable_cpuinfo_falls_back(cpuinfo):
    cpuinfo(None)
    assert machine.cpu_flags() == frozenset() and not machine.cpu_supports_bf16()
    assert isinstance(machine.cpu_model(), str) and machine.cpu_model()


def test_engine_auto_precision_reads_the_same_probe(cpuinfo):
    from segapp.inference.engines import resolve_precision

    cpuinfo(AMX)
    assert resolve_precision("auto", "cpu") == "bf16"
    cpuinfo(AVX2)
    assert resolve_precision("auto", "cpu") == "fp32"
    cpuinfo(AVX2.replace("fma", "fma avx512f avx512_bf16"))  # bf16 dot products but no AMX tiles
    assert machine.cpu_supports_bf16() and resolve_precision("auto", "cpu") == "fp32"


def test_no_other_copy_of_the_cpu_probe():
    """segapp/machine.py is the only code that reads /proc/cpuinfo (bench scripts call it)."""
    hits = []
    for path in [
        *ROOT.glob("segapp/**/*.py"),
        *ROOT.glob("bench/*.py"),
        *ROOT.glob("bench/*.sh"),
        *ROOT.glob("docker/**/*.sh"),
    ]:
        text = path.read_text(errors="ignore")
        if ("/proc/cpuinfo" in text or "lscpu" in text) and path != ROOT / "segapp" / "machine.py":
            hits.append(str(path.relative_to(ROOT)))
    assert not hits, hits


def test_machine_module_runs_for_shell_scripts():
    out = subprocess.run([sys.executable, "-m", "segapp.machine"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] in ("bf16=0", "bf16=1")


def test_predict_bench_agreement_uses_the_eval_dice(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import predict_bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from segapp.eval.metrics import overlap_scores
    from segapp.io import write_mask_png

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    a, b = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    a[:4, :4], b[2:6, :4] = True, True
    empty = np.zeros((8, 8), bool)
    for name, x, y in (("one.mask.png", a, b), ("two.mask.png", empty, empty)):
        write_mask_png(a_dir / name, x)
        write_mask_png(b_dir / name, y)
    got = predict_bench.agreement(a_dir, b_dir)
    want = overlap_scores(a, b)["dice"]
    assert want == pytest.approx(0.5)
    assert got["mean_dice"] == pytest.approx((want + 1.0) / 2) and got["min_dice"] == pytest.approx(want)
    assert got["pixel_agreement"] == pytest.approx((1 - 16 / 64 + 1) / 2)
