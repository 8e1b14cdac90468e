"""Pre-flight check of a dataset: what is wrong before a long training run starts.

Counts pairs, lists unpaired and unreadable files, summarises image sizes and mask values,
the share of empty masks and duplicate images (by content hash). Problems that would break
training are ``errors``; the rest are ``warnings`` (fatal only with ``data.strict: true``).
Results are cached by data fingerprint in the user cache folder (see :mod:`segapp.data.cache`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from segapp.data.cache import digest, file_stamp, load_json, save_json
from segapp.data.layouts import Discovery, Pair
from segapp.io import ReadError, read_image
from segapp.io.images import LOSSY_EXTENSIONS, mask_values

CHECK_VERSION = 2
MAX_LISTED = 20
_BINS = (0, 1, 32, 224, 255, 256)  # 0 | 1-31 | 32-223 | 224-254 | 255


@dataclass
class CheckReport:
    """Result of :func:`check_dataset` (JSON-serialisable with :meth:`to_dict`)."""

    root: str
    layout: str
    pairs: int
    fingerprint: str
    images_without_mask: list[str] = field(default_factory=list)
    masks_without_image: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    sizes: dict = field(default_factory=dict)
    image_types: dict = field(default_factory=dict)
    mask_values: dict = field(default_factory=dict)
    empty_masks: int = 0
    size_mismatch: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    splits: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CheckReport":
        return cls(**d)

    @property
    def ok(self) -> bool:
        return not self.errors


def _inspect(pair: Pair, threshold: float) -> dict:
    """Read one pair: sizes, dtype, mask value histogram, emptiness, content hash."""
    out: dict = {"key": pair.key, "unreadable": []}
    try:
        img = read_image(pair.image)
        out["size"] = (int(img.shape[1]), int(img.shape[0]))
        out["type"] = f"{img.dtype}x{img.shape[2]}"
        out["hash"] = hashlib.sha1(pair.image.read_bytes()).hexdigest()
    except ReadError as e:
        out["unreadable"].append((str(e.path), e.reason))
    hist = np.zeros(len(_BINS) - 1, np.int64)
    fg = False
    for m in pair.masks:
        try:
            values = mask_values(read_image(m), lossy=m.suffix.lower() in LOSSY_EXTENSIONS)
        except ReadError as e:
            out["unreadable"].append((str(e.path), e.reason))
            continue
        hist += np.histogram(values, bins=_BINS)[0]
        fg = fg or bool((values > threshold).any())
        out["mask_size"] = (int(values.shape[1]), int(values.shape[0]))
    out["hist"] = hist.tolist()
    out["empty"] = not fg
    return out


def _summarise_sizes(rows: list[dict]) -> dict:
    sizes = Counter(f"{r['size'][0]}x{r['size'][1]}" for r in rows if "size" in r)
    ws = [r["size"][0] for r in rows if "size" in r] or [0]
    hs = [r["size"][1] for r in rows if "size" in r] or [0]
    return {"distinct": len(sizes), "most_common": dict(sizes.most_common(5)), "min_wh": [min(ws), min(hs)], "max_wh": [max(ws), max(hs)]}


def _mask_summary(rows: list[dict]) -> dict:
    hist = np.sum([r["hist"] for r in rows], axis=0) if rows else np.zeros(len(_BINS) - 1)
    total = max(float(hist.sum()), 1.0)
    names = ("0", "1-31", "32-223", "224-254", "255")
    return {n: round(float(c) / total, 6) for n, c in zip(names, hist, strict=True)}


def _judge(rep: CheckReport, strict_hint: str = "data.strict") -> None:
    """Fill ``errors`` and ``warnings`` from the numbers."""
    if rep.unreadable:
        u = rep.unreadable[0]
        rep.errors.append(f"{len(rep.unreadable)} unreadable file(s), e.g. {u['path']}: {u['reason']}; fix: replace or delete them")
    if rep.pairs and rep.empty_masks == rep.pairs:
        rep.errors.append(f"all {rep.pairs} masks are empty at threshold {rep.mask_values.get('threshold')}; fix: check data.mask_threshold (0-255 scale) or the mask folder")
    if rep.images_without_mask:
        rep.warnings.append(f"{len(rep.images_without_mask)} image(s) without a mask (ignored), e.g. {rep.images_without_mask[0]}")
    if rep.masks_without_image:
        rep.warnings.append(f"{len(rep.masks_without_image)} mask(s) without an image (ignored), e.g. {rep.masks_without_image[0]}")
    if rep.missing:
        rep.warnings.append(f"{len(rep.missing)} file(s) named in the manifest do not exist (rows skipped), e.g. {rep.missing[0]}")
    mid = rep.mask_values.get("32-223", 0.0)
    if mid > 0.01:
        rep.warnings.append(f"masks are not binary: {mid:.1%} of mask pixels lie in 32-223; they are binarised at data.mask_threshold={rep.mask_values.get('threshold')}")
    if rep.pairs and rep.empty_masks / rep.pairs > 0.5 and rep.empty_masks < rep.pairs:
        rep.warnings.append(f"{rep.empty_masks} of {rep.pairs} masks are empty; Dice on empty masks is 1 only for empty predictions")
    if rep.size_mismatch:
        rep.warnings.append(f"{len(rep.size_mismatch)} pair(s) whose mask size differs from the image size, e.g. {rep.size_mismatch[0]}; check the pairing")
    if rep.duplicates:
        rep.warnings.append(f"{len(rep.duplicates)} group(s) of identical images, e.g. {', '.join(rep.duplicates[0][:3])}; duplicates across splits inflate validation scores")


def check_key(disc: Discovery, threshold: float) -> str:
    """Cache key of a check: layout, every file's path/size/mtime, threshold, check version."""
    stamps = [file_stamp(p) for p in disc.files()]
    extra = [str(p) for p in (*disc.images_without_mask, *disc.masks_without_image, *disc.missing)]
    return digest([CHECK_VERSION, disc.layout, float(threshold), *stamps, *extra])


def check_dataset(disc: Discovery, threshold: float = 127, fingerprint: str = "", use_cache: bool = True, workers: int | None = None) -> CheckReport:
    """Inspect every pair of ``disc`` (in threads) and return the report; cached by content stamp.

    Args:
        disc: Result of :func:`segapp.data.layouts.discover`.
        threshold: Mask binarisation threshold (0-255 scale).
        fingerprint: Data fingerprint to record in the report.
        use_cache: Read and write the cached report in the user cache folder.
        workers: Reader threads (default: CPU count, at most 8).
    """
    key = check_key(disc, threshold)
    cached = load_json("checks", key) if use_cache else None
    if cached is not None:
        return CheckReport.from_dict(cached)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as ex:
        rows = list(ex.map(lambda p: _inspect(p, threshold), disc.pairs))
    by_hash: dict[str, list[str]] = {}
    for r in rows:
        if "hash" in r:
            by_hash.setdefault(r["hash"], []).append(r["key"])
    rep = CheckReport(
        root=str(disc.root), layout=disc.layout, pairs=len(disc.pairs), fingerprint=fingerprint,
        images_without_mask=[str(p) for p in disc.images_without_mask],
        masks_without_image=[str(p) for p in disc.masks_without_image],
        missing=[str(p) for p in disc.missing],
        unreadable=[{"path": p, "reason": why} for r in rows for p, why in r["unreadable"]],
        sizes=_summarise_sizes(rows),
        image_types=dict(Counter(r["type"] for r in rows if "type" in r)),
        mask_values={**_mask_summary(rows), "threshold": threshold},
        empty_masks=sum(r["empty"] for r in rows),
        size_mismatch=[r["key"] for r in rows if "size" in r and "mask_size" in r and r["size"] != r["mask_size"]],
        duplicates=[keys for keys in by_hash.values() if len(keys) > 1],
        splits=dict(Counter(p.split or "-" for p in disc.pairs)),
    )  # fmt: skip
    _judge(rep)
    if use_cache:
        save_json("checks", key, rep.to_dict())
    return rep


def format_report(rep: CheckReport) -> str:
    """Readable multi-line report for the terminal."""
    s = rep.sizes
    lines = [
        f"dataset      {rep.root}  (layout {rep.layout}, fingerprint {rep.fingerprint})",
        f"pairs        {rep.pairs}" + (f"  splits {rep.splits}" if set(rep.splits) != {"-"} else ""),
        f"sizes (WxH)  {s.get('distinct', 0)} distinct, min {s.get('min_wh')}, max {s.get('max_wh')}; most common {s.get('most_common')}",
        f"image types  {rep.image_types}",
        "mask values  " + ", ".join(f"{k}: {v:.2%}" for k, v in rep.mask_values.items() if k != "threshold") + f"  (threshold {rep.mask_values.get('threshold')})",
        f"empty masks  {rep.empty_masks} ({rep.empty_masks / max(rep.pairs, 1):.1%})",
        f"duplicates   {len(rep.duplicates)} group(s)",
    ]
    for title, items in (("images without mask", rep.images_without_mask), ("masks without image", rep.masks_without_image), ("missing files", rep.missing)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {p}" for p in items[:MAX_LISTED]] + ([f"  ... {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else [])
    if rep.unreadable:
        lines.append(f"unreadable ({len(rep.unreadable)}):")
        lines += [f"  {u['path']}: {u['reason']}" for u in rep.unreadable[:MAX_LISTED]]
    if rep.duplicates:
        lines.append("identical images:")
        lines += [f"  {', '.join(d)}" for d in rep.duplicates[:MAX_LISTED]]
    lines += [f"error: {e}" for e in rep.errors] + [f"warning: {w}" for w in rep.warnings]
    lines.append("result       " + ("OK" if rep.ok and not rep.warnings else "OK with warnings" if rep.ok else "FAILED"))
    return "\n".join(lines)
