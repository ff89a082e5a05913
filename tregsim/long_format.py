"""The long data format: one reader, one set of rules.

One row per participant and MMTT visit (CSV; ``.`` or empty = missing):

===================  ==========================================================================
``id``               participant (text)
``day``              days since diagnosis (study entry); a visit before day 0 (screening MMTT
                     before the first study day) counts as day 0
``cpeptide_nmol_l``  MMTT 2-h AUC mean C-peptide, nmol/L, ≥ 0; a value below the LLOQ is given
                     as the LLOQ (``censored`` = 1) or as measured / LLOQ/2 (the likelihood
                     treats every value below :data:`tregsim.units.LLOQ_NMOL_L` as censored)
``age``              years at diagnosis (> 0); the first row of each participant is used
``censored``         optional, 0/1 (default 0): the value is below the LLOQ
``weight``, ``cpep0``, ``sex``   optional covariates (kg, nmol/L, M/F or 0/1)
``dose_day``, ``dose_cells_per_kg``   optional dose records; a row with a dose and no
                     C-peptide is a dose-only row (kept out of the observations)
===================  ==========================================================================

Used by the individual-level calibration (:func:`tregsim.calibrate.data.load_patient_data`),
the NONMEM / PEtab converters (:mod:`tregsim.interop`) and ``tregsim data``. Every error is a
:class:`~tregsim.errors.DataFileError` naming the file, the line (1 = header) and column, and
the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.errors import DataFileError

LONG_COLUMNS = ("id", "day", "cpeptide_nmol_l", "age", "censored")
"""Columns of a validated long table, in order (``censored`` defaults to 0)."""
LONG_OPTIONAL = ("weight", "sex", "cpep0")
DOSE_COLUMNS = ("dose_day", "dose_cells_per_kg")
LONG_MEANING = {
    "id": "participant id",
    "day": "days since diagnosis (study entry)",
    "cpeptide_nmol_l": "MMTT 2-h AUC mean C-peptide, nmol/L",
    "age": "years",
    "censored": "0/1, below the LLOQ",
}
MISSING = "."

__all__ = [
    "DOSE_COLUMNS",
    "LONG_COLUMNS",
    "LONG_MEANING",
    "LONG_OPTIONAL",
    "MISSING",
    "read_csv_table",
    "read_long",
    "validate_long",
    "write_long",
]


def data_line(i: int) -> int:
    """Line number in the file of data row ``i`` (0-based; line 1 is the header)."""
    return int(i) + 2


def read_csv_table(path, *, id_columns=("ID", "id")) -> pd.DataFrame:
    """A CSV table with ``.``/empty as missing and id columns as text; one-line errors."""
    path = Path(path)
    try:
        return pd.read_csv(
            path,
            na_values=[MISSING, ""],
            keep_default_na=True,
            skipinitialspace=True,
            dtype={c: str for c in id_columns},
        )
    except FileNotFoundError:
        raise DataFileError("file not found", file=path, fix="check the path") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataFileError(
            f"not a readable CSV table ({' '.join(str(e).split())})",
            file=path,
            fix="save the table as comma-separated text with a header row",
        ) from None


def _shown(value) -> str:
    """A cell as a user wrote it: ``-0.5``, ``'abc'`` (not ``np.float64(-0.5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def numeric_column(df: pd.DataFrame, col: str, file, label: str | None = None) -> pd.Series:
    """``df[col]`` as float; a non-number raises naming its line and column."""
    s = pd.to_numeric(df[col], errors="coerce")
    bad = s.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFileError(
            f"{label or col} value {_shown(df[col].iloc[i])} is not a number",
            file=file,
            field=f"line {data_line(i)}, column {label or col}",
            fix=f"write a number (or {MISSING} for missing)",
        )
    return s.astype(float)


def validate_long(
    df: pd.DataFrame, file: object = None, *, columns: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Check a long table; returns a normalised copy: ``id`` text, ``day`` ≥ 0 (earlier visits
    set to 0), ``censored`` 0/1 int, dose-only rows dropped, rows in file order.

    ``columns`` maps the documented names (``id``, ``day``, ``cpeptide_nmol_l``, ``age``,
    ``censored``) to the file's own column names; errors name the file's columns.
    """
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    columns = dict(columns or {})
    label = {k: columns.get(k, k) for k in (*LONG_COLUMNS, *LONG_OPTIONAL, *DOSE_COLUMNS)}
    df = df.rename(columns={v: k for k, v in columns.items() if v in df.columns})
    if "censored" not in df.columns:
        df["censored"] = 0
    missing = [label[c] for c in LONG_COLUMNS if c not in df.columns]
    if missing:
        raise DataFileError(
            f"missing column(s) {missing} in the header",
            file=file,
            field=missing[0],
            fix=f"the long format needs {', '.join(LONG_COLUMNS[:4])} (days since diagnosis, "
            "nmol/L, years) and optionally censored (0/1); see docs/interop.md",
        )
    if len(df) == 0:
        raise DataFileError(
            "the table has no rows", file=file, fix="add one row per participant and visit"
        )
    num = ["day", "cpeptide_nmol_l", "age", "censored"]
    num += [c for c in ("weight", "cpep0", *DOSE_COLUMNS) if c in df.columns]
    for c in num:
        df[c] = numeric_column(df, c, file, label[c])
    if df["id"].isna().any():
        i = int(np.flatnonzero(df["id"].isna().to_numpy())[0])
        raise DataFileError(
            "id is missing",
            file=file,
            field=f"line {data_line(i)}, column {label['id']}",
            fix="give every row an id",
        )
    df["id"] = df["id"].astype(str).str.strip()
    dose_only = (
        df["cpeptide_nmol_l"].isna() & df["dose_cells_per_kg"].notna()
        if "dose_cells_per_kg" in df.columns
        else pd.Series(False, index=df.index)
    ).to_numpy()
    y = df["cpeptide_nmol_l"].to_numpy()
    checks = [
        (
            "day",
            ~np.isfinite(df["day"].to_numpy()),
            "day must be a finite number of days since diagnosis",
            "give days since diagnosis (study entry) as numbers",
        ),
        (
            "cpeptide_nmol_l",
            ~dose_only & ~np.isfinite(y),
            "C-peptide is missing on a visit row",
            "give the MMTT AUC mean in nmol/L, or drop the row (a dose-only row needs "
            "dose_cells_per_kg)",
        ),
        (
            "cpeptide_nmol_l",
            ~dose_only & (y < 0),
            "C-peptide must be ≥ 0 nmol/L",
            "give the MMTT AUC mean in nmol/L; below the LLOQ: the LLOQ with censored = 1",
        ),
        (
            "age",
            ~np.isfinite(df["age"].to_numpy()) | (df["age"].to_numpy() <= 0),
            "age must be > 0 years",
            "give the age at diagnosis in years",
        ),
        (
            "censored",
            ~df["censored"].isin((0, 1)).to_numpy(),
            "censored must be 0 or 1",
            "use 1 for values below the LLOQ, else 0",
        ),
    ]
    for col, bad, problem, fix in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFileError(
                f"{problem}, got {_shown(df[col].iloc[i])}",
                file=file,
                field=f"line {data_line(i)}, column {label[col]}",
                fix=fix,
            )
    df = df[~dose_only].reset_index(drop=True)
    df["day"] = np.maximum(df["day"].to_numpy(float), 0.0)
    df["censored"] = df["censored"].astype(int)
    return df


def read_long(path: str | os.PathLike, *, columns: Mapping[str, str] | None = None):
    """Read and validate a long-format CSV (see the module docstring and
    :func:`validate_long`)."""
    path = Path(path)
    extra = tuple(v for k, v in (columns or {}).items() if k == "id")
    return validate_long(
        read_csv_table(path, id_columns=("ID", "id", *extra)), file=path, columns=columns
    )


def write_long(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write a long-format table atomically (CSV)."""
    from tregsim.io import atomic_path

    df = validate_long(df, file=path)
    cols = [*LONG_COLUMNS, *[c for c in LONG_OPTIONAL if c in df.columns]]
    with atomic_path(path) as tmp:
        df[cols].to_csv(tmp, index=False)
    return Path(path)
