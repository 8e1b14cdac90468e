import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from segapp.data.synth import generate
from segapp.io import read_image, read_mask
from segapp.lit.metrics import per_image_dice


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_per_seed(tmp_path):
    a = generate(tmp_path / "a", n=6, size=48, seed=3)
    b = generate(tmp_path / "b", n=6, size=48, seed=3)
    c = generate(tmp_path / "c", n=6, size=48, seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_masks_are_binary_and_some_images_have_no_lesion(synth_root):
    masks = [np.asarray(Image.open(p)) for p in sorted((synth_root / "masks").glob("*.png"))]
    assert len(masks) == 96
    assert all(set(np.unique(m)) <= {0, 255} for m in masks)
    empty = sum(m.max() == 0 for m in masks)
    assert 1 <= empty <= 30
    assert read_image(next((synth_root / "images").glob("*.png"))).shape == (64, 64, 3)


def otsu_dice(root) -> float:
    scores = []
    for p in sorted((root / "images").glob("*.png")):
        gray = cv2.cvtColor(read_image(p), cv2.COLOR_RGB2GRAY)
        _, th = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        gt = read_mask(root / "masks" / p.name)
        import torch

        scores.append(float(per_image_dice(torch.from_numpy(th > 0)[None], torch.from_numpy(gt)[None])[0]))
    return float(np.mean(scores))


@pytest.mark.slow
def test_otsu_baseline_scores_clearly_below_the_trained_model(tiny_ckpt, holdout_root):
    import torch

    from segapp.inference import Predictor

    predictor = Predictor.from_checkpoint(tiny_ckpt)
    model_scores = []
    for p in sorted((holdout_root / "images").glob("*.png")):
        pred = predictor.predict_mask(read_image(p))
        gt = read_mask(holdout_root / "masks" / p.name)
        model_scores.append(float(per_image_dice(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])[0]))
    model, otsu = float(np.mean(model_scores)), otsu_dice(holdout_root)
    assert otsu < 0.5, f"Otsu baseline too good ({otsu:.3f}): the synthetic data is too easy"
    assert model > otsu + 0.2, f"trained model {model:.3f} vs Otsu {otsu:.3f}"
