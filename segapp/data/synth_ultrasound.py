"""Synthetic ultrasound-like lesion images (``segapp-data synth --kind ultrasound``).

A grey B-mode-like frame: a fan-shaped field of view from a probe at the top (black outside),
tissue with layered low-frequency echogenicity, a few bright fascia-like lines and faint dark
look-alikes (not lesions), depth attenuation, and fully developed speckle (the magnitude of a
spatially correlated complex Gaussian field: Rayleigh-distributed, multiplicative). Most frames
hold one SMALL hypoechoic (darker) lesion, median about 1.3 % of the frame, often 0.5-3 %, some
with posterior acoustic shadowing (a dark band below it along the beam) or enhancement (a bright
one); about 10 % hold none. The small lesions and the dark look-alikes are the point: a
planner tuned on large polyps or skin lesions picks too low a resolution here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class UltrasoundConfig:
    """Knobs of the ultrasound-like generator."""

    size: int = 256
    empty_fraction: float = 0.1
    area_median: float = 0.013  # lesion area as a share of the frame: log-normal median ...
    area_sigma: float = 0.6  # ... and log-sd, clipped to [area_min, area_max]
    area_min: float = 0.003
    area_max: float = 0.08
    shadow_probability: float = 0.3
    enhancement_probability: float = 0.25
    distractors: tuple[int, int] = (0, 3)


@dataclass(frozen=True)
class Fan:
    """The field of view: apex (probe) above the top edge, radii and half-angle, in pixels/radians."""

    apex_x: float
    apex_y: float
    r_near: float
    r_far: float
    half_angle: float

    def polar(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Radius and beam angle (0 = straight down) of every pixel of an ``s x s`` frame."""
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        return np.hypot(xx - self.apex_x, yy - self.apex_y), np.arctan2(xx - self.apex_x, yy - self.apex_y)

    def inside(self, s: int) -> np.ndarray:
        """Boolean field-of-view mask."""
        r, th = self.polar(s)
        return (r >= self.r_near) & (r <= self.r_far) & (np.abs(th) <= self.half_angle)


def _smooth(rng: np.random.Generator, s: int, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [-1, 1] from a coarse ``rows x cols`` grid (anisotropic layers)."""
    coarse = rng.standard_normal((max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    up = cv2.resize(coarse, (s, s), interpolation=cv2.INTER_CUBIC)
    return up / (np.abs(up).max() + 1e-6)


def _fan(rng: np.random.Generator, s: int) -> Fan:
    """A sector probe's field of view, varied per frame."""
    return Fan(
        apex_x=s * rng.uniform(0.45, 0.55),
        apex_y=-s * rng.uniform(0.05, 0.2),
        r_near=s * rng.uniform(0.15, 0.3),
        r_far=s * rng.uniform(1.0, 1.15),
        half_angle=np.deg2rad(rng.uniform(32, 42)),
    )


def _speckle(rng: np.random.Generator, s: int) -> np.ndarray:
    """Multiplicative speckle with mean 1, correlated over ~1-2 px axially and ~2-3 px laterally.

    Each look is the magnitude of a blurred complex Gaussian field (Rayleigh); two looks are
    compounded (the root of their mean intensity: Nakagami, m = 2), as spatial compounding does
    on a scanner, which softens the black pits of a single look.
    """
    sx, sy = rng.uniform(1.0, 1.6) * s / 256 + 0.6, rng.uniform(0.6, 1.0) * s / 256 + 0.4
    looks = [cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), sx, sigmaY=sy) for _ in range(4)]
    amp = np.sqrt(sum(x * x for x in looks) / 2)
    return amp / amp.mean()


def _tissue(rng: np.random.Generator, s: int, r: np.ndarray, fan: Fan) -> np.ndarray:
    """Mean echogenicity: layered background, depth attenuation, bright fascia lines."""
    base = rng.uniform(0.35, 0.5)
    layers = 0.12 * _smooth(rng, s, (s // 24, s // 64)) + 0.06 * _smooth(rng, s, (s // 10, s // 10))
    depth = (r - fan.r_near) / (fan.r_far - fan.r_near)
    tissue = base * (1 + layers) * (1 - rng.uniform(0.15, 0.4) * np.clip(depth, 0, 1))
    lines = np.zeros((s, s), np.float32)
    for _ in range(rng.integers(1, 4)):
        y0 = rng.uniform(0.25, 0.8) * s
        xs = np.arange(0, s, 4, dtype=np.float32)
        ys = y0 + rng.uniform(-0.06, 0.06) * s * np.sin(xs / s * np.pi * rng.uniform(0.5, 2) + rng.uniform(0, 6))
        pts = np.stack([xs, ys], 1).round().astype(np.int32)
        cv2.polylines(lines, [pts], False, float(rng.uniform(0.3, 0.7)), thickness=max(1, s // 128))
    return tissue + cv2.GaussianBlur(lines, (0, 0), max(0.6, s / 256))


def _blob(rng: np.random.Generator, s: int, area: float, centre: tuple[float, float]) -> np.ndarray:
    """An irregular, slightly wider-than-tall blob of ``area`` (share of the frame) at ``centre``."""
    r0 = np.sqrt(area * s * s / np.pi)
    theta = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.3 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(1.0, 1.6)  # wider than tall, as most benign masses
    radius *= r0 / np.sqrt(np.mean(radius**2))  # area ~ pi * mean(r^2)
    cx, cy = centre
    pts = np.stack([cx + radius * np.cos(theta) * np.sqrt(aspect), cy + radius * np.sin(theta) / np.sqrt(aspect)], 1)
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _place(rng: np.random.Generator, fan: Fan, s: int, margin: float) -> tuple[float, float]:
    """A point inside the field of view and the frame, ``margin`` px from the fan's and frame's edges."""
    for _ in range(100):
        r = rng.uniform(fan.r_near + margin, min(fan.r_far, s - fan.apex_y) - margin)
        th = rng.uniform(-fan.half_angle, fan.half_angle) * 0.8
        x, y = fan.apex_x + r * np.sin(th), fan.apex_y + r * np.cos(th)
        if margin <= x <= s - margin and margin <= y <= s - margin:
            return float(x), float(y)
    return s / 2, s / 2


def _behind(mask: np.ndarray, r: np.ndarray, th: np.ndarray, bins: int = 512) -> np.ndarray:
    """Pixels on the far side of ``mask`` along the beam (same angle, larger radius than its far edge)."""
    idx = np.clip(((th + np.pi / 2) / np.pi * bins).astype(np.int32), 0, bins - 1)
    far = np.full(bins, np.inf, np.float32)
    np.minimum.at(far, idx[mask], -r[mask])  # -max radius per angle bin
    far = -far
    return np.isfinite(far[idx]) & (r > far[idx])


def _area_fraction(rng: np.random.Generator, cfg: UltrasoundConfig) -> float:
    a = cfg.area_median * np.exp(cfg.area_sigma * rng.standard_normal())
    return float(np.clip(a, cfg.area_min, cfg.area_max))


def _darken(rng: np.random.Generator, tissue: np.ndarray, region: np.ndarray, factor: float, blur: float) -> None:
    """Multiply ``tissue`` by ``factor`` inside ``region``, with a soft edge of ``blur`` px."""
    soft = cv2.GaussianBlur(region.astype(np.float32), (0, 0), blur)
    inner = 1 + 0.15 * _smooth(rng, tissue.shape[0], (8, 8))  # some internal echoes
    tissue *= 1 - soft * (1 - factor * inner)


def _lesion(rng: np.random.Generator, cfg: UltrasoundConfig, fan: Fan, tissue, r, th) -> np.ndarray:
    """Draw one hypoechoic lesion (and its posterior shadow or enhancement) into ``tissue``; its mask."""
    s = cfg.size
    area = _area_fraction(rng, cfg)
    mask = _blob(rng, s, area, _place(rng, fan, s, margin=np.sqrt(area) * s))
    _darken(rng, tissue, mask, rng.uniform(0.1, 0.45), rng.uniform(0.5, 1.5) * s / 256 + 0.3)
    u = rng.random()
    if u < cfg.shadow_probability + cfg.enhancement_probability:
        gain = rng.uniform(0.35, 0.7) if u < cfg.shadow_probability else rng.uniform(1.25, 1.6)
        tail = _behind(mask, r, th) & (r < r[mask].max() + rng.uniform(0.2, 0.5) * s)
        soft = cv2.GaussianBlur(tail.astype(np.float32), (0, 0), 1.5 * s / 256 + 0.5)
        tissue *= 1 + soft * (gain - 1)
    return mask


def make_ultrasound_sample(rng: np.random.Generator, cfg: UltrasoundConfig = UltrasoundConfig()):
    """One grey image (``H x W`` uint8) and its lesion mask (``H x W`` bool)."""
    s = cfg.size
    fan = _fan(rng, s)
    r, th = fan.polar(s)
    tissue = _tissue(rng, s, r, fan)
    for _ in range(rng.integers(*cfg.distractors)):  # faint dark look-alikes: fat lobules, vessels
        look = _blob(rng, s, rng.uniform(0.005, 0.04), _place(rng, fan, s, margin=0.05 * s))
        _darken(rng, tissue, look, rng.uniform(0.65, 0.85), rng.uniform(1.5, 3.0) * s / 256)
    mask = np.zeros((s, s), bool)
    if rng.random() >= cfg.empty_fraction:
        mask = _lesion(rng, cfg, fan, tissue, r, th)
    img = tissue * _speckle(rng, s)
    img = np.log1p(8 * np.clip(img, 0, None)) / np.log1p(8 * 1.4)  # log compression of the envelope
    inside = fan.inside(s)
    edge = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.7)
    img = img * edge + rng.normal(0, 0.01, (s, s))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask & inside
