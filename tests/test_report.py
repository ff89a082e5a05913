"""The self-contained HTML report: structure, escaping, embedding, and a real browser check."""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tregsim.errors import ArgumentError, DataFileError
from tregsim.report.html import (
    Figure,
    KeyNumber,
    LedgerEntry,
    Section,
    SummaryItem,
    Table,
    build_report,
    format_number,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NASTY = '<script>alert("x")</script> & "quotes" <b>bold?</b>'


class _Collect(HTMLParser):
    """Collect tags with their attributes, and the text of every <td>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.td_text: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "td":
            self._in_td = True
            self.td_text.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.td_text[-1] += data


def _tiny_png(path: Path, width_in: float, height_in: float, dpi: int, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi)
    t_days = np.arange(0, 731, 30.4375)
    ax.plot(t_days, 0.6 * np.exp(-t_days / 600) * rng.lognormal(0, 0.05, t_days.size))
    ax.set_xlabel("time since diagnosis (days)")
    ax.set_ylabel("MMTT C-peptide AUC mean (nmol/L)")
    fig.savefig(path, format="png", dpi=dpi)
    plt.close(fig)
    return path


def _make_report(folder: Path, seed: int = 0) -> tuple[Path, dict]:
    """Build a small real report (two figures, a CSV table, a records table)."""
    folder.mkdir(parents=True, exist_ok=True)
    fig1 = _tiny_png(folder / "trajectories.png", 3.0, 2.0, 50, seed)  # 150 × 100 px
    fig2 = _tiny_png(folder / "power.png", 4.0, 3.0, 40, seed + 1)  # 160 × 120 px
    csv_path = folder / "summary.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["arm", "month", "cpeptide_median_nmol_per_L", "note"])
        for m in range(0, 25, 3):
            w.writerow(["control", m, 0.6 * np.exp(-m / 20), NASTY if m == 0 else ""])
    sections = [
        Section(
            "Virtual cohort",
            "Predicted C-peptide per arm.",
            numbers=[
                KeyNumber("Δ C-peptide at 12 months", 0.0123456, "nmol/L", (0.001, 0.04)),
                KeyNumber("N per arm for 80 % power", "not reached", "participants"),
            ],
            tables=[Table.from_csv(csv_path, max_rows=5)],
            figures=[Figure(fig1, "Median and 90 % band per arm")],
        ),
        Section(
            "Power",
            "Power at 10 per arm.",
            tables=[
                Table.from_records(
                    [
                        {"n_per_arm": 10, "power_percent": 12.5},
                        {"n_per_arm": 20, "power_percent": 20.25},
                    ],
                    title="Power by sample size",
                )
            ],
            figures=[Figure(fig2, "Power curve")],
        ),
        Section("Sweep", error="module tregsim.explore not available"),
    ]
    out = build_report(
        folder / "report.html",
        title="Test report <NCT06708780>",
        sections=sections,
        summary=[SummaryItem("Predicted C-peptide by arm", "control 0.4 nmol/L at 12 months")],
        ledger=[LedgerEntry("φ (potency × homing)", "LN(2, 1.2)", "prior-driven")],
        subtitle="tregsim run (test)",
    )
    return out, {"figs": [fig1, fig2], "csv": csv_path}


# ------------------------------------------------------------------------------------------
# fast structural tests
# ------------------------------------------------------------------------------------------
def test_report_is_self_contained_and_embeds_exact_pngs(tmp_path):
    import matplotlib.image as mpimg

    path, parts = _make_report(tmp_path / "r")
    text = path.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    # no URL other than in-page anchors and data: URIs
    for tag, attrs in p.tags:
        for key in ("src", "href", "action", "poster", "data"):
            if key in attrs:
                assert attrs[key].startswith(("data:", "#")), (tag, key, attrs[key][:60])
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", re.sub(r"data:[^\"]+", "", text))
    assert "<link" not in text and "<script" not in text
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 2
    for attrs, fig in zip(imgs, parts["figs"]):
        raw = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert raw == fig.read_bytes()
        h, w = mpimg.imread(fig).shape[:2]  # independent PNG decoder
        assert (int(attrs["width"]), int(attrs["height"])) == (w, h)
    assert [(int(a["width"]), int(a["height"])) for a in imgs] == [(150, 100), (160, 120)]


def test_report_escapes_text_and_keeps_it_verbatim(tmp_path):
    path, _ = _make_report(tmp_path / "r")
    text = path.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    assert NASTY in p.td_text  # round-trips as text
    assert "<script>" not in text and "<b>bold?</b>" not in text
    assert "<title>Test report &lt;NCT06708780&gt;</title>" in text


def test_table_from_csv_matches_pandas_and_truncates(tmp_path):
    import pandas as pd

    _, parts = _make_report(tmp_path / "r")
    tab = Table.from_csv(parts["csv"], max_rows=4)
    ref = pd.read_csv(parts["csv"], keep_default_na=False)
    assert tab.columns == tuple(ref.columns)
    assert tab.total_rows == len(ref) == 9
    assert len(tab.rows) == 4
    got = np.array([float(r[2]) for r in tab.rows])
    np.testing.assert_allclose(got, ref["cpeptide_median_nmol_per_L"].to_numpy()[:4], rtol=1e-15)


def test_section_content_and_failed_section_shown(tmp_path):
    path, _ = _make_report(tmp_path / "r")
    text = path.read_text(encoding="utf-8")
    for sid in ("summary", "ledger", "sec-virtual-cohort", "sec-power", "sec-sweep"):
        assert f'id="{sid}"' in text
    assert "This section failed: module tregsim.explore not available" in text
    assert "0.0123" in text and "0.001 to 0.04 (95 % interval)" in text
    assert "first 5 of 9 rows" in text


def test_bad_inputs_raise_named_errors_and_write_nothing(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a_days,b_nmol_per_L\n1,2\n3\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"bad\.csv: line 3 has 1 fields, the header has 2"):
        Table.from_csv(bad_csv)
    not_png = tmp_path / "fig.png"
    not_png.write_text("not a png", encoding="utf-8")
    out = tmp_path / "report.html"
    with pytest.raises(DataFileError, match=r"fig\.png: figure is not a PNG file"):
        build_report(out, title="x", sections=[Section("s", figures=[Figure(not_png)])])
    with pytest.raises(DataFileError, match="figure file not found"):
        build_report(out, title="x", sections=[Section("s", figures=[Figure(tmp_path / "no.png")])])
    assert not out.exists()
    assert list(tmp_path.glob(".report.html*")) == []
    with pytest.raises(ArgumentError, match="row 0 has 1 cells but the table has 2 columns"):
        Table(columns=("a", "b"), rows=((1,),))


@pytest.mark.parametrize(
    ("x", "s"),
    [
        (0.0123456, "0.0123"),
        (12345.678, "1.23e+04"),
        (10.0, "10"),
        (float("nan"), "—"),
        ("0.5000001", "0.5"),
        ("17", "17"),
        ("control", "control"),
        (None, ""),
        (True, "True"),
        (3, "3"),
    ],
)
def test_format_number(x, s):
    assert format_number(x) == s


# ------------------------------------------------------------------------------------------
# real browser
# ------------------------------------------------------------------------------------------
def _require_browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    msg = f"headless Chromium needed for the report browser test; missing {', '.join(missing)}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + "; CI must install it with `bash .ci/install_browser.sh`")
    pytest.skip(msg + "; install with `bash .ci/install_browser.sh` (as root)")


@pytest.fixture
def chrome():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tregsim-chrome-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager is then never asked to download anything.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


_IMG_STATE = (
    "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
)


@pytest.mark.browser
def test_report_in_headless_chromium(chrome, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    path, _ = _make_report(tmp_path / "r")
    chrome.get(path.resolve().as_uri())
    assert chrome.title == "Test report <NCT06708780>"
    imgs = chrome.execute_script(_IMG_STATE)
    assert [tuple(x) for x in imgs] == [(True, 150, 100), (True, 160, 120)]
    severe = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    urls = chrome.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert [u for u in urls if not u.startswith("data:")] == []
    cells = [td.text for td in chrome.find_elements(By.CSS_SELECTOR, "td")]
    assert NASTY.replace("  ", " ") in cells
    shot = tmp_path / "report_top.png"
    assert chrome.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")

    # The same checks catch a broken page: a missing figure file and a script error.
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><head><title>b</title></head><body>"
        '<img src="missing.png"><script>undefinedFunction();</script></body></html>',
        encoding="utf-8",
    )
    chrome.get(broken.resolve().as_uri())
    broken_imgs = chrome.execute_script(_IMG_STATE)
    assert len(broken_imgs) == 1 and broken_imgs[0][1] == 0
    assert any(e["level"] == "SEVERE" for e in chrome.get_log("browser"))


def test_same_inputs_give_identical_bytes(tmp_path):
    a, _ = _make_report(tmp_path / "a", seed=4)
    b, _ = _make_report(tmp_path / "b", seed=4)
    c, _ = _make_report(tmp_path / "c", seed=5)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
