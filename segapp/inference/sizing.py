"""Decoding workers and batch size from the machine and the engine (``--workers/--batch-size auto``).

The rules come from ``bench/predict_bench.py`` (docs/benchmarks.md, "Inference, issue 18"), not
from habit:

- **Workers.** On a CPU the forward pass already uses every core (ONNX Runtime and torch start
  one thread per core), and decoding a clinic JPEG or PNG costs about 2-5 ms against 8-40 ms of
  forward pass. On 2 cores, 2 worker processes made runs 1.2-1.5x *slower* (start-up of the
  forkserver and its imports, and decode competing with the forward threads), so CPUs with up to
  4 cores decode in the main process; larger CPUs get one worker per 8 cores (at most 4), which
  overlap decoding with the forward pass without taking many cores from it. On a GPU the forward
  pass leaves the CPU idle: up to 4 workers, one core kept for the main process.
- **Batch.** ONNX Runtime on the CPU is as fast per image at batch 1 as at 8 (within 8 %;
  batch 1 was fastest for the 320 px EfficientNet-Lite0 U-Net), and batch 1 needs the least
  memory: 1. torch on the CPU is 1.6-1.8x faster per image at batch 8 than at 1: 8. GPUs: 16.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

AUTO = "auto"
CPU_CORES_WITHOUT_WORKERS = 4  # at most this many cores: decode in the main process
MAX_WORKERS = 4


@dataclass(frozen=True)
class Sizing:
    """The chosen ``workers`` and ``batch_size`` and why (recorded in run.json)."""

    workers: int
    batch_size: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def on_gpu(engine_info: dict[str, Any]) -> bool:
    """Whether the engine (its ``describe()``) runs on a GPU."""
    if str(engine_info.get("device", "")).startswith("cuda"):
        return True
    providers = engine_info.get("providers") or []
    return bool(providers) and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def auto_workers(engine_info: dict[str, Any], cores: int) -> tuple[int, str]:
    """Decoding worker processes for this engine on ``cores`` cores, and why."""
    if on_gpu(engine_info):
        n = max(0, min(MAX_WORKERS, cores - 1))
        return n, f"GPU forward pass: {n} decoding workers ({cores} cores, one kept for the main process)"
    if cores <= CPU_CORES_WITHOUT_WORKERS:
        return 0, f"{cores} CPU cores all run the forward pass: decoding in the main process"
    n = min(MAX_WORKERS, max(1, cores // 8))
    return n, f"{cores} CPU cores: {n} decoding worker(s) overlap the forward pass"


def auto_batch(engine_info: dict[str, Any]) -> tuple[int, str]:
    """Images (or windows) per forward pass for this engine, and why."""
    if on_gpu(engine_info):
        return 16, "GPU: batch 16"
    if engine_info.get("engine") == "onnxruntime":
        return 1, "ONNX Runtime on the CPU: batch 1 (as fast per image as 8, least memory)"
    return 8, "torch on the CPU: batch 8 (1.6-1.8x faster per image than batch 1)"


def choose(
    engine_info: dict[str, Any], workers: int | str = AUTO, batch_size: int | str = AUTO, cores: int | None = None
) -> Sizing:
    """Resolve ``auto`` workers and batch size for an engine; explicit numbers are kept as given.

    Args:
        engine_info: The engine's ``describe()`` (engine name, device or providers).
        workers: A number, or ``"auto"``.
        batch_size: A number, or ``"auto"``.
        cores: CPU cores (default: the cores this process may run on).
    """
    cores = cores or usable_cores()
    reasons = []
    if workers == AUTO:
        workers, why = auto_workers(engine_info, cores)
        reasons.append(why)
    if batch_size == AUTO:
        batch_size, why = auto_batch(engine_info)
        reasons.append(why)
    return Sizing(int(workers), int(batch_size), "; ".join(reasons) or "given on the command line")


def parse_count(name: str, text: str, minimum: int) -> int | str:
    """``auto`` or an integer >= ``minimum`` for ``--workers``/``--batch-size`` (argparse ``type``).

    Raises:
        ValueError: naming the option, what it got and what it expects.
    """
    if text == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name} expects 'auto' or an integer >= {minimum}, got {text!r}")
    return value
