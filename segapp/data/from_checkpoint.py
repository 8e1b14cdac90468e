"""What a checkpoint says about its data, and the checks that keep scoring and resuming honest.

Every checkpoint records its split (``ckpt["LesionDataModule"]["split"]``: per split, the sorted
short ids of its images, :func:`split_record`) and its preprocessing (``ckpt["segapp"]["preprocess"]``).
Whenever ``--ckpt_path`` is given, the data is fed with the checkpoint's preprocessing, as
segapp-predict does, and

* ``segapp validate|test`` refuses a scored split holding images the checkpoint trained on (test:
  or validated on; those chose ``best.ckpt``, tuned its threshold and fitted its temperature);
* ``segapp fit`` (a resume) refuses a split that moved images between training and validation/test;
* an ``image_size``, ``in_channels`` or ``normalize`` other than the checkpoint's is refused
  (validate/test: when given; a resume: always), naming the setting.

Splits are still assigned as :func:`segapp.data.splits.make_splits` always did; this only compares.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segapp.data.layouts import Pair
from segapp.errors import SettingError
from segapp.io import PreprocessSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SETTINGS = ("image_size", "in_channels", "normalize")
DATA_STATE_KEY = "LesionDataModule"  # Lightning stores a datamodule's state_dict under its class name


def image_id(pair: Pair) -> str:
    """Short stable id of a pair's image: 10 hex digits of SHA-1 over its key and byte size.

    The size tells a re-saved or altered copy under the same name (another site's darker copy)
    from the image itself; 10 digits keep 900 Kvasir keys at about 11 kB per checkpoint.
    """
    return hashlib.sha1(f"{pair.key}\0{pair.image.stat().st_size}".encode()).hexdigest()[:10]


def split_record(splits: Mapping[str, Sequence[Pair]]) -> dict[str, list[str]]:
    """The sorted image ids of each split (what a checkpoint keeps of the split it was trained with)."""
    return {s: sorted(image_id(p) for p in splits.get(s, ())) for s in SPLITS}


@dataclass(frozen=True)
class CheckpointData:
    """The data facts of a checkpoint: its file, preprocessing, split and data settings.

    Attributes:
        path: The checkpoint file (named in every message).
        spec: Its ``segapp.preprocess`` (``None`` in a checkpoint without the block).
        split: Its split record, ``None`` in checkpoints written before it was kept.
        settings: Its datamodule hyper-parameters (``data.*`` as the run gave them).
    """

    path: str
    spec: PreprocessSpec | None = None
    split: dict[str, list[str]] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> CheckpointData:
        """Read the facts from a checkpoint file (safe loader, memory-mapped: the weights are not read)."""
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        meta = ckpt.get("segapp") or {}
        spec = PreprocessSpec.from_dict(meta["preprocess"]) if meta.get("preprocess") else None
        split = (ckpt.get(DATA_STATE_KEY) or {}).get("split")
        settings = dict(ckpt.get("datamodule_hyper_parameters") or {})
        return cls(str(path), spec, split, settings)

    def wanted(self) -> dict[str, Any]:
        """The checkpoint's ``image_size``, ``in_channels`` and ``normalize`` (``None``: it does not say)."""
        spec, s = self.spec, self.settings
        return {
            "image_size": spec.size[0] if spec is not None else s.get("image_size"),
            "in_channels": spec.in_channels if spec is not None else s.get("in_channels"),
            "normalize": s.get("normalize"),
        }


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, Mapping) and isinstance(want, Mapping):
        return {k: [float(x) for x in v] for k, v in got.items()} == {k: [float(x) for x in v] for k, v in want.items()}
    return got == want


def _given(key: str, given: Iterable[str] | None) -> bool:
    """Whether the user set ``data.<key>`` (on the command line or in a config file); ``None``: assume so."""
    if given is None:
        return True
    name = f"data.{key}"
    return any(g in ("data", name) or g.startswith(name + ".") for g in given)


def check_settings(ckpt: CheckpointData, hp: Mapping[str, Any], resume: bool, given: Iterable[str] | None) -> None:
    """Refuse a data setting that would feed the checkpoint otherwise than it was trained.

    A resume refuses any difference (the checkpoint it saves must describe what it was fed);
    validate/test refuse one the user gave (one left at its default follows the checkpoint), and
    any other ``in_channels`` (the net is built from it).

    Raises:
        SettingError: naming the setting, the checkpoint's value, the value given and the fix.
    """
    given = None if given is None else list(given)
    for key, want in ckpt.wanted().items():
        got = hp.get(key)
        if want is None or _same(got, want):
            continue
        if not (resume or key == "in_channels" or _given(key, given)):
            continue
        why, fix = _why_and_fix(key, resume)
        raise SettingError(
            f"data.{key}: expected {want!r}, what checkpoint {ckpt.path} was trained with ({why}), got {got!r}; "
            f"fix: {fix}"
        )


def _why_and_fix(key: str, resume: bool) -> tuple[str, str]:
    """Why a data setting must be the checkpoint's, and what to do instead."""
    if not resume:
        why = "validate/test feed the data with the checkpoint's preprocessing, as segapp-predict does"
        return why, f"leave data.{key} out or give the run's value (its logs/version_N/config.yaml)"
    why = "a resumed run is fed as its checkpoint was, so the preprocessing it saves is the one it used"
    fix = f"resume with the run's data.{key} (its logs/version_N/config.yaml), or start a new run without --ckpt_path"
    if key == "image_size":
        fix += " (data.train_size_schedule changes the training size within a run)"
    return why, fix


def _no_record(ckpt: CheckpointData, what: str) -> None:
    log.warning(
        "data: checkpoint %s records no split (written before segapp kept one): cannot check %s; make sure "
        "the data settings are the run's",
        ckpt.path,
        what,
    )


def check_scored(ckpt: CheckpointData, now: Mapping[str, Sequence[str]], stage: str) -> None:
    """``segapp validate`` / ``test``: refuse a scored split holding images the checkpoint learnt from.

    Validation may not hold its training images; test may not hold its training or validation
    images (validation chose ``best.ckpt``, tuned its threshold and fitted its temperature).

    Raises:
        SettingError: how many scored images overlap which of the checkpoint's splits, and the fix.
    """
    if ckpt.split is None:
        _no_record(ckpt, "that the scored images were never trained on")
        return
    split = "val" if stage == "validate" else "test"
    learnt = ("train",) if split == "val" else ("train", "val")
    scored = set(now[split])
    hits = {s: len(scored & set(ckpt.split.get(s, ()))) for s in learnt}
    if not any(hits.values()):
        return
    names = {"train": "training", "val": "validation", "test": "test"}
    found = " and ".join(f"{n} of its {names[s]} images" for s, n in hits.items() if n)
    never = "trained" if split == "val" else "trained or validated"
    run = "data.root, data.seed, data.val_fraction, data.test_fraction, data.num_folds/fold"
    raise SettingError(
        f"segapp {stage} --ckpt_path {ckpt.path}: expected a {names[split]} split of images the checkpoint never "
        f"{never} on, got {len(scored)} {names[split]} images holding {found} (its score would be inflated); fix: "
        f"score the {names[split]} split the run held out (its logs/version_N/config.yaml: same {run}), or images "
        "it never saw (a held-out folder: segapp-predict, then segapp-eval)"
    )


def check_resume(ckpt: CheckpointData, now: Mapping[str, Sequence[str]]) -> None:
    """``segapp fit --ckpt_path``: refuse a split in which images changed split since the checkpoint.

    An image validated or tested on that is now trained on (or the reverse) makes ``val/dice`` and
    ``best.ckpt`` judge trained images. Images new since the checkpoint are not moves.

    Raises:
        SettingError: how many images moved from which split to which, and the fix.
    """
    if ckpt.split is None:
        _no_record(ckpt, "that the resumed run keeps its split")
        return
    before = {i: s for s in SPLITS for i in ckpt.split.get(s, ())}
    moves = Counter((before[i], s) for s in SPLITS for i in now[s] if before.get(i, s) != s)
    if not moves:
        return
    text = ", ".join(f"{n} {a} -> {b}" for (a, b), n in sorted(moves.items()))
    raise SettingError(
        f"segapp fit --ckpt_path {ckpt.path}: expected the split the run was trained with, got images that "
        f"changed split ({text}; data.seed, data.val_fraction, data.test_fraction, data.num_folds/fold, "
        "data.group_regex or the files differ from the run's), so val/dice and best.ckpt would judge trained "
        "images; fix: resume with the run's data settings and files (its logs/version_N/config.yaml), or start "
        "a new run without --ckpt_path"
    )


def check_split(ckpt: CheckpointData, now: Mapping[str, Sequence[str]], stage: str | None) -> None:
    """The split check for a trainer stage: ``fit`` (resume), ``validate`` / ``test`` (scoring); else none."""
    stage = getattr(stage, "value", stage)  # Lightning passes its TrainerFn enum
    if stage == "fit":
        check_resume(ckpt, now)
    elif stage in ("validate", "test"):
        check_scored(ckpt, now, stage)
