"""Calibration data: the per-age-group × month summary table and long-format patient data.

Summary table (``calibration/natural_history_summary.csv``): one row per ``age_group`` ×
``month`` with ``n``, ``mean_ln_x_plus_1_nmol_l``, ``sd_ln_x_plus_1_nmol_l``,
``frac_above_0_2_nmol_l``, ``mean_nmol_l``, ``sd_nmol_l``, ``mean_age_years`` and ``source``.

Long-format patient data (individual-level calibration, see ``docs/calibration.md``): read by
the one long-format reader, :mod:`tregsim.long_format` (columns and rules there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.errors import DataFileError
from tregsim.long_format import LONG_MEANING, read_long
from tregsim.units import RESPONDER_THRESHOLD_NMOL_L

STAT_COLUMNS = {
    "mean_ln_x_plus_1": "mean_ln_x_plus_1_nmol_l",
    "sd_ln_x_plus_1": "sd_ln_x_plus_1_nmol_l",
    "frac_above_threshold": "frac_above_0_2_nmol_l",
}
_REQUIRED_SUMMARY = (
    "age_group",
    "month",
    "n",
    "mean_nmol_l",
    "sd_nmol_l",
    "mean_age_years",
    "source",
    *STAT_COLUMNS.values(),
)


@dataclass(frozen=True)
class SummaryData:
    """Observed summaries and the design of the matching virtual placebo cohort.

    Attributes
    ----------
    groups, months : age groups and visit months (month 0 = study entry ≈ diagnosis).
    n_visit : (n_groups, n_months) participants with a visit.
    baseline_mean_nmol_l, baseline_sd_nmol_l : month-0 mean and SD of C-peptide per group.
    mean_age_years : month-0 mean age per group.
    observed : (n_features,) observed summary vector, order of ``feature_names`` (months
        after 0: the month-0 distribution is matched by construction, see simulator).
    feature_names : ``"<stat>|<group>|<month>"``.
    table : the rows used.
    """

    path: Path
    groups: tuple[str, ...]
    months: tuple[int, ...]
    statistics: tuple[str, ...]
    n_visit: np.ndarray
    baseline_mean_nmol_l: np.ndarray
    baseline_sd_nmol_l: np.ndarray
    mean_age_years: np.ndarray
    observed: np.ndarray
    feature_names: tuple[str, ...]
    table: pd.DataFrame


def feature_names(statistics, groups, months) -> tuple[str, ...]:
    return tuple(f"{s}|{g}|{m}" for s in statistics for g in groups for m in months)


def load_summary(
    path, groups, months, statistics, threshold_nmol_l: float = RESPONDER_THRESHOLD_NMOL_L
) -> SummaryData:
    """Read the summary table and build the observed vector (stat-major, then group, month)."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except Exception as e:
        raise DataFileError(f"cannot read CSV ({e})", file=path, fix="give a CSV file") from e
    missing = [c for c in _REQUIRED_SUMMARY if c not in df.columns]
    if missing:
        raise DataFileError(
            f"missing columns {missing}",
            file=path,
            field=missing[0],
            fix="see docs/calibration.md for the summary table format",
        )
    for col in ("mean_nmol_l", "sd_nmol_l"):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(v < 0)
        if bad.size:
            raise DataFileError(
                f"{col} is negative ({v[bad[0]]}) in data row {bad[0] + 1}: C-peptide cannot "
                "be < 0",
                file=path,
                field=col,
                fix="correct the value (nmol/L)",
            )
    if "frac_above_threshold" in statistics and abs(threshold_nmol_l - 0.2) > 1e-12:
        raise DataFileError(
            f"the table has fractions >= 0.2 nmol/L, config asks {threshold_nmol_l}",
            file=path,
            field="frac_above_0_2_nmol_l",
            fix="set observation.threshold_nmol_l = 0.2",
        )
    rows = {}
    for g in groups:
        for m in months:
            sel = df[(df["age_group"] == g) & (df["month"] == m)]
            if len(sel) != 1:
                raise DataFileError(
                    f"expected one row for age_group {g!r}, month {m}, found {len(sel)}",
                    file=path,
                    field="age_group",
                    fix="one row per age group and month",
                )
            rows[g, m] = sel.iloc[0]
    n_visit = np.array([[int(rows[g, m]["n"]) for m in months] for g in groups])
    if np.any(n_visit < 2):
        raise DataFileError(
            "fewer than 2 participants in a cell",
            file=path,
            field="n",
            fix="drop months with n < 2 from data.months",
        )
    obs = []
    later = [m for m in months if m != 0]  # month 0 is matched by construction (baseline)
    for s in statistics:
        col = STAT_COLUMNS[s]
        for g in groups:
            for m in later:
                v = float(rows[g, m][col])
                if not np.isfinite(v):
                    raise DataFileError(
                        f"{col} is missing for {g!r}, month {m}",
                        file=path,
                        field=col,
                        fix="fill it in or drop the month",
                    )
                if v < 0:
                    raise DataFileError(
                        f"{col} is negative ({v}) for {g!r}, month {m}: C-peptide cannot be < 0",
                        file=path,
                        field=col,
                        fix="correct the value (nmol/L)",
                    )
                obs.append(v)
    base = [rows[g, 0] for g in groups]
    for r, g in zip(base, groups):
        for col in ("mean_nmol_l", "sd_nmol_l"):
            if not float(r[col]) > 0:
                raise DataFileError(
                    f"month-0 {col} must be > 0 for {g!r}, got {r[col]}",
                    file=path,
                    field=col,
                    fix="correct the month-0 value (nmol/L)",
                )
    table = pd.DataFrame([rows[g, m] for g in groups for m in months])
    return SummaryData(
        path=path,
        groups=tuple(groups),
        months=tuple(months),
        statistics=tuple(statistics),
        n_visit=n_visit,
        baseline_mean_nmol_l=np.array([float(r["mean_nmol_l"]) for r in base]),
        baseline_sd_nmol_l=np.array([float(r["sd_nmol_l"]) for r in base]),
        mean_age_years=np.array([float(r["mean_age_years"]) for r in base]),
        observed=np.asarray(obs),
        feature_names=feature_names(statistics, groups, later),
        table=table.reset_index(drop=True),
    )


LONG_FORMAT = {k: v for k, v in LONG_MEANING.items() if k != "censored"}
"""Required long-format columns → meaning (the rules: :mod:`tregsim.long_format`)."""


@dataclass(frozen=True)
class PatientData:
    """Long-format visits as arrays: ``visit_patient`` indexes ``ids`` / ``age_years``;
    ``visit_day`` days since diagnosis, ``cpeptide_nmol_l`` nmol/L, ``censored`` bool."""

    ids: np.ndarray
    age_years: np.ndarray
    visit_patient: np.ndarray
    visit_day: np.ndarray
    cpeptide_nmol_l: np.ndarray
    censored: np.ndarray | None = None


def load_patient_data(path, *, columns: dict[str, str] | None = None) -> PatientData:
    """Read long-format patient data with :func:`tregsim.long_format.read_long` (one row per
    participant and visit; its rules: visits before day 0 count as day 0, C-peptide ≥ 0
    nmol/L, age > 0 years from each participant's first row).

    ``columns`` maps the documented names (``id``, ``day``, ``cpeptide_nmol_l``, ``age``) to
    the file's own column names.
    """
    df = read_long(path, columns=columns)
    ids, inv = np.unique(df["id"].to_numpy(), return_inverse=True)
    age = df.groupby(inv)["age"].first().to_numpy(float)
    return PatientData(
        ids=ids,
        age_years=age,
        visit_patient=inv,
        visit_day=df["day"].to_numpy(float),
        cpeptide_nmol_l=df["cpeptide_nmol_l"].to_numpy(float),
        censored=df["censored"].to_numpy(bool),
    )
