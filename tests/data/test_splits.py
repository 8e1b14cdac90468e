"""Splits: seeded and order-independent, grouped, k-fold stable and covering, subsets, explicit."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from segapp.data.errors import DataError
from segapp.data.layouts import Pair, discover
from segapp.data.splits import assign_folds, make_splits


def pairs(n: int, prefix: str = "case") -> list[Pair]:
    return [
        Pair(key=f"{prefix}{i:03d}", image=Path(f"/d/P{i // 4:02d}_{prefix}{i:03d}.png"), masks=(Path(f"/d/m{i}.png"),))
        for i in range(n)
    ]


def keys(split: list[Pair]) -> list[str]:
    return [p.key for p in split]


def test_same_seed_same_split_any_order():
    ps = pairs(50)
    a = make_splits(ps, 0.2, 0.1, seed=7)
    shuffled = ps[:]
    random.Random(1).shuffle(shuffled)
    b = make_splits(shuffled, 0.2, 0.1, seed=7)
    assert {k: sorted(keys(v)) for k, v in a.items()} == {k: sorted(keys(v)) for k, v in b.items()}
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (35, 10, 5)
    assert sorted(keys(make_splits(ps, 0.2, 0.1, seed=8)["val"])) != sorted(keys(a["val"]))


def test_group_regex_keeps_patients_whole():
    ps = pairs(40)  # 10 patients of 4 images, patient id in the file name
    s = make_splits(ps, 0.25, 0.25, seed=0, group_regex=r"^(P\d+)_")
    patients = {k: {p.image.name[:3] for p in v} for k, v in s.items()}
    assert (
        not (patients["train"] & patients["val"])
        and not (patients["train"] & patients["test"])
        and not (patients["val"] & patients["test"])
    )
    assert sum(map(len, s.values())) == 40 and len(s["val"]) % 4 == 0


def test_group_regex_must_match():
    with pytest.raises(DataError, match=r"data.group_regex .XYZ.* does not match P00_case000.png; expected a pattern"):
        make_splits(pairs(4), group_regex=r"XYZ(\d)")


@pytest.mark.parametrize("k", [3, 5])
def test_folds_disjoint_cover_once_and_stable(k):
    ps = pairs(23)
    vals = [keys(make_splits(ps, seed=3, num_folds=k, fold=f)["val"]) for f in range(k)]
    flat = [x for v in vals for x in v]
    assert sorted(flat) == sorted(keys(ps))  # every pair is validated exactly once
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    again = [keys(make_splits(list(reversed(ps)), seed=3, num_folds=k, fold=f)["val"]) for f in range(k)]
    assert [sorted(v) for v in again] == [sorted(v) for v in vals]
    s = make_splits(ps, seed=3, num_folds=k, fold=1)
    assert not set(keys(s["train"])) & set(keys(s["val"])) and len(s["train"]) + len(s["val"]) == 23


def test_folds_keep_groups_and_leave_test_out():
    ps = pairs(40)
    test = keys(make_splits(ps, 0.0, 0.2, seed=1, group_regex=r"^(P\d+)_", num_folds=4, fold=0)["test"])
    for f in range(4):
        s = make_splits(ps, 0.0, 0.2, seed=1, group_regex=r"^(P\d+)_", num_folds=4, fold=f)
        assert keys(s["test"]) == test
        assert not {p.image.name[:3] for p in s["train"]} & {p.image.name[:3] for p in s["val"]}


def test_fold_errors():
    with pytest.raises(DataError, match="data.fold=5 is out of range for data.num_folds=5; expected 0..4"):
        make_splits(pairs(10), num_folds=5, fold=5)
    with pytest.raises(DataError, match="only 2 group"):
        assign_folds(["a", "a", "b"], 3, seed=0)


def test_train_subset_is_seeded_subset():
    ps = pairs(30)
    full = make_splits(ps, 0.2, seed=0)
    sub = make_splits(ps, 0.2, seed=0, train_subset=5)
    assert len(sub["train"]) == 5 and set(keys(sub["train"])) <= set(keys(full["train"]))
    assert keys(sub["val"]) == keys(full["val"])
    assert keys(make_splits(ps, 0.2, seed=0, train_subset=5)["train"]) == keys(sub["train"])
    with pytest.raises(DataError, match="data.train_subset=99 but the training split has 24 pairs"):
        make_splits(ps, 0.2, seed=0, train_subset=99)


def test_explicit_splits_win_and_val_is_carved_from_train(isic_root, tmp_path):
    d = discover(isic_root)
    s = make_splits(d.pairs, 0.5, 0.0, seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (6, 2, 2)
    train_only = [p for p in d.pairs if p.split == "train"]
    carved = make_splits(train_only, 0.5, 0.0, seed=0)
    assert (len(carved["train"]), len(carved["val"])) == (3, 3)


def test_csv_split_fold_and_group_columns(csv_root):
    d = discover(csv_root)
    s = make_splits(d.pairs, seed=0, num_folds=3, fold=2)
    assert sorted(keys(s["test"])) == ["files/p2_10", "files/p3_11"]
    assert all(p.fold == 2 for p in s["val"]) and len(s["val"]) == 3  # rows 2, 5, 8
    grouped = make_splits(d.pairs, 0.3, 0.0, seed=0)  # explicit test; val carved by CSV group
    groups = {k: {p.group for p in v} for k, v in grouped.items()}
    assert not groups["train"] & groups["val"]


def test_partial_split_column_is_an_error(tmp_path):
    ps = pairs(3)
    mixed = [Pair(p.key, p.image, p.masks, split="train" if i else None) for i, p in enumerate(ps)]
    with pytest.raises(DataError, match="no split although other pairs have one"):
        make_splits(mixed)


def test_missing_test_split_is_carved_from_fixed_train(isic_root):
    train_only = [p for p in discover(isic_root).pairs if p.split == "train"]
    s = make_splits(train_only, 1 / 3, 1 / 3, seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (2, 2, 2)
    assert sorted(keys(s["train"]) + keys(s["val"]) + keys(s["test"])) == sorted(keys(train_only))


def test_partial_fold_column_is_an_error_naming_the_rows(csv_root):
    """One empty fold cell threw the whole column away for seeded per-image folds (patients split)."""
    csv = csv_root / "manifest.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace(",train,2,", ",train,,")  # files/p2_2.png
    csv.write_text("\n".join(lines) + "\n")
    d = discover(csv_root)
    with pytest.raises(DataError) as e:
        make_splits(d.pairs, seed=0, num_folds=3, fold=0)
    msg = str(e.value)
    assert "the CSV fold column is empty for 1 of 10 training/validation pairs (the rows of " in msg
    assert "p2_2.png" in msg and "fix: fill those fold cells, or empty the whole column" in msg
    blank = [Pair(p.key, p.image, p.masks, split=p.split, group=p.group) for p in d.pairs]
    assert len(make_splits(blank, seed=0, num_folds=3, fold=0)["val"]) > 0  # no fold at all: seeded folds


def test_a_group_in_two_given_splits_is_refused_naming_it(tmp_path):
    """A CSV whose patient P has a train row and a test row: the group was computed and then ignored."""
    ps = [
        Pair("a", Path("/d/a.png"), (Path("/d/am.png"),), split="train", group="P"),
        Pair("b", Path("/d/b.png"), (Path("/d/bm.png"),), split="train", group="Q"),
        Pair("c", Path("/d/c.png"), (Path("/d/cm.png"),), split="val", group="R"),
        Pair("d", Path("/d/d.png"), (Path("/d/dm.png"),), split="test", group="P"),
    ]
    with pytest.raises(
        DataError, match=r"group 'P' has pairs in more than one split \(a.png in train, d.png in test\)"
    ):
        make_splits(ps)
    folds = [
        Pair(p.key, p.image, p.masks, split="train", fold=i % 2, group="P" if i < 2 else p.key)
        for i, p in enumerate(ps)
    ]
    for fold in (0, 1):  # P's rows in folds 0 and 1: refused whichever fold validates
        with pytest.raises(DataError, match=r"group 'P' has rows in CSV folds 0 \(a.png\) and 1 \(b.png\)"):
            make_splits(folds, num_folds=2, fold=fold)


def test_a_small_test_fraction_still_holds_out_a_pair():
    """round(10 x 0.05) = 0: test_fraction 0.05 gave no test split, and `segapp test` said to set it."""
    s = make_splits(pairs(10), 0.2, 0.05, seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (7, 2, 1)
