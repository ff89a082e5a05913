"""One self-contained ``report.html``: summary box, assumption ledger, sections.

The page loads nothing from anywhere: CSS is inline, figures are embedded as base64 PNG
``data:`` URIs and tables are HTML. Every text that comes from a file or a caller is escaped,
so a CSV cell cannot inject markup. The builder only lays out what it is given; it computes
nothing and never imports matplotlib.

Example
-------
>>> from tregsim.report.html import Section, KeyNumber, Table, Figure, build_report
>>> sec = Section(
...     "Virtual cohort",
...     "Predicted MMTT C-peptide per arm over 24 months.",
...     numbers=[KeyNumber("Δ C-peptide at 12 months", 0.012, "nmol/L", (0.001, 0.04))],
...     tables=[Table.from_csv("cohort/summary.csv")],
...     figures=[Figure("cohort/trajectories.png", "Median and 90 % band per arm")],
... )
>>> build_report("out/report.html", title="NCT06708780", sections=[sec])  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import csv
import html
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tregsim.errors import ArgumentError, DataFileError
from tregsim.io import write_text

REPORT_SCHEMA_VERSION = 1
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# content objects
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyNumber:
    """One headline number.

    Parameters
    ----------
    name : what it is, in words ("Δ MMTT C-peptide AUC at 12 months, Treg − control").
    value : the estimate (float) or a short text ("not reached").
    unit : its unit ("nmol/L", "participants per arm", "%", "" for dimensionless).
    interval : (low, high) uncertainty interval in the same unit, or ``None``.
    interval_label : what the interval is ("90 % band of the prior predictive").
    """

    name: str
    value: float | int | str
    unit: str
    interval: tuple[float, float] | None = None
    interval_label: str = "95 % interval"


@dataclass(frozen=True)
class Table:
    """A table: column headers (with units) and rows of cells.

    Parameters
    ----------
    columns : header of each column; put the unit in it ("cpeptide_nmol_per_L", "dose (cells/kg)").
    rows : list of rows, each a sequence of cells (float, int, str, bool or None).
    title : caption shown above the table.
    source : file the table came from (shown beside the caption), or ``None``.
    total_rows : number of rows in the source when ``rows`` holds only the first ones.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    title: str = ""
    source: str | None = None
    total_rows: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        for i, r in enumerate(self.rows):
            if len(r) != len(self.columns):
                raise ArgumentError(
                    f"row {i} has {len(r)} cells but the table has {len(self.columns)} columns",
                    file=self.source,
                    field=f"table {self.title!r}",
                    fix="give every row one cell per column",
                )

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike, title: str | None = None, max_rows: int = 40
    ) -> Table:
        """Read a CSV file (header row first); keep at most ``max_rows`` rows for display."""
        path = Path(path)
        if not path.is_file():
            raise DataFileError(
                "table file not found", file=path, fix="run the section that writes it first"
            )
        with open(path, newline="", encoding="utf-8") as f:
            # "#" lines are provenance comments (tregsim writes assumption ledgers that way)
            reader = csv.reader(line for line in f if not line.startswith("#"))
            try:
                header = next(reader)
            except StopIteration:
                raise DataFileError(
                    "CSV file is empty (no header row)",
                    file=path,
                    fix="write a header row naming each column with its unit",
                ) from None
            rows = []
            total = 0
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataFileError(
                        f"line {total + 2} has {len(row)} fields, the header has {len(header)}",
                        file=path,
                        fix="write one field per header column on every line",
                    )
                total += 1
                if len(rows) < max_rows:
                    rows.append(row)
        return cls(
            columns=tuple(header),
            rows=tuple(tuple(r) for r in rows),
            title=title if title is not None else path.stem.replace("_", " "),
            source=path.name,
            total_rows=total,
        )

    @classmethod
    def from_frame(
        cls, frame, title: str = "", source: str | None = None, max_rows: int = 40
    ) -> Table:
        """Build from a pandas DataFrame (its column names must carry the units)."""
        rows = [tuple(r) for r in frame.head(max_rows).itertuples(index=False, name=None)]
        return cls(
            columns=tuple(str(c) for c in frame.columns),
            rows=tuple(rows),
            title=title,
            source=source,
            total_rows=len(frame),
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, object]],
        title: str = "",
        columns: Sequence[str] | None = None,
    ) -> Table:
        """Build from a list of dicts (column order from ``columns`` or the first record)."""
        if columns is None:
            columns = list(records[0].keys()) if records else []
        rows = tuple(tuple(rec.get(c) for c in columns) for rec in records)
        return cls(columns=tuple(columns), rows=rows, title=title)


@dataclass(frozen=True)
class Figure:
    """A PNG figure file and its caption (embedded into the page as a ``data:`` URI)."""

    path: str | os.PathLike
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Parameters
    ----------
    title : heading.
    summary : two or three plain sentences for a trial designer.
    numbers, tables, figures : content, shown in this order.
    error : if set, the section failed: shown as a red box with this message instead of
        silently missing content.
    notes : further short paragraphs (method, caveats), shown after the summary.
    """

    title: str
    summary: str = ""
    numbers: Sequence[KeyNumber] = field(default_factory=tuple)
    tables: Sequence[Table] = field(default_factory=tuple)
    figures: Sequence[Figure] = field(default_factory=tuple)
    error: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def anchor(self) -> str:
        return "sec-" + (re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "x")


@dataclass(frozen=True)
class SummaryItem:
    """One line of the top summary box: a label and plain-language text."""

    label: str
    text: str


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the assumption ledger.

    Parameters
    ----------
    item : what is assumed ("model variant", "φ (potency × homing)").
    value : the value, distribution or hash.
    basis : "prior-driven", "calibrated", "fixed", "data", "input hash" … and its source.
    """

    item: str
    value: str
    basis: str = ""


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
_CSS = """
:root { --ink:#1d1d1f; --muted:#5a5a60; --line:#d6d6dc; --band:#f4f5f8; --accent:#1f5fa8;
        --bad:#a4161a; --badbg:#fdecea; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1050px; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; border-bottom: 2px solid var(--line);
     padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
p { margin: .4rem 0 .8rem; }
.meta { color: var(--muted); font-size: .9rem; }
nav ol { columns: 2; margin: .4rem 0; padding-left: 1.4rem; font-size: .95rem; }
a { color: var(--accent); }
.box { background: var(--band); border: 1px solid var(--line); border-left: 5px solid var(--accent);
       border-radius: 4px; padding: .6rem 1.1rem 1rem; margin: 1.2rem 0; }
.box h2 { border: none; margin-top: .6rem; }
dl.summary { display: grid; grid-template-columns: 13rem 1fr; gap: .35rem 1rem; margin: 0; }
dl.summary dt { font-weight: 600; }
dl.summary dd { margin: 0; }
p.lead { font-size: 1.02rem; }
.error { background: var(--badbg); border: 1px solid var(--bad); color: var(--bad);
         border-radius: 4px; padding: .6rem 1rem; font-weight: 600; }
table { border-collapse: collapse; margin: .3rem 0 1rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .2rem 0 .35rem; }
caption .src { font-weight: 400; color: var(--muted); }
th, td { border: 1px solid var(--line); padding: .22rem .55rem; vertical-align: top; }
th { background: var(--band); text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tablewrap { overflow-x: auto; }
figure { margin: .8rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9rem; }
code { font-size: .85em; word-break: break-all; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line);
         padding-top: .5rem; }
"""


def _esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def format_number(x: object, digits: int = 3) -> str:
    """Format a cell: floats to ``digits`` significant digits, others as text."""
    if isinstance(x, bool) or x is None:
        return "" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "—"  # NaN: not applicable (e.g. a difference on the control arm's own row)
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if x == round(x) and abs(x) < 1e6:
            return str(int(x))
        return f"{x:.{digits}g}"
    s = str(x)
    try:
        f = float(s)
    except ValueError:
        return s
    if re.fullmatch(r"[+-]?\d+", s.strip()):
        return s.strip()
    return format_number(f, digits)


def _is_numeric(x: object) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float):
        return True
    try:
        float(str(x))
    except ValueError:
        return False
    return True


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    return struct.unpack(">II", data[16:24])


def _figure_html(fig: Figure, index: int) -> str:
    p = Path(fig.path)
    if not p.is_file():
        raise DataFileError(
            "figure file not found", file=p, fix="run the section that draws it first"
        )
    data = p.read_bytes()
    if not data.startswith(_PNG_MAGIC) or len(data) < 24:
        raise DataFileError(
            "figure is not a PNG file",
            file=p,
            fix="save figures with matplotlib savefig(..., format='png')",
        )
    w, h = png_size(data)
    b64 = base64.b64encode(data).decode("ascii")
    alt = fig.caption or p.stem.replace("_", " ")
    cap = _esc(fig.caption) + (" " if fig.caption else "")
    return (
        f'<figure id="fig-{index}"><img src="data:image/png;base64,{b64}" width="{w}" '
        f'height="{h}" alt="{_esc(alt)}">'
        f'<figcaption>Figure {index}. {cap}<span class="src">(<code>{_esc(p.name)}</code>)'
        "</span></figcaption></figure>"
    )


def _table_html(tab: Table) -> str:
    out = ['<div class="tablewrap"><table>']
    if tab.title or tab.source:
        src = ""
        if tab.source:
            shown = (
                f"first {len(tab.rows)} of {tab.total_rows} rows; "
                if tab.total_rows is not None and tab.total_rows > len(tab.rows)
                else ""
            )
            src = f' <span class="src">({shown}<code>{_esc(tab.source)}</code>)</span>'
        out.append(f"<caption>{_esc(tab.title)}{src}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in tab.columns))
    out.append("</tr></thead><tbody>")
    for row in tab.rows:
        cells = []
        for c in row:
            if _is_numeric(c):
                cells.append(f'<td class="num">{_esc(format_number(c))}</td>')
            else:
                cells.append(f"<td>{_esc(format_number(c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _numbers_html(numbers: Sequence[KeyNumber]) -> str:
    rows = [
        '<div class="tablewrap"><table class="numbers"><caption>Key numbers</caption>'
        "<thead><tr><th>quantity</th><th>value</th><th>unit</th><th>interval (same unit)</th>"
        "</tr></thead><tbody>"
    ]
    for k in numbers:
        if k.interval is None:
            iv = ""
        else:
            lo, hi = k.interval
            iv = f"{format_number(float(lo))} to {format_number(float(hi))} ({k.interval_label})"
        val = format_number(float(k.value)) if _is_numeric(k.value) else str(k.value)
        rows.append(
            f"<tr><td>{_esc(k.name)}</td><td class='num'>{_esc(val)}</td>"
            f"<td>{_esc(k.unit)}</td><td>{_esc(iv)}</td></tr>"
        )
    rows.append("</tbody></table></div>")
    return "".join(rows)


def render_report(
    *,
    title: str,
    sections: Sequence[Section],
    summary: Sequence[SummaryItem] = (),
    ledger: Sequence[LedgerEntry] = (),
    subtitle: str = "",
    footer: str = "",
) -> str:
    """The report as one HTML string (see :func:`build_report`)."""
    fig_no = 0
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="tregsim report schema {REPORT_SCHEMA_VERSION}">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="meta">{_esc(subtitle)}</p>')
    parts.append("</header>")

    toc = []
    if summary:
        toc.append('<li><a href="#summary">Summary</a></li>')
    if ledger:
        toc.append('<li><a href="#ledger">Assumption ledger</a></li>')
    toc += [f'<li><a href="#{s.anchor}">{_esc(s.title)}</a></li>' for s in sections]
    parts.append('<nav aria-label="contents"><ol>' + "".join(toc) + "</ol></nav>")

    if summary:
        parts.append('<section id="summary" class="box"><h2>Summary</h2><dl class="summary">')
        for item in summary:
            parts.append(f"<dt>{_esc(item.label)}</dt><dd>{_esc(item.text)}</dd>")
        parts.append("</dl></section>")
    if ledger:
        parts.append(
            '<section id="ledger"><h2>Assumption ledger</h2>'
            "<p>What the numbers in this report rest on. <em>Prior-driven</em> means taken from "
            "the model file's prior (assumed or from literature), not learned from data.</p>"
            '<div class="tablewrap"><table><thead><tr><th>item</th><th>value (unit)</th>'
            "<th>basis</th></tr></thead><tbody>"
        )
        for e in ledger:
            parts.append(
                f"<tr><td>{_esc(e.item)}</td><td>{_esc(e.value)}</td><td>{_esc(e.basis)}</td></tr>"
            )
        parts.append("</tbody></table></div></section>")

    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{_esc(s.title)}</h2>')
        if s.error:
            parts.append(f'<p class="error">This section failed: {_esc(s.error)}</p>')
        if s.summary:
            parts.append(f'<p class="lead">{_esc(s.summary)}</p>')
        parts += [f"<p>{_esc(n)}</p>" for n in s.notes]
        if s.numbers:
            parts.append(_numbers_html(s.numbers))
        parts += [_table_html(t) for t in s.tables]
        for f in s.figures:
            fig_no += 1
            parts.append(_figure_html(f, fig_no))
        parts.append("</section>")

    if footer:
        parts.append(f"<footer>{_esc(footer)}</footer>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_report(
    path: str | os.PathLike,
    *,
    title: str,
    sections: Iterable[Section],
    summary: Sequence[SummaryItem] = (),
    ledger: Sequence[LedgerEntry] = (),
    subtitle: str = "",
    footer: str = "",
) -> Path:
    """Write one self-contained HTML report atomically and return its path.

    Parameters
    ----------
    path : output file (``…/report.html``).
    title : page title.
    sections : the :class:`Section` s in display order.
    summary : lines of the top "Summary" box (predicted C-peptide by arm, effect and its
        uncertainty, power and sample size, what drives the result).
    ledger : rows of the assumption ledger (model variant, φ, prior-driven vs calibrated
        parameters, input hashes).
    subtitle, footer : one line each (e.g. the command line and the tregsim version).

    Raises
    ------
    DataFileError : a figure or table file is missing or malformed (nothing is written).
    """
    text = render_report(
        title=title,
        sections=list(sections),
        summary=summary,
        ledger=ledger,
        subtitle=subtitle,
        footer=footer,
    )
    return write_text(path, text)
