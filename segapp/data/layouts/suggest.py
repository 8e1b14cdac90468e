"""When no layout pairs a folder: find the closest layout and the exact flags that pair its files.

The mask-name suffix is guessed from the file names (``case1.png`` + ``case1_gt.png`` -> ``_gt``);
each layout is then tried with it, and the one that pairs the most files is named with the
settings (``data.*`` keys and ``segapp-data check`` flags) that reproduce it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segapp.data.errors import DataError
from segapp.data.layouts.base import MASK_EXTENSIONS, is_visible_file

_MAX_FILES = 50_000
_TRAILING_NUMBER = re.compile(r"[_ -]?\d+$")


def _files(root: Path) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        if is_visible_file(p, MASK_EXTENSIONS):
            out.append(p)
            if len(out) >= _MAX_FILES:
                break
    return out


def guess_suffix(files: list[Path]) -> tuple[str, str | None] | None:
    """The most common ``<stem><suffix>`` relation between file names, and the mask folder if apart."""
    stems = {p.stem for p in files}
    found: Counter[str] = Counter()
    where: dict[str, Counter[Path]] = {}
    for p in files:
        b = p.stem
        for i in range(1, len(b)):
            if b[i] in "_- ." and b[:i] in stems:
                suffix = _TRAILING_NUMBER.sub("", b[i:])
                if suffix and not suffix.strip("_- ."):
                    continue
                if suffix:
                    found[suffix] += 1
                    where.setdefault(suffix, Counter())[p.parent] += 1
                break
    if not found:
        return None
    suffix = found.most_common(1)[0][0]
    folders = where[suffix]
    return suffix, (folders.most_common(1)[0][0] if len(folders) == 1 else None)


def cli_flags(layout: str, kw: Mapping[str, Any]) -> str:
    """``--layout suffix --mask-suffix=-label --mask-dir ann``: ``=`` where a value starts with
    ``-``, which argparse would otherwise take for an option."""
    sep = lambda v: "=" if str(v).startswith("-") else " "  # noqa: E731
    return " ".join([f"--layout {layout}"] + [f"--{k.replace('_', '-')}{sep(v)}{v}" for k, v in kw.items()])


def _flags(layout: str, kw: Mapping[str, Any]) -> str:
    data = " ".join([f"--data.layout {layout}"] + [f"--data.{k} {v}" for k, v in kw.items()])
    return f"{data} (segapp-data check: {cli_flags(layout, kw)})"


def closest_layout(root: Path, layouts: Mapping[str, Any]) -> str | None:
    """A hint naming the layout and settings that pair the most files of ``root``, or ``None``."""
    best = closest(root, layouts)
    return None if best is None else hint_text(*best)


def hint_text(n: int, name: str, kw: Mapping[str, Any]) -> str:
    """``closest layout: 'suffix', which pairs 12 image(s) with: <flags>``."""
    return f"closest layout: {name!r}, which pairs {n} image(s) with: {_flags(name, kw)}"


def closest(root: Path, layouts: Mapping[str, Any]) -> tuple[int, str, dict] | None:
    """``(pairs, layout, options)`` of the layout and settings that pair the most files of ``root``."""
    if not root.is_dir():
        return None
    files = _files(root)
    guess = guess_suffix(files)
    tries: list[tuple[str, dict]] = [(name, {}) for name in layouts]
    if guess is not None:
        suffix, folder = guess
        tries += [("paired", {"mask_suffix": suffix}), ("suffix", {"mask_suffix": suffix})]
        if folder is not None and folder != root:
            tries.append(("suffix", {"mask_suffix": suffix, "mask_dir": folder.relative_to(root).as_posix()}))
    best: tuple[int, str, dict] | None = None
    for name, kw in tries:
        try:
            n = len(layouts[name].find(root, **kw).pairs)
        except (DataError, OSError, TypeError):
            continue
        if n and (best is None or n > best[0]):
            best = (n, name, kw)
    return best
