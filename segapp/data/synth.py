"""Synthetic dermoscopy-like lesion images: the built-in default dataset for the demo and tests.

Each image has skin-coloured, low-frequency textured background, vignetting, sensor noise and
often hairs; most contain one irregular, blurry-edged lesion of varied size, colour and
contrast (some are faint), and about 10 % contain none. The mix is chosen so that a
classical intensity threshold (Otsu) is fooled by vignetting, hairs and faint lesions while a
trained U-Net is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator (defaults are the shipped dataset)."""

    size: int = 128
    empty_fraction: float = 0.1
    hair_probability: float = 0.5
    noise_sigma: float = 0.03


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] made by up-sampling a coarse random grid."""
    coarse = rng.standard_normal((max(2, size // scale), max(2, size // scale))).astype(np.float32)
    up = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return up / (np.abs(up).max() + 1e-6)


def _lesion_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """Irregular blob: a polar radius with random harmonics, at a random place and scale."""
    r0 = rng.uniform(0.10, 0.32) * size
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 7):
        radius += rng.uniform(0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radius *= r0 / radius.mean()
    aspect = rng.uniform(0.7, 1.3)
    pts = np.stack([cx + radius * np.cos(theta) * aspect, cy + radius * np.sin(theta)], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _draw_hairs(rng: np.random.Generator, img: np.ndarray) -> None:
    size = img.shape[0]
    layer = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(2, 9)):
        p = rng.uniform(0, size, size=2)
        d = rng.standard_normal(2)
        d /= np.linalg.norm(d) + 1e-6
        bend = rng.uniform(-0.02, 0.02)
        pts = []
        for _ in range(int(rng.uniform(0.4, 1.2) * size)):
            pts.append(p.copy())
            d = d + bend * np.array([-d[1], d[0]])
            p = p + d
        cv2.polylines(layer, [np.round(np.array(pts)).astype(np.int32)], False, 1.0, thickness=int(rng.integers(1, 3)))
    dark = rng.uniform(0.05, 0.25)
    img[:] = img * (1 - layer[..., None]) + dark * layer[..., None]


def make_sample(rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One image (H x W x 3 uint8) and its mask (H x W bool)."""
    s = cfg.size
    skin = np.array([0.85, 0.65, 0.55]) * rng.uniform(0.75, 1.05) + rng.uniform(-0.06, 0.06, 3)
    tex = _smooth_noise(rng, s, 8)[..., None] * 0.06 + _smooth_noise(rng, s, 32)[..., None] * 0.04
    img = np.clip(skin[None, None, :] + tex, 0, 1).astype(np.float32)
    mask = np.zeros((s, s), bool)
    if rng.random() >= cfg.empty_fraction:
        mask = _lesion_mask(rng, s)
        contrast = rng.uniform(0.3, 0.8)  # some lesions are faint
        colour = np.array([0.45, 0.28, 0.18]) + rng.uniform(-0.12, 0.12, 3)
        edge = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=rng.uniform(0.8, 3.0))
        inner = 1 + 0.15 * _smooth_noise(rng, s, 6)  # pigment network-ish variation
        alpha = (contrast * edge * inner)[..., None]
        img = img * (1 - alpha) + colour[None, None, :] * alpha
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1) - 0.5
    vignette = 1 - rng.uniform(0.2, 0.7) * (xx**2 + yy**2) * 2.2
    img *= np.clip(vignette, 0, 1)[..., None]
    if rng.random() < cfg.hair_probability:
        _draw_hairs(rng, img)
    img += rng.normal(0, cfg.noise_sigma, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask


def generate(out: str | Path, n: int = 200, size: int = 128, seed: int = 0) -> Path:
    """Write ``n`` pairs as ``out/images/synth_XXXX.png`` and ``out/masks/synth_XXXX.png`` (0/255).

    Deterministic: the same ``seed`` gives byte-identical files.
    """
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 and size >= 16, got n={n}, size={size}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    cfg = SynthConfig(size=size)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, mask = make_sample(rng, cfg)
        name = f"synth_{i:04d}.png"
        Image.fromarray(img).save(out / "images" / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / name)
    return out
