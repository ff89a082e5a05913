"""The within-patient statistics that decide a trial's power, from long-format C-peptide.

A new-onset T1D trial analyses ln(AUC_m + 1) at month m by ANCOVA on ln(AUC_0 + 1) and age
(the TrialNet analysis): the residual SD of that regression sets the sample size, and it
depends on how strongly a patient's later values follow the baseline. The statistics here
(all on x = ln(MMTT 2-h AUC mean C-peptide in nmol/L + 1)):

* ``ancova_slope``: OLS slope of x_m on x_0 in x_m ~ 1 + x_0 + age (years);
* ``ancova_resid_sd``: residual SD of that regression, sqrt(RSS / (n − 3));
* ``corr_baseline``: Pearson correlation of x_0 and x_m;
* ``corr_previous_visit``: correlation of x_m with x at the previous visit month of ``months``
  (e.g. 12 → 6), the visit-to-visit correlation;
* ``sd_individual_slope`` / ``mean_individual_slope`` (reported at the last month): the spread
  and mean of each participant's OLS slope of x on time (per year) over the visits 0 … last
  month, among participants with ≥ 3 such visits.

Overall (``group = "all"``) and per age group (<13, 13–17, ≥18 y at baseline) where a cell has
at least ``min_group_n`` (default 20) participants. Intervals: participant bootstrap
(participants resampled with replacement, all statistics recomputed, percentile interval).

Visit matching (the nominal-month rule): a record counts as month m when
``|month − m| ≤ tolerance_months`` (default 0: the record's nominal month must equal m); if a
participant has several such records, the one closest to m is used (first on ties). The same
function takes simulated observed measurements on the nominal grid (:func:`wide_statistics`).

numpy + scipy only; checked against statsmodels OLS in ``tests/test_trial_statistics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AGE_GROUPS = {"<13": (0.0, 13.0), "13-17": (13.0, 18.0), ">=18": (18.0, 200.0)}
"""Age groups at baseline, years [lo, hi) (as in the placebo summary table)."""

POWER_STATISTICS = ("ancova_slope", "ancova_resid_sd", "corr_baseline")
DEFAULT_MONTHS = (6, 12, 24)
VISIT_MONTHS = (0, 6, 12, 18, 24)
"""Visit grid for visit-to-visit correlations and individual slopes (all five placebo
studies share it; month 3 exists in two of them only)."""


@dataclass
class TrialStatistics:
    """Statistics with bootstrap intervals.

    ``rows``: list of dicts with keys ``month`` (months after baseline), ``statistic``,
    ``group`` (age group or ``"all"``), ``n`` (participants), ``estimate``, ``lo``, ``hi``
    (percentile interval of level ``level``). ``boot``: statistic key → (n_boot,) replicates.
    """

    rows: list[dict]
    level: float
    n_boot: int
    rule: str
    boot: dict = field(default_factory=dict, repr=False)

    def get(self, statistic: str, month: int, group: str = "all") -> dict:
        for r in self.rows:
            if r["statistic"] == statistic and r["month"] == month and r["group"] == group:
                return r
        raise KeyError((statistic, month, group))

    def frame(self):
        import pandas as pd

        return pd.DataFrame(
            self.rows, columns=["month", "statistic", "group", "n", "estimate", "lo", "hi"]
        )


def to_wide(
    participant,
    month,
    cpeptide_nmol_l,
    age_years,
    *,
    months=VISIT_MONTHS,
    tolerance_months: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long records → (ids (P,), values (P, len(months)) in nmol/L with NaN where missing,
    age at baseline (P,) in years: the age of the participant's first record)."""
    participant = np.asarray(participant)
    month = np.asarray(month, float)
    y = np.asarray(cpeptide_nmol_l, float)
    age = np.asarray(age_years, float)
    ids, inv = np.unique(participant, return_inverse=True)
    P = len(ids)
    out = np.full((P, len(months)), np.nan)
    best = np.full((P, len(months)), np.inf)
    for j, m in enumerate(months):
        dist = np.abs(month - m)
        for k in np.flatnonzero((dist <= tolerance_months) & np.isfinite(y)):
            if dist[k] < best[inv[k], j]:
                best[inv[k], j] = dist[k]
                out[inv[k], j] = y[k]
    first = np.full(P, np.inf)
    age_p = np.full(P, np.nan)
    for k in range(len(y)):
        if month[k] < first[inv[k]]:
            first[inv[k]] = month[k]
            age_p[inv[k]] = age[k]
    return ids, out, age_p


def _ancova(x0, xm, age):
    """slope on x0, residual SD, corr(x0, xm) for complete rows (n ≥ 4)."""
    X = np.column_stack([np.ones_like(x0), x0, age])
    beta, *_ = np.linalg.lstsq(X, xm, rcond=None)
    resid = xm - X @ beta
    n = len(xm)
    sd = np.sqrt(resid @ resid / (n - 3))
    c = np.corrcoef(x0, xm)[0, 1]
    return beta[1], sd, c


def _individual_slopes(x: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Per-row OLS slope of x on time (years) over the non-missing visits (≥ 3), else NaN."""
    t = months / 12.0
    ok = np.isfinite(x)
    cnt = ok.sum(axis=1)
    tt = np.where(ok, t[None, :], 0.0)
    xx = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = tt.sum(1) / cnt
        xm = xx.sum(1) / cnt
        sxy = (np.where(ok, (t[None, :] - tm[:, None]) * (x - xm[:, None]), 0.0)).sum(1)
        sxx = (np.where(ok, (t[None, :] - tm[:, None]) ** 2, 0.0)).sum(1)
        s = sxy / sxx
    return np.where(cnt >= 3, s, np.nan)


def _point(values: np.ndarray, age: np.ndarray, months: tuple, targets: tuple, groups: dict):
    """All statistics on one (resampled) wide table → dict key → (value, n)."""
    x = np.log1p(values)
    months_arr = np.asarray(months, float)
    j0 = months.index(0)
    out = {}
    for gname, mask in groups.items():
        for m in targets:
            jm = months.index(m)
            ok = mask & np.isfinite(x[:, j0]) & np.isfinite(x[:, jm])
            n = int(ok.sum())
            if n >= 5:
                s, sd, c = _ancova(x[ok, j0], x[ok, jm], age[ok])
            else:
                s = sd = c = np.nan
            out[("ancova_slope", m, gname)] = (s, n)
            out[("ancova_resid_sd", m, gname)] = (sd, n)
            out[("corr_baseline", m, gname)] = (c, n)
            if gname == "all" and jm > 0:
                jp = jm - 1
                okp = np.isfinite(x[:, jp]) & np.isfinite(x[:, jm])
                n2 = int(okp.sum())
                cp = np.corrcoef(x[okp, jp], x[okp, jm])[0, 1] if n2 >= 5 else np.nan
                out[("corr_previous_visit", m, "all")] = (cp, n2)
    last = max(targets)
    keep = months_arr <= last
    sl = _individual_slopes(x[:, keep], months_arr[keep])
    ok = np.isfinite(sl)
    n = int(ok.sum())
    out[("sd_individual_slope", last, "all")] = (np.std(sl[ok], ddof=1) if n >= 5 else np.nan, n)
    out[("mean_individual_slope", last, "all")] = (np.mean(sl[ok]) if n >= 5 else np.nan, n)
    return out


def age_group_mask(age: np.ndarray, group: str) -> np.ndarray:
    """Which of ``age`` (years at baseline, (n,)) fall in ``group`` ("all" or a key of
    :data:`AGE_GROUPS`): (n,) bool."""
    age = np.asarray(age, float)
    if group == "all":
        return np.ones(age.size, bool)
    lo, hi = AGE_GROUPS[group]
    return (age >= lo) & (age < hi)


def _groups(age: np.ndarray) -> dict:
    return {g: age_group_mask(age, g) for g in ("all", *AGE_GROUPS)}


def wide_statistics(
    values_nmol_l: np.ndarray,
    age_years: np.ndarray,
    *,
    months=VISIT_MONTHS,
    targets=DEFAULT_MONTHS,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_group_n: int = 20,
    rule: str = "nominal grid",
) -> TrialStatistics:
    """Statistics of a wide table ``values_nmol_l`` (P, len(months)), NaN = missing visit,
    with participant-bootstrap intervals. ``months`` must contain 0 and every target month.

    Age-group rows are kept where the group has ≥ ``min_group_n`` participants at that month;
    the overall rows are kept where n ≥ 5 (no aggregate from fewer than 5 people).
    """
    months = tuple(int(m) for m in months)
    targets = tuple(int(m) for m in targets)
    for m in (0, *targets):
        if m not in months:
            raise ValueError(f"month {m} is not in months={months}")
    values = np.asarray(values_nmol_l, float)
    age = np.asarray(age_years, float)
    groups = _groups(age)
    est = _point(values, age, months, targets, groups)
    rng = np.random.default_rng(seed)
    P = values.shape[0]
    boot = {k: np.empty(n_boot) for k in est}
    for b in range(n_boot):
        idx = rng.integers(0, P, P)
        vb, ab = values[idx], age[idx]
        pb = _point(vb, ab, months, targets, _groups(ab))
        for k in est:
            boot[k][b] = pb[k][0]
    a = (1 - level) / 2
    rows = []
    for (stat, m, g), (v, n) in est.items():
        need = 5 if g == "all" else min_group_n
        if n < need or not np.isfinite(v):
            continue
        bk = boot[(stat, m, g)]
        bk = bk[np.isfinite(bk)]
        lo, hi = np.quantile(bk, [a, 1 - a]) if bk.size else (np.nan, np.nan)
        rows.append(
            {
                "month": m,
                "statistic": stat,
                "group": g,
                "n": n,
                "estimate": float(v),
                "lo": float(lo),
                "hi": float(hi),
            }
        )
    return TrialStatistics(rows=rows, level=level, n_boot=n_boot, rule=rule, boot=boot)


def trial_statistics(
    participant,
    age_years,
    month,
    cpeptide_nmol_l,
    *,
    months=VISIT_MONTHS,
    targets=DEFAULT_MONTHS,
    tolerance_months: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_group_n: int = 20,
) -> TrialStatistics:
    """Statistics of long-format records (one row per participant and visit).

    Parameters
    ----------
    participant : (R,) ids. age_years : (R,) age in years (the participant's first record is
    its baseline age). month : (R,) nominal visit month after baseline. cpeptide_nmol_l : (R,)
    MMTT 2-h AUC mean C-peptide, nmol/L (values below the LLOQ as coded in the records).
    tolerance_months : nominal-month matching window (see the module docstring).
    """
    _, wide, age = to_wide(
        participant,
        month,
        cpeptide_nmol_l,
        age_years,
        months=months,
        tolerance_months=tolerance_months,
    )
    rule = f"|month - m| <= {tolerance_months:g}, closest record"
    return wide_statistics(
        wide,
        age,
        months=months,
        targets=targets,
        n_boot=n_boot,
        seed=seed,
        level=level,
        min_group_n=min_group_n,
        rule=rule,
    )


def cohort_statistics(
    values_nmol_l: np.ndarray,
    age_years: np.ndarray,
    *,
    months=VISIT_MONTHS,
    targets=DEFAULT_MONTHS,
    present: np.ndarray | None = None,
) -> dict:
    """Point statistics of simulated cohorts: ``values_nmol_l`` (R, P, T) replicate cohorts →
    key (statistic, month, group) → (R,) values. ``present`` (P, T) bool masks visits as
    missing (e.g. the records' visit pattern) so each replicate has the data's n."""
    months = tuple(int(m) for m in months)
    targets = tuple(int(m) for m in targets)
    v = np.asarray(values_nmol_l, float)
    if present is not None:
        v = np.where(np.asarray(present, bool)[None], v, np.nan)
    age = np.asarray(age_years, float)
    age = np.broadcast_to(age, v.shape[:2]) if age.ndim == 1 else age
    out: dict = {}
    for r in range(v.shape[0]):
        pt = _point(v[r], age[r], months, targets, _groups(age[r]))
        for k, (val, _n) in pt.items():
            out.setdefault(k, np.full(v.shape[0], np.nan))[r] = val
    return out


COMPARISON_COLUMNS = (
    "month",
    "statistic",
    "observed",
    "observed_lo",
    "observed_hi",
    "simulated",
    "simulated_lo",
    "simulated_hi",
)


def comparison_rows(
    observed: TrialStatistics,
    simulated: dict,
    *,
    statistics=POWER_STATISTICS,
    months=DEFAULT_MONTHS,
    group: str = "all",
    level: float = 0.95,
) -> list[dict]:
    """Observed (bootstrap interval) beside simulated (median and central interval over
    replicate virtual cohorts, ``simulated`` from :func:`cohort_statistics`) per month and
    statistic: the rows of ``trial_statistics.csv`` (columns :data:`COMPARISON_COLUMNS`).
    The median, as the records' predictive check reports (``predicted_median``): under the
    Student-t deviation a few cohorts with a visit far off course pull the mean of an OLS
    slope, correlation or residual SD away from the typical cohort (round 19: residual SD at
    24 months mean 0.178, median 0.170; under the normal deviation they differ by ≤ 0.015,
    docs/calibration.md, "Round 19").
    A month the records cannot give (no participant with that visit and a baseline, e.g. a
    trial without a 6-month MMTT) has no rows."""
    a = (1 - level) / 2
    cells = {(r["statistic"], r["month"], r["group"]) for r in observed.rows}
    rows = []
    for m in months:
        for s in statistics:
            if (s, m, group) not in cells:
                continue
            o = observed.get(s, m, group)
            v = np.asarray(simulated[(s, m, group)], float)
            v = v[np.isfinite(v)]
            lo, hi = np.quantile(v, [a, 1 - a]) if v.size else (np.nan, np.nan)
            rows.append(
                {
                    "month": m,
                    "statistic": s,
                    "group": group,
                    "n": int(o["n"]),
                    "observed": o["estimate"],
                    "observed_lo": o["lo"],
                    "observed_hi": o["hi"],
                    "simulated": float(np.median(v)) if v.size else np.nan,
                    "simulated_lo": float(lo),
                    "simulated_hi": float(hi),
                }
            )
    return rows


def by_age_rows(
    observed: TrialStatistics,
    simulated: dict,
    *,
    statistics=POWER_STATISTICS,
    months=DEFAULT_MONTHS,
    level: float = 0.95,
) -> list[dict]:
    """:func:`comparison_rows` per age group at baseline (:data:`AGE_GROUPS` order) and month,
    where the observed statistics have that cell (≥ ``min_group_n`` participants)."""
    cells = {(r["statistic"], r["month"], r["group"]) for r in observed.rows}
    rows = []
    for g in AGE_GROUPS:
        for m in months:
            if all((s, m, g) in cells for s in statistics):
                rows += comparison_rows(
                    observed, simulated, statistics=statistics, months=(m,), group=g, level=level
                )
    return rows


BY_AGE_COLUMNS = ("group", "n", *COMPARISON_COLUMNS)
"""Columns of ``trial_statistics_by_age.csv``: age group at baseline and its participants."""


def split_overall(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Comparison rows of the whole cohort (``group`` "all", or no ``group``: rows read back
    from ``trial_statistics.csv``) and those of the age groups, in their order."""
    overall = [r for r in rows if r.get("group", "all") == "all"]
    return overall, [r for r in rows if r.get("group", "all") != "all"]


def outside_summary(rows: list[dict]) -> str:
    """One line on comparison rows: how many simulated values lie outside the observed
    bootstrap 95 % interval, and which: ``"2 of 27 outside the observed 95 % interval: <13
    ancova_slope 12 m: 0.434 vs 1.304 (0.665–1.789); …"`` (simulated vs observed (interval)),
    or ``"all 9 inside the observed 95 % interval"``."""
    out = [r for r in rows if not r["observed_lo"] <= r["simulated"] <= r["observed_hi"]]
    if not out:
        return f"all {len(rows)} inside the observed 95 % interval"
    head = f"{len(out)} of {len(rows)} outside the observed 95 % interval"
    return (
        head
        + ": "
        + "; ".join(
            (f"{r['group']} " if r.get("group", "all") != "all" else "")
            + f"{r['statistic']} {r['month']:g} m: {r['simulated']:.3f} vs {r['observed']:.3f} "
            f"({r['observed_lo']:.3f}–{r['observed_hi']:.3f})"
            for r in out
        )
    )


def write_comparison_csv(path, rows: list[dict], columns=COMPARISON_COLUMNS) -> None:
    """Write :func:`comparison_rows` atomically (4 significant decimals)."""
    from tregsim.io import write_text

    lines = [",".join(columns)]
    for r in rows:
        lines.append(
            ",".join(
                str(r[c]) if c in ("month", "statistic", "group", "n") else f"{r[c]:.4f}"
                for c in columns
            )
        )
    write_text(path, "\n".join(lines) + "\n")
