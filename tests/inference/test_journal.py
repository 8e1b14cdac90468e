"""``--resume``'s journal: what it keeps, and the old outputs of inputs predicted again it deletes."""

from __future__ import annotations

from segapp.inference.outputs import Journal


def _touch(folder, *names):
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"x")


def test_resume_deletes_the_old_outputs_of_a_replaced_or_failed_input(tmp_path):
    """A PACS export reused IM0001 for another patient with fewer frames: --resume predicted it
    again but left the old frames' masks (and an old SEG) beside the new ones, untracked."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for name in ("a.dcm", "b.dcm", "c.png"):
        (inp / name).write_bytes(b"scan " + name.encode())
    j = Journal(out, resume=False, input_dir=inp)
    old_a = ["a.dcm.f000.mask.png", "a.dcm.f001.mask.png"]
    j.record("a.dcm", "ok", [], old_a)  # a first run of a.dcm, then a --resume wrote it again, 1 frame
    j.record("a.dcm", "ok", [], ["a.dcm.f000.mask.png"])
    old_b = ["b.dcm.f000.mask.png", "b.dcm.f001.mask.png", "b.dcm.f002.mask.png", "b.dcm.seg.dcm"]
    j.record("b.dcm", "ok", [], old_b)
    j.record("c.png", "error", [], [])
    j.close()
    _touch(out, *old_a, *old_b, "mine.txt")
    (inp / "b.dcm").write_bytes(b"another patient, other frames")  # replaced since
    again = Journal(out, resume=True, input_dir=inp)
    assert set(again.done) == {"a.dcm"} and again.removed == 0  # nothing goes before the run knows its inputs
    assert again.remove_stale({"b.dcm", "c.png"}) == 4
    again.close()
    assert (out / "a.dcm.f000.mask.png").is_file() and (out / "a.dcm.f001.mask.png").is_file()  # a is not redone
    assert not any((out / o).exists() for o in old_b)
    assert (out / "mine.txt").is_file()  # what no journal line lists is never touched


def test_a_run_again_without_resume_clears_only_the_inputs_it_predicts(tmp_path):
    """Without --resume every input is predicted anew; an input this run does not predict (another
    shard's, or one gone from the input folder) keeps its outputs."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for name in ("a.dcm", "other_shard.png"):
        (inp / name).write_bytes(b"scan")
    j = Journal(out, resume=False, input_dir=inp)
    j.record("a.dcm", "ok", [], ["a.dcm.f000.mask.png", "a.dcm.f001.mask.png"])
    j.record("other_shard.png", "ok", [], ["other_shard.png.mask.png"])
    j.record("gone.png", "ok", [], ["gone.png.mask.png"])
    j.close()
    _touch(out, "a.dcm.f000.mask.png", "a.dcm.f001.mask.png", "other_shard.png.mask.png", "gone.png.mask.png")
    again = Journal(out, resume=False, input_dir=inp)
    assert not again.done and again.remove_stale({"a.dcm"}) == 2
    again.close()
    assert (out / "other_shard.png.mask.png").is_file() and (out / "gone.png.mask.png").is_file()
    assert not (out / "a.dcm.f001.mask.png").exists()


def test_stale_outputs_are_never_deleted_outside_the_output_folder(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.png").write_bytes(b"1")
    j = Journal(out, resume=False, input_dir=inp)
    j.record("a.png", "ok", [], ["../outside.png", "a.png.mask.png"])
    j.close()
    _touch(tmp_path, "outside.png")
    _touch(out, "a.png.mask.png")
    (inp / "a.png").write_bytes(b"22")
    again = Journal(out, resume=True, input_dir=inp)
    assert again.remove_stale({"a.png"}) == 1
    again.close()
    assert (tmp_path / "outside.png").is_file() and not (out / "a.png.mask.png").exists()
