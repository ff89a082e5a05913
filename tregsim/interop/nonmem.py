"""NONMEM-style data tables and the long format for individual-level calibration.

**NONMEM-style table** (CSV; ``.`` or empty = missing), one row per record:

========  =====================================================================================
ID        individual (text or number)
TIME      days since diagnosis (t = 0 = diagnosis and insulin start), ≥ 0, non-decreasing
          within an ID
DV        MMTT 2-h AUC mean C-peptide, nmol/L (observation rows; ≥ 0; the LLOQ on BLQ rows)
MDV       1 = no observation on this row (dose rows), 0 = observation
EVID      0 = observation, 1 = dose
AMT       dose, cells/kg (dose rows; finite, ≥ 0); 0 or missing on observation rows
CMT       compartment (optional): 1 = Treg dose into the expanding pool ``X``, 2 = C-peptide
BLQ       optional (alias CENS): 1 = below the lower limit of quantification (censored)
AGE, WT, SEX, CPEP0, …  covariates (optional; years, kg, M/F or 0/1, nmol/L); the first
          non-missing value of each ID is its baseline value
========  =====================================================================================

**Long format** (what the individual-level calibration reads), one row per observation:
``id, day, cpeptide_nmol_l, age, censored``, optionally followed by covariates ``weight``,
``sex``, ``cpep0``. Its one reader and its rules live in :mod:`tregsim.long_format`
(``read_long``, ``validate_long``, ``write_long`` are re-exported here).

Every reader validates before anything is used and raises :class:`tregsim.errors.DataFileError`
naming the file, the line (1 = header) and column, and the fix. Writers are atomic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.errors import DataFileError
from tregsim.long_format import (
    LONG_COLUMNS,
    LONG_OPTIONAL,
    MISSING,
    numeric_column,
    read_csv_table,
    read_long,
    validate_long,
    write_long,
)
from tregsim.long_format import data_line as _line

REQUIRED = ("ID", "TIME", "DV", "MDV", "EVID", "AMT")
OPTIONAL = ("CMT", "BLQ")
CENSOR_ALIASES = ("BLQ", "CENS")
NUMERIC = ("TIME", "DV", "MDV", "EVID", "AMT", "CMT", "BLQ")
CMT_DOSE, CMT_OBS = 1, 2
COVARIATES = {"AGE": "age", "WT": "weight", "CPEP0": "cpep0", "SEX": "sex"}
"""NONMEM column → tregsim name (model covariate parameter or population covariate)."""


def _fail(problem, file, field, fix):
    return DataFileError(problem, file=file, field=field, fix=fix)


_read_csv = read_csv_table


def _numeric(df: pd.DataFrame, col: str, file) -> pd.Series:
    return numeric_column(df, col, file)


def _baseline(df: pd.DataFrame, col: str) -> pd.Series:
    """First non-missing value of ``col`` per ID (index: ID)."""
    return df.groupby("ID", sort=False)[col].apply(
        lambda s: s.dropna().iloc[0] if s.notna().any() else np.nan
    )


# ------------------------------------------------------------------------------ NONMEM
def validate_nonmem(df: pd.DataFrame, file: object = None) -> pd.DataFrame:
    """Check a NONMEM-style table; returns a normalised copy (numeric columns float, ``ID``
    text, ``BLQ`` present as 0/1, rows in file order).

    Raises
    ------
    DataFileError : missing columns, non-numeric values, TIME < 0 or decreasing within an ID,
        negative or missing DV on observation rows, NaN/negative AMT on dose rows, EVID not 0/1,
        MDV inconsistent with EVID, BLQ not 0/1 — naming the line and column.
    """
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise _fail(
            f"missing column(s) {missing}",
            file,
            "header",
            f"a NONMEM-style table needs {', '.join(REQUIRED)} "
            "(optional CMT, BLQ and covariates AGE, WT, SEX, CPEP0)",
        )
    if len(df) == 0:
        raise _fail("the table has no rows", file, None, "add observation and dose records")
    if "CENS" in df.columns and "BLQ" not in df.columns:
        df = df.rename(columns={"CENS": "BLQ"})
    if "BLQ" not in df.columns:
        df["BLQ"] = 0.0
    for c in NUMERIC:
        if c in df.columns:
            df[c] = _numeric(df, c, file)
    ids = df["ID"]
    if ids.isna().any():
        i = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise _fail("ID is missing", file, f"line {_line(i)}, column ID", "give every row an ID")
    df["ID"] = ids.astype(str).str.strip()
    df["BLQ"] = df["BLQ"].fillna(0.0)

    def first_bad(mask, col, problem, fix):
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise _fail(problem(df.iloc[i]), file, f"line {_line(i)}, column {col}", fix)

    t = df["TIME"].to_numpy()
    first_bad(
        ~np.isfinite(t),
        "TIME",
        lambda r: f"TIME is {r['TIME']}",
        "give each record a time in days since diagnosis",
    )
    first_bad(
        t < 0,
        "TIME",
        lambda r: f"TIME {r['TIME']} < 0 (before diagnosis)",
        "use days since diagnosis (t = 0 = diagnosis), ≥ 0",
    )
    ev = df["EVID"].to_numpy()
    first_bad(
        ~np.isin(ev, (0, 1)),
        "EVID",
        lambda r: f"EVID {r['EVID']} is not 0 or 1",
        "use EVID 0 for observations and 1 for doses",
    )
    mdv = df["MDV"].to_numpy()
    first_bad(
        ~np.isin(mdv, (0, 1)),
        "MDV",
        lambda r: f"MDV {r['MDV']} is not 0 or 1",
        "use MDV 1 on dose rows and rows without an observation, else 0",
    )
    first_bad(
        (ev == 1) & (mdv != 1),
        "MDV",
        lambda r: "a dose row (EVID 1) has MDV 0",
        "set MDV = 1 on dose rows",
    )
    blq = df["BLQ"].to_numpy()
    first_bad(
        ~np.isin(blq, (0, 1)),
        "BLQ",
        lambda r: f"BLQ {r['BLQ']} is not 0 or 1",
        "use 1 for values below the LLOQ, else 0",
    )
    obs = (ev == 0) & (mdv == 0)
    dv = df["DV"].to_numpy()
    first_bad(
        obs & ~np.isfinite(dv),
        "DV",
        lambda r: "observation row without a DV",
        f"give the C-peptide in nmol/L, or set MDV = 1 (DV = {MISSING})",
    )
    first_bad(
        obs & (dv < 0),
        "DV",
        lambda r: f"negative DV {r['DV']} nmol/L",
        "C-peptide is ≥ 0 nmol/L; for values below the LLOQ set BLQ = 1 and DV = LLOQ",
    )
    amt = df["AMT"].to_numpy()
    first_bad(
        (ev == 1) & ~np.isfinite(amt),
        "AMT",
        lambda r: f"dose row with AMT {r['AMT']}",
        "give the dose in cells/kg on every EVID 1 row",
    )
    first_bad(
        (ev == 1) & (amt < 0),
        "AMT",
        lambda r: f"negative dose AMT {r['AMT']}",
        "doses are ≥ 0 cells/kg",
    )
    if "CMT" in df.columns:
        cmt = df["CMT"].to_numpy()
        first_bad(
            (ev == 1) & np.isfinite(cmt) & (cmt != CMT_DOSE),
            "CMT",
            lambda r: f"dose into compartment {r['CMT']}",
            f"Treg doses go into CMT {CMT_DOSE} (the expanding pool X)",
        )
    # TIME non-decreasing within each ID (records in file order)
    prev = df.groupby("ID", sort=False)["TIME"].shift()
    first_bad(
        (df["TIME"] < prev).to_numpy(),
        "TIME",
        lambda r: f"TIME {r['TIME']} of ID {r['ID']} is earlier than its previous record",
        "sort the records of each ID by TIME",
    )
    return df


def read_nonmem(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a NONMEM-style CSV (see the module docstring for the columns)."""
    path = Path(path)
    return validate_nonmem(_read_csv(path), file=path)


def write_nonmem(data: pd.DataFrame | Iterable[Mapping], path: str | os.PathLike) -> Path:
    """Validate ``data`` (a DataFrame or records) and write it atomically as CSV
    (missing values as ``.``; required columns first)."""
    from tregsim.io import atomic_path

    df = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    df = validate_nonmem(df, file=path)
    cols = [
        *REQUIRED,
        *[c for c in OPTIONAL if c in df.columns],
        *[c for c in df.columns if c not in REQUIRED and c not in OPTIONAL],
    ]
    with atomic_path(path) as tmp:
        out = df[cols].copy()
        for c in ("MDV", "EVID", "CMT", "BLQ"):  # flags as integers (NONMEM reads either)
            if c in out.columns:
                out[c] = out[c].astype("Int64")
        # floats at full precision (repr), so write → read is exact
        out.to_csv(tmp, index=False, na_rep=MISSING)
    return Path(path)


def nonmem_to_doses(df: pd.DataFrame, model=None, *, target: str = "X"):
    """Dose records and baseline covariates of a (validated) NONMEM-style table.

    Parameters
    ----------
    df : from :func:`read_nonmem` / :func:`validate_nonmem`.
    model : optional CompiledModel; covariate overrides are limited to its parameters.
    target : state receiving the doses (default ``X``).

    Returns
    -------
    ids : (n,) individual IDs, in order of first appearance.
    doses : :class:`tregsim.Doses` with (n, k) days / cells/kg (NaN-padded), or ``None`` if
        the table has no dose rows.
    overrides : covariate name → (n,) float (``age`` years, ``weight`` kg, ``cpep0`` nmol/L),
        for ``model.parameters(n, **overrides)``; baseline = first non-missing value per ID.
    """
    from tregsim.solve import Doses

    ids = pd.unique(df["ID"])
    n = len(ids)
    dose_rows = df[df["EVID"] == 1]
    k = int(dose_rows.groupby("ID").size().max()) if len(dose_rows) else 0
    doses = None
    if k:
        T = np.full((n, k), np.nan)
        A = np.zeros((n, k))
        pos = {i: j for j, i in enumerate(ids)}
        for pid, g in dose_rows.groupby("ID", sort=False):
            j = pos[pid]
            T[j, : len(g)] = g["TIME"].to_numpy()
            A[j, : len(g)] = g["AMT"].to_numpy()
        doses = Doses(time=T, amount=A, target=target)
    overrides = {}
    allowed = None if model is None else set(model.parameter_names)
    for col, name in COVARIATES.items():
        if col not in df.columns or name == "sex":
            continue
        if allowed is not None and name not in allowed:
            continue
        base = _baseline(df, col)
        vals = pd.to_numeric(base.reindex(ids), errors="coerce").to_numpy(dtype=float)
        if np.isnan(vals).any():
            j = int(np.flatnonzero(np.isnan(vals))[0])
            raise _fail(
                f"ID {ids[j]} has no numeric {col}",
                None,
                col,
                f"give {col} on at least one record of each ID, or drop the column",
            )
        overrides[name] = vals
    return np.asarray(ids), doses, overrides


def nonmem_to_long(df: pd.DataFrame, *, extra_covariates: bool = False) -> pd.DataFrame:
    """Observation records (EVID 0, MDV 0) in the long format ``id, day, cpeptide_nmol_l,
    age, censored`` (plus ``weight``, ``sex``, ``cpep0`` if ``extra_covariates`` and present).

    ``age`` is each ID's baseline AGE (years; NaN if the table has no AGE column).
    """
    obs = df[(df["EVID"] == 0) & (df["MDV"] == 0)]
    out = pd.DataFrame(
        {
            "id": obs["ID"].to_numpy(),
            "day": obs["TIME"].to_numpy(dtype=float),
            "cpeptide_nmol_l": obs["DV"].to_numpy(dtype=float),
        }
    )
    out["age"] = (
        pd.to_numeric(_baseline(df, "AGE").reindex(out["id"]), errors="coerce").to_numpy(
            dtype=float
        )
        if "AGE" in df.columns
        else np.nan
    )
    out["censored"] = obs["BLQ"].to_numpy().astype(int)
    if extra_covariates:
        for col in ("WT", "SEX", "CPEP0"):
            if col in df.columns:
                out[COVARIATES[col]] = _baseline(df, col).reindex(out["id"]).to_numpy()
    return out.reset_index(drop=True)


def long_to_nonmem(
    long: pd.DataFrame, doses: Mapping[str, Iterable[tuple[float, float]]] | None = None
) -> pd.DataFrame:
    """Long format (+ optional dose schedule ``{id: [(day, cells/kg), ...]}``) → a validated
    NONMEM-style table (doses before observations at equal times)."""
    long = validate_long(long)
    rows = []
    for r in long.itertuples(index=False):
        rec = {
            "ID": r.id,
            "TIME": r.day,
            "DV": r.cpeptide_nmol_l,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0.0,
            "CMT": CMT_OBS,
            "BLQ": int(r.censored),
            "AGE": r.age,
        }
        for c in LONG_OPTIONAL:
            if c in long.columns:
                rec[next(k for k, v in COVARIATES.items() if v == c)] = getattr(r, c)
        rows.append(rec)
    cov_cols = [c for c in ("AGE", "WT", "SEX", "CPEP0") if rows and c in rows[0]]
    first_cov = {}
    for rec in rows:
        first_cov.setdefault(rec["ID"], {c: rec[c] for c in cov_cols})
    for pid, sched in (doses or {}).items():
        for day, amt in sched:
            rows.append(
                {
                    "ID": str(pid),
                    "TIME": float(day),
                    "DV": np.nan,
                    "MDV": 1,
                    "EVID": 1,
                    "AMT": float(amt),
                    "CMT": CMT_DOSE,
                    "BLQ": 0,
                    **first_cov.get(str(pid), {}),
                }
            )
    df = pd.DataFrame(rows)
    order = pd.unique(df["ID"])
    df["_o"] = df["ID"].map({k: i for i, k in enumerate(order)})
    df = df.sort_values(["_o", "TIME", "EVID"], ascending=[True, True, False], kind="stable")
    return validate_nonmem(df.drop(columns="_o").reset_index(drop=True))


__all__ = [
    "COVARIATES",
    "LONG_COLUMNS",
    "LONG_OPTIONAL",
    "REQUIRED",
    "long_to_nonmem",
    "nonmem_to_doses",
    "nonmem_to_long",
    "read_long",
    "read_nonmem",
    "validate_long",
    "validate_nonmem",
    "write_long",
    "write_nonmem",
]
