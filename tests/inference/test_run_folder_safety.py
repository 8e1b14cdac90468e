"""Run folders that are never silently wrong (issue 14, items 3, 4, 7 and 12): one record of the
options that decide the masks, a lock, one-line output errors, dangling symlinks counted."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segapp.inference.lock import LOCK_NAME, process_start_time
from segapp.inference.run_record import RunMismatchError, check_same_run
from tests.conftest import flags
from tests.inference.test_predict_cli import predict_in_process, read_rows

pytestmark = pytest.mark.slow


def make_images(folder, n: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_check_same_run_names_every_difference_old_and_new(tmp_path):
    old = {"model": "aaa", "threshold": 0.5, "tta": "none", "mode": "resize"}
    check_same_run(old, dict(old), tmp_path)  # same options: fine
    with pytest.raises(RunMismatchError, match=r"model 'aaa' -> 'bbb'; threshold 0.5 -> 0.7.*fix:"):
        check_same_run(old, {**old, "model": "bbb", "threshold": 0.7}, tmp_path)
    with pytest.raises(RunMismatchError, match="recorded no options"):
        check_same_run(None, old, tmp_path)


def test_resume_or_rerun_with_other_options_is_refused_unless_overwrite(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in"), tmp_path / "out"
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
    assert predict_in_process(capsys, *base)[0] == 0
    first = json.loads((out / "run.json").read_text())["mask_record"]["threshold"]  # the checkpoint's (trained) one
    code, _, err = predict_in_process(capsys, *base, "--resume", "--threshold", "0.9", "--tta", "flip")
    assert code == 2 and f"threshold {first}" in err and "-> 0.9" in err and "tta 'none' -> 'flip'" in err, err
    assert len(err.strip().splitlines()) == 1
    code, _, err = predict_in_process(capsys, *base, "--resume", "--max-pixels", "1000")
    assert code == 2 and "max_pixels 178956970 -> 1000" in err, err  # size limits are in the record
    code, _, err = predict_in_process(capsys, *base, "--threshold", "0.9")  # no --resume: still refused
    assert code == 2 and "another run" in err and "--overwrite" in err, err
    other = make_images(tmp_path / "other", 2)
    code, _, err = predict_in_process(capsys, *base[:2], "--input", str(other), *base[4:], "--resume")
    assert code == 2 and "input" in err, err  # a resume over another input folder would skip by name
    assert predict_in_process(capsys, *base)[0] == 0  # same options again: just runs
    code, _, err = predict_in_process(capsys, *base, "--threshold", "0.9", "--overwrite")
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["mask_record"]["threshold"] == 0.9 and len(run["mask_record"]["model"]) == 64
    assert predict_in_process(capsys, *base, "--threshold", "0.9", "--resume")[0] == 0


def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "start_time": process_start_time(holder.pid)}
        (out / LOCK_NAME).write_text(json.dumps(lock))
        base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0")
        code, _, err = predict_in_process(capsys, *base)
        assert code == 2 and f"PID {holder.pid} on host {socket.gethostname()}" in err and "--break-lock" in err
        assert not list(out.glob("*.mask.png"))  # nothing written next to the other run
    finally:
        holder.kill()
        holder.wait()
    code, _, err = predict_in_process(capsys, *base)  # its holder is gone now: taken over, said so
    assert code == 0 and f"took over the lock of PID {holder.pid}" in err, err
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_output_that_is_a_file_or_not_writable_is_one_line_exit_4(tiny_ckpt, tmp_path, capsys, monkeypatch):
    inp = make_images(tmp_path / "in")
    (tmp_path / "afile").write_text("x")
    base = ("--checkpoint", str(tiny_ckpt), "--input", str(inp), "--workers", "0")
    for target, says in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "sub", "is a file")):
        code, _, err = predict_in_process(capsys, *base, "--output", str(target))
        assert code == 4 and says in err and "fix:" in err and len(err.strip().splitlines()) == 1, err
    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def no_write(path, flags, *a, **k):  # root ignores chmod: simulate a read-only folder instead
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", no_write)
    code, _, err = predict_in_process(capsys, *base, "--output", str(out))
    assert code == 4 and "permission denied" in err and str(out) in err and "fix:" in err, err
    assert len(err.strip().splitlines()) == 1


def test_disk_full_stops_with_exit_4_and_resume_completes_the_run(tiny_ckpt, tmp_path, capsys, monkeypatch):
    inp, out = make_images(tmp_path / "in", 8), tmp_path / "out"
    args = flags(checkpoint=tiny_ckpt, input=inp, output=out, workers=0, batch_size=1, save_probs=True)
    real_replace, calls = os.replace, []

    def fill_up(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) > 6:  # the record and a few outputs fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", fill_up)
    code, _, err = predict_in_process(capsys, *args)
    assert code == 4 and "no space left" in err and "--resume" in err and len(err.strip().splitlines()) == 1, err
    assert not list(out.rglob(".tmp-*")) and not (out / LOCK_NAME).exists()
    monkeypatch.setattr(os, "replace", real_replace)  # space freed
    code, out_line, err = predict_in_process(capsys, *args, "--resume")
    assert code == 0, err
    assert "0 already done" not in out_line
    rows = read_rows(out)
    assert len(rows) == 8 and all(r[0]["status"] == "ok" for r in rows.values())


def test_a_dangling_symlink_is_an_error_row_with_its_target(tiny_ckpt, tmp_path, capsys):
    inp, out = make_images(tmp_path / "in", 2), tmp_path / "out"
    (inp / "gone.png").symlink_to(tmp_path / "nowhere" / "scan.png")
    (inp / "noext").symlink_to("missing")
    code, stdout, err = predict_in_process(
        capsys, "--checkpoint", str(tiny_ckpt), "--input", str(inp), "--output", str(out), "--workers", "0"
    )
    assert code == 1 and "2 ok / 2 failed" in stdout, stdout + err
    rows = read_rows(out)
    assert rows["gone.png"][0]["status"] == "error"
    assert rows["gone.png"][0]["reason"].startswith(f"broken symlink -> {tmp_path / 'nowhere' / 'scan.png'}")
    assert rows["noext"][0]["reason"].startswith("broken symlink -> missing")


def test_resume_predicts_again_an_input_replaced_since(tiny_ckpt, tmp_path, capsys):
    """--resume matched finished inputs by name only: a replaced scan kept its old mask."""
    inp, out = make_images(tmp_path / "in", 3), tmp_path / "out"
    args = flags(checkpoint=tiny_ckpt, input=inp, output=out, workers=0)
    assert predict_in_process(capsys, *args)[0] == 0
    before = (out / "im1.png.mask.png").read_bytes()
    Image.fromarray(np.zeros((30, 36, 3), np.uint8)).save(inp / "im1.png")  # another scan, same name
    code, stdout, _ = predict_in_process(capsys, *args, "--resume")
    assert code == 0 and "2 already done" in stdout, stdout
    after = (out / "im1.png.mask.png").read_bytes()
    assert after != before and read_rows(out)["im1.png"][0]["height"] == "30"
    # a same-size replacement whose mtime was kept (cp -p, rsync -t) is predicted again too
    st = (inp / "im2.png").stat()
    (inp / "im2.png").write_bytes((inp / "im1.png").read_bytes()[: st.st_size].ljust(st.st_size, b"\0"))
    os.utime(inp / "im2.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    code, stdout, _ = predict_in_process(capsys, *args, "--resume")
    assert "2 already done" in stdout, stdout  # im2.png was predicted again (it may now be an error row)


def test_symlinked_folders_are_walked_and_an_output_folder_inside_the_input_is_passed_over(tmp_path):
    """`in/siteB -> /mnt/pacs/siteB` was never predicted (rglob does not enter linked folders), and a
    segapp-predict output reached inside the input (a container's bind mounts) had its masks,
    overlays and thumbnails predicted as scans on the next run."""
    from segapp.inference.folder import discover_all

    make_images(tmp_path / "in", 2)
    make_images(tmp_path / "elsewhere", 1)
    (tmp_path / "in" / "siteB").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in", target_is_directory=True)  # walked once
    run = tmp_path / "in" / "old_run"
    make_images(run, 1)
    (run / ".segapp-predict.options.json").write_text("{}")
    found = discover_all(tmp_path / "in")
    rels = [p.relative_to(tmp_path / "in").as_posix() for p in found.files]
    assert rels == ["im0.png", "im1.png", "siteB/im0.png"]
    assert [(p.name, why.split(",")[0]) for p, why in found.passed] == [
        ("loop", f"a link to {(tmp_path / 'in').resolve()}"),
        ("old_run", "a segapp-predict output folder"),
    ]
    (tmp_path / "in" / "siteC").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found = discover_all(tmp_path / "in")  # the second link to one folder: walked once, the first in order
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found.files][-1] == "siteB/im0.png"
    assert any(p.name == "siteC" and "walked already through another link" in why for p, why in found.passed)
