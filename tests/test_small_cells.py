"""No shipped table carries an aggregate computed from fewer than 5 people (issue #14).

Every CSV under calibration/, experiments/, docs/ and tests/ with a participant-count column
(`n`, `n_participants`, `n_patients`) must have counts ≥ 5 in every row (an aggregate of one
or two people reproduces their individual records)."""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNT_COLUMNS = ("n", "n_participants", "n_patients")
MIN_N = 5


def _shipped_csvs():
    for top in ("calibration", "experiments", "docs", "tests"):
        yield from sorted((ROOT / top).rglob("*.csv"))


def test_scan_finds_the_summary_table():
    # the scan must see the table it exists for, or it cannot fail
    assert ROOT / "calibration" / "natural_history_summary.csv" in set(_shipped_csvs())


def test_no_cell_from_fewer_than_five_people():
    bad = []
    for path in _shipped_csvs():
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = [c for c in (reader.fieldnames or []) if c in COUNT_COLUMNS]
            for i, row in enumerate(reader, start=2):
                for c in cols:
                    try:
                        v = float(row[c])
                    except (TypeError, ValueError):
                        continue
                    if v < MIN_N:
                        bad.append(f"{path.relative_to(ROOT)} line {i}: {c} = {row[c]}")
    assert not bad, "aggregates from fewer than 5 people:\n" + "\n".join(bad)
