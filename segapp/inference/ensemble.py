"""Members of a model: one checkpoint, several, or a ``segapp-cv`` run folder, checked to fit together.

Members must share their input size, size policy and channels: the engine feeds all of them one
batch, preprocessed as member 0 was trained. Their normalisation may differ (each fold
normalises with its own training split's statistics): each member gets an exact per-channel
affine map from member 0's normalisation to its own (:func:`input_maps`). The ensemble
averages the members' probabilities; its threshold and temperature come from the cv folder's
``ensemble.json`` (fitted on out-of-fold predictions by ``segapp-cv``), else they are the means
of the members' own.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segapp.inference.checkpoint import CheckpointError, file_sha256, load_net

ENSEMBLE_FILE = "ensemble.json"
SPEC_KEYS = ("size", "size_policy", "in_channels")


@dataclass
class Members:
    """Loaded members and what the ensemble of them uses."""

    nets: list[Any]
    spec: Any
    metas: list[dict[str, Any]]
    paths: list[Path]
    threshold: float
    trust: dict[str, Any] | None  # plain-JSON review rules (see segapp.inference.trust.TrustRules)
    stats: list[dict[str, Any] | None] = field(default_factory=list)  # per member: OOD feature statistics
    inputs: list[tuple[list[float], list[float]]] = field(default_factory=list)  # per member: (scale, shift)
    source: str = "checkpoint"  # "checkpoint", "checkpoints" or "cv folder"


def rules_of(trust: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plain-JSON part of a trust block (everything but the feature tensors)."""
    if not trust:
        return None
    return {k: v for k, v in trust.items() if k != "features"}


def resolve(paths: list[str | Path]) -> tuple[list[Path], dict[str, Any] | None]:
    """Member checkpoint files, and the cv folder's ensemble record when a folder was given.

    Raises:
        CheckpointError: a folder with neither ``ensemble.json`` nor ``fold_*/checkpoints/best.ckpt``.
    """
    if len(paths) == 1 and Path(paths[0]).is_dir():
        folder = Path(paths[0])
        record_path = folder / ENSEMBLE_FILE
        if record_path.is_file():
            record = read_record(record_path)
            members = [folder / m for m in record["members"]]
            check_record(record_path, members, record.get("member_sha256"))
            return members, record
        found = sorted(folder.glob("fold_*/checkpoints/best.ckpt"))
        if not found:
            raise CheckpointError(
                f"{folder} is a folder without {ENSEMBLE_FILE} or fold_*/checkpoints/best.ckpt; expected a "
                "`segapp-cv --out` folder, or pass checkpoint files"
            )
        warnings.warn(
            f"{folder} has no {ENSEMBLE_FILE} (segapp-cv writes it once every fold has trained): ensembling the "
            f"{len(found)} fold(s) found ({', '.join(p.parts[-3] for p in found)}) with the means of their own "
            "thresholds and temperatures, not the out-of-fold fit; if folds are missing, finish them with segapp-cv",
            stacklevel=2,
        )
        return found, None
    return [Path(p) for p in paths], None


def read_record(path: Path) -> dict[str, Any]:
    """A cv folder's ``ensemble.json``, with ``members`` and ``threshold``.

    Raises:
        CheckpointError: unreadable JSON or missing keys, naming the file and the fix.
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON ({e}); fix: rerun segapp-cv to write it again") from e
    missing = [k for k in ("members", "threshold") if k not in record] if isinstance(record, dict) else ["members"]
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(missing)}; expected the ensemble record segapp-cv writes; fix: rerun segapp-cv"
        )
    return record


def check_record(path: Path, members: list[Path], hashes: list[str] | None) -> None:
    """Refuse an ``ensemble.json`` whose members are missing or changed since ``segapp-cv`` wrote it
    (its threshold and temperature were fitted on those members' out-of-fold predictions).

    Raises:
        CheckpointError: naming the member and the fix.
    """
    for k, member in enumerate(members):
        if not member.is_file():
            raise CheckpointError(
                f"{path} lists {member}, which does not exist; expected the fold checkpoints segapp-cv wrote; "
                "fix: rerun segapp-cv, or pass the checkpoints you have as --checkpoint a.ckpt b.ckpt ..."
            )
        if hashes and file_sha256(member) != hashes[k]:
            raise CheckpointError(
                f"{member} changed since {path} was written (SHA-256 differs), so the ensemble's threshold and "
                "temperature no longer fit it; fix: rerun segapp-cv, or pass the checkpoints as "
                "--checkpoint a.ckpt b.ckpt ... (the members' own thresholds and temperatures are then averaged)"
            )


def check_compatible(specs: list[dict[str, Any]], paths: list[Path]) -> None:
    """Refuse members whose preprocessing differs, naming the setting and both files."""
    for spec, path in zip(specs[1:], paths[1:], strict=True):
        for key in SPEC_KEYS:
            a, b = specs[0].get(key), spec.get(key)
            if a != b:
                raise CheckpointError(
                    f"ensemble members must share their input, but {key} is {a} in {paths[0]} and {b} in {path}; "
                    "fix: ensemble checkpoints trained with the same data settings (data.image_size, "
                    "data.in_channels, size policy), e.g. the folds of one `segapp-cv` run"
                )


def mask_target(meta: dict[str, Any]) -> tuple[int, ...] | None:
    """The label values a member was trained to find, when it was trained on chosen labels of a
    label map (``data.foreground_labels``); ``()`` for any non-zero or grey-above-threshold value
    (0/255 and 0/1 masks read alike either way); ``None`` when no mask rule was recorded."""
    rule = (meta.get("run") or {}).get("mask_rule")
    if not isinstance(rule, dict):
        return None
    if rule.get("kind") == "labels" and rule.get("labels") is not None:
        return tuple(sorted(int(v) for v in rule["labels"]))
    return ()


def check_targets(metas: list[dict[str, Any]], paths: list[Path]) -> None:
    """Refuse members trained to find different labels of a label map: their mean probability
    would be of no one target, yet look like a plausible mask.

    Raises:
        CheckpointError: naming both files, both targets and the fix.
    """
    recorded = [(t, p) for m, p in zip(metas, paths, strict=True) if (t := mask_target(m)) is not None]
    for target, path in recorded[1:]:
        first, first_path = recorded[0]
        if target != first:
            raise CheckpointError(
                f"ensemble members must be trained to find the same lesions, but {first_path} was trained on "
                f"{_target_text(first)} and {path} on {_target_text(target)} (data.foreground_labels); fix: "
                "ensemble checkpoints trained with the same mask settings, e.g. the folds of one `segapp-cv` run"
            )


def _target_text(target: tuple[int, ...]) -> str:
    return f"labels {list(target)}" if target else "any lesion value"


def input_maps(specs: list[dict[str, Any]]) -> list[tuple[list[float], list[float]]]:
    """Per member, ``(scale, shift)`` taking member 0's normalised input to the member's own.

    ``x0 = (v - m0) / s0`` and ``xk = (v - mk) / sk`` give ``xk = x0 * s0 / sk + (m0 - mk) / sk``.
    """
    m0, s0 = specs[0]["mean"], specs[0]["std"]
    return [
        (
            [a / b for a, b in zip(s0, spec["std"], strict=True)],
            [(a - c) / b for a, c, b in zip(m0, spec["mean"], spec["std"], strict=True)],
        )
        for spec in specs
    ]


def _mean_rules(blocks: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Members' rules combined: means of temperature and uncertainty threshold over the members
    that have a trust block (None when none has)."""
    blocks = [b for b in blocks if b is not None]
    if not blocks:
        return None
    unc = [b.get("uncertainty_threshold") for b in blocks]
    return {
        "temperature": sum(float(b["temperature"]) for b in blocks) / len(blocks),
        "uncertainty_threshold": None if None in unc else sum(unc) / len(unc),
        "est_dice_threshold": blocks[0].get("est_dice_threshold", 0.8),
        "flag_empty": all(b.get("flag_empty", False) for b in blocks),
        "trained_on_colour": any(b.get("trained_on_colour") for b in blocks),
        "trained_on_low_range": all(b.get("trained_on_low_range") for b in blocks),
        "unreliable": "; ".join(str(b["unreliable"]) for b in blocks if b.get("unreliable")),
        "combined_from": "members' means",
    }


def load_members(paths: list[str | Path]) -> Members:
    """Load every member (``weights_only``), check they fit together, and combine their settings.

    Raises:
        CheckpointError: unreadable member, or members with different preprocessing.
    """
    files, record = resolve(paths)
    loaded = [load_net(p) for p in files]
    specs = [m["preprocess"] for _, _, _, m in loaded]
    check_compatible(specs, files)
    metas = [m for *_, m in loaded]
    check_targets(metas, files)
    trusts = [m.get("trust") for m in metas]
    for path, trust in zip(files, trusts, strict=True):
        if not trust:
            warnings.warn(
                f"{path} has no trust block (a last.ckpt, or written before trust signals): it adds no OOD score "
                "and no calibration; "
                + ("the other members' are used. " if len(files) > 1 else "its predictions are not flagged by them. ")
                + "Use best.ckpt files, or refit with `segapp fit`",
                stacklevel=2,
            )
    if record is not None:
        threshold, rules, source = float(record["threshold"]), record.get("trust"), "cv folder"
    elif len(files) == 1:
        threshold, rules, source = loaded[0][2], rules_of(trusts[0]), "checkpoint"
    else:
        threshold = sum(t for _, _, t, _ in loaded) / len(loaded)
        rules, source = _mean_rules([rules_of(t) for t in trusts]), "checkpoints"
    return Members(
        nets=[n for n, *_ in loaded],
        spec=loaded[0][1],
        metas=metas,
        paths=files,
        threshold=threshold,
        trust=rules,
        stats=[(t or {}).get("features") for t in trusts],
        inputs=input_maps(specs),
        source=source,
    )


def member_hashes(members: Members) -> list[str]:
    """SHA-256 of each member file (recorded in ``run.json`` and the resume record)."""
    return [file_sha256(p) for p in members.paths]
