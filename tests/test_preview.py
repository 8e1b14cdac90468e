"""ValidationPreview: fixed validation images with true/predicted contours, per epoch, as PNG and in TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from segapp.app import cli
from segapp.eval.figures import GT_COLOR, PRED_COLOR
from segapp.lit import preview
from segapp.lit.preview import GAP, HEADER, ValidationPreview, choose_indices, preview_grid, preview_tile
from tests.conftest import dotted, tiny_fit_args


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _grid_shape(k: int, side: int) -> tuple[int, int, int]:
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    return HEADER + rows * side + (rows + 1) * GAP, cols * side + (cols + 1) * GAP, 3


def test_choice_spreads_over_lesion_sizes_and_shows_one_empty_image():
    areas = [50, 0, 10, 300, 0, 20, 40, 30, 200, 100]
    got = choose_indices(areas, 4)
    assert got == [1, 2, 0, 3]  # the first empty one, then smallest, middle and largest lesion
    assert choose_indices(areas, 4) == got  # deterministic
    assert choose_indices([5, 1, 3], 6) == [1, 2, 0]  # fewer images than k: all of them, by size
    assert choose_indices([0, 0, 0, 7], 3) == [0, 1, 3]  # too few lesions: empty ones fill the grid
    assert choose_indices([3, 1], 0) == []


def test_tile_draws_the_true_contour_green_where_the_mask_ends():
    image = np.zeros((64, 64, 3), np.uint8)
    gt = np.zeros((64, 64), bool)
    gt[30:50, 20:40] = True
    pred = np.zeros((64, 64), bool)
    pred[34:46, 24:36] = True
    tile = preview_tile(image, gt, pred, 0.5, side=64)
    assert tile.shape == (64, 64, 3)
    assert (tile[30, 20:40] == GT_COLOR).all() and (tile[30:50, 20] == GT_COLOR).all()  # top and left edges
    assert (tile[34, 24:36] == PRED_COLOR).all()
    assert (tile[40, 27:33] == 0).all() and (tile[55:, 45:] == 0).all()  # inside and outside stay the image
    assert tile[:10, :40].any()  # the Dice label in the top-left corner

    big = preview_tile(image, gt, pred, 0.5, side=128)  # a small image is enlarged before drawing
    assert big.shape == (128, 128, 3) and (big[60, 42:78] == GT_COLOR).all()


def test_grid_holds_k_tiles():
    tiles = [np.full((32, 32, 3), 200 + i, np.uint8) for i in range(5)]
    grid = preview_grid(tiles, "epoch 0")
    assert grid.shape == _grid_shape(5, 32)
    assert (grid[HEADER + GAP + 32 + GAP + 5, GAP + 32 + GAP + 5] == 204).all()  # 5th tile: row 2, column 2


def _trainer(**kw) -> SimpleNamespace:
    return SimpleNamespace(**{"sanity_checking": False, "is_global_zero": True, **kw})


def test_an_error_warns_once_and_switches_the_preview_off(monkeypatch, caplog):
    monkeypatch.delenv(preview.RAISE_ENV, raising=False)
    calls = []

    def broken(self, trainer, pl_module):
        calls.append(1)
        raise ValueError("boom")

    monkeypatch.setattr(ValidationPreview, "draw", broken)
    cb = ValidationPreview()
    with caplog.at_level(logging.WARNING, logger="segapp.lit.preview"):
        for _ in range(3):
            cb.on_validation_batch_end(_trainer(), None, None, None, 0)
    assert len(calls) == 1 and len(caplog.records) == 1 and "ValueError: boom" in caplog.text

    monkeypatch.setenv(preview.RAISE_ENV, "1")  # tests: bugs surface
    with pytest.raises(ValueError, match="boom"):
        ValidationPreview().on_validation_batch_end(_trainer(), None, None, None, 0)


@pytest.mark.parametrize(
    ("trainer", "batch_idx", "k"),
    [
        (_trainer(sanity_checking=True), 0, 6),
        (_trainer(is_global_zero=False), 0, 6),
        (_trainer(), 1, 6),
        (_trainer(), 0, 0),
    ],
    ids=["sanity-check", "not-rank-0", "later-batch", "k=0"],
)
def test_skipped_when_it_should_be(monkeypatch, trainer, batch_idx, k):
    monkeypatch.setattr(ValidationPreview, "draw", lambda *a: pytest.fail("drawn"))
    ValidationPreview(k=k).on_validation_batch_end(trainer, None, None, None, batch_idx)


class ForegroundDuringValidation(Callback):
    """Swaps other weights in for validation (as a weight-averaging callback does): all foreground."""

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.kept = pl_module.net.head.bias.detach().clone()
        pl_module.net.head.bias.data.fill_(1e4)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.net.head.bias.data.copy_(self.kept)


def test_fit_writes_a_grid_per_epoch_of_the_same_images_and_a_tensorboard_image(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv(preview.RAISE_ENV, "1")
    seen: list[list[int]] = []
    lowest: list[float] = []
    draw, predict = ValidationPreview.draw, ValidationPreview._predict

    def spy(self, trainer, pl_module):
        grid = draw(self, trainer, pl_module)
        seen.append(list(self.indices))
        return grid

    def predict_spy(self, trainer, pl_module):
        probs = predict(self, trainer, pl_module)
        lowest.append(float(probs.min()))
        return probs

    monkeypatch.setattr(ValidationPreview, "draw", spy)
    monkeypatch.setattr(ValidationPreview, "_predict", predict_spy)
    swap = "--trainer.callbacks+=tests.test_preview.ForegroundDuringValidation"  # listed before the preview
    app = cli(tiny_fit_args(synth_root, tmp_path, *dotted({"trainer.max_epochs": 2}), swap))

    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 6  # not in the sanity check; fixed
    assert min(lowest) > 0.99  # the weights validation used, not the ones swapped back at its end
    val = app.datamodule.dataset("val", train=False)
    areas = [float(val[i]["mask"].sum()) for i in seen[0]]
    assert areas == sorted(areas) and areas[-1] == max(float(val[i]["mask"].sum()) for i in range(len(val)))
    folder = tmp_path / "preview"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_000.png", "epoch_001.png", "latest.png"]
    assert _read_rgb(folder / "epoch_000.png").shape == _grid_shape(6, 160)
    assert (folder / "latest.png").read_bytes() == (folder / "epoch_001.png").read_bytes()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("val/preview")
    assert len(images) == 2 and (images[0].height, images[0].width) == _grid_shape(6, 160)[:2]


def test_a_user_preview_with_k_0_switches_it_off(synth_root, tmp_path):
    extra = ["--trainer.callbacks+=segapp.lit.preview.ValidationPreview", "--trainer.callbacks.k=0"]
    app = cli(tiny_fit_args(synth_root, tmp_path, *dotted({"trainer.max_epochs": 1}), *extra))
    previews = [c for c in app.trainer.callbacks if isinstance(c, ValidationPreview)]
    assert [c.k for c in previews] == [0] and not (tmp_path / "preview").exists()
