"""DDP on two CPU ranks: the logged validation Dice equals an independent numpy computation, and the
2-rank checkpoint resumes on 1 device."""

import csv
import json
import os
import subprocess
import sys
from collections import Counter

import lightning as L
import numpy as np
import pytest
import torch

from segapp.data.synth import generate
from tests.conftest import dotted, fit_args


def numpy_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Per-image Dice written independently of segapp's metric (both empty -> 1)."""
    p, g = pred.astype(bool).ravel(), gt.astype(bool).ravel()
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(p, g).sum() / denom)


@pytest.mark.slow
def test_ddp_cpu_two_ranks_odd_validation_set_logs_exact_dice(tmp_path):
    from segapp.data import LesionDataModule
    from segapp.inference import load_net
    from segapp.io import preprocess, read_image, read_mask
    from segapp.io.preprocess import resize_mask

    root = generate(tmp_path / "data", n=25, size=64, seed=5)  # 5 validation images: odd
    run = tmp_path / "run"
    tiny = {"model.net.init_args.depth": 2, "model.net.init_args.base_channels": 8, "data.batch_size": 2}
    args = fit_args(
        root, run, *dotted({"trainer.devices": 2, "trainer.strategy": "ddp", "trainer.max_epochs": 2, **tiny})
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "segapp.cli.main", *args], capture_output=True, text=True, timeout=900, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run / "logs").glob("version_*"))) == 1  # rank zero logs alone

    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    rows = [
        r
        for r in csv.DictReader((next((run / "logs").glob("version_*")) / "metrics.csv").read_text().splitlines())
        if r.get("val/dice")
    ]
    logged = float(next(r["val/dice"] for r in rows if int(r["epoch"]) == ckpt["epoch"]))

    dm = LesionDataModule(root=str(root), image_size=64, seed=42, val_fraction=0.2)
    dm.setup("fit")
    val = dm.splits["val"]
    assert len(val) == 5
    net, spec, _, _ = load_net(run / "checkpoints" / "best.ckpt")
    scores = []
    with torch.no_grad():
        for pair in val:
            x = torch.from_numpy(preprocess(read_image(pair.image), spec))[None]
            pred = torch.sigmoid(net(x))[0, 0].numpy() > 0.5
            gt = resize_mask(read_mask(pair.masks[0]), (64, 64))  # the ground truth the model was scored on
            scores.append(numpy_dice(pred, gt))
    assert logged == pytest.approx(float(np.mean(scores)), abs=1e-4)

    # the 2-rank checkpoint resumes on 1 device: same run, step counter continues, ends at epoch 3
    before = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    one_device = {"trainer.devices": 1, "trainer.strategy": "auto", "trainer.max_epochs": 3, **tiny}
    resume = fit_args(root, run, *dotted(one_device), "--ckpt_path", "last")
    out = subprocess.run(
        [sys.executable, "-m", "segapp.cli.main", *resume], capture_output=True, text=True, timeout=900, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # epochs trained (last.ckpt is written at the end of each validation, where Lightning's "completed"
    # counter has not yet counted the epoch; "processed" has)
    processed = after["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]
    assert (before["epoch"], after["epoch"], processed) == (1, 2, 3)
    assert after["global_step"] == before["global_step"] + 20 // 2  # one epoch of 20 images, batch 2, one rank


class RecordSampler(L.Callback):
    """Writes each rank's lesion-size draw and its share of it to $SAMPLER_OUT (the sampler's
    generator is rewound after each look, so training draws what it would have)."""

    def on_train_epoch_start(self, trainer, pl_module):
        wrapper = trainer.train_dataloader.sampler  # Lightning's DistributedSamplerWrapper under DDP
        inner = wrapper.dataset._sampler
        state = inner.generator.get_state()
        draw = [int(i) for i in inner]
        inner.generator.set_state(state)
        share = [int(i) for i in wrapper]  # the wrapper draws from the inner sampler again, then splits
        inner.generator.set_state(state)
        record = {"wrapper": type(wrapper).__name__, "draw": draw, "share": share}
        with open(os.path.join(os.environ["SAMPLER_OUT"], f"rank{trainer.global_rank}.json"), "w") as fh:
            json.dump(record, fh)


@pytest.mark.slow
def test_ddp_lesion_size_sampling_splits_one_draw_between_the_ranks(tmp_path):
    """Both ranks build the same weighted sampler (same seed, same weights), and Lightning's wrapper
    gives each half of its draws: one size-balanced epoch, not two different ones of half size."""
    root = generate(tmp_path / "data", n=25, size=64, seed=5)  # 20 training images
    run, out = tmp_path / "run", tmp_path / "sampler"
    out.mkdir()
    tiny = {"model.net.init_args.depth": 2, "model.net.init_args.base_channels": 4, "data.batch_size": 2}
    settings = {"trainer.devices": 2, "trainer.strategy": "ddp", "trainer.max_epochs": 1, **tiny}
    args = fit_args(root, run, *dotted({**settings, "data.sampling": "lesion_size"}))
    args += ["--trainer.callbacks+=tests.test_ddp.RecordSampler"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAMPLER_OUT": str(out)}
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.main", *args], capture_output=True, text=True, timeout=900, env=env
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["wrapper"] == "DistributedSamplerWrapper"
    draw = ranks[0]["draw"]
    assert ranks[1]["draw"] == draw and len(draw) == 20  # one draw, the same on both ranks
    assert len(ranks[0]["share"]) == len(ranks[1]["share"]) == 10
    assert Counter(ranks[0]["share"]) + Counter(ranks[1]["share"]) == Counter(draw)  # split, not drawn twice
    assert (res.stdout + res.stderr).count("data.sampling lesion_size: lesion share of the frame") == 1  # rank 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 10 // 2  # each rank: its 10 draws in batches of 2
