"""Planner fixtures: a fake step timer, hand-made lesion folders, an isolated cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.plan.device import Device
from segapp.plan.fingerprint import Fingerprint
from segapp.plan.timing import Candidate, LoadTime, StepTime

CPU = Device("cpu", "test CPU", 2, 2, False)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SEGAPP_CACHE_DIR", str(folder))
    return folder


class FakeTimer:
    """Step time proportional to pixels x batch (``s_per_mpx`` seconds per megapixel of batch);
    bf16 ``bf16_speed`` times as fast; a measurement "costs" its steps (1 warm-up, 1-3 timed as
    ``max_s`` affords, 3 evaluation batches) plus ``build_s`` the first time (the net is built
    once). Records its calls and the limits it was given."""

    def __init__(self, s_per_mpx: float = 1.5, val_ratio: float = 0.3, build_s: float = 0.5, bf16_speed: float = 1.0):
        self.s_per_mpx = s_per_mpx
        self.val_ratio = val_ratio
        self.build_s = build_s
        self.bf16_speed = bf16_speed
        self.calls: list[Candidate] = []
        self.limits: list[float] = []

    def measure(self, cand: Candidate, max_s: float = math.inf) -> StepTime:
        self.calls.append(cand)
        self.limits.append(max_s)
        t = self.s_per_mpx * cand.size**2 * cand.batch / 1e6
        if cand.precision != "32-true":
            t /= self.bf16_speed
        build = self.build_s if len(self.calls) == 1 else 0.0
        timed = max(1, int(min(3.0, (max_s - build - t) // t)))  # as many timed steps as max_s affords
        spent = build + (1 + timed) * t + 3 * t * self.val_ratio
        return StepTime(t, t * self.val_ratio, spent)

    def load_time(self, size: int) -> LoadTime:
        return LoadTime(0.01, 0.002)


@pytest.fixture
def fake_timer() -> FakeTimer:
    return FakeTimer()


def fingerprint(**kw) -> Fingerprint:
    """A 600-pair colour dataset of 512 px images with mid-sized lesions, fields overridable."""
    base = dict(
        root="/data/x",
        layout="paired",
        pairs=600,
        short_side=512,
        aspect=1.0,
        grey_share=0.0,
        lesion_median=0.1,
        lesion_p10=0.04,
        small_share=0.0,
        empty_share=0.0,
    )
    return Fingerprint(**{**base, **kw})


def lesion_folder(root: Path, fractions: list[float], size: int = 100, grey: list[bool] | None = None) -> Path:
    """``images/`` + ``masks/`` PNG pairs whose masks are squares covering exactly ``fractions`` of the frame."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, f in enumerate(fractions):
        side = round(math.sqrt(f * size * size))
        assert side * side == round(f * size * size), f"fraction {f} is not a square at {size} px"
        mask = np.zeros((size, size), np.uint8)
        mask[10 : 10 + side, 5 : 5 + side] = 255
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        if grey and grey[i]:
            img[..., 1] = img[..., 2] = img[..., 0]
        Image.fromarray(img).save(root / "images" / f"c{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i:03d}.png")
    return root
