"""Which device a plan is for, and what it can do (read once; no Lightning)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from segapp.machine import cpu_model, cpu_supports_bf16

DeviceKind = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class Device:
    """The machine a plan is sized for.

    Attributes:
        kind: ``cpu`` or ``cuda`` (one GPU: multi-GPU runs are not planned).
        name: CPU model or GPU name, for every published number.
        threads: torch intra-op threads (CPU training uses them all).
        cores: CPU cores (data loader workers).
        bf16: Native bf16 (CPU: AMX-BF16 or AVX512-BF16, where bf16 autocast is not emulated and
            the planner times it against fp32; GPU: ``torch.cuda.is_bf16_supported``).
    """

    kind: DeviceKind
    name: str
    threads: int
    cores: int
    bf16: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.kind == "cuda":
            return f"GPU {self.name} ({'bf16' if self.bf16 else 'no bf16: fp16'})"
        return f"CPU {self.name}, {self.threads} threads ({'native bf16' if self.bf16 else 'no native bf16'})"


def detect_device(accelerator: str | None = "auto") -> Device:
    """The device for ``trainer.accelerator``: a GPU when asked for (or ``auto``) and present, else the CPU."""
    cores = os.cpu_count() or 1
    want_gpu = str(accelerator or "auto").lower() in ("auto", "gpu", "cuda")
    if want_gpu and torch.cuda.is_available():
        return Device(
            "cuda", torch.cuda.get_device_name(0), torch.get_num_threads(), cores, torch.cuda.is_bf16_supported()
        )
    return Device("cpu", cpu_model(), torch.get_num_threads(), cores, cpu_supports_bf16())
