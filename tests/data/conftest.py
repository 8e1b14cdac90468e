"""Tiny datasets in every layout, written into ``tmp_path`` (16-48 px, a few files each)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image


class TrainSizes(L.Callback):
    """Records the training input sizes seen in each epoch: ``seen[epoch] = {sizes}``."""

    def __init__(self) -> None:
        self.seen: dict[int, set[int]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, set()).add(batch["image"].shape[-1])


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own segapp cache folder (check results, stats, resized copies)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SEGAPP_CACHE_DIR", str(folder))
    return folder


def disk(size: int = 32, r: int = 8, cx: int | None = None) -> np.ndarray:
    """Bool disk mask of side ``size``."""
    yy, xx = np.mgrid[:size, :size]
    cx = size // 2 if cx is None else cx
    return (yy - size // 2) ** 2 + (xx - cx) ** 2 <= r * r


def rgb(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path, **kw)
    return path


def save_palette_mask(path: Path, mask: np.ndarray) -> Path:
    """Index 0 = black, index 1 = VOC red (128, 0, 0)."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_paired(root: Path, n: int = 10, size: int = 32) -> Path:
    """``n`` clean RGB PNG pairs in images/ + masks/ (0/255 masks, jpg images for odd i)."""
    for i in range(n):
        ext = "jpg" if i % 2 else "png"
        save(root / "images" / f"img{i:02d}.{ext}", rgb(i, size))
        save(root / "masks" / f"img{i:02d}.png", (disk(size, 4 + i % 5) * 255).astype(np.uint8))
    return root


@pytest.fixture
def paired_root(tmp_path) -> Path:
    return make_paired(tmp_path / "paired")


@pytest.fixture
def messy_root(tmp_path) -> Path:
    """Paired layout with every kind of file a real dataset throws at us.

    Pairs: rgb (1-bit mask), pal (palette mask), rgba (RGBA image, RGBA mask drawn in alpha),
    gray16 (16-bit gray image, 0/1 mask), jpg (JPEG mask with artefacts), dup (same bytes as
    rgb), broken (unreadable image). Unpaired: images/lonely.png, masks/orphan.png.
    """
    root = tmp_path / "messy"
    m = disk(32, 8)
    save(root / "images" / "rgb.png", rgb(1))
    save(root / "masks" / "rgb.png", m.astype(np.uint8) * 255, mode="1")
    save(root / "images" / "pal.png", rgb(2))
    save_palette_mask(root / "masks" / "pal.png", m)
    rgba = np.dstack([rgb(3), np.full((32, 32), 255, np.uint8)])
    save(root / "images" / "rgba.png", rgba)
    alpha_mask = np.zeros((32, 32, 4), np.uint8)
    alpha_mask[..., 3] = m * 255
    save(root / "masks" / "rgba.png", alpha_mask)
    gray16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    save(root / "images" / "gray16.png", gray16)
    save(root / "masks" / "gray16.png", m.astype(np.uint8))
    save(root / "images" / "jpg.png", rgb(4))
    save(root / "masks" / "jpg.jpg", m.astype(np.uint8) * 255, quality=60)
    (root / "images" / "dup.png").write_bytes((root / "images" / "rgb.png").read_bytes())
    save(root / "masks" / "dup.png", m.astype(np.uint8) * 255)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    save(root / "masks" / "broken.png", m.astype(np.uint8) * 255)
    save(root / "images" / "lonely.png", rgb(5))
    save(root / "masks" / "orphan.png", m.astype(np.uint8) * 255)
    return root


@pytest.fixture
def busi_root(tmp_path) -> Path:
    """BUSI-like suffix layout: class folders, ``name (i).png`` + ``name (i)_mask[_k].png``."""
    root = tmp_path / "busi"
    for cls in ("benign", "malignant"):
        for i in range(1, 4):
            save(root / cls / f"{cls} ({i}).png", rgb(i, 32)[..., 0])
            save(root / cls / f"{cls} ({i})_mask.png", (disk(32, 5, cx=10) * 255).astype(np.uint8))
    save(root / "benign" / "benign (1)_mask_1.png", (disk(32, 5, cx=22) * 255).astype(np.uint8))
    save(root / "normal" / "normal (1).png", rgb(9, 32)[..., 0])
    return root


@pytest.fixture
def isic_root(tmp_path) -> Path:
    root = tmp_path / "isic"
    for part, ids in (("Training", range(0, 6)), ("Validation", range(10, 12)), ("Test", range(20, 22))):
        for i in ids:
            save(root / f"ISIC2018_Task1-2_{part}_Input" / f"ISIC_{i:07d}.jpg", rgb(i))
            save(
                root / f"ISIC2018_Task1_{part}_GroundTruth" / f"ISIC_{i:07d}_segmentation.png",
                (disk() * 255).astype(np.uint8),
            )
    (root / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("CC")
    return root


@pytest.fixture
def csv_root(tmp_path) -> Path:
    """CSV manifest in ``csv/`` pointing at files in ``csv/files``; 12 rows, 5 patients, one missing file."""
    root = tmp_path / "csv"
    lines = ["image,mask,split,fold,group"]
    for i in range(12):
        save(root / "files" / f"p{i % 4}_{i}.png", rgb(i))
        save(root / "files" / f"p{i % 4}_{i}_seg.png", (disk() * 255).astype(np.uint8))
        split = "test" if i >= 10 else "train"
        group = f"patient{i % 3}" if split == "train" else f"patient{i}"  # a patient in one split and one fold
        lines.append(f"files/p{i % 4}_{i}.png,files/p{i % 4}_{i}_seg.png,{split},{i % 3},{group}")
    lines.append("files/ghost.png,files/ghost_seg.png,train,0,patient9")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root
