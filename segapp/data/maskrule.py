"""The mask value rule of a set of mask files, decided once and cached (no full pre-flight check).

Used by the DataModule when ``data.check`` is off and by ``segapp-eval --gt``; with the check on,
the DataModule takes the rule from the (cached) check report, which reads every mask anyway.
Both end in :func:`segapp.io.masks.decide_rule`, so the rule is the same wherever it is decided.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from segapp.data.cache import digest, file_stamp, load_json, save_json
from segapp.data.errors import DataError
from segapp.io import MaskRule, MaskStats, ReadError, decide_rule
from segapp.io.masks import has_foreground, is_lossy, mask_pixels, value_stats, values_text

RULE_VERSION = 1


def _stats(path: Path) -> MaskStats:
    try:
        return value_stats(mask_pixels(path), is_lossy(path))
    except ReadError:
        return MaskStats()  # unreadable files are reported where they are read


def mask_stats(files: Iterable[Path], use_cache: bool = True, workers: int | None = None) -> MaskStats:
    """Histogram of the values of all ``files`` (in threads); cached by the files' stamps (path/size/mtime/ctime)."""
    files = sorted(set(Path(f) for f in files))
    key = digest(["maskstats", RULE_VERSION, *(file_stamp(f) for f in files if f.exists())])
    hit = load_json("maskstats", key) if use_cache else None
    if hit is not None:
        return MaskStats.from_dict(hit)
    total = MaskStats()
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as ex:
        for st in ex.map(_stats, files):
            total.add(st)
    if use_cache:
        save_json("maskstats", key, total.to_dict())
    return total


def dataset_mask_rule(
    mask_groups: Sequence[Sequence[Path]],
    threshold: float = 127,
    foreground_labels: Sequence[int] | None = None,
    use_cache: bool = True,
) -> tuple[MaskRule, MaskStats]:
    """The rule for the masks of a dataset (one group of files per image) and the values found."""
    stats = mask_stats((f for g in mask_groups for f in g), use_cache)
    try:
        rule = decide_rule(stats, threshold, foreground_labels)
    except ValueError as e:  # foreground_labels that do not fit the masks found
        raise DataError(str(e)) from e
    if stats.top > 0 and not has_foreground(stats, rule):  # values there, yet no lesion pixel anywhere
        raise DataError(
            f"every mask reads as empty under the dataset's rule ({rule.describe()}; "
            f"values found {values_text(stats)}); "
            "fix: check the masks, set data.mask_threshold below their lesion value, or data.foreground_labels"
        )
    return rule, stats
