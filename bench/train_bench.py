"""Training throughput: LightningModule vs a plain PyTorch loop, precisions, loader vs model.

Same model, data and precision for both loops, measured alternately (A B A B ...), medians
reported. Writes JSON (``--out``) and prints a markdown table for docs/benchmarks.md.

    .venv/bin/python bench/train_bench.py --size 128 --batch 16 --steps 20 --repeats 3
    python bench/train_bench.py --device cuda --size 256 --batch 32 --steps 40   # GPU: fp32, bf16, fp16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from segapp.data import LesionDataModule  # noqa: E402
from segapp.data.synth import generate  # noqa: E402
from segapp.lit import SegmentationModule  # noqa: E402
from segapp.machine import cpu_model  # noqa: E402
from segapp.nets import UNet  # noqa: E402

# a bare Trainer: no logs, checkpoints, progress bar or summary to time
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def _batches(size: int, batch: int, n_batches: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * n_batches, 3, size, size, generator=g)
    y = (torch.rand(batch * n_batches, 1, size, size, generator=g) > 0.7).float()
    ds = TensorDataset(x, y)
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=False,
        collate_fn=lambda b: {"image": torch.stack([i[0] for i in b]), "mask": torch.stack([i[1] for i in b])},
    )


def _module(channels_last: bool) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(net=UNet(depth=4, base_channels=16), channels_last=channels_last, tune_threshold=False)


class _Timer(L.Callback):
    def __init__(self, warmup: int, device: str = "cpu") -> None:
        self.warmup, self.device, self.t0, self.t1, self.n = warmup, device, None, None, 0

    def on_train_batch_start(self, trainer, module, batch, idx) -> None:
        if idx == self.warmup:
            _sync(self.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, out, batch, idx) -> None:
        if idx >= self.warmup:
            self.n += batch["image"].shape[0]
            _sync(self.device)
            self.t1 = time.perf_counter()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_lightning(
    loader: DataLoader, steps: int, warmup: int, precision: str, channels_last: bool, device: str
) -> float:
    timer = _Timer(warmup, device)
    accelerator = "gpu" if device == "cuda" else "cpu"
    run = {"max_steps": steps, "precision": precision, "callbacks": [timer], "default_root_dir": tempfile.mkdtemp()}
    trainer = L.Trainer(accelerator=accelerator, devices=1, limit_val_batches=0, **QUIET, **run)
    trainer.fit(_module(channels_last), train_dataloaders=loader)
    return timer.n / (timer.t1 - timer.t0)


def run_plain(loader: DataLoader, steps: int, warmup: int, precision: str, channels_last: bool, device: str) -> float:
    module = _module(channels_last).to(device)
    opt = module.configure_optimizers()
    module.train()
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    n, t0 = 0, None
    for i, batch in enumerate(loader):
        if i == steps:
            break
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = batch["image"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = module(x)
        loss = module.loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if i >= warmup:
            n += batch["image"].shape[0]
    _sync(device)
    return n / (time.perf_counter() - t0)


def loader_throughput(root: Path, size: int, batch: int, workers: int, n_batches: int) -> float:
    dm = LesionDataModule(root=str(root), image_size=size, batch_size=batch, num_workers=workers, normalize="none")
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches):
        n += next(it)["image"].shape[0]
    return n / (time.perf_counter() - t0)


def machine() -> str:
    cpu = cpu_model()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}{gpu}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fp32-only", action="store_true", help="skip bf16 (emulated, slow on AVX2-only CPUs)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: fp32, bf16 and fp16 AMP")
    ap.add_argument("--out", default="bench/results/train_bench.json")
    a = ap.parse_args()
    loader = _batches(a.size, a.batch, a.steps)
    cases = [
        ("lightning", "32-true", False),
        ("plain", "32-true", False),
        ("lightning", "bf16-mixed", False),
        ("plain", "bf16-mixed", False),
        ("lightning", "bf16-mixed", True),
        ("plain", "bf16-mixed", True),
    ]
    if a.device == "cuda":
        cases += [("lightning", "16-mixed", True), ("plain", "16-mixed", True)]
    if a.fp32_only:
        cases = [c for c in cases if c[1] == "32-true"]
    results: dict[str, list[float]] = {f"{k}|{p}|{'cl' if c else 'nchw'}": [] for k, p, c in cases}
    for _ in range(a.repeats):  # alternate every case within each repeat
        for kind, prec, cl in cases:
            fn = run_lightning if kind == "lightning" else run_plain
            results[f"{kind}|{prec}|{'cl' if cl else 'nchw'}"].append(fn(loader, a.steps, a.warmup, prec, cl, a.device))
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "synth", n=160, size=a.size * 2, seed=0)
        loaders = {w: loader_throughput(root, a.size, a.batch, w, 8) for w in (0, 2)}
    med = {k: statistics.median(v) for k, v in results.items()}
    out = {"machine": machine(), "args": vars(a), "runs": results, "median_img_s": med, "loader_img_s": loaders}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"machine: {out['machine']}\n\n| loop | precision | memory format | images/s (median of {a.repeats}) |")
    print("| --- | --- | --- | --- |")
    for k, v in med.items():
        kind, prec, cl = k.split("|")
        print(f"| {kind} | {prec} | {'channels_last' if cl == 'cl' else 'NCHW'} | {v:.1f} |")
    for prec, cl in (("32-true", "nchw"), ("bf16-mixed", "nchw"), ("bf16-mixed", "cl"), ("16-mixed", "cl")):
        if f"plain|{prec}|{cl}" not in med:
            continue
        ratio = med[f"lightning|{prec}|{cl}"] / med[f"plain|{prec}|{cl}"]
        print(f"Lightning overhead {prec}/{cl}: {100 * (1 - ratio):+.1f} %")
    print(
        f"loader images/s (resize+augment, {a.size}px from {a.size * 2}px PNG): "
        + ", ".join(f"{w} workers {v:.1f}" for w, v in loaders.items())
    )


if __name__ == "__main__":
    main()
