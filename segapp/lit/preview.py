"""``ValidationPreview``: while a model trains, show what it does on a few fixed validation images.

Every validation epoch the same ``k`` validation images (chosen once, spread over lesion sizes,
an empty one included when the split has one) are drawn with the true contour (green), the
predicted contour (magenta) and each image's Dice, in one grid:

- ``<default_root_dir>/preview/epoch_007.png`` per epoch and ``preview/latest.png`` (both
  written atomically, so a viewer never reads half a file);
- the image ``val/preview`` of the run's TensorBoard logger (step = global step).

The model runs on just those ``k`` images at the end of the first validation batch: the weights
are then exactly the ones validation scores (also an averaged model that a weight-averaging
callback swaps in for validation, whatever the callbacks' order). Sanity checking is skipped;
under DDP only rank 0 draws and writes. A failure never stops training: the preview logs one
warning and switches itself off (with ``SEGAPP_PREVIEW_RAISE=1``, as in the tests, it raises).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from segapp.errors import check_range
from segapp.eval.figures import contour_overlay, png_bytes
from segapp.io import atomic_write
from segapp.lit.metrics import per_image_dice

log = logging.getLogger(__name__)

RAISE_ENV = "SEGAPP_PREVIEW_RAISE"  # "1": errors propagate (tests), instead of one warning
GAP = 4  # pixels between tiles
HEADER = 20  # pixels of the caption strip above the tiles
BACKGROUND = 32
TEXT = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def spread(items: Sequence, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (first and last included), or all of them."""
    if n <= 0:
        return []
    if len(items) <= n:
        return list(items)
    return [items[j] for j in np.linspace(0, len(items) - 1, n).round().astype(int)]


def choose_indices(areas: Sequence[float], k: int) -> list[int]:
    """``k`` indices spread over lesion sizes, smallest lesion first.

    Indices are sorted by true lesion area (ties by index, so the choice is deterministic); one
    image without a lesion comes first when there is one (does the model stay quiet there?), the
    rest are evenly spaced over the images with a lesion, from the smallest to the largest.
    """
    order = sorted(range(len(areas)), key=lambda i: (areas[i], i))
    empty = [i for i in order if areas[i] <= 0]
    lesion = [i for i in order if areas[i] > 0]
    picks = spread(lesion, k - (1 if empty else 0))
    return empty[: max(k - len(picks), 0)] + picks


def _label(rgb: np.ndarray, text: str, origin: tuple[int, int] = (0, 0)) -> None:
    """Write ``text`` in white on a black box with its top-left corner at ``origin`` (in place)."""
    (w, h), base = cv2.getTextSize(text, FONT, 0.4, 1)
    x, y = origin
    cv2.rectangle(rgb, (x, y), (x + w + 4, y + h + base + 3), (0, 0, 0), -1)
    cv2.putText(rgb, text, (x + 2, y + h + 2), FONT, 0.4, TEXT, 1, cv2.LINE_AA)


def _at_least(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, side: int):
    """Enlarge a small image (bilinear) and its masks (nearest) so the longest side is ``side``."""
    h, w = gt.shape
    if max(h, w) >= side:
        return rgb, gt, pred
    size = (round(w * side / max(h, w)), round(h * side / max(h, w)))
    big = [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool) for m in (gt, pred)]
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), big[0], big[1]


def preview_tile(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, dice: float, side: int) -> np.ndarray:
    """One ``side x side`` tile: the uint8 image with the true (green) and predicted (magenta)
    contours of :func:`segapp.eval.figures.contour_overlay` and ``Dice 0.87`` in the top-left corner."""
    rgb, gt, pred = _at_least(rgb, gt, pred, side)
    drawn = contour_overlay(rgb, gt, pred, max_side=side)
    tile = np.full((side, side, 3), BACKGROUND, np.uint8)
    tile[: drawn.shape[0], : drawn.shape[1]] = drawn
    _label(tile, f"Dice {dice:.2f}")
    return tile


def preview_grid(tiles: Sequence[np.ndarray], caption: str) -> np.ndarray:
    """Square tiles in a ``ceil(sqrt(k))``-column grid under a caption strip (uint8 RGB)."""
    side = tiles[0].shape[0]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((HEADER + rows * side + (rows + 1) * GAP, cols * side + (cols + 1) * GAP, 3), BACKGROUND, np.uint8)
    for n, tile in enumerate(tiles):
        y = HEADER + GAP + (n // cols) * (side + GAP)
        x = GAP + (n % cols) * (side + GAP)
        grid[y : y + side, x : x + side] = tile
    _label(grid, caption, (GAP, 1))
    return grid


def _display(x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """Network inputs ``(N, C, H, W)`` back to uint8 ``(N, H, W, C)`` pictures (undo the normalisation)."""
    x = x.float()
    if mean is not None and std is not None:
        x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    else:  # unknown statistics: stretch each image to its own range
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _val_dataset(trainer: L.Trainer) -> Any:
    """The dataset of the (first) validation loader: the whole split, also under DDP."""
    loaders = trainer.val_dataloaders
    if isinstance(loaders, dict):
        loaders = next(iter(loaders.values()))
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0]
    return loaders.dataset


class ValidationPreview(Callback):
    """Every validation epoch, draw ``k`` fixed validation images with their true and predicted
    contours: ``<default_root_dir>/<folder>/epoch_NNN.png``, ``latest.png`` and TensorBoard
    ``val/preview``.

    ``segapp fit`` adds one with the defaults; to change them, add it yourself
    (``--trainer.callbacks+=segapp.lit.preview.ValidationPreview --trainer.callbacks.k=4``);
    ``k=0`` switches the preview off.

    Args:
        k: Validation images shown (0: none).
        tile: Side of each tile in pixels (smaller images are enlarged, larger ones shrunk).
        folder: Sub-folder of ``trainer.default_root_dir`` for the PNG files.
    """

    def __init__(self, k: int = 6, tile: int = 160, folder: str = "preview") -> None:
        check_range("ValidationPreview.k", k, 0)
        check_range("ValidationPreview.tile", tile, 32)
        self.k, self.tile, self.folder = k, tile, folder
        self.indices: list[int] | None = None  # into the validation dataset, fixed for the run
        self._inputs: Tensor | None = None
        self._pictures: np.ndarray | None = None
        self._masks: np.ndarray | None = None
        self._off = k == 0

    def state_dict(self) -> dict[str, Any]:
        """The chosen indices travel in checkpoints, so a resumed run shows the same images."""
        return {"indices": self.indices}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.indices = state_dict.get("indices")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or self._off or trainer.sanity_checking or not trainer.is_global_zero:
            return
        try:
            self.draw(trainer, pl_module)
        except Exception as e:
            if os.environ.get(RAISE_ENV) == "1":
                raise
            self._off = True
            log.warning("validation preview switched off for this run after an error (%s: %s)", type(e).__name__, e)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> np.ndarray:
        """Predict the chosen images with the current weights, write and log the grid; returns it."""
        if self._inputs is None:
            self._prepare(_val_dataset(trainer), getattr(pl_module, "preprocess_spec", None))
        threshold = float(pl_module.hparams.get("threshold", 0.5))
        pred = self._predict(trainer, pl_module) > threshold
        dice = per_image_dice(torch.from_numpy(pred), torch.from_numpy(self._masks)).tolist()
        tiles = [
            preview_tile(pic, gt, p, d, self.tile)
            for pic, gt, p, d in zip(self._pictures, self._masks, pred, dice, strict=True)
        ]
        caption = f"epoch {trainer.current_epoch}: true green, predicted magenta (> {threshold:.2f})"
        grid = preview_grid(tiles, caption)
        self._write(Path(trainer.default_root_dir) / self.folder, trainer.current_epoch, grid)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/preview", grid, global_step=trainer.global_step, dataformats="HWC")
        return grid

    def _prepare(self, dataset: Any, spec: Any) -> None:
        """Choose the images once (unless a checkpoint brought the choice) and keep their tensors."""
        n = len(dataset)
        if self.indices is None or any(i >= n for i in self.indices):
            areas = [float(dataset[i]["mask"].sum()) for i in range(n)]
            self.indices = choose_indices(areas, self.k)
        if not self.indices:
            raise RuntimeError("the validation split is empty")
        items = [dataset[i] for i in self.indices]
        self._inputs = torch.stack([it["image"] for it in items]).clone()
        self._masks = torch.stack([it["mask"][0] > 0.5 for it in items]).numpy()
        spec = spec or getattr(dataset, "spec", None)
        self._pictures = _display(self._inputs, getattr(spec, "mean", None), getattr(spec, "std", None))

    @torch.no_grad()
    def _predict(self, trainer: L.Trainer, pl_module: L.LightningModule) -> np.ndarray:
        """Probabilities ``(k, H, W)`` from the net in its current (evaluation) state.

        The plain net is called, not a ``torch.compile`` wrapper (a new batch shape would recompile).
        """
        net = getattr(pl_module, "net", None)
        net = pl_module if net is None else net
        precision = trainer.precision_plugin
        x = precision.convert_input(self._inputs.to(pl_module.device))
        with precision.forward_context():
            logits = net(x)
        return torch.sigmoid(logits.float())[:, 0].cpu().numpy()

    @staticmethod
    def _write(folder: Path, epoch: int, grid: np.ndarray) -> None:
        """``epoch_NNN.png`` and ``latest.png``, each replaced atomically."""
        png = png_bytes(grid)
        for name in (f"epoch_{epoch:03d}.png", "latest.png"):
            with atomic_write(folder / name) as tmp:
                tmp.write_bytes(png)
