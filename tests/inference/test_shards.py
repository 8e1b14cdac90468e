"""Sharded runs (issue 17): ``segapp-predict --shard I/N|auto`` into one folder, ``segapp-merge``,
and the Kubernetes / SLURM examples that run them."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.inference.folder import discover
from segapp.inference.lock import process_start_time
from segapp.inference.outputs import remove_stale_temps
from segapp.inference.shards import RunFiles, Shard, ShardError, parse_shard, shard_from_env
from segapp.io.writers import atomic_write, temp_prefix
from tests.conftest import REPO, flags
from tests.inference.formats import make_scan_folder
from tests.inference.test_predict_cli import predict_in_process

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def merge(capsys, folder: Path, *extra: str) -> tuple[int, str, str]:
    """``segapp-merge`` in this process: ``(exit code, stdout, stderr)``."""
    from segapp.cli.merge import main

    with pytest.raises(SystemExit) as info:
        main([str(folder), *extra])
    captured = capsys.readouterr()
    return int(info.value.code), captured.out, captured.err


def popen_predict(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "segapp.cli.predict", "--no-progress", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def make_images(folder: Path, n: int, seed: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


# --- which inputs a shard takes, and its names ------------------------------------------------------


def test_every_input_is_in_exactly_one_shard_balanced_by_count():
    items = [f"f{i:02d}" for i in range(17)]
    parts = [Shard(i, 5).select(items) for i in range(5)]
    assert sorted(x for p in parts for x in p) == items  # each input once
    assert {len(p) for p in parts} == {3, 4}  # balanced to within one
    assert parts[2] == ["f02", "f07", "f12"] and Shard(0, 1).select(items) == items
    assert Shard(7, 8).select(items[:3]) == []  # more shards than inputs: an empty shard


def test_the_assignment_does_not_depend_on_the_file_systems_listing_order(tmp_path):
    """discover() sorts, so two listings of one folder give one assignment."""
    for name in ("b.png", "a.png", "c/d.png", "c.png", "a-b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    files, _ = discover(tmp_path)
    rels = [f.relative_to(tmp_path).as_posix() for f in files]
    assert rels == ["a-b.png", "a.png", "b.png", "c/d.png", "c.png"]  # sorted by path components
    assert [f.relative_to(tmp_path).as_posix() for f in Shard(1, 2).select(files)] == ["a.png", "c/d.png"]


def test_every_file_of_a_shard_carries_its_tag():
    files = RunFiles.for_shard(Shard(3, 8))
    assert files.csv == "predictions.shard-003-of-008.csv" and files.run_json == "run.shard-003-of-008.json"
    assert files.journal == ".segapp-predict.shard-003-of-008.jsonl"
    assert files.record == ".segapp-predict.shard-003-of-008.options.json"
    assert files.lock == ".segapp-predict.shard-003-of-008.lock" and files.temp_prefix == ".tmp-s003-"
    assert RunFiles.for_shard(Shard(1234, 2000)).csv == "predictions.shard-1234-of-2000.csv"
    assert RunFiles.for_shard(None) == RunFiles()  # unsharded: today's names
    assert RunFiles().csv == "predictions.csv" and RunFiles().journal == ".segapp-predict.jsonl"


# --- --shard auto and bad values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "count", "expected"),
    [
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}, None, (3, 8)),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}, None, (3, 8)),
        ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_STEP": "2"}, None, (3, 4)),
        ({"JOB_COMPLETION_INDEX": "5"}, 6, (5, 6)),
        ({"JOB_COMPLETION_INDEX": "0", "SEGAPP_SHARD_COUNT": "2"}, None, (0, 2)),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "9", "AWS_BATCH_JOB_ARRAY_SIZE": "10"}, None, (9, 10)),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "2"}, 3, (2, 3)),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "SEGAPP_SHARD_COUNT": "4"}, None, (1, 4)),
    ],
    ids=["slurm", "slurm-from-1", "slurm-step", "k8s-count", "k8s-env", "aws-size", "aws-count", "aws-env"],
)
def test_shard_auto_reads_each_schedulers_variables(env, count, expected):
    shard = parse_shard("auto", count, env)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize(
    ("env", "count", "says"),
    [
        ({}, None, "none of SLURM_ARRAY_TASK_ID (SLURM array), JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "2"}, None, "pass --shard-count N or set SEGAPP_SHARD_COUNT"),
        ({"JOB_COMPLETION_INDEX": "4"}, 4, "0 <= I < 4"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, None, "SLURM_ARRAY_TASK_ID='x' is not a whole"),
        ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3"}, None, "#SBATCH --array=0-2"),
    ],
    ids=["nothing-set", "no-count", "index-too-big", "not-a-number", "non-contiguous-array"],
)
def test_shard_auto_errors_say_what_to_set(env, count, says):
    with pytest.raises(ShardError, match="fix:") as info:
        shard_from_env(env, count)
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--shard", "3/3"], "0 <= I < 3 (0-based), got 3"),
        (["--shard=-1/3"], "0 <= I < 3"),
        (["--shard", "0/0"], "count must be >= 1, got 0"),
        (["--shard", "a/b"], "expected I/N (0-based, e.g. 3/8) or auto, got 'a/b'"),
        (["--shard", "2"], "expected I/N"),
        (["--shard", "1/4", "--shard-count", "8"], "drop --shard-count"),
        (["--shard-count", "8"], "--shard-count goes with --shard auto"),
        (["--shard", "auto", "--shard-count", "0"], "--shard-count must be >= 1"),
    ],
)
def test_bad_shard_values_are_one_line_errors(capsys, tmp_path, monkeypatch, flags, says):
    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"):
        monkeypatch.delenv(name, raising=False)
    base = ["--checkpoint", str(tmp_path / "never-read.ckpt"), "--input", str(tmp_path), "--output", "o"]
    code, _, err = predict_in_process(capsys, *base, *flags)
    assert code == 2 and says in err and "fix:" in err and len(err.strip().splitlines()) == 1, err


# --- temp files: each shard cleans up only its own ----------------------------------------------------


def test_start_up_clean_up_of_one_shard_leaves_other_shards_temp_files(tmp_path):
    (tmp_path / "sub").mkdir()
    with temp_prefix(RunFiles.for_shard(Shard(1, 3)).temp_prefix), atomic_write(tmp_path / "sub" / "x.png") as tmp:
        assert tmp.name.startswith(".tmp-s001-")  # what shard 1 writes in progress
        names = {n: tmp_path / "sub" / n for n in (".tmp-s000-old.png", ".tmp-merge-a.csv", ".tmp-abcd1234.png")}
        for p in names.values():
            p.write_bytes(b"")
        assert remove_stale_temps(tmp_path, ".tmp-s000-") == 1  # shard 0 starting: its own leftover only
        assert tmp.exists() and not names[".tmp-s000-old.png"].exists()
        assert remove_stale_temps(tmp_path) == 1  # an unsharded run: its own kind only
        assert tmp.exists() and names[".tmp-merge-a.csv"].exists() and not names[".tmp-abcd1234.png"].exists()
        tmp.write_bytes(b"done")
    assert (tmp_path / "sub" / "x.png").read_bytes() == b"done"
    with pytest.raises(ValueError, match="must start with '.tmp-'"), temp_prefix("tmp-s1-"):
        pass


# --- the examples ------------------------------------------------------------------------------------


K8S = sorted((REPO / "docker" / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("manifest", K8S, ids=lambda p: p.name)
@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_kubernetes_manifests_validate_against_the_api_schema(manifest, version):
    import kubernetes_validate
    import yaml

    for doc in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or mistyped field


def test_the_indexed_job_runs_shard_auto_as_uid_10001_with_read_only_input():
    import yaml

    job = yaml.safe_load((REPO / "docker" / "k8s" / "predict-job.yaml").read_text())
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    (container,) = pod["containers"]
    script = " ".join(container["args"])
    assert "--shard auto" in script and f"--shard-count {spec['completions']}" in script and "--resume" in script
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/in"]["readOnly"] is True and not mounts["/data/out"].get("readOnly")
    merge_job = yaml.safe_load((REPO / "docker" / "k8s" / "merge-job.yaml").read_text())
    assert merge_job["spec"]["template"]["spec"]["containers"][0]["command"] == ["segapp-merge"]


SLURM = REPO / "docker" / "slurm" / "predict-array.sh"


def test_the_slurm_script_passes_shellcheck():
    exe = shutil.which("shellcheck")
    if exe is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("shellcheck not found, and CI requires it: .ci/run installs Debian's shellcheck with apt")
        res = subprocess.run(["bash", "-n", str(SLURM)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        pytest.skip("shellcheck not installed (apt-get install shellcheck): checked with bash -n only; CI lints it")
    res = subprocess.run([exe, "--severity=style", str(SLURM)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(("rc", "task_rc"), [(0, 0), (1, 0), (3, 0), (2, 2), (143, 143)])
def test_the_slurm_script_runs_a_shard_and_counts_error_rows_as_done(tmp_path, rc, task_rc):
    stub(tmp_path, "fake-predict", f'echo "$@" > {tmp_path}/args; exit {rc}')
    env = {**ENV, "SLURM_ARRAY_TASK_ID": "2", "SEGAPP_PREDICT": str(tmp_path / "fake-predict")}
    res = subprocess.run(["bash", str(SLURM)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == task_rc, res.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[args.index("--shard") + 1] == "auto" and "--resume" in args


def test_the_slurm_script_submits_the_array_then_a_dependent_merge(tmp_path):
    stub(tmp_path, "sbatch", f'echo "$@" >> {tmp_path}/sbatch.log; echo "4242;cluster"')
    env = {**ENV, "PATH": f"{tmp_path}:{ENV['PATH']}", "SEGAPP_OUTPUT": str(tmp_path / "my out")}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    res = subprocess.run(["bash", str(SLURM)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "job 4242" in res.stdout, res.stderr
    array, merge_job = (tmp_path / "sbatch.log").read_text().splitlines()
    assert array.endswith(str(SLURM)) and "--dependency=afterany:4242" in merge_job
    assert "segapp-merge" in merge_job and "my\\ out" in merge_job  # the output path quoted for --wrap


# --- real runs with the tiny model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scans_and_single_run(tiny_ckpt, tmp_path_factory):
    """Every format plus broken files, and one unsharded run over them (the reference)."""
    root = tmp_path_factory.mktemp("shards")
    inp, single = root / "in", root / "single"
    make_scan_folder(inp)
    code, log = finish(popen_predict(*flags(checkpoint=tiny_ckpt, input=inp, output=single, workers=0)))
    assert code == 1, log  # some broken inputs
    return inp, single


def same_masks(a: Path, b: Path, rows: list[dict[str, str]]) -> int:
    """Compare every ok row's mask file in two output folders byte for byte; returns how many."""
    n = 0
    for r in rows:
        if r["status"] == "ok":
            assert (a / r["output"]).read_bytes() == (b / r["output"]).read_bytes(), r["output"]
            n += 1
    return n


@pytest.mark.slow
def test_three_parallel_shards_merge_into_the_unsharded_run(tiny_ckpt, scans_and_single_run, tmp_path, capsys):
    inp, single = scans_and_single_run
    out = tmp_path / "sharded"
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    procs = [popen_predict(*base, "--shard", f"{i}/3") for i in range(3)]  # side by side, one folder
    results = [finish(p) for p in procs]
    assert all(code in (0, 1) for code, _ in results), results
    assert all(f"shard {i}/3:" in log and "segapp-merge" in log for i, (_, log) in enumerate(results))
    assert not (out / "predictions.csv").exists() and not (out / "review.html").exists()  # merge writes them
    parts = [csv_rows(out / f"predictions.shard-00{i}-of-003.csv") for i in range(3)]
    assert sorted(len({r["input"] for r in p}) for p in parts) == [5, 5, 6]  # 16 inputs, balanced
    assert not list(out.glob("*.lock")) and not list(out.rglob(".tmp-*"))

    code, stdout, err = merge(capsys, out)
    assert code == 0, stdout + err
    merged, reference = csv_rows(out / "predictions.csv"), csv_rows(single / "predictions.csv")
    assert without_timing(merged) == without_timing(reference)  # same inputs, order, statuses, outputs, scores
    assert same_masks(out, single, reference) == 12  # every mask byte-identical (PNG and NIfTI)
    run, ref_run = json.loads((out / "run.json").read_text()), json.loads((single / "run.json").read_text())
    assert (run["summary"]["ok"], run["summary"]["failed"]) == (ref_run["summary"]["ok"], ref_run["summary"]["failed"])
    assert run["summary"]["images"] == ref_run["summary"]["images"] and run["exit_code"] == 0
    assert run["summary"]["skipped_unsupported"] == 1 and len(run["shards"]["parts"]) == 3
    assert set(run["stages_s"]) >= {"decode", "forward", "write"} and run["mask_record"]["shard_count"] == 3
    assert run["model_sha256"] == ref_run["model_sha256"] and "shard" not in run["options"]
    html = (out / "review.html").read_text()
    assert all(r["input"] in html for r in reference if r["status"] == "ok")


@pytest.mark.slow
def test_a_missing_shard_is_listed_and_its_resume_command_completes_the_run(
    tiny_ckpt, scans_and_single_run, tmp_path, capsys
):
    inp, single = scans_and_single_run
    out = tmp_path / "sharded"
    (out / "sub").mkdir(parents=True)
    in_flight, stale = out / ".tmp-s001-inflight.png", out / "sub" / ".tmp-s000-stale.png"
    for p in (in_flight, stale):
        p.write_bytes(b"")
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    results = [finish(p) for p in [popen_predict(*base, "--shard", f"{i}/3") for i in (0, 2)]]  # shard 1 never ran
    assert all(code in (0, 1) for code, _ in results), results
    assert in_flight.exists() and not stale.exists()  # shard 0's start-up removed only its own temp file

    code, stdout, _ = merge(capsys, out)
    order = [f.relative_to(inp).as_posix() for f in discover(inp)[0]]
    lacking = order[1::3]
    assert code == 1 and f"missing: shard 1/3: {len(lacking)} inputs: {', '.join(lacking)}" in stdout, stdout
    command = stdout.split("finish it with: ")[1].splitlines()[0]
    assert "--shard 1/3 --resume" in command and "incomplete (exit 1)" in stdout
    run = json.loads((out / "run.json").read_text())
    assert run["missing"] == {"1/3": lacking} and run["exit_code"] == 1
    assert len({r["input"] for r in csv_rows(out / "predictions.csv")}) == len(order) - len(lacking)

    argv = shlex.split(command)
    assert argv[0] == "segapp-predict"
    res = subprocess.run([sys.executable, "-m", "segapp.cli.predict", *argv[1:]], capture_output=True, text=True)
    assert res.returncode in (0, 1), res.stderr
    code, stdout, _ = merge(capsys, out)
    assert code == 0 and "missing:" not in stdout, stdout
    assert without_timing(csv_rows(out / "predictions.csv")) == without_timing(csv_rows(single / "predictions.csv"))


@pytest.mark.slow
def test_a_shard_with_another_threshold_is_refused_at_start_and_by_merge(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in", 4), tmp_path / "out"
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    assert predict_in_process(capsys, *base, "--shard", "0/2")[0] == 0
    code, _, err = predict_in_process(capsys, *base, "--shard", "1/2", "--threshold", "0.9")
    assert code == 2 and ".segapp-predict.shard-000-of-002.options.json" in err and "-> 0.9" in err, err
    assert len(err.strip().splitlines()) == 1 and not (out / "im1.png.mask.png").exists()
    code, _, err = predict_in_process(capsys, *base, "--shard", "1/2", "--threshold", "0.9", "--overwrite")
    assert code == 0, err  # --overwrite restarts this shard regardless: merge must catch it
    code, stdout, err = merge(capsys, out)
    assert code == 2 and not stdout and "nothing merged" in err and "fix:" in err, stdout + err
    assert ".segapp-predict.shard-001-of-002.options.json differs: threshold" in err and "-> 0.9" in err, err
    assert not (out / "predictions.csv").exists() and len(err.strip().splitlines()) == 1
    code, _, err = predict_in_process(capsys, *base, "--shard", "0/3")  # another shard count
    assert code == 2 and "shard_count 2 -> 3" in err, err


@pytest.mark.slow
def test_a_second_run_of_one_shard_is_refused_while_the_other_shard_runs_and_merge_waits(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in", 5), tmp_path / "out"
    out.mkdir()
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # shard 0, running
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "start_time": process_start_time(holder.pid)}
        (out / RunFiles.for_shard(Shard(0, 2)).lock).write_text(json.dumps(lock))
        code, _, err = predict_in_process(capsys, *base, "--shard", "0/2")
        assert code == 2 and f"PID {holder.pid}" in err and "--break-lock" in err, err  # the same shard: refused
        code, _, err = predict_in_process(capsys, *base, "--shard", "1/2")
        assert code == 0, err  # the other shard runs beside it
        code, stdout, err = merge(capsys, out)
        assert code == 2 and "shard 0/2 is still running" in err and f"PID {holder.pid}" in err, stdout + err
    finally:
        holder.kill()
        holder.wait()
    code, stdout, _ = merge(capsys, out)  # its holder died without finishing: listed as missing
    assert code == 1 and "missing: shard 0/2: 3 inputs: im0.png, im2.png, im4.png" in stdout, stdout
    code, _, err = predict_in_process(capsys, *base, "--shard", "0/2", "--resume")
    assert code == 0 and "took over the lock" in err, err
    code, stdout, _ = merge(capsys, out)
    assert code == 0 and len(csv_rows(out / "predictions.csv")) == 5, stdout


@pytest.mark.slow
def test_sharded_and_unsharded_runs_do_not_share_a_folder(tiny_ckpt, tmp_path, capsys):
    inp = make_images(tmp_path / "in", 2)
    one, many = tmp_path / "one", tmp_path / "many"
    ckpt = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--workers", "0")
    assert predict_in_process(capsys, *ckpt, "--output", str(one))[0] == 0
    code, _, err = predict_in_process(capsys, *ckpt, "--output", str(one), "--shard", "0/2")
    assert code == 2 and "holds an unsharded run" in err and "another --output" in err, err
    code, stdout, err = merge(capsys, one)
    assert code == 2 and "holds an unsharded run" in err, err
    code, stdout, _ = predict_in_process(capsys, *ckpt, "--output", str(many), "--shard", "2/3")
    assert code == 0 and "shard 2/3: 0 ok / 0 failed" in stdout, stdout  # more shards than inputs: not a failure
    code, _, err = predict_in_process(capsys, *ckpt, "--output", str(many))
    assert code == 2 and "holds a sharded run" in err and f"segapp-merge {many}" in err, err
    code, _, err = merge(capsys, tmp_path / "in")
    assert code == 2 and "no shard parts" in err, err


@pytest.mark.slow
def test_the_finish_command_printed_from_another_folder_has_absolute_paths(tiny_ckpt, tmp_path, capsys, monkeypatch):
    start, elsewhere, third = tmp_path / "start", tmp_path / "elsewhere", tmp_path / "third"
    for d in (start, elsewhere, third):
        d.mkdir()
    make_images(start / "in", 4)
    (start / "model.ckpt").symlink_to(tiny_ckpt)
    env = {**ENV, "PYTHONPATH": str(REPO)}  # this repository's segapp from any working folder
    rel = ("--checkpoint", "model.ckpt", "--input", "in", "--output", "out", "--workers", "0", "--no-progress")
    cmd = [sys.executable, "-m", "segapp.cli.predict", *rel, "--shard", "0/2"]  # shard 1 never runs
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=start, env=env)
    assert res.returncode == 0, res.stderr

    monkeypatch.chdir(elsewhere)
    code, stdout, _ = merge(capsys, start / "out")
    assert code == 1, stdout
    argv = shlex.split(stdout.split("finish it with: ")[1].splitlines()[0])
    values = {flag: argv[argv.index(flag) + 1] for flag in ("--checkpoint", "--input", "--output")}
    assert values == {
        "--checkpoint": str(start.resolve() / "model.ckpt"),
        "--input": str((start / "in").resolve()),
        "--output": str((start / "out").resolve()),
    }, argv
    assert argv[-3:] == ["--shard", "1/2", "--resume"]
    res = subprocess.run(
        [sys.executable, "-m", "segapp.cli.predict", *argv[1:]], capture_output=True, text=True, cwd=third, env=env
    )
    assert res.returncode == 0, res.stderr
    assert not (third / "out").exists()
    code, stdout, _ = merge(capsys, start / "out")
    assert code == 0 and "missing:" not in stdout, stdout
    assert len(csv_rows(start / "out" / "predictions.csv")) == 4


@pytest.mark.slow
def test_a_missing_run_part_still_counts_every_merged_image(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in", 4), tmp_path / "out"
    make_scan_folder(tmp_path / "scans")
    shutil.copy(tmp_path / "scans" / "vol.nii.gz", inp / "vol.nii.gz")  # 3 slices: 3 images
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    for i in range(2):
        assert predict_in_process(capsys, *base, "--shard", f"{i}/2")[0] == 0
    parts = [json.loads((out / f"run.shard-00{i}-of-002.json").read_text()) for i in range(2)]
    assert sum(p["summary"]["images"] for p in parts) == 7
    (out / "run.shard-001-of-002.json").unlink()  # the part of a shard whose run.json write was lost
    code, stdout, _ = merge(capsys, out)
    assert code == 0, stdout
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert (summary["inputs"], summary["ok"], summary["images"]) == (5, 5, 7)
