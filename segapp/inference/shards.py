"""Sharded folder runs: which inputs shard I of N predicts, and the file names it writes.

A shard is ``I/N`` with a 0-based index (SLURM arrays, Kubernetes Indexed Jobs and AWS Batch
array jobs all count from 0). Shard I takes every input whose position in the sorted input
list (:func:`segapp.inference.folder.discover`: sorted by path, so the file system's listing
order never matters) satisfies ``position % N == I``: shards differ by at most one input and
every input is in exactly one shard. Files added to (or removed from) the input folder between
the starts of two shards shift the assignment; ``segapp-merge`` recomputes it and reports
inputs missing or done twice.

Every file a shard writes into the shared output folder carries its tag
``shard-003-of-008`` (:class:`RunFiles`), its temp files start ``.tmp-s003-``, and the
merged ``predictions.csv``, ``run.json`` and ``review.html`` are written only by
``segapp-merge``, so no file is written by two shards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from segapp.errors import UserError
from segapp.inference.lock import LOCK_NAME
from segapp.inference.outputs import JOURNAL, RECORD
from segapp.io.writers import TEMP_PREFIX

T = TypeVar("T")

#: the shard count for ``--shard auto`` when the scheduler does not say it (Kubernetes, AWS Batch)
COUNT_ENV = "SEGAPP_SHARD_COUNT"
#: ``shard-003-of-008`` in a file name -> index 3, count 8
TAG_RE = re.compile(r"shard-(\d+)-of-(\d+)")
MERGE_TEMP_PREFIX = ".tmp-merge-"
MERGE_LOCK = ".segapp-merge.lock"


class ShardError(UserError, ValueError):
    """A bad ``--shard`` value or scheduler variable (the message says expected, got and the fix)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"--shard: the shard count must be >= 1, got {self.count}; fix: e.g. --shard 0/4")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"--shard: the index must be 0 <= I < {self.count} (0-based), got {self.index}; "
                f"fix: run shards 0/{self.count} ... {self.count - 1}/{self.count}"
            )

    @property
    def width(self) -> int:
        """Digits of the zero-padded numbers in file names (3, more for 1000+ shards)."""
        return max(3, len(str(self.count - 1)))

    @property
    def tag(self) -> str:
        """``shard-003-of-008``: the part of every file name this shard writes."""
        return f"shard-{self.index:0{self.width}d}-of-{self.count:0{self.width}d}"

    @property
    def label(self) -> str:
        """``3/8``, as ``--shard`` takes it."""
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[T]) -> list[T]:
        """The items at positions ``index, index + count, ...`` of the sorted input list."""
        return list(items[self.index :: self.count])


@dataclass(frozen=True)
class RunFiles:
    """Names of the bookkeeping files one run writes into its output folder.

    Unsharded (``RunFiles()``): today's names. Shard 3 of 8 (``RunFiles.for_shard``):
    ``predictions.shard-003-of-008.csv``, ``run.shard-003-of-008.json``,
    ``.segapp-predict.shard-003-of-008.jsonl`` (journal), ``...options.json`` (record),
    ``...lock``, and temp files ``.tmp-s003-*``.
    """

    csv: str = "predictions.csv"
    run_json: str = "run.json"
    journal: str = JOURNAL
    record: str = RECORD
    lock: str = LOCK_NAME
    temp_prefix: str = TEMP_PREFIX

    @classmethod
    def for_shard(cls, shard: Shard | None) -> RunFiles:
        """The names for ``shard`` (``None``: an unsharded run)."""
        if shard is None:
            return cls()
        tag = shard.tag
        return cls(
            csv=f"predictions.{tag}.csv",
            run_json=f"run.{tag}.json",
            journal=f".segapp-predict.{tag}.jsonl",
            record=f".segapp-predict.{tag}.options.json",
            lock=f".segapp-predict.{tag}.lock",
            temp_prefix=f"{TEMP_PREFIX}s{shard.index:0{shard.width}d}-",
        )


def shard_of_name(name: str) -> Shard | None:
    """The shard a file name belongs to (``.segapp-predict.shard-003-of-008.lock`` -> 3/8), else None."""
    m = TAG_RE.search(name)
    if m is None:
        return None
    try:
        return Shard(int(m.group(1)), int(m.group(2)))
    except ShardError:
        return None


def _int(env: Mapping[str, str], name: str) -> int:
    value = env[name].strip()
    try:
        return int(value)
    except ValueError:
        raise ShardError(
            f"--shard auto: {name}={value!r} is not a whole number; fix: check the job's environment"
        ) from None


def _count(given: int | None, env: Mapping[str, str], scheduler: str, own: str | None = None) -> int:
    """The shard count: ``--shard-count``, else the scheduler's own variable, else SEGAPP_SHARD_COUNT."""
    if given is not None:
        return given
    for name in (own, COUNT_ENV):
        if name and env.get(name, "").strip():
            return _int(env, name)
    hint = f"{own} or " if own else ""
    raise ShardError(
        f"--shard auto: {scheduler} gives the index but not the shard count ({hint}{COUNT_ENV} is not set); "
        f"fix: pass --shard-count N or set {COUNT_ENV}=N (N = the job's number of tasks)"
    )


def _slurm(env: Mapping[str, str], given: int | None) -> Shard:
    """SLURM array task: ``SLURM_ARRAY_TASK_ID`` (minus ``_MIN``, over ``_STEP``) of ``_COUNT``."""
    first, step = 0, 1
    if env.get("SLURM_ARRAY_TASK_MIN", "").strip():
        first = _int(env, "SLURM_ARRAY_TASK_MIN")
    if env.get("SLURM_ARRAY_TASK_STEP", "").strip():
        step = max(1, _int(env, "SLURM_ARRAY_TASK_STEP"))
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    count = _count(given, env, "SLURM", "SLURM_ARRAY_TASK_COUNT")
    if (task - first) % step:
        raise ShardError(
            f"--shard auto: SLURM_ARRAY_TASK_ID={task} is not on the array's step {step} from {first}; "
            "fix: use a contiguous array such as #SBATCH --array=0-7"
        )
    index = (task - first) // step
    if not 0 <= index < count:
        raise ShardError(
            f"--shard auto: SLURM array task {task} (from {first}) is shard {index}, outside 0..{count - 1} "
            f"of {count}; fix: use a contiguous array such as #SBATCH --array=0-{count - 1}"
        )
    return Shard(index, count)


def shard_from_env(env: Mapping[str, str] | None = None, count: int | None = None) -> Shard:
    """``--shard auto``: the shard from the scheduler's environment.

    Read in this order: SLURM (``SLURM_ARRAY_TASK_ID``; count ``SLURM_ARRAY_TASK_COUNT``,
    ``SLURM_ARRAY_TASK_MIN`` subtracted), Kubernetes Indexed Job (``JOB_COMPLETION_INDEX``),
    AWS Batch array job (``AWS_BATCH_JOB_ARRAY_INDEX``; count ``AWS_BATCH_JOB_ARRAY_SIZE`` when
    set). ``count`` (``--shard-count``) or ``SEGAPP_SHARD_COUNT`` gives the count the scheduler
    does not.

    Raises:
        ShardError: no scheduler variable set, no count, or values out of range.
    """
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_TASK_ID", "").strip():
        return _slurm(env, count)
    if env.get("JOB_COMPLETION_INDEX", "").strip():
        return Shard(_int(env, "JOB_COMPLETION_INDEX"), _count(count, env, "Kubernetes"))
    if env.get("AWS_BATCH_JOB_ARRAY_INDEX", "").strip():
        index = _int(env, "AWS_BATCH_JOB_ARRAY_INDEX")
        return Shard(index, _count(count, env, "AWS Batch", "AWS_BATCH_JOB_ARRAY_SIZE"))
    raise ShardError(
        "--shard auto: none of SLURM_ARRAY_TASK_ID (SLURM array), JOB_COMPLETION_INDEX (Kubernetes "
        "Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) is set; fix: run it as a task "
        "of an array job, or pass --shard I/N"
    )


def parse_shard(value: str | None, count: int | None = None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard`` and ``--shard-count`` as a :class:`Shard` (None: not sharded).

    ``value`` is ``I/N`` (0-based, ``0 <= I < N``) or ``auto`` (see :func:`shard_from_env`).

    Raises:
        ShardError: a malformed value, out of range, or ``--shard-count`` that contradicts it.
    """
    if value is None:
        if count is not None:
            raise ShardError("--shard-count goes with --shard auto; fix: add --shard auto (or drop --shard-count)")
        return None
    if count is not None and count < 1:
        raise ShardError(f"--shard-count must be >= 1, got {count}; fix: pass the job's number of tasks")
    if value.strip().lower() == "auto":
        return shard_from_env(env, count)
    m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", value)
    if m is None:
        raise ShardError(f"--shard: expected I/N (0-based, e.g. 3/8) or auto, got {value!r}; fix: e.g. --shard 0/4")
    shard = Shard(int(m.group(1)), int(m.group(2)))
    if count is not None and count != shard.count:
        raise ShardError(
            f"--shard {value} says {shard.count} shards but --shard-count says {count}; fix: drop --shard-count"
        )
    return shard
