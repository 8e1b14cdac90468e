"""Seconds per training step (forward, backward, AdamW) by input size and memory format.

Sizes the Kvasir recipe's epochs: which memory format to train in, and what progressive
resizing (``data.train_size_schedule``) saves per epoch. Same net weights, same random batch;
the variants run alternately (A B A B ...) ``--repeats`` times and the table gives medians.
``--compare precision`` sets channels-last and compares fp32 with bf16 autocast instead (does
this CPU's bf16 pay for training? the planner times the same question at its smallest size).

    .venv/bin/python bench/step_bench.py --sizes 256 192 160 --repeats 3 --write-docs
    .venv/bin/python bench/step_bench.py --nets effl0 --sizes 128 256 384 --compare precision
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import torch

from segapp.machine import cpu_flags, cpu_model
from segapp.nets import create_net

NETS = {
    "effl0": (
        "smp_unet",
        {
            "encoder_name": "tu-tf_efficientnet_lite0",
            "encoder_weights": None,
            "decoder_channels": [128, 64, 48, 32, 16],
        },
    ),
    "effl0_fpn": (
        "smp_unet",
        {
            "encoder_name": "tu-tf_efficientnet_lite0",
            "encoder_weights": None,
            "decoder_channels": [128, 64, 48, 32, 16],
            "decoder": "fpn",
        },
    ),
    "scratch": ("unet", {"depth": 5, "base_channels": 16, "block": "residual"}),
}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MARK = "<!-- step_bench -->"


def step_time(net_name: str, size: int, channels_last: bool, batch: int, steps: int, bf16: bool = False) -> float:
    """Median seconds per step over ``steps`` steps after 2 warm-up steps (``bf16``: autocast)."""
    name, kwargs = NETS[net_name]
    torch.manual_seed(0)
    net = create_net(name, **kwargs).train()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch, 1, size, size) > 0.7).float()
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


VARIANTS = {  # (name of A, name of B, (channels_last, bf16) of A and of B)
    "layout": ("NCHW", "channels-last", ((False, False), (True, False))),
    "precision": ("fp32", "bf16 autocast", ((True, False), (True, True))),
}


def table(args: argparse.Namespace) -> str:
    name_a, name_b, variants = VARIANTS[args.compare]
    rows = []
    for net_name in args.nets:
        for size in args.sizes:
            runs: list[list[float]] = [[], []]
            for _ in range(args.repeats):
                for i, (cl, bf16) in enumerate(variants):
                    runs[i].append(step_time(net_name, size, cl, args.batch, args.steps, bf16))
            a, b = statistics.median(runs[0]), statistics.median(runs[1])
            rows.append(f"| {net_name} | {size} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
            print(rows[-1], flush=True)
    head = [f"| net | size (px) | {name_a} s/step | {name_b} s/step | speed-up |", "|---|---|---|---|---|"]
    return "\n".join(head + rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=["effl0", "scratch"], choices=sorted(NETS))
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 192])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", choices=sorted(VARIANTS), default="layout", help="what the two columns differ in")
    p.add_argument("--write-docs", action="store_true", help=f"replace the block after {MARK} in docs/benchmarks.md")
    args = p.parse_args()
    if args.write_docs and args.compare != "layout":  # refused before minutes of timing, not after
        p.error("--write-docs replaces the layout table only; paste a --compare precision table by hand")
    md = table(args)
    cmd = "bench/step_bench.py " + " ".join(
        [
            f"--nets {' '.join(args.nets)}",
            f"--sizes {' '.join(map(str, args.sizes))}",
            f"--batch {args.batch}",
            f"--steps {args.steps}",
            f"--repeats {args.repeats}",
            *([f"--compare {args.compare}"] if args.compare != "layout" else []),
        ]
    )
    info = (
        f"`{cmd}` on {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {_bf16_flags()}, {_what(args.compare)}, {datetime.date.today()}; "
        f"medians of {args.repeats} alternating runs "
        f"of {args.steps} steps (batch {args.batch})."
    )
    print(info)
    if args.write_docs:
        DOCS.write_text(splice(DOCS.read_text(), md, info))


def _bf16_flags() -> str:
    flags = cpu_flags()
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))


def _what(compare: str) -> str:
    return "fp32" if compare == "layout" else "channels-last"


def splice(text: str, md: str, info: str) -> str:
    """Replace the table and info paragraph after :data:`MARK` in ``text`` (keep the rest)."""
    if MARK not in text:
        raise SystemExit(f"{DOCS}: marker {MARK} not found; add it where the table belongs")
    head, tail = text.split(MARK, 1)
    rest = tail.split("\n\n", 2)  # old table, old info, the rest
    return head + MARK + "\n" + md + "\n\n" + info + "\n\n" + (rest[2] if len(rest) > 2 else "")


if __name__ == "__main__":
    main()
