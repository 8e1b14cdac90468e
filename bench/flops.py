"""FLOPs per image of a checkpoint's net and the GFLOP/s its forward pass reaches on this CPU.

    python bench/flops.py CHECKPOINT [CHECKPOINT ...] [--batch 8] [--repeats 5]

Counts the forward pass at the checkpoint's input size with ``torch.utils.flop_counter``
(a multiply-add is 2 FLOPs; convolutions and matmuls, what dominates a U-Net), then times the
forward pass (torch, ``inference_mode``, channels-last, fp32 and, where the CPU has native bf16,
bf16 autocast; median of ``--repeats`` after one warm-up) and ONNX Runtime fp32 over the cached
export, and prints GFLOP/s next to the CPU's nominal peak: cores x clock x FLOPs per cycle read
from the CPU flags (AVX-512 FMA: 2 units x 16 fp32 lanes x 2 = 64 fp32 FLOPs per cycle per core on
these EPYCs; AVX2: 32). The clock is the `cpu MHz` the kernel reports (segapp.machine.cpu_mhz),
which can sit below the boost clock, so the peak is nominal, a yardstick, not a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from segapp.inference.checkpoint import load_net
from segapp.machine import cpu_flags, cpu_mhz, cpu_model, cpu_supports_bf16


def cpu_peak_gflops() -> tuple[float, str]:
    """Nominal fp32 peak of the cores torch uses, and how it was computed."""
    ghz = (cpu_mhz() or 2000.0) / 1000
    per_cycle = 64 if "avx512f" in cpu_flags() else 32 if "fma" in cpu_flags() else 8
    cores = torch.get_num_threads()
    return cores * ghz * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} fp32 FLOP/cycle"


def count_flops(net: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(x)
    return int(counter.get_total_flops())


def time_torch(net: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None, repeats: int) -> float:
    x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            net(x)
            if i:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_onnx(ckpt: Path, x: np.ndarray, repeats: int) -> float:
    from segapp.inference.engines import OnnxEngine
    from segapp.inference.onnx_cache import cached_onnx

    engine = OnnxEngine(cached_onnx([ckpt])[0], device="cpu")
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        engine.run(x)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    peak, how = cpu_peak_gflops()
    print(f"{cpu_model()}; nominal fp32 peak {peak:.0f} GFLOP/s ({how}); batch {a.batch}, torch {torch.__version__}")
    print("| checkpoint | net | input | GFLOP/image | torch fp32 GFLOP/s | torch bf16 GFLOP/s | ONNX fp32 GFLOP/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for ckpt in a.checkpoints:
        net, spec, _, meta = load_net(ckpt)
        net = net.eval().to(memory_format=torch.channels_last)
        x = torch.randn(a.batch, spec.in_channels, *spec.size)
        flops = count_flops(net, x[:1])
        work = flops * a.batch / 1e9
        fp32 = work / time_torch(net, x, None, a.repeats)
        bf16 = f"{work / time_torch(net, x, torch.bfloat16, a.repeats):.1f}" if cpu_supports_bf16() else "—"
        onnx = work / time_onnx(ckpt, x.numpy(), a.repeats)
        encoder = meta["net"]["kwargs"].get("encoder_name")
        name = meta["net"]["name"] + (f"/{encoder}" if encoder else "")
        size = f"{spec.size[0]}x{spec.size[1]}"
        print(f"| {ckpt} | {name} | {size} | {flops / 1e9:.2f} | {fp32:.1f} | {bf16} | {onnx:.1f} |")


if __name__ == "__main__":
    main()
