"""Reproducible splits: the same files and seed give the same split on every machine.

Everything is decided on sorted keys with a seeded generator, never on directory order. Groups
(patient, lesion) are kept whole: a group lands in exactly one split and one fold.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np

from segapp.data.errors import DataError
from segapp.data.layouts import Discovery, Pair
from segapp.errors import SettingError


def seeded_permutation(keys: Sequence[str], seed: int) -> list[int]:
    """A permutation of ``range(len(keys))`` that depends only on the sorted keys and ``seed``."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    rng = np.random.default_rng(seed)
    return [order[i] for i in rng.permutation(len(order))]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SettingError(
            f"data.val_fraction ({val_fraction}) and data.test_fraction ({test_fraction}) must be in [0, 1) "
            "and sum to less than 1"
        )


def group_of(pair: Pair, group_regex: str | None) -> str:
    """Group id of a pair: its CSV ``group``, else the regex match on the image file name, else its key.

    With a capture group in ``group_regex`` the first group is the id, else the whole match.

    Raises:
        DataError: when the regex does not match a file name.
    """
    if pair.group:
        return pair.group
    if not group_regex:
        return pair.key
    m = re.search(group_regex, pair.image.name)
    if m is None:
        raise DataError(
            f"data.group_regex {group_regex!r} does not match {pair.image.name}; expected a pattern found in "
            f"every image file name"
        )
    return m.group(1) if m.groups() else m.group(0)


def grouped_split(groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Split items (given by their group ids) so that each group lands in one split.

    Groups are visited in a seeded order; ``test`` then ``val`` take whole groups until they
    reach their share of items; the rest is ``train``.

    Raises:
        ValueError: on bad fractions or when nothing is left for training.
    """
    _check_fractions(val_fraction, test_fraction)
    n = len(groups)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = sorted(members)
    order = [names[i] for i in seeded_permutation(names, seed)]
    want = {k: max(1, round(n * f)) if f > 0 else 0 for k, f in (("test", test_fraction), ("val", val_fraction))}
    out: dict[str, list[int]] = {"val": [], "test": [], "train": []}
    for g in order:
        target = next((s for s in ("test", "val") if len(out[s]) < want[s]), "train")
        out[target] += members[g]
    if not out["train"]:
        raise SettingError(
            f"{n} pairs leave no training data with val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return {k: sorted(v) for k, v in out.items()}


def assign_folds(groups: Sequence[str], num_folds: int, seed: int) -> list[int]:
    """Fold index per item; whole groups, balanced by item count, fixed by sorted groups and seed.

    Raises:
        DataError: when there are fewer groups than folds.
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    if len(members) < num_folds:
        raise DataError(
            f"data.num_folds={num_folds} but the training pool has only {len(members)} group(s); expected at "
            f"least one per fold"
        )
    names = sorted(members)
    order = [names[i] for i in seeded_permutation(names, seed)]
    order.sort(key=lambda g: -len(members[g]))  # stable: big groups first, seeded order within a size
    load = [0] * num_folds
    fold = [0] * len(groups)
    for g in order:
        k = min(range(num_folds), key=lambda j: (load[j], j))
        load[k] += len(members[g])
        for i in members[g]:
            fold[i] = k
    return fold


def fingerprint(files: Sequence[tuple[str, int]]) -> str:
    """SHA-256 (first 16 hex digits) of a sorted list of ``(relative path, size in bytes)``."""
    h = hashlib.sha256()
    for name, size in sorted(files):
        h.update(f"{name}\0{size}\n".encode())
    return h.hexdigest()[:16]


def _explicit(pairs: Sequence[Pair]) -> dict[str, list[int]] | None:
    """Index lists from the splits the layout fixed (split folders, CSV column), or ``None``."""
    named = [p.split for p in pairs]
    if not any(named):
        return None
    if not all(named):
        first = next(p for p in pairs if not p.split)
        raise DataError(
            f"{first.image}: no split although other pairs have one; expected a split for every pair (fill the "
            f"CSV split column or use split folders for all files)"
        )
    return {s: [i for i, n in enumerate(named) if n == s] for s in ("train", "val", "test")}


def _given_folds(pairs: Sequence[Pair], pool: list[int], num_folds: int, groups: Sequence[str]) -> list[int] | None:
    """The CSV ``fold`` of every pool pair, or ``None`` when no pair has one (seeded folds then).

    A partial column is an error, as a partial ``split`` column is: falling back to seeded
    folds would throw the given folds away and could split a patient across train and val.

    Raises:
        DataError: naming the pairs without a fold, or a fold outside ``0..num_folds-1``.
    """
    given = [pairs[i].fold for i in pool]
    if all(f is None for f in given):
        return None
    blank = [pairs[i].image for i, f in zip(pool, given, strict=True) if f is None]
    if blank:
        named = ", ".join(map(str, blank[:3])) + (f" and {len(blank) - 3} more" if len(blank) > 3 else "")
        raise DataError(
            f"the CSV fold column is empty for {len(blank)} of {len(pool)} training/validation pairs (the rows of "
            f"{named}); expected a fold for every row (test rows aside) or for none; fix: fill those fold cells, "
            f"or empty the whole column for seeded folds"
        )
    bad = [f for f in given if not 0 <= f < num_folds]
    if bad:
        raise DataError(
            f"the CSV fold column has value {bad[0]} but data.num_folds={num_folds}; expected 0..{num_folds - 1}"
        )
    _refuse_split_groups([groups[i] for i in pool], given, [pairs[i].image.name for i in pool])
    return given


def _refuse_split_groups(groups: Sequence[str], folds: Sequence[int], names: Sequence[str]) -> None:
    """Refuse a group with rows in two CSV folds, whichever fold is validation: the fold that holds
    one of its rows would train on the others (checked for every fold at once, so a segapp-cv run
    stops before its first fold, not at the one that shows it)."""
    first: dict[str, tuple[int, str]] = {}
    for g, f, name in zip(groups, folds, names, strict=True):
        seen = first.setdefault(g, (f, name))
        if seen[0] != f:
            raise DataError(
                f"group {g!r} has rows in CSV folds {seen[0]} ({seen[1]}) and {f} ({name}); expected every row of a "
                "group (patient or lesion) in one fold, or a fold trains on its own validation patient; fix: give "
                "the group's rows one fold, or correct the group column / data.group_regex"
            )


def _kfold(
    pairs: Sequence[Pair], pool: list[int], groups: list[str], num_folds: int, fold: int, seed: int
) -> tuple[list[int], list[int]]:
    """Training and validation indices of fold ``fold``: the CSV folds if given, else seeded and grouped."""
    if not 0 <= fold < num_folds:
        raise DataError(f"data.fold={fold} is out of range for data.num_folds={num_folds}; expected 0..{num_folds - 1}")
    folds = _given_folds(pairs, pool, num_folds, groups)
    if folds is None:
        folds = assign_folds([groups[i] for i in pool], num_folds, seed)
    val = [i for i, f in zip(pool, folds, strict=True) if f == fold]
    in_val = set(val)
    return [i for i in pool if i not in in_val], val


def check_groups_apart(pairs: Sequence[Pair], idx: dict[str, list[int]], groups: Sequence[str]) -> None:
    """Refuse a group (patient, lesion) with pairs in more than one of train/val/test.

    Seeded splits keep groups whole by construction; splits and folds the data fixes (the CSV
    ``split``/``fold`` columns, split folders) were taken as given, so a patient with a train
    row and a test row trained on its own test images without a word.

    Raises:
        DataError: naming the group, its splits and one file in each.
    """
    where: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        for i in idx[split]:
            where.setdefault(groups[i], {}).setdefault(split, i)
    leaks = sorted(g for g, found in where.items() if len(found) > 1)
    if not leaks:
        return
    first = where[leaks[0]]
    files = ", ".join(f"{pairs[i].image.name} in {split}" for split, i in first.items())
    more = f" (and {len(leaks) - 1} more group(s))" if len(leaks) > 1 else ""
    raise DataError(
        f"group {leaks[0]!r} has pairs in more than one split ({files}){more}; expected every pair of a group "
        "(patient or lesion: the CSV group column, data.group_regex) in one split, or its test images are "
        "trained on; fix: give the group's rows one split and fold, or correct the group column / data.group_regex"
    )


def make_splits(
    pairs: Sequence[Pair],
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 42,
    group_regex: str | None = None,
    num_folds: int = 0,
    fold: int = 0,
    train_subset: int | None = None,
) -> dict[str, list[Pair]]:
    """Decide ``train``/``val``/``test`` for a dataset.

    Splits fixed by the layout win (a missing val or test split is held out of the fixed
    training split by the fractions); otherwise groups are split by ``seed`` and fractions. With
    ``num_folds >= 2`` the non-test pool is cut into folds (the CSV ``fold`` column, filled for
    every non-test pair or for none; else seeded and grouped) and fold ``fold`` is validation.
    ``train_subset`` keeps a seeded subset of the training pairs.

    Raises:
        DataError: on inconsistent split/fold settings or data.
        ValueError: on fractions out of range.
    """
    groups = [group_of(p, group_regex) for p in pairs]
    idx = _explicit(pairs)
    kfold = num_folds >= 2
    if idx is None:
        idx = grouped_split(groups, 0.0 if kfold else val_fraction, test_fraction, seed)
    else:
        carve_val = val_fraction if not idx["val"] and not kfold else 0.0
        carve_test = test_fraction if not idx["test"] else 0.0
        if carve_val or carve_test:  # held out from the fixed training split
            train = idx["train"]
            sub = grouped_split([groups[i] for i in train], carve_val, carve_test, seed)
            for k in ("val", "test"):
                idx[k] = sorted(idx[k] + [train[j] for j in sub[k]])
            idx["train"] = sorted(train[j] for j in sub["train"])
    if kfold:
        idx["train"], idx["val"] = _kfold(pairs, sorted(idx["train"] + idx["val"]), groups, num_folds, fold, seed)
    check_groups_apart(pairs, idx, groups)
    if train_subset is not None:
        train = idx["train"]
        if not 0 < train_subset <= len(train):
            raise DataError(
                f"data.train_subset={train_subset} but the training split has {len(train)} pairs; expected "
                f"1..{len(train)} (or null for all)"
            )
        perm = seeded_permutation([pairs[i].key for i in train], seed + 1)
        idx["train"] = sorted(train[j] for j in perm[:train_subset])
    return {k: [pairs[i] for i in idx[k]] for k in ("train", "val", "test")}


def data_fingerprint(disc: Discovery) -> str:
    """Fingerprint of a dataset: every image and mask file's path (relative to the root) and size."""
    base = str(disc.root) if disc.root is not None else "."
    return fingerprint([(os.path.relpath(p, base), p.stat().st_size) for p in disc.files()])
