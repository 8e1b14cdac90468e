"""The mask value rule: decided once per dataset from the values of all its masks, then applied.

Masks come in three flavours, and one file alone cannot always tell which: a mask whose values
are ``{0, 1}`` may be a binary mask or an empty grey mask with JPEG noise; ``{0, 1, 2}`` is a
label map whose lesions must not vanish. So the rule is decided from the histogram of values
over *all* masks of a dataset (:func:`decide_rule`) and every mask of it is read with that one
rule (:func:`read_masks`), in training, ``segapp-data check`` and ``segapp-eval --gt`` alike:

- ``binary``: every value is 0 or 1 (0/1 masks, possibly mixed with 0/255 ones); foreground is
  any non-zero value.
- ``labels``: small integer labels (non-zero values in ``1..MAX_LABEL``, plus 255 at most) and
  nothing in the grey range; foreground is any non-zero label, or ``foreground_labels``.
- ``grey``: anything else, and every dataset with a JPEG mask; foreground is a value above
  ``threshold`` on the 0-255 scale (default 127), so compression noise never counts.

Pixel values are those of :func:`segapp.io.images.mask_values` without its per-image scaling
of 0/1 files: colour masks use the max over RGB, alpha-only masks their alpha, 16-bit masks
above 255 are divided by 257.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from segapp.io.errors import ReadError
from segapp.io.images import LOSSY_EXTENSIONS, mask_values, read_image
from segapp.io.limits import ReadLimits

MaskKind = Literal["binary", "labels", "grey"]
MAX_LABEL = 20
"""Largest value that still counts as a small integer label (above it, values are grey levels)."""


@dataclass(frozen=True)
class MaskRule:
    """How mask pixel values become foreground; one per dataset.

    Attributes:
        kind: ``binary`` (non-zero), ``labels`` (non-zero, or ``labels``) or ``grey``
            (above ``threshold``).
        threshold: Grey threshold on the 0-255 scale (used by ``grey`` only).
        labels: ``labels`` only: the label values that are foreground; ``None`` = any non-zero.
    """

    kind: MaskKind = "grey"
    threshold: float = 127.0
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(MaskKind):  # e.g. a hand-edited cache or checkpoint
            raise ValueError(f"mask rule kind: expected one of {', '.join(get_args(MaskKind))}, got {self.kind!r}")

    def foreground(self, values: np.ndarray) -> np.ndarray:
        """Bool foreground of ``values`` (``H x W`` pixel values, see :func:`mask_pixels`)."""
        if self.kind == "grey":
            return values > self.threshold
        if self.kind == "labels" and self.labels is not None:
            return np.isin(np.rint(values), np.asarray(self.labels, np.float64))
        return values >= 0.5

    def describe(self) -> str:
        """One line for reports and logs."""
        if self.kind == "grey":
            return f"grey 0-255, foreground above {self.threshold:g} (data.mask_threshold)"
        if self.kind == "binary":
            return "binary 0/1, foreground = non-zero"
        which = "any non-zero label" if self.labels is None else f"labels {list(self.labels)} (data.foreground_labels)"
        return f"label map, foreground = {which}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "threshold": float(self.threshold),
            "labels": None if self.labels is None else list(self.labels),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> MaskRule:
        labels = d.get("labels")
        return cls(
            kind=d["kind"],
            threshold=float(d.get("threshold", 127.0)),
            labels=None if labels is None else tuple(int(v) for v in labels),
        )


@dataclass
class MaskStats:
    """Value histogram of one or many masks (what :func:`decide_rule` needs).

    Attributes:
        hist: Pixel counts per value 0..255 (values rounded and clipped).
        top: Largest pixel value (exact, before rounding).
        files: Number of mask files counted.
        lossy: How many of them are JPEG files.
    """

    hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    top: float = 0.0
    files: int = 0
    lossy: int = 0

    def add(self, other: MaskStats) -> MaskStats:
        """Accumulate ``other`` into this one (returns ``self``)."""
        self.hist = self.hist + other.hist
        self.top = max(self.top, other.top)
        self.files += other.files
        self.lossy += other.lossy
        return self

    def present(self) -> list[int]:
        """The values that occur, ascending."""
        return [int(v) for v in np.flatnonzero(self.hist)]

    def to_dict(self) -> dict:
        return {
            "hist": {str(v): int(self.hist[v]) for v in self.present()},
            "top": self.top,
            "files": self.files,
            "lossy": self.lossy,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> MaskStats:
        hist = np.zeros(256, np.int64)
        for v, n in d["hist"].items():
            hist[int(v)] = int(n)
        return cls(hist=hist, top=float(d["top"]), files=int(d["files"]), lossy=int(d["lossy"]))


def is_lossy(path: str | Path) -> bool:
    """True for JPEG files, whose small values are compression noise."""
    return Path(path).suffix.lower() in LOSSY_EXTENSIONS


def mask_pixels(path: str | Path, limits: ReadLimits | None = None) -> np.ndarray:
    """Pixel values of one mask file as float32 ``H x W`` on the 0-255 scale, not yet binarised.

    A TIFF mask keeps its stored sample values (no MinIsWhite inversion, no palette applied:
    :func:`segapp.io.formats.raster.read_raster` with ``samples``), as it was always read.

    Raises:
        ReadError: when the file cannot be decoded or is over the size ``limits``.
    """
    from segapp.io.formats.common import TIFF_EXTENSIONS
    from segapp.io.formats.raster import read_raster

    if Path(path).suffix.lower() in TIFF_EXTENSIONS:
        return mask_values(read_raster(Path(path), limits, samples=True).frames[0])
    return mask_values(read_image(path, limits))


def value_stats(values: np.ndarray, lossy: bool = False) -> MaskStats:
    """:class:`MaskStats` of one mask's pixel values."""
    ints = np.clip(np.rint(values), 0, 255).astype(np.int64).ravel()
    top = float(values.max()) if values.size else 0.0
    return MaskStats(hist=np.bincount(ints, minlength=256), top=top, files=1, lossy=int(lossy))


def scan_masks(paths: Iterable[str | Path]) -> MaskStats:
    """Read mask files and return the histogram of their values (unreadable files raise)."""
    total = MaskStats()
    for p in paths:
        total.add(value_stats(mask_pixels(p), is_lossy(p)))
    return total


def decide_rule(stats: MaskStats, threshold: float = 127.0, foreground_labels: Sequence[int] | None = None) -> MaskRule:
    """The dataset's mask rule from the histogram of all its masks (see the module docstring).

    Args:
        stats: Values over every mask of the dataset (:func:`scan_masks`, or summed per file).
        threshold: Grey threshold, 0-255 scale (``data.mask_threshold``).
        foreground_labels: Label values that are foreground; setting it makes the rule ``labels``.

    Raises:
        ValueError: on a ``foreground_labels`` value outside 0..255 or an empty list.
    """
    if foreground_labels is not None:
        labels = tuple(sorted({int(v) for v in foreground_labels}))
        if not labels or labels[0] < 1 or labels[-1] > 255:
            raise ValueError(
                f"data.foreground_labels must list label values in 1..255, got {list(foreground_labels)}; fix: "
                f"e.g. [1, 2], or null for any non-zero label"
            )
        found = set(stats.present())
        if stats.files and stats.lossy:
            raise ValueError(
                f"data.foreground_labels {list(labels)}: expected lossless label-map masks, got JPEG masks, whose "
                "compression changes label values; fix: save the masks as PNG, or leave foreground_labels null"
            )
        if stats.files and not found & set(labels):
            raise ValueError(
                f"data.foreground_labels {list(labels)}: none of these labels occurs in the masks (values found "
                f"{values_text(stats)}); fix: list labels that are in the masks, or null for any non-zero label"
            )
        return MaskRule("labels", float(threshold), labels)
    grey = MaskRule("grey", float(threshold))
    present = set(stats.present())
    if stats.lossy or present <= {0, 255}:
        return grey
    if present <= {0, 1, 255}:
        return MaskRule("binary", float(threshold))
    if all(v <= MAX_LABEL or v == 255 for v in present):
        return MaskRule("labels", float(threshold))
    return grey


LOSSY_NOISE_MAX = 64
"""Largest value a JPEG's compression noise gives an empty or 0/1 mask (it stays far below this)."""


def misfit_reason(stats: MaskStats, rule: MaskRule) -> str | None:
    """Why one mask (its own ``stats``) does not fit the dataset's ``rule``, or ``None`` if it does.

    The silent cases are masks of a ``grey`` dataset with values, yet nothing above its threshold:
    a lossless mask whose values are all small (0/1 or labels), or one whose lesion value lies at or
    below the threshold (``{0, 100}`` beside ``{0, 255}`` masks; VOC red read as grey is 38). Read
    with the dataset's rule, each is empty: a lesion image trained as "no lesion".
    """
    if rule.kind != "grey" or has_foreground(stats, rule):
        return None
    if not stats.lossy and 0 < stats.top <= MAX_LABEL:
        return (
            f"values {values_text(stats)} look like a 0/1 or label mask, but the dataset's masks are grey; read "
            f"as empty at threshold {rule.threshold:g}"
        )
    if stats.top > (LOSSY_NOISE_MAX if stats.lossy else 0):
        return (
            f"values {values_text(stats)}: its lesion value is at or below the dataset's grey threshold "
            f"{rule.threshold:g} (data.mask_threshold), so it reads as empty"
        )
    return None


def has_foreground(stats: MaskStats, rule: MaskRule) -> bool:
    """Whether a mask with these values has any foreground under ``rule`` (exact, no re-read)."""
    if rule.kind == "grey":
        return stats.top > rule.threshold
    if rule.kind == "labels" and rule.labels is not None:
        return bool(stats.hist[list(rule.labels)].sum())
    return stats.top >= 0.5


def foreground_count(stats: MaskStats, rule: MaskRule) -> int:
    """Pixels of a mask with these values that are foreground under ``rule`` (from the histogram,
    no re-read; grey values are rounded to integers first, so a value in (t, t + 0.5) of a
    fractional threshold ``t`` may count differently from :meth:`MaskRule.foreground`)."""
    if rule.kind == "grey":
        return int(stats.hist[int(np.floor(rule.threshold)) + 1 :].sum())
    if rule.kind == "labels" and rule.labels is not None:
        return int(stats.hist[list(rule.labels)].sum())
    return int(stats.hist[1:].sum())


def values_text(stats: MaskStats, limit: int = 12) -> str:
    """``{0, 1, 2}``, or ``{0, 1, ..., 255} (200 distinct)`` when there are many values."""
    vals = stats.present()
    if len(vals) <= limit:
        return "{" + ", ".join(map(str, vals)) + "}"
    head = ", ".join(map(str, vals[: limit // 2]))
    return "{" + head + ", ..., " + ", ".join(map(str, vals[-2:])) + "}" + f" ({len(vals)} distinct)"


def read_masks(paths: Sequence[str | Path], rule: MaskRule, limits: ReadLimits | None = None) -> np.ndarray:
    """Read the mask file(s) of one image with the dataset's rule and OR them (bool ``H x W``).

    Raises:
        ReadError: when a file cannot be decoded, or its size differs from the first mask's.
    """
    if not paths:
        raise ValueError("read_masks needs at least one mask file")
    mask = rule.foreground(mask_pixels(paths[0], limits))
    for p in paths[1:]:
        extra = rule.foreground(mask_pixels(p, limits))
        if extra.shape != mask.shape:
            raise ReadError(
                p,
                f"mask size {extra.shape[1]}x{extra.shape[0]} differs from {paths[0]} "
                f"({mask.shape[1]}x{mask.shape[0]}); masks of one image are OR-ed and must match",
            )
        mask = mask | extra
    return mask


def read_mask(path: str | Path, threshold: float = 127, limits: ReadLimits | None = None) -> np.ndarray:
    """Read one mask on its own as an ``H x W`` bool array: the value rule is decided from this
    file alone (a dataset of one), so 0/1, 0/255, label-map, JPEG and 16-bit files all work.

    For the masks of a dataset use :func:`read_masks` with the dataset's rule, decided once from
    all its masks (``segapp-data check`` / the DataModule do).

    Raises:
        ReadError: when the file cannot be decoded or is over the size ``limits``.
    """
    pixels = mask_pixels(path, limits)
    rule = decide_rule(value_stats(pixels, is_lossy(path)), threshold)
    return rule.foreground(pixels)
