"""Per-visit and within-patient summaries of wide C-peptide tables, vectorised over replicates.

The NPE on the records' structure (:mod:`tregsim.calibrate.structure_simulator`) reduces tens
of thousands of simulated cohorts to summaries. Every simulated cohort has the records' own
visit pattern (which participant was seen at which nominal month), so everything that depends
only on the pattern (which rows enter a regression, the age design, each participant's slope
weights) is computed once in :class:`StatisticsPlan`, and a call reduces ``R`` replicate
tables at once with array operations.

Statistics on x = ln(MMTT 2-h AUC mean C-peptide in nmol/L + 1), the same definitions as
:mod:`tregsim.trial_statistics` (checked equal in ``tests/test_structure_npe.py``):

* ``mean_ln_x_plus_1`` / ``sd_ln_x_plus_1`` (ddof 1) at each month of ``mean_months``;
* ``ancova_slope``, ``ancova_resid_sd``, ``corr_baseline`` at each target month (x_m ~ 1 +
  x_0 + age, participants seen at 0 and m);
* ``corr_previous_visit`` at each target month (x_m with x at the previous month of
  ``visit_months``), overall only;
* ``mean_individual_slope`` / ``sd_individual_slope`` at the last target month (each
  participant's OLS slope of x on time in years over the ``visit_months`` up to it, ≥ 3 visits).

With ``structure=True`` also (not in ``tregsim.trial_statistics``; they carry the structure's
level dependence):

* ``resid_rms_low_baseline`` / ``resid_rms_high_baseline`` at each target month: RMS of the
  overall ANCOVA's residuals among participants with x_0 below / at or above the median x_0;
* ``corr_slope_baseline`` at the last target month: correlation of the individual slopes with
  x_0 (a hazard that depends on the baseline level makes it non-zero);
* ``max_ln_x_plus_1`` (all visits up to the last target month) and
  ``q05_change_from_baseline`` / ``q95_change_from_baseline`` (pooled x_m − x_0 over the later
  ``visit_months``): the tails, which a too-large deviation at low or high levels inflates.

Overall (group ``"all"``, kept when n ≥ 5) and per age group at baseline (<13, 13–17, ≥18 y)
where the cell has n ≥ ``min_group_n``. Feature names are ``statistic|group|month``.

A degenerate replicate (no spread: e.g. every value at the LLOQ) has undefined correlations
and slopes; they are returned as NaN here and the simulator maps them to 0 (documented there).
"""

from __future__ import annotations

import numpy as np

from tregsim.trial_statistics import AGE_GROUPS, DEFAULT_MONTHS, VISIT_MONTHS

MEAN_MONTHS = (0, 3, 6, 12, 18, 24)
"""Months of the per-visit means and SDs (month 3: two of the five studies)."""


def _groups(age: np.ndarray, by_age_group: bool) -> dict[str, np.ndarray]:
    out = {"all": np.ones(age.size, bool)}
    if by_age_group:
        for name, (lo, hi) in AGE_GROUPS.items():
            out[name] = (age >= lo) & (age < hi)
    return out


class StatisticsPlan:
    """Summaries of wide tables that share one visit pattern.

    Parameters
    ----------
    present : (P, S) bool, visit of participant p at month ``months[s]`` observed.
    age_years : (P,) age at baseline, years.
    months : (S,) nominal months of the table's columns (must contain 0, the target months,
        ``mean_months`` and ``visit_months``).
    """

    def __init__(
        self,
        present: np.ndarray,
        age_years: np.ndarray,
        months,
        *,
        mean_months=MEAN_MONTHS,
        targets=DEFAULT_MONTHS,
        visit_months=VISIT_MONTHS,
        by_age_group: bool = True,
        min_group_n: int = 20,
        structure: bool = False,
    ):
        self.present = np.asarray(present, bool)
        self.age = np.asarray(age_years, float)
        self.months = tuple(int(m) for m in months)
        col = {m: k for k, m in enumerate(self.months)}
        for m in (0, *targets, *mean_months, *visit_months):
            if m not in col:
                raise ValueError(f"month {m} is not a column of the table (months={self.months})")
        groups = _groups(self.age, by_age_group)
        names, ops = [], []

        def need(g):
            return 5 if g == "all" else int(min_group_n)

        for m in mean_months:
            for g, mask in groups.items():
                rows = np.flatnonzero(mask & self.present[:, col[m]])
                if rows.size >= need(g):
                    names += [f"mean_ln_x_plus_1|{g}|{m}", f"sd_ln_x_plus_1|{g}|{m}"]
                    ops.append(("moments", col[m], rows))
        vm = [m for m in visit_months]
        for m in targets:
            for g, mask in groups.items():
                rows = np.flatnonzero(mask & self.present[:, col[0]] & self.present[:, col[m]])
                if rows.size >= need(g):
                    names += [f"ancova_slope|{g}|{m}", f"ancova_resid_sd|{g}|{m}"]
                    names.append(f"corr_baseline|{g}|{m}")
                    ops.append(("ancova", (col[0], col[m]), rows))
                    if structure and g == "all" and rows.size >= 10:
                        names += [f"resid_rms_low_baseline|all|{m}"]
                        names += [f"resid_rms_high_baseline|all|{m}"]
                        ops.append(("halves", (col[0], col[m]), rows))
            # (the previous visit of the first month after 0 is the baseline: corr_baseline)
            if m in vm and vm.index(m) > 1:
                mp = vm[vm.index(m) - 1]
                rows = np.flatnonzero(self.present[:, col[mp]] & self.present[:, col[m]])
                if rows.size >= 5:
                    names.append(f"corr_previous_visit|all|{m}")
                    ops.append(("corr", (col[mp], col[m]), rows))
        last = max(targets)
        sc = [col[m] for m in vm if m <= last]
        t = np.array([m for m in vm if m <= last], float) / 12.0
        ok = self.present[:, sc]
        cnt = ok.sum(axis=1)
        rows = np.flatnonzero(cnt >= 3)
        if rows.size >= 5:
            okr = ok[rows]
            tm = (okr * t).sum(1) / cnt[rows]
            dt = np.where(okr, t[None, :] - tm[:, None], 0.0)
            w = dt / (dt**2).sum(1, keepdims=True)  # slope_i = Σ_j w_ij x_ij (Σ_j w_ij = 0)
            names += [f"mean_individual_slope|all|{last}", f"sd_individual_slope|all|{last}"]
            if structure:
                names.append(f"corr_slope_baseline|all|{last}")
            based = np.flatnonzero(self.present[rows, col[0]])  # slope rows with a baseline
            ops.append(("slopes", np.array(sc), (rows, w, based)))
        if structure:
            pv = [
                (p, col[m])
                for m in vm
                if m <= last
                for p in np.flatnonzero(self.present[:, col[m]])
            ]
            ch = [
                (p, col[m])
                for m in vm
                if 0 < m <= last
                for p in np.flatnonzero(self.present[:, col[0]] & self.present[:, col[m]])
            ]
            names.append(f"max_ln_x_plus_1|all|{last}")
            names += [
                f"q05_change_from_baseline|all|{last}",
                f"q95_change_from_baseline|all|{last}",
            ]
            ops.append(("tails", np.array(pv).T, np.array(ch).T))
        self.feature_names = tuple(names)
        self.structure = bool(structure)
        col0 = col[0]
        self._col0 = col0
        self._ops = ops

    def __call__(self, values_nmol_l: np.ndarray) -> np.ndarray:
        """Summaries of replicate tables ``values_nmol_l`` (R, P, S) in nmol/L → (R, F).

        Only entries where ``present`` is True are read (others may hold anything).
        """
        v = np.asarray(values_nmol_l, float)
        if v.ndim == 2:
            v = v[None]
        x = np.log1p(v)
        col0 = self._col0
        out = []
        with np.errstate(invalid="ignore", divide="ignore"):
            for kind, c, rows in self._ops:
                if kind == "moments":
                    xs = x[:, rows, c]
                    out += [_mean(xs), _sd(xs)]
                elif kind == "ancova":
                    out += list(_ancova(x[:, rows, c[0]], x[:, rows, c[1]], self.age[rows]))
                elif kind == "corr":
                    out.append(_corr(x[:, rows, c[0]], x[:, rows, c[1]]))
                elif kind == "tails":
                    out.append(x[:, c[0], c[1]].max(axis=1))
                    dx = x[:, rows[0], rows[1]] - x[:, rows[0], col0]
                    out += list(np.quantile(dx, [0.05, 0.95], axis=1))
                elif kind == "halves":
                    out += list(_halves(x[:, rows, c[0]], x[:, rows, c[1]], self.age[rows]))
                else:
                    r, w, based = rows
                    xr = np.nan_to_num(x[:, r][:, :, c])
                    s = xr[:, :, 0] * w[:, 0]
                    for j in range(1, w.shape[1]):
                        s = s + xr[:, :, j] * w[:, j]
                    out += [_mean(s), _sd(s)]
                    if self.structure:
                        out.append(_corr(s[:, based], xr[:, based, 0]))
        return np.stack(out, axis=1)


def _sum(a: np.ndarray) -> np.ndarray:
    """Row sums (R, n) → (R,) added in a fixed order over n: the same bits whatever R (numpy's
    own reductions change their order with the array's shape, so a cohort's summaries would
    depend on the chunk it was simulated in)."""
    s = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        s += a[:, j]
    return s


def _mean(a: np.ndarray) -> np.ndarray:
    return _sum(a) / a.shape[1]


def _sd(a: np.ndarray) -> np.ndarray:
    c = _center(a)
    return np.sqrt(_sum(c * c) / (a.shape[1] - 1))


def _center(a: np.ndarray) -> np.ndarray:
    return a - _mean(a)[:, None]


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ac, bc = _center(a), _center(b)
    return _sum(ac * bc) / np.sqrt(_sum(ac * ac) * _sum(bc * bc))


def _ancova(x0: np.ndarray, xm: np.ndarray, age: np.ndarray):
    """OLS of xm on [1, x0, age] per replicate row: slope on x0, residual SD (n − 3 df),
    Pearson corr(x0, xm). x0, xm (R, n); age (n,) shared (Frisch–Waugh: age partialled out)."""
    n = age.size
    ac = _center(age[None, :])[0]
    saa = float(_sum((ac * ac)[None, :])[0])

    def resid(z):
        zc = _center(z)
        return zc - (_sum(zc * ac[None, :]) / saa)[:, None] * ac[None, :]

    r0, rm = resid(x0), resid(xm)
    s00 = _sum(r0 * r0)
    s0m = _sum(r0 * rm)
    slope = s0m / s00
    rss = np.maximum(_sum(rm * rm) - s0m * slope, 0.0)
    return slope, np.sqrt(rss / (n - 3)), _corr(x0, xm)


def _halves(x0: np.ndarray, xm: np.ndarray, age: np.ndarray):
    """Root-mean-square ANCOVA residual of the participants whose x0 is below / at or above
    the replicate's median x0 (the within-patient deviation's dependence on the level)."""
    ac = _center(age[None, :])[0]
    saa = float(_sum((ac * ac)[None, :])[0])

    def resid(z):
        zc = _center(z)
        return zc - (_sum(zc * ac[None, :]) / saa)[:, None] * ac[None, :]

    r0, rm = resid(x0), resid(xm)
    slope = _sum(r0 * rm) / _sum(r0 * r0)
    e2 = (rm - slope[:, None] * r0) ** 2
    low = (x0 < np.median(x0, axis=1, keepdims=True)).astype(float)
    return np.sqrt(_sum(e2 * low) / _sum(low)), np.sqrt(_sum(e2 * (1 - low)) / _sum(1 - low))


def bootstrap(
    values_nmol_l: np.ndarray,
    present: np.ndarray,
    age_years: np.ndarray,
    months,
    feature_names,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    **plan_kw,
) -> tuple[np.ndarray, np.ndarray]:
    """Participant-bootstrap percentile interval of each named feature of ONE wide table:
    (lo, hi) (F,). Each replicate resamples participants with replacement and rebuilds the
    plan (its visit pattern differs); a feature a replicate cannot form is left out of it."""
    rng = np.random.default_rng(seed)
    P = values_nmol_l.shape[0]
    pos = {f: k for k, f in enumerate(feature_names)}
    reps = np.full((n_boot, len(feature_names)), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, P, P)
        plan = StatisticsPlan(present[idx], age_years[idx], months, **plan_kw)
        xb = plan(values_nmol_l[idx])[0]
        for f, val in zip(plan.feature_names, xb):
            if f in pos:
                reps[b, pos[f]] = val
    a = (1 - level) / 2
    return np.nanquantile(reps, a, axis=0), np.nanquantile(reps, 1 - a, axis=0)
