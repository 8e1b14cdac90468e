"""Pre-flight check of a dataset: what is wrong before a long training run starts.

Counts pairs, lists unpaired and unreadable files, summarises image sizes, aspect ratios and
colour, mask values, the share of empty masks, lesion sizes (foreground share of the frame) and
duplicate images (by content hash); the run planner (:mod:`segapp.plan`) reads these numbers.
Problems that would break training are ``errors``; the rest are ``warnings`` (fatal only with
``data.strict: true``). Results are cached by data fingerprint in the user cache folder (see :mod:`segapp.data.cache`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from segapp.data.cache import digest, file_stamp, load_json, save_json
from segapp.data.check_cache import anchor_report, relative_report
from segapp.data.errors import DataError
from segapp.data.layouts import Discovery, Pair
from segapp.io import MaskRule, MaskStats, ReadError, decide_rule
from segapp.io.masks import (
    foreground_count,
    has_foreground,
    is_lossy,
    mask_pixels,
    misfit_reason,
    value_stats,
    values_text,
)
from segapp.io.scans import depth_known, low_range_max, read_first_scan

CHECK_VERSION = 5
MAX_LISTED = 20
NAMED_IN_WARNING = 3  # files a warning names before "and N more"
_BINS = (0, 1, 32, 224, 255, 256)  # 0 | 1-31 | 32-223 | 224-254 | 255
SMALL_LESION = 0.02  # lesions under 2 % of the frame: the small-polyp failures of docs/benchmarks.md


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
    colour: dict = field(default_factory=dict)
    mask_values: dict = field(default_factory=dict)
    mask_rule: dict = field(default_factory=dict)
    mask_misfits: list[dict] = field(default_factory=list)
    empty_masks: int = 0
    lesions: dict = field(default_factory=dict)
    size_mismatch: list[str] = field(default_factory=list)
    low_range: list[str] = field(default_factory=list)
    full_masks: list[str] = field(default_factory=list)  # keys whose mask is foreground in every pixel
    duplicates: list[list[str]] = field(default_factory=list)
    splits: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CheckReport:
        return cls(**d)

    @property
    def ok(self) -> bool:
        return not self.errors

    def rule(self) -> MaskRule:
        """The dataset's mask value rule decided by the check."""
        return MaskRule.from_dict(self.mask_rule)


def _inspect(pair: Pair) -> dict:
    """Read one pair: sizes, dtype, content hash, and the value histogram of each mask file."""
    out: dict = {"key": pair.key, "unreadable": [], "masks": []}
    try:
        scan = read_first_scan(pair.image)
        img = scan.frames[0]
        out["low_range"] = not depth_known(scan) and low_range_max(img) is not None
        out["size"] = (int(img.shape[1]), int(img.shape[0]))
        out["type"] = f"{img.dtype}x{img.shape[2]}"
        out["grey"] = _is_grey(img)
        out["hash"] = hashlib.sha1(pair.image.read_bytes()).hexdigest()
    except ReadError as e:
        out["unreadable"].append((str(e.path), e.reason))
    for m in pair.masks:
        try:
            values = mask_pixels(m)
        except ReadError as e:
            out["unreadable"].append((str(e.path), e.reason))
            continue
        out["masks"].append((str(m), value_stats(values, is_lossy(m))))
        out["mask_size"] = (int(values.shape[1]), int(values.shape[0]))
    return out


def _is_grey(img: np.ndarray) -> bool:
    """One channel, or colour channels equal within JPEG chroma noise (2/255 of full scale), sampled."""
    if img.shape[2] < 3:
        return True
    step = max(1, min(img.shape[:2]) // 256)
    sub = img[::step, ::step, :3].astype(np.float32)
    full = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else max(1.0, float(sub.max()))
    tol = 2.0 / 255.0 * full
    return (
        float(np.abs(sub[..., 0] - sub[..., 1]).max()) <= tol and float(np.abs(sub[..., 1] - sub[..., 2]).max()) <= tol
    )


def _apply_rule(
    rows: list[dict], threshold: float, foreground_labels: list[int] | None
) -> tuple[MaskRule, MaskStats, list[dict]]:
    """Decide the dataset's rule from all masks; mark each pair empty or not; list misfit masks."""
    total = MaskStats()
    for r in rows:
        for _, st in r["masks"]:
            total.add(st)
    try:
        rule = decide_rule(total, threshold, foreground_labels)
    except ValueError as e:  # foreground_labels that do not fit the masks found
        raise DataError(str(e)) from e
    misfits = []
    for r in rows:
        r["empty"] = not any(has_foreground(st, rule) for _, st in r["masks"])
        pixels = max((int(st.hist.sum()) for _, st in r["masks"]), default=0)
        fg = sum(foreground_count(st, rule) for _, st in r["masks"])  # OR of several masks: at most their sum
        r["fraction"] = min(1.0, fg / pixels) if pixels else 0.0
        misfits += [{"path": p, "reason": why} for p, st in r["masks"] if (why := misfit_reason(st, rule))]
    return rule, total, misfits


def _summarise_sizes(rows: list[dict]) -> dict:
    sizes = Counter(f"{r['size'][0]}x{r['size'][1]}" for r in rows if "size" in r)
    ws = [r["size"][0] for r in rows if "size" in r] or [0]
    hs = [r["size"][1] for r in rows if "size" in r] or [0]
    aspect = np.array([max(w, h) / max(min(w, h), 1) for w, h in zip(ws, hs, strict=True)])
    return {
        "distinct": len(sizes),
        "most_common": dict(sizes.most_common(5)),
        "min_wh": [min(ws), min(hs)],
        "max_wh": [max(ws), max(hs)],
        "median_short_side": int(np.median(np.minimum(ws, hs))),
        "aspect_median": round(float(np.median(aspect)), 3),
        "aspect_max": round(float(aspect.max()), 3),
    }


def _summarise_lesions(rows: list[dict]) -> dict:
    """Lesion size as the foreground share of the frame, over the non-empty masks (all lesions of
    an image together: a frame with two small lesions counts as their sum)."""
    fr = np.array([r["fraction"] for r in rows if not r.get("empty", True)])
    if not fr.size:
        return {"nonempty": 0}
    q = {k: round(float(np.percentile(fr, p)), 5) for k, p in (("p10", 10), ("median", 50), ("p90", 90))}
    return {
        "nonempty": int(fr.size),
        **q,
        "min": round(float(fr.min()), 6),
        "under_2pct": round(float((fr < SMALL_LESION).mean()), 4),
    }


def _mask_summary(total: MaskStats, threshold: float) -> dict:
    hist = [int(total.hist[a:b].sum()) for a, b in zip(_BINS[:-1], _BINS[1:], strict=True)]
    n = max(float(sum(hist)), 1.0)
    names = ("0", "1-31", "32-223", "224-254", "255")
    return {**{k: round(c / n, 6) for k, c in zip(names, hist, strict=True)}, "threshold": threshold}


def _judge(rep: CheckReport) -> None:
    """Fill ``errors`` and ``warnings`` from the numbers."""
    if rep.unreadable:
        u = rep.unreadable[0]
        rep.errors.append(
            f"{len(rep.unreadable)} unreadable file(s), e.g. {u['path']}: {u['reason']}; fix: replace or delete them"
        )
    if rep.pairs and rep.empty_masks == rep.pairs:
        rule = rep.rule()
        rep.errors.append(
            f"all {rep.pairs} masks are empty under the mask rule {rule.describe()} (values found "
            f"{rep.mask_rule.get('values')}); "
            "fix: check data.mask_threshold (0-255 scale), data.foreground_labels or the mask folder"
        )
    if rep.images_without_mask:
        rep.warnings.append(
            f"{len(rep.images_without_mask)} image(s) without a mask (ignored), e.g. {rep.images_without_mask[0]}"
        )
    if rep.masks_without_image:
        rep.warnings.append(
            f"{len(rep.masks_without_image)} mask(s) without an image (ignored), e.g. {rep.masks_without_image[0]}"
        )
    if rep.missing:
        rep.warnings.append(
            f"{len(rep.missing)} file(s) named in the manifest do not exist (rows skipped), e.g. {rep.missing[0]}"
        )
    rep.warnings += _mask_warnings(rep)
    if rep.pairs and rep.empty_masks / rep.pairs > 0.5 and rep.empty_masks < rep.pairs:
        rep.warnings.append(
            f"{rep.empty_masks} of {rep.pairs} masks are empty; Dice on empty masks is 1 only for empty predictions"
        )
    if rep.size_mismatch:
        rep.warnings.append(
            f"{len(rep.size_mismatch)} pair(s) whose mask size differs from the image size, e.g. "
            f"{rep.size_mismatch[0]}; check the pairing"
        )
    if rep.low_range:
        rep.warnings.append(_low_range_warning(rep.low_range))
    if rep.duplicates:
        rep.warnings.append(
            f"{len(rep.duplicates)} group(s) of identical images, e.g. {', '.join(rep.duplicates[0][:3])}; "
            f"duplicates across splits inflate validation scores"
        )


def _mask_warnings(rep: CheckReport) -> list[str]:
    """Warnings about mask values: misfits of the rule, grey levels, masks that are lesion everywhere."""
    out = []
    if rep.mask_misfits:
        m = rep.mask_misfits[0]
        out.append(
            f"{len(rep.mask_misfits)} mask(s) do not fit the dataset's mask rule ({rep.rule().describe()}), "
            f"e.g. {m['path']}: {m['reason']}; "
            "fix: save all masks of a dataset the same way (0/255, 0/1 or labels), set data.mask_threshold below "
            "their lesion value, or set data.foreground_labels"
        )
    mid = rep.mask_values.get("32-223", 0.0)
    if mid > 0.01 and rep.mask_rule.get("kind") == "grey":
        out.append(
            f"masks are not binary: {mid:.1%} of mask pixels lie in 32-223; they are binarised at "
            f"data.mask_threshold={rep.mask_values.get('threshold')}"
        )
    if rep.full_masks:
        out.append(
            f"{len(rep.full_masks)} mask(s) are lesion in every pixel, e.g. {rep.full_masks[0]}: a coloured or white "
            "background is read as lesion (the mask rule takes the brightest colour channel); fix: save the masks "
            "with a black background (lesion white), or check the mask folder"
        )
    return out


def _low_range_warning(paths: list[str]) -> str:
    """The warning for 16-bit images that use at most 12 of their bits and declare no depth."""
    more = f" and {len(paths) - NAMED_IN_WARNING} more" if len(paths) > NAMED_IN_WARNING else ""
    return (
        f"{len(paths)} image(s) are 16-bit with values below 4096 and no declared bit depth, e.g. "
        f"{', '.join(paths[:NAMED_IN_WARNING])}{more}: expected a 16-bit image to use more than 12 of its bits, "
        "so they are read near-black (values / 65535), and segapp-predict flags such scans 'input: low-range'; "
        "fix: if they hold 12-bit data, store them as 8-bit or full-range 16-bit, or set their TIFF "
        "MaxSampleValue (4095) / PNG sBIT (12)"
    )


def check_key(disc: Discovery, threshold: float, foreground_labels: list[int] | None = None) -> str:
    """Cache key of a check: layout, every file's stamp (path/size/mtime/ctime), which files pair, mask
    settings, check version.

    Paths are resolved, so the same dataset reached through another spelling (relative path,
    other working folder, symlink) shares one entry; the entry stores root-relative paths.
    """
    stamps = [file_stamp(p) for p in disc.files()]
    extra = [str(p.resolve()) for p in (*disc.images_without_mask, *disc.masks_without_image, *disc.missing)]
    labels = None if foreground_labels is None else sorted(set(foreground_labels))
    pairing = [  # which files pair (an edited CSV may pair the same files differently)
        [p.key, str(p.image.resolve()), [str(m.resolve()) for m in p.masks], p.split, p.fold, p.group]
        for p in disc.pairs
    ]
    return digest([CHECK_VERSION, disc.layout, float(threshold), labels, *stamps, *extra, pairing])


def check_dataset(
    disc: Discovery,
    threshold: float = 127,
    fingerprint: str = "",
    use_cache: bool = True,
    workers: int | None = None,
    foreground_labels: list[int] | None = None,
) -> CheckReport:
    """Inspect every pair of ``disc`` (in threads) and return the report; cached by content stamp.

    The mask value rule is decided here, once, from the values of all masks
    (:func:`segapp.io.masks.decide_rule`) and recorded in ``mask_rule``; masks that do not fit
    it are listed in ``mask_misfits`` (a warning).

    Args:
        disc: Result of :func:`segapp.data.layouts.discover`.
        threshold: Grey mask threshold (0-255 scale).
        fingerprint: Data fingerprint to record in the report.
        use_cache: Read and write the cached report in the user cache folder.
        workers: Reader threads (default: CPU count, at most 8).
        foreground_labels: Label values that are foreground (label-map masks); ``None``: any non-zero.
    """
    key = check_key(disc, threshold, foreground_labels)
    cached = load_json("checks", key) if use_cache else None
    if cached is not None:
        rep = CheckReport.from_dict(anchor_report(cached, disc.root))
        rep.fingerprint = fingerprint or rep.fingerprint
        _judge(rep)
        return rep
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as ex:
        rows = list(ex.map(_inspect, disc.pairs))
    rule, total, misfits = _apply_rule(rows, threshold, foreground_labels)
    rep = _build(disc, rows, fingerprint)
    rep.mask_values = _mask_summary(total, threshold)
    rep.mask_rule = {**rule.to_dict(), "values": values_text(total), "files": total.files, "lossy_files": total.lossy}
    rep.mask_misfits = misfits
    _judge(rep)
    if use_cache:
        save_json("checks", key, relative_report(rep.to_dict(), disc.root))
    return rep


def _build(disc: Discovery, rows: list[dict], fingerprint: str) -> CheckReport:
    by_hash: dict[str, list[str]] = {}
    for r in rows:
        if "hash" in r:
            by_hash.setdefault(r["hash"], []).append(r["key"])
    return CheckReport(
        root=str(disc.root),
        layout=disc.layout,
        pairs=len(disc.pairs),
        fingerprint=fingerprint,
        images_without_mask=[str(p) for p in disc.images_without_mask],
        masks_without_image=[str(p) for p in disc.masks_without_image],
        missing=[str(p) for p in disc.missing],
        unreadable=[{"path": p, "reason": why} for r in rows for p, why in r["unreadable"]],
        sizes=_summarise_sizes(rows),
        image_types=dict(Counter(r["type"] for r in rows if "type" in r)),
        colour=dict(Counter("grey" if r["grey"] else "colour" for r in rows if "grey" in r)),
        lesions=_summarise_lesions(rows),
        empty_masks=sum(r["empty"] for r in rows),
        size_mismatch=[r["key"] for r in rows if "size" in r and "mask_size" in r and r["size"] != r["mask_size"]],
        low_range=[str(p.image) for p, r in zip(disc.pairs, rows, strict=True) if r.get("low_range")],
        full_masks=[r["key"] for r in rows if len(r.get("masks", ())) == 1 and not r["empty"] and r["fraction"] >= 1.0],
        duplicates=[keys for keys in by_hash.values() if len(keys) > 1],
        splits=dict(Counter(p.split or "-" for p in disc.pairs)),
    )


def _lesion_text(les: dict) -> str:
    if not les.get("nonempty"):
        return "no lesions"
    return (
        f"share of the frame: median {les['median']:.1%}, 10th percentile {les['p10']:.1%}, smallest "
        f"{les['min']:.2%}; {les['under_2pct']:.0%} of lesions under 2 %"
    )


def format_report(rep: CheckReport) -> str:
    """Readable multi-line report for the terminal."""
    s = rep.sizes
    lines = [
        f"dataset      {rep.root}  (layout {rep.layout}, fingerprint {rep.fingerprint})",
        f"pairs        {rep.pairs}" + (f"  splits {rep.splits}" if set(rep.splits) != {"-"} else ""),
        f"sizes (WxH)  {s.get('distinct', 0)} distinct, min {s.get('min_wh')}, max {s.get('max_wh')}; most "
        f"common {s.get('most_common')}",
        f"image types  {rep.image_types}  {rep.colour}; aspect ratio median {s.get('aspect_median')}, max "
        f"{s.get('aspect_max')}",
        "mask values  "
        + ", ".join(f"{k}: {v:.2%}" for k, v in rep.mask_values.items() if k != "threshold")
        + f"; values found {rep.mask_rule.get('values')}",
        f"mask rule    {rep.rule().describe()}"
        + (f"; {len(rep.mask_misfits)} mask(s) do not fit it" if rep.mask_misfits else ""),
        f"empty masks  {rep.empty_masks} ({rep.empty_masks / max(rep.pairs, 1):.1%})",
        f"lesion size  {_lesion_text(rep.lesions)}",
        f"duplicates   {len(rep.duplicates)} group(s)",
    ]
    for title, items in (
        ("images without mask", rep.images_without_mask),
        ("masks without image", rep.masks_without_image),
        ("missing files", rep.missing),
        ("16-bit images with values below 4096 and no declared depth", rep.low_range),
    ):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {p}" for p in items[:MAX_LISTED]] + (
                [f"  ... {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else []
            )
    if rep.mask_misfits:
        lines.append(f"masks that do not fit the rule ({len(rep.mask_misfits)}):")
        lines += [f"  {m['path']}: {m['reason']}" for m in rep.mask_misfits[:MAX_LISTED]]
    if rep.unreadable:
        lines.append(f"unreadable ({len(rep.unreadable)}):")
        lines += [f"  {u['path']}: {u['reason']}" for u in rep.unreadable[:MAX_LISTED]]
    if rep.duplicates:
        lines.append("identical images:")
        lines += [f"  {', '.join(d)}" for d in rep.duplicates[:MAX_LISTED]]
    lines += [f"error: {e}" for e in rep.errors] + [f"warning: {w}" for w in rep.warnings]
    lines.append(
        "result       " + ("OK" if rep.ok and not rep.warnings else "OK with warnings" if rep.ok else "FAILED")
    )
    return "\n".join(lines)
