"""What CPU this is, read once from ``/proc/cpuinfo`` (imports nothing of segapp).

The one probe used by the torch engine (``precision: auto``) and by every benchmark script in
``bench/``: CPUs differ from machine to machine here (AVX2-only vs AVX-512 + AMX), so numbers
name the CPU and precision choices read its flags at run time (GUIDE.md §3).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(errors="ignore")
    except OSError:
        return ""


def _field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip().lower(), value.strip()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (x86 ``flags``, ARM ``Features``); empty where unreadable."""
    flags: set[str] = set()
    for line in _cpuinfo().splitlines():
        key, value = _field(line)
        if key in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


@functools.cache
def cpu_model() -> str:
    """The CPU model name (``model name`` in /proc/cpuinfo), else :func:`platform.processor`."""
    for line in _cpuinfo().splitlines():
        key, value = _field(line)
        if key == "model name" and value:
            return value
    return platform.processor() or platform.machine() or "unknown"


def cpu_mhz() -> float | None:
    """The highest ``cpu MHz`` the kernel reports (the current clock, often below boost); None if absent."""
    values = []
    for line in _cpuinfo().splitlines():
        key, value = _field(line)
        if key == "cpu mhz":
            try:
                values.append(float(value))
            except ValueError:
                continue
    return max(values) if values else None


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AMX-BF16 or AVX512-BF16); emulated bf16 is slow."""
    return bool(BF16_FLAGS & cpu_flags())


def cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX-BF16 tile units (Sapphire Rapids and later): where torch bf16
    inference beats ONNX Runtime fp32 by a margin; AVX512-BF16 alone did not (docs/benchmarks.md)."""
    return "amx_bf16" in cpu_flags()


def gpu_device_nodes() -> bool:
    """True when the kernel exposes an NVIDIA (``/dev/nvidia0``...) or ROCm (``/dev/kfd``) device node.

    Without one no CUDA/ROCm device can exist, so a CPU-only run need not import torch (1.5 s) to ask.
    """
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists()


if __name__ == "__main__":  # for shell scripts: `python -m segapp.machine` prints model and bf16
    print(f"{cpu_model()}\nbf16={int(cpu_supports_bf16())}")
