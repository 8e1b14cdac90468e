"""The issue-4 reference, as described, run here: a plain hand-written SMP training script.

"EfficientNet-Lite0 ImageNet encoder, flips/rot90/brightness, Dice+BCE, AdamW, cosine, bf16
autocast, 256x256, batch 8, 40 minutes" -- written the way one would by hand: all images loaded
into memory at 256 px (cv2), SMP's default U-Net decoder, AdamW 1e-3, a cosine over the wall-clock
budget (no epochs to size), no validation during training, final weights, threshold 0.5. Only
the split and the offline encoder weights come from segapp, so that the 180 held-out images are
exactly those the segapp recipes are scored on (seed 42, 20 %) and no hub is needed.

    .venv/bin/python bench/reference_smp.py --minutes 40 --precision fp32 --out runs/reference/fp32.json

Prints and writes mean per-image Dice on the held-out images at 256 px and at original size.

Train on a given pool instead (a folder or an ``image,mask`` CSV, any segapp layout), with no
split of its own, save the final weights, then predict a fixed test folder in a second call
(masks at original size, named as segapp-predict names them, for segapp-eval) -- what
bench/auto_compare.py runs:

    .venv/bin/python bench/reference_smp.py --root POOL.csv --layout csv --no-split --minutes 10 \
        --precision fp32 --save-weights runs/cmp/reference/weights.pt --out runs/cmp/reference/train.json
    .venv/bin/python bench/reference_smp.py --weights runs/cmp/reference/weights.pt \
        --predict TEST/images --pred-out runs/cmp/pred/reference
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
from segapp.io import IMAGE_EXTENSIONS, read_image, read_mask, to_channels, write_mask_png  # noqa: E402
from segapp.nets import create_net  # noqa: E402


def load(pairs, size: int):
    """Images resized to ``size`` (uint8), masks resized (nearest) and at original size."""
    imgs, masks, originals = [], [], []
    for p in pairs:
        img = rgb(read_image(p.image))
        mask = read_mask(p.masks[0], 127)
        imgs.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST))
        originals.append(mask)
    return np.stack(imgs), np.stack(masks), originals


def rgb(img: np.ndarray) -> np.ndarray:
    """Three uint8 channels: grey images repeated, alpha dropped, 16-bit scaled (the net takes RGB)."""
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    return to_channels(img, 3)


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


def make_net():
    """SMP's default U-Net decoder on the offline ImageNet EfficientNet-Lite0 encoder."""
    return create_net("smp_unet", encoder_name="tu-tf_efficientnet_lite0", encoder_weights="efficientnet-lite0")


def image_files(folder: Path) -> list[Path]:
    """The images directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@torch.no_grad()
def predict_folder(weights: Path, folder: Path, out: Path, batch: int = 8) -> dict:
    """Masks of every image in ``folder`` at its original size (256 px probabilities resized
    bilinearly, then > 0.5, as :func:`evaluate`), written as ``out/<name>.mask.png``."""
    saved = torch.load(weights, map_location="cpu")
    net = make_net()
    net.load_state_dict(saved["state_dict"])
    net.eval()
    size, files, t0 = saved["size"], image_files(folder), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(files), batch):
        originals = [rgb(read_image(p)) for p in files[i : i + batch]]
        x = torch.stack([to_tensor(cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)) for im in originals])
        for p, im, prob in zip(files[i : i + batch], originals, torch.sigmoid(net(x)).numpy()[:, 0], strict=True):
            h, w = im.shape[:2]
            write_mask_png(out / f"{p.name}.mask.png", cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5)
    return {"predicted": len(files), "predict_s": round(time.perf_counter() - t0, 1), "pred_out": str(out)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="../shared/data/kvasir-seg", help="dataset folder or CSV manifest")
    p.add_argument("--layout", default="paired", help="segapp layout of --root: paired (default), csv, auto, ...")
    p.add_argument(
        "--no-split",
        action="store_true",
        help="train on every pair of --root (a pool whose test set lies elsewhere); no held-out evaluation",
    )
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
    p.add_argument("--save-weights", type=Path, help="write the final weights (and the size) here after training")
    p.add_argument("--weights", type=Path, help="with --predict: the weights written by --save-weights")
    p.add_argument("--predict", type=Path, help="predict the images of this folder instead of training")
    p.add_argument("--pred-out", type=Path, help="with --predict: folder for <image name>.mask.png")
    args = p.parse_args()
    if args.predict and not (args.weights and args.pred_out):
        p.error("--predict needs --weights and --pred-out")
    return args


def train_and_score(args: argparse.Namespace) -> dict:
    """Train for ``args.minutes`` on ``--root`` (its 80 % split, or all of it with --no-split);
    score the held-out 20 % unless --no-split; save the weights when asked."""
    torch.manual_seed(args.seed)
    pairs = discover(args.root, args.layout).pairs
    splits = {"train": list(pairs), "val": []} if args.no_split else make_splits(pairs, 0.2, 0.0, 42)
    t = time.perf_counter()
    tr = load(splits["train"], args.size)
    va = load(splits["val"], args.size) if splits["val"] else None
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
    net = make_net()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    result = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train_images": len(tr[0]),
        "val_images": len(va[0]) if va else 0,
        "load_s": round(load_s, 1),
    }
    result.update(train(net, loader, args.minutes, args.lr, dtype))
    if args.save_weights:
        args.save_weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": net.state_dict(), "size": args.size}, args.save_weights)
    if va:
        result.update(evaluate(net, *va))
    return result


def main() -> None:
    args = parse_args()
    if args.predict:
        result = predict_folder(args.weights, args.predict, args.pred_out, args.batch)
    else:
        result = train_and_score(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image_original"}, indent=1))


if __name__ == "__main__":
    main()
