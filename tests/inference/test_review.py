"""The review page (issue 16): thumbnails, card choice and order, escaping, size, and a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segapp.inference.review import (
    make_thumb,
    read_rows,
    thumb_path,
    write_review,
    write_thumb,
)

NASTY = "sub dir/<b>a&b \"quoted\" 'x'.png"


class PageParser(HTMLParser):
    """Collect the cards (row number, data-reasons, whether they hold a thumbnail) and the error table."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.errors: list[list[str]] = []
        self.thumbs = 0
        self.body: dict[str, str] = {}
        self._cell: list[str] | None = None
        self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        if "card" in classes:
            self.cards.append(
                {"row": int(a["data-row"]), "reasons": a["data-reasons"], "thumb": False, "hidden": "hidden" in classes}
            )
        if tag == "img" and "thumb" in classes:
            self.thumbs += 1
            self.cards[-1]["thumb"] = True
        if tag == "table" and "errors" in classes:
            self._in_errors = True
        if self._in_errors and tag == "tr":
            self.errors.append([])
        if self._in_errors and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.errors[-1].append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> PageParser:
    """Parse a written page."""
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def row(name: str, risk: float, review: str = "yes", reasons: str = "uncertain", frame: str = "") -> dict:
    """One successful predictions.csv row as strings (as csv.DictReader gives it)."""
    return {
        "input": name,
        "frame": frame,
        "output": f"{name}.f{int(frame):03d}.mask.png" if frame else f"{name}.mask.png",  # as segapp-predict names
        "status": "ok",
        "reason": "",
        "lesion_fraction": "0.12",
        "uncertainty": "0.31",
        "est_dice": "0.72",
        "agreement": "",
        "ood_score": "0.4",
        "input_check": "",
        "review": review,
        "review_reason": reasons if review == "yes" else "",
        "risk": f"{risk:.4f}",
    }


def error_row(name: str, reason: str) -> dict:
    """An error row: trust columns empty."""
    return {"input": name, "frame": "", "status": "error", "reason": reason, "review": "", "risk": ""}


def add_thumb(out: Path, name: str, frame: int | None = None, seed: int = 0) -> None:
    """A thumbnail for ``name`` written the way segapp-predict writes it."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), bool)
    mask[6:18, 8:20] = True
    write_thumb(thumb_path(out, name, frame), make_thumb(img, mask, rng.random((24, 32)), height=32))


# --- thumbnails ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_thumb_shape_dtype(dtype):
    img = (np.arange(60 * 90 * 3).reshape(60, 90, 3) % 200).astype(dtype)
    mask = np.zeros((60, 90), bool)
    mask[10:40, 20:60] = True
    thumb = make_thumb(img, mask, np.full((30, 45), 0.5, np.float32), height=40)
    assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3
    assert thumb.shape[0] == 40
    assert thumb.shape[1] >= 2 * 60  # two panels of 60 px (90 x 40/60) and a gap


def test_thumb_draws_contour_and_colours_uncertainty():
    img = np.zeros((50, 50, 1), np.uint8)
    mask = np.zeros((50, 50), bool)
    mask[10:40, 10:40] = True
    unc = np.zeros((50, 50), np.float32)
    unc[:, 25:] = 1.0
    thumb = make_thumb(img, mask, unc, height=50)
    left, right = thumb[:, :50], thumb[:, -50:]
    assert (left == (255, 40, 40)).all(axis=2).any(), "mask contour not drawn"
    assert (left[0, 0] == 0).all(), "background changed"
    assert (right[:, :20] == 0).all(), "zero uncertainty is black"
    assert (right[:, -20:] == (255, 255, 0)).all(), "full uncertainty is yellow"


def test_thumb_without_uncertainty_is_grey_panel_and_height_bounded():
    thumb = make_thumb(np.ones((400, 300), np.float32), np.zeros((400, 300), bool), None)
    assert thumb.shape[0] == 160
    right = thumb[:, -120:]
    assert (right == 96).mean() > 0.9, "no grey n/a panel"
    wide = make_thumb(np.zeros((10, 1000, 3), np.uint8), np.zeros((10, 1000), bool), None)
    assert wide.shape[0] <= 160 and wide.shape[1] <= 2 * 3 * 160 + 10


def test_thumb_path_follows_contract(tmp_path):
    assert thumb_path(tmp_path, "sub/a.jpg", None) == tmp_path / "review/thumbs/sub/a.jpg.thumb.jpg"
    assert thumb_path(tmp_path, "b.dcm", 2) == tmp_path / "review/thumbs/b.dcm.f002.thumb.jpg"
    write_thumb(thumb_path(tmp_path, "b.dcm", 2), np.zeros((4, 8, 3), np.uint8))
    with Image.open(tmp_path / "review/thumbs/b.dcm.f002.thumb.jpg") as pic:
        assert pic.mode == "RGB" and pic.size == (8, 4)
    assert not list(tmp_path.rglob(".tmp-*"))


# --- the page -----------------------------------------------------------------------------------


def test_cards_flagged_first_sorted_by_risk(tmp_path):
    rows = [row("a.png", 0.2), row("b.png", 0.9, "no"), row("c.png", 0.7), row("d.png", 0.5, "no"), row("e.png", 0.8)]
    for r in rows:
        add_thumb(tmp_path, r["input"])
    page = parse(write_review(tmp_path, rows))
    assert [c["row"] for c in page.cards] == [5, 3, 1, 2, 4]  # flagged by risk, then the unflagged by risk
    assert page.thumbs == 5
    html = (tmp_path / "review.html").read_text()
    assert '<a href="predictions.csv">predictions.csv row 5</a>' in html
    assert "not shown" not in html


def test_max_cards_cut_states_the_rest(tmp_path):
    rows = [row(f"s{i:02d}.png", i / 100) for i in range(12)] + [row("quiet.png", 0.99, "no")]
    page = parse(write_review(tmp_path, rows, max_cards=5))
    assert [c["row"] for c in page.cards] == [12, 11, 10, 9, 8]
    assert "7 more flagged scans not shown; see predictions.csv" in (tmp_path / "review.html").read_text()


def test_unflagged_fill_the_room_left(tmp_path):
    rows = [row("f.png", 0.1)] + [row(f"u{i}.png", i / 10, "no") for i in range(5)]
    page = parse(write_review(tmp_path, rows, max_cards=3))
    assert [c["row"] for c in page.cards] == [1, 6, 5]
    assert "more flagged" not in (tmp_path / "review.html").read_text()


def test_reason_filter_attributes(tmp_path):
    rows = [
        row("a.png", 0.9, reasons="out of distribution; input: blank"),
        row("b.png", 0.5, reasons="uncertain"),
        row("c.png", 0.1, "no"),
    ]
    html_path = write_review(tmp_path, rows)
    page = parse(html_path)
    assert [c["reasons"] for c in page.cards] == ["out of distribution; input: blank", "uncertain", ""]
    html = html_path.read_text()
    boxes = re.findall(r'<input type="checkbox" value="([^"]*)" checked>', html)
    assert boxes == ["out of distribution", "input: blank", "uncertain", "not flagged"]
    assert "out of distribution: <b>1</b>" in html and "uncertain: <b>1</b>" in html


def test_nasty_file_name_is_escaped(tmp_path):
    rows = [row(NASTY, 0.5, reasons='uncertain; <script>alert("x")</script>')]
    add_thumb(tmp_path, NASTY)
    html_path = write_review(tmp_path, rows)
    html = html_path.read_text()
    assert "<b>a&b" not in html and "<script>alert" not in html
    assert "&lt;b&gt;a&amp;b &quot;quoted&quot; &#x27;x&#x27;.png" in html
    page = parse(html_path)
    assert len(page.cards) == 1 and page.thumbs == 1
    assert page.cards[0]["reasons"] == 'uncertain; <script>alert("x")</script>'
    assert 'href="sub%20dir/%3Cb%3Ea%26b%20%22quoted%22%20%27x%27.png.mask.png"' in html


def test_error_rows_are_a_table_not_cards(tmp_path):
    rows = [row("ok.png", 0.3), error_row("broken<1>.png", "cannot read: truncated <PNG>")]
    page = parse(write_review(tmp_path, rows))
    assert [c["row"] for c in page.cards] == [1]
    assert page.errors == [[], ["2", "broken<1>.png", "cannot read: truncated <PNG>"]]
    assert "errors: <b>1</b>" in (tmp_path / "review.html").read_text()


def test_rows_without_thumbs_and_frames(tmp_path):
    rows = [row("vol.nii.gz", 0.8), row("cine.dcm", 0.6, frame="2"), row("cine.dcm", 0.4, frame="3")]
    add_thumb(tmp_path, "cine.dcm", 2)
    page = parse(write_review(tmp_path, rows))
    assert [(c["row"], c["thumb"]) for c in page.cards] == [(1, False), (2, True), (3, False)]
    html = (tmp_path / "review.html").read_text()
    assert html.count("no thumbnail") == 2 and "frame 2" in html


def test_reads_predictions_csv_and_numbers_in_memory(tmp_path):
    import csv

    rows = [row("a.png", 0.3), row("b.png", 0.6)]
    with (tmp_path / "predictions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert read_rows(tmp_path / "predictions.csv") == rows
    assert [c["row"] for c in parse(write_review(tmp_path)).cards] == [2, 1]
    numeric = [{**r, "risk": float(r["risk"]), "uncertainty": None} for r in rows]
    assert [c["row"] for c in parse(write_review(tmp_path, numeric)).cards] == [2, 1]


def test_missing_csv_names_file_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"predictions\.csv.*fix: run segapp-predict"):
        write_review(tmp_path)


def test_large_run_page_stays_small(tmp_path):
    n, max_cards = 10_000, 300
    rows = [row(f"scan{i:05d}.png", (i * 7919 % n) / n, "yes" if i % 5 == 0 else "no") for i in range(n)]
    rows += [error_row(f"err{i}.png", "cannot read") for i in range(1000)]
    flagged = sorted((r for r in rows if r.get("review") == "yes"), key=lambda r: -float(r["risk"]))
    for r in flagged[:max_cards]:
        add_thumb(tmp_path, r["input"], seed=int(r["input"][4:9]))
    started = time.perf_counter()
    path = write_review(tmp_path, rows, max_cards=max_cards)
    seconds = time.perf_counter() - started
    page = parse(path)
    assert len(page.cards) == max_cards and page.thumbs == max_cards
    html = path.read_text()
    assert f"{n // 5 - max_cards} more flagged scans not shown" in html
    assert "800 more errors not shown" in html
    thumb_bytes = sum(len(m) for m in re.findall(r'src="data:image/jpeg;base64,[^"]*"', html))
    assert len(html) - thumb_bytes < 600_000, "text part grows with the run, not with max_cards"
    assert seconds < 20


# --- a real browser -----------------------------------------------------------------------------


def chromium() -> str:
    """Path of headless Chromium; skip without it, but fail in CI (``CI`` set), which installs it."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail("headless Chromium not found, and CI requires it: .ci/run installs Debian's chromium with apt")
    pytest.skip("headless Chromium not installed (apt-get install chromium); CI installs it")


def dump_dom(exe: str, page: Path, profile: Path) -> PageParser:
    """Load ``page`` in headless Chromium and parse the DOM after its scripts ran."""
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
    cmd += ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = PageParser()
    dom.feed(proc.stdout)
    return dom


def test_review_page_renders_in_headless_chromium(tmp_path):
    exe = chromium()
    out = tmp_path / "run"
    rows = [
        row(f"s{i}.png", i / 10, "yes" if i % 2 else "no", "uncertain" if i % 3 else "out of distribution")
        for i in range(7)
    ]
    rows += [row(NASTY, 0.95), row("vol.nii.gz", 0.05), error_row("bad.png", "cannot read")]
    for r in rows[:7] + [rows[7]]:
        add_thumb(out, r["input"])
    page = write_review(out, rows)
    dom = dump_dom(exe, page, tmp_path / "profile")
    assert dom.body.get("data-cards") == "9", dom.body
    assert dom.body.get("data-thumbs") == "8" and dom.body.get("data-decoded") == "8", dom.body
    assert not any(c["hidden"] for c in dom.cards)
    # the counter is real: a thumbnail that cannot decode is not counted
    broken = tmp_path / "broken.html"
    html = page.read_text()
    broken.write_text(html.replace("data:image/jpeg;base64,", "data:image/jpeg;base64,AAAA", 1))
    assert dump_dom(exe, broken, tmp_path / "profile").body.get("data-decoded") == "7"
    # the reason filter: unchecking "out of distribution" hides the cards that have only that reason
    filtered = tmp_path / "filtered.html"
    filtered.write_text(html.replace('value="out of distribution" checked', 'value="out of distribution"'))
    hidden = {c["row"] for c in dump_dom(exe, filtered, tmp_path / "profile").cards if c["hidden"]}
    assert hidden == {4}, hidden  # s3 (row 4) is the one flagged card whose only reason is "out of distribution"


def test_a_one_frame_dicom_card_finds_its_thumbnail(tmp_path):
    """Its row says frame 0, its thumbnail has no frame part: every card said "no thumbnail"."""
    from segapp.inference.review import _card, thumb_path, write_thumb

    write_thumb(thumb_path(tmp_path, "x.dcm", None), np.zeros((8, 8, 3), np.uint8))
    html = _card(tmp_path, 1, {"input": "x.dcm", "frame": "0", "output": "x.dcm.mask.png"}, True)
    assert '<img class="thumb"' in html and "no thumbnail" not in html and "frame 0" not in html
    write_thumb(thumb_path(tmp_path, "m.dcm", 3), np.zeros((8, 8, 3), np.uint8))
    html = _card(tmp_path, 2, {"input": "m.dcm", "frame": "3", "output": "m.dcm.f003.mask.png"}, True)
    assert '<img class="thumb"' in html and "frame 3" in html
