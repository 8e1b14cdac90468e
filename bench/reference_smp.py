"""The issue-4 reference, as described, run here: a plain hand-written SMP training script.

"EfficientNet-Lite0 ImageNet encoder, flips/rot90/brightness, Dice+BCE, AdamW, cosine, bf16
autocast, 256x256, batch 8, 40 minutes" -- written the way one would by hand: all images loaded
into memory at 256 px (cv2), SMP's default U-Net decoder, AdamW 1e-3, a cosine over the wall-clock
budget (no epochs to size), no validation during training, final weights, threshold 0.5. Only
the split and the offline encoder weights come from segapp, so that the 180 held-out images are
exactly those the segapp recipes are scored on (seed 42, 20 %) and no hub is needed.

    .venv/bin/python bench/reference_smp.py --minutes 40 --precision fp32 --out runs/reference/fp32.json

Prints and writes mean per-image Dice on the held-out images at 256 px and at original size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import segmentation_models_pytorch as smp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from segapp.data.layouts import discover  # noqa: E402
from segapp.data.splits import make_splits  # noqa: E402
from segapp.eval.metrics import overlap_scores  # noqa: E402
from segapp.io import read_image, read_mask  # noqa: E402
from segapp.nets import create_net  # noqa: E402


def load(pairs, size: int):
    """Images resized to ``size`` (uint8), masks resized (nearest) and at original size."""
    imgs, masks, originals = [], [], []
    for p in pairs:
        img = read_image(p.image)[..., :3]
        mask = read_mask(p.masks[0], 127)
        imgs.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST))
        originals.append(mask)
    return np.stack(imgs), np.stack(masks), originals


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` to a normalised ``3 x H x W`` tensor (the Lite0 weights' mean = std = 0.5)."""
    x = (img.astype(np.float32) / 255 - 0.5) / 0.5
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


class Pairs(Dataset):
    def __init__(self, imgs: np.ndarray, masks: np.ndarray, aug=None):
        self.imgs, self.masks, self.aug = imgs, masks, aug

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, i: int):
        img, mask = self.imgs[i], self.masks[i]
        if self.aug is not None:
            out = self.aug(image=img, mask=mask)
            img, mask = out["image"], out["mask"]
        return to_tensor(img), torch.from_numpy(mask[None].astype(np.float32))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Per-image Dice exactly as segapp-eval scores the segapp runs (both empty = 1)."""
    return overlap_scores(pred, gt)["dice"]


def train(net, loader, minutes: float, lr: float, dtype) -> dict:
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    dice_loss = smp.losses.DiceLoss("binary")
    budget, t0, steps, epochs = minutes * 60, time.perf_counter(), 0, 0
    net.train()
    while time.perf_counter() - t0 < budget:
        for x, y in loader:
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1:
                break
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))  # cosine over the time budget
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                logits = net(x)
            logits = logits.float()
            loss = dice_loss(logits, y) + F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        else:
            epochs += 1
    return {"steps": steps, "epochs_completed": epochs, "train_s": round(time.perf_counter() - t0, 1)}


@torch.no_grad()
def evaluate(net, imgs: np.ndarray, masks: np.ndarray, originals) -> dict:
    net.eval()
    d256, dorig = [], []
    for i in range(0, len(imgs), 8):
        x = torch.stack([to_tensor(img) for img in imgs[i : i + 8]])
        probs = torch.sigmoid(net(x)).numpy()[:, 0]
        for j, p in enumerate(probs):
            d256.append(dice(p > 0.5, masks[i + j] > 0))
            h, w = originals[i + j].shape
            dorig.append(dice(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5, originals[i + j]))
    return {
        "val_dice_256": float(np.mean(d256)),
        "val_dice_original": float(np.mean(dorig)),
        "per_image_original": [round(float(d), 4) for d in dorig],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="../shared/data/kvasir-seg")
    p.add_argument("--minutes", type=float, default=40)
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="bf16",
        help="bf16 autocast as described; fp32 on CPUs without AMX",
    )
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/reference/result.json"))
    args = p.parse_args()
    torch.manual_seed(args.seed)
    splits = make_splits(discover(args.root, "paired").pairs, 0.2, 0.0, 42)
    t = time.perf_counter()
    tr, va = load(splits["train"], args.size), load(splits["val"], args.size)
    load_s = time.perf_counter() - t
    aug = A.Compose(
        [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90(), A.RandomBrightnessContrast(p=0.5)], seed=args.seed
    )
    loader = DataLoader(
        Pairs(tr[0], tr[1], aug),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
    )
    net = create_net(
        "smp_unet", encoder_name="tu-tf_efficientnet_lite0", encoder_weights="efficientnet-lite0"
    )  # SMP default decoder
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    result = {
        **vars(args),
        "out": str(args.out),
        "train_images": len(tr[0]),
        "val_images": len(va[0]),
        "load_s": round(load_s, 1),
    }
    result.update(train(net, loader, args.minutes, args.lr, dtype))
    result.update(evaluate(net, *va))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image_original"}, indent=1))


if __name__ == "__main__":
    main()
