"""Synthetic lesion images: the built-in default dataset for the demo and tests, and two other kinds.

``dermoscopy`` (the default; for a seed, the same files as before the other kinds existed): skin-coloured,
low-frequency textured background, vignetting, sensor noise and often hairs; most images contain
one irregular, blurry-edged lesion of varied size, colour and contrast (some are faint), and
about 10 % contain none. The mix is chosen so that a classical intensity threshold (Otsu) is
fooled by vignetting, hairs and faint lesions while a trained U-Net is not.

``dermoscopy_large``: the same skin, but every image holds one LARGE lesion (20-60 % of the
frame, sometimes cut by the frame edge) of low contrast, with wide blurry edges, two-tone
pigment and lighter regression patches, and hairs in most images (as in ISIC-style sets).

``ultrasound``: grey B-mode-like frames with small hypoechoic lesions
(:mod:`segapp.data.synth_ultrasound`), saved as 1-channel (mode ``L``) PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segapp.data.synth_ultrasound import UltrasoundConfig, make_ultrasound_sample

#: The generator kinds of :func:`generate` (``segapp-data synth --kind``).
KINDS: tuple[str, ...] = ("dermoscopy", "dermoscopy_large", "ultrasound")


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


def _draw_hairs(rng: np.random.Generator, img: np.ndarray, bend_scale: float = 1.0, width_scale: float = 1.0) -> None:
    """Dark, curved hairs over ``img``; ``bend_scale`` < 1 straightens them (the default is the demo's)."""
    size = img.shape[0]
    layer = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(2, 9)):
        p = rng.uniform(0, size, size=2)
        d = rng.standard_normal(2)
        d /= np.linalg.norm(d) + 1e-6
        bend = rng.uniform(-0.02, 0.02) * bend_scale
        pts = []
        for _ in range(int(rng.uniform(0.4, 1.2) * size)):
            pts.append(p.copy())
            d = d + bend * np.array([-d[1], d[0]])
            p = p + d
        width = max(1, round(int(rng.integers(1, 3)) * width_scale))
        cv2.polylines(layer, [np.round(np.array(pts)).astype(np.int32)], False, 1.0, thickness=width)
    dark = rng.uniform(0.05, 0.25)
    img[:] = img * (1 - layer[..., None]) + dark * layer[..., None]


def _skin(rng: np.random.Generator, s: int) -> np.ndarray:
    """Skin-coloured background with low-frequency texture, ``s x s x 3`` float32 in [0, 1]."""
    skin = np.array([0.85, 0.65, 0.55]) * rng.uniform(0.75, 1.05) + rng.uniform(-0.06, 0.06, 3)
    tex = _smooth_noise(rng, s, 8)[..., None] * 0.06 + _smooth_noise(rng, s, 32)[..., None] * 0.04
    return np.clip(skin[None, None, :] + tex, 0, 1).astype(np.float32)


def make_sample(rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One image (H x W x 3 uint8) and its mask (H x W bool)."""
    s = cfg.size
    img = _skin(rng, s)
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


def _large_lesion_mask(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """Irregular blob of about ``area`` (share of the frame) near the centre; may leave the frame."""
    r0 = np.sqrt(area * size * size / np.pi)
    cy, cx = rng.uniform(0.4, 0.6, size=2) * size
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 8):
        radius += rng.uniform(0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radius *= r0 / np.sqrt(np.mean(radius**2))  # area ~ pi * mean(r^2)
    aspect = rng.uniform(0.8, 1.25)
    pts = np.stack([cx + radius * np.cos(theta) * aspect, cy + radius * np.sin(theta) / aspect], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _large_lesion_alpha(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Opacity of a large lesion: low contrast, wide blurry edge, lighter regression patches."""
    s = mask.shape[0]
    edge = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=rng.uniform(2.0, 6.0) * s / 128)
    patches = np.clip(_smooth_noise(rng, s, 10), 0, 1) * rng.uniform(0.2, 0.6)  # regression: pigment fades
    return rng.uniform(0.3, 0.65) * edge * (1 + 0.25 * _smooth_noise(rng, s, 5)) * (1 - patches)


def make_large_sample(rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One ``dermoscopy_large`` image (H x W x 3 uint8) and its mask (H x W bool)."""
    s = cfg.size
    img = _skin(rng, s)
    mask = np.zeros((s, s), bool)
    if rng.random() >= cfg.empty_fraction:
        mask = _large_lesion_mask(rng, s, rng.uniform(0.2, 0.6))
        light = np.array([0.5, 0.33, 0.22]) + rng.uniform(-0.08, 0.08, 3)
        dark = np.array([0.28, 0.17, 0.11]) + rng.uniform(-0.06, 0.06, 3)
        mix = (0.5 + 0.5 * _smooth_noise(rng, s, 12))[..., None]  # two-tone pigment
        colour = light[None, None, :] * (1 - mix) + dark[None, None, :] * mix
        alpha = _large_lesion_alpha(rng, mask)[..., None]
        img = img * (1 - alpha) + colour * alpha
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1) - 0.5
    img *= np.clip(1 - rng.uniform(0.2, 0.7) * (xx**2 + yy**2) * 2.2, 0, 1)[..., None]
    if rng.random() < cfg.hair_probability:
        _draw_hairs(rng, img, bend_scale=0.2 * 128 / s, width_scale=s / 192)  # long, gently curved hairs
    img += rng.normal(0, cfg.noise_sigma, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask


def _sampler(kind: str, size: int):
    """``rng -> (image, mask)`` for a generator kind."""
    if kind == "dermoscopy":
        cfg = SynthConfig(size=size)
        return lambda rng: make_sample(rng, cfg)
    if kind == "dermoscopy_large":
        large = SynthConfig(size=size, empty_fraction=0.0, hair_probability=0.7)
        return lambda rng: make_large_sample(rng, large)
    if kind == "ultrasound":
        us = UltrasoundConfig(size=size)
        return lambda rng: make_ultrasound_sample(rng, us)
    raise ValueError(f"unknown synthetic kind {kind!r}; expected one of: {', '.join(KINDS)}")


def generate(out: str | Path, n: int = 200, size: int = 128, seed: int = 0, kind: str = "dermoscopy") -> Path:
    """Write ``n`` pairs as ``out/images/synth_XXXX.png`` and ``out/masks/synth_XXXX.png`` (0/255).

    ``kind`` is one of :data:`KINDS`; ``ultrasound`` images are 1-channel (mode ``L``), the
    others RGB. Deterministic: the same ``kind``, ``size`` and ``seed`` give byte-identical files
    (and the default kind the same files as before kinds existed).
    """
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 and size >= 16, got n={n}, size={size}")
    sample = _sampler(kind, size)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, mask = sample(rng)
        name = f"synth_{i:04d}.png"
        Image.fromarray(img).save(out / "images" / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / name)
    return out
