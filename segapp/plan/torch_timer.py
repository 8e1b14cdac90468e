"""The real :class:`~segapp.plan.timing.StepTimer`: a few training steps on a real batch.

The batch is the first training pairs of the dataset, read and resized once as training reads
them (:class:`~segapp.data.dataset.LesionDataset`) and interpolated to each timed size. The net
is the planned net from :data:`segapp.plan.nets.NETS` without its pretrained weights (same
cost), with the planned loss and AdamW; precision by autocast as Lightning's mixed precision
does. CUDA is synchronised before each clock reading.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segapp.data.dataset import LesionDataset
from segapp.data.layouts import Pair
from segapp.data.transforms import build_augment
from segapp.io import MaskRule, PreprocessSpec
from segapp.lit.losses import create_loss
from segapp.nets import create_net
from segapp.plan.nets import NETS
from segapp.plan.timing import TIMED_STEPS, VAL_STEPS, WARMUP_STEPS, Candidate, LoadTime, StepTime


class TorchStepTimer:
    """Times candidates with real steps (see the module docstring).

    Args:
        pairs: Training pairs; the first ``max batch`` are read once.
        in_channels: ``data.in_channels`` of the plan.
        mask_rule: The dataset's mask value rule.
        read_size: Size at which the batch is read (the largest size that will be timed).
        loss: The planned loss.
    """

    def __init__(
        self, pairs: Sequence[Pair], in_channels: int, mask_rule: MaskRule, read_size: int, loss: str = "dice_bce"
    ) -> None:
        self.pairs = list(pairs)
        self.in_channels = in_channels
        self.rule = mask_rule
        self.read_size = read_size
        self.loss = create_loss(loss)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._arrays: list[tuple[np.ndarray, np.ndarray]] = []
        self._read_s = 0.0
        self._nets: dict[tuple, torch.nn.Module] = {}

    def _read(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch is None or self._batch[0].shape[0] < n:
            c = self.in_channels
            spec = PreprocessSpec(size=(self.read_size,) * 2, in_channels=c, mean=(0.5,) * c, std=(0.5,) * c)
            ds = LesionDataset(self.pairs[: max(n, 1)], spec, mask_rule=self.rule)
            t = time.perf_counter()
            self._arrays = [ds.load(i) for i in range(len(ds))]
            self._read_s = (time.perf_counter() - t) / max(len(ds), 1)
            items = [ds[i] for i in range(len(ds))]
            self._batch = (torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items]))
        x, y = self._batch
        reps = math.ceil(n / x.shape[0])  # fewer pairs than the batch: repeat them
        return x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps, 1, 1, 1)[:n]

    def _inputs(self, cand: Candidate) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._read(cand.batch)
        if cand.size != self.read_size:
            x = F.interpolate(x, size=(cand.size,) * 2, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=(cand.size,) * 2, mode="nearest")
        x, y = x.to(cand.device), y.to(cand.device)
        if cand.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _net(self, cand: Candidate) -> torch.nn.Module:
        key = (cand.net, cand.channels_last, cand.device)
        if key not in self._nets:
            choice = NETS[cand.net]
            torch.manual_seed(0)
            net = create_net(choice.registry, in_channels=self.in_channels, **choice.timing_kwargs()).to(cand.device)
            self._nets[key] = net.to(memory_format=torch.channels_last) if cand.channels_last else net
        return self._nets[key]

    def measure(self, cand: Candidate, max_s: float = float("inf")) -> StepTime:
        """Training-step and evaluation-batch seconds of ``cand`` (infinite when out of GPU memory);
        after the warm-up step, as many timed steps (1 to 3) as ``max_s`` affords, and the fastest
        of them: a stall of a shared machine during one step does not shrink the whole plan (a plan
        that is too optimistic is still stopped by ``trainer.max_time``; one too pessimistic would
        waste the budget)."""
        t0 = time.perf_counter()
        try:
            train, val = self._run(cand, t0 + max_s)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return StepTime(math.inf, math.inf, time.perf_counter() - t0)
        return StepTime(train, val, time.perf_counter() - t0)

    def _run(self, cand: Candidate, deadline: float) -> tuple[float, float]:
        net, (x, y) = self._net(cand), self._inputs(cand)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda") if cand.precision == "16-mixed" else None
        net.train()
        train: list[float] = []
        while len(train) < WARMUP_STEPS + TIMED_STEPS:
            if len(train) > WARMUP_STEPS and self._clock(cand) + train[-1] > deadline:
                break  # one timed step is always kept
            t = self._clock(cand)
            self._train_step(cand, net, opt, scaler, x, y)
            train.append(self._clock(cand) - t)
        net.eval()
        val = []
        with torch.no_grad():
            for i in range(1 + VAL_STEPS):
                if i > 1 and self._clock(cand) + val[-1] > deadline:
                    break
                t = self._clock(cand)
                with _autocast(cand):
                    torch.sigmoid(net(x).float())
                val.append(self._clock(cand) - t)
        return min(train[WARMUP_STEPS:]), min(val[1:])

    def _train_step(self, cand: Candidate, net, opt, scaler, x: torch.Tensor, y: torch.Tensor) -> None:
        with _autocast(cand):
            loss = self.loss(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    @staticmethod
    def _clock(cand: Candidate) -> float:
        if cand.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    def load_time(self, size: int) -> LoadTime:
        """Per-image seconds: read + resize (measured on the batch read) and the ``standard``
        augmentation (timed at the read size, scaled to ``size`` by pixels)."""
        self._read(1)
        aug = build_augment("standard", (self.read_size,) * 2, self.in_channels)
        t = time.perf_counter()
        for img, mask in self._arrays:
            aug(image=img, mask=mask)
        item = (time.perf_counter() - t) / max(len(self._arrays), 1)
        return LoadTime(self._read_s, item * (size / self.read_size) ** 2)


def _autocast(cand: Candidate) -> contextlib.AbstractContextManager:
    device = "cuda" if cand.device.startswith("cuda") else "cpu"
    if cand.precision == "bf16-mixed":
        return torch.autocast(device, dtype=torch.bfloat16)
    if cand.precision == "16-mixed":
        return torch.autocast(device, dtype=torch.float16)
    return contextlib.nullcontext()
