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

With ``log_scale=True`` also, on z = ln(max(x, LLOQ)) in ln(nmol/L) (values at or below the
LLOQ, which the records code LLOQ/2, count as the LLOQ), where the curvature of the course and
the level dependence of the deviation are not compressed as on ln(x + 1) at low C-peptide
(docs/calibration.md, "NPE on within-patient statistics"):

* ``median_ln_x`` / ``q25_ln_x`` / ``q75_ln_x`` at each month of ``mean_months``;
* ``log_ancova_slope`` / ``log_ancova_resid_sd`` at each target month (z_m ~ 1 + z_0 + age);
* ``q10_log_change`` / ``q50_log_change`` / ``q90_log_change`` at each later month of
  ``visit_months``: quantiles of z_m − z_0 (the fast decliners' course shows the curvature);
* each participant's OLS slope of z on time (years) over the ``visit_months`` in [0, 12]
  ("early", ≥ 2 visits) and in [12, last target] ("late", ≥ 2 visits): ``mean_log_slope_early``
  / ``sd_log_slope_early`` (month 12), ``mean_log_slope_late`` / ``sd_log_slope_late``, and,
  among participants with both, ``mean_log_slope_change`` (late − early: the curvature) and
  ``corr_log_slopes`` (last target month);
* ``log_resid_rms_low_baseline`` / ``log_resid_rms_high_baseline`` (last target month): the
  pooled RMS residual of each participant's own straight line of z over months 0 to the last
  target (≥ 4 visits, n − 2 df), among participants with z_0 below / at or above the median.

Overall (group ``"all"``, kept when n ≥ 5) and per age group at baseline (<13, 13–17, ≥18 y)
where the cell has n ≥ ``min_group_n``. Feature names are ``statistic|group|month``.

A degenerate replicate (no spread: e.g. every value at the LLOQ) has undefined correlations
and slopes; they are returned as NaN here and the simulator maps them to 0 (documented there).
"""

from __future__ import annotations

import numpy as np

from tregsim.trial_statistics import AGE_GROUPS, DEFAULT_MONTHS, VISIT_MONTHS
from tregsim.units import LLOQ_NMOL_L

MEAN_MONTHS = (0, 3, 6, 12, 18, 24)
"""Months of the per-visit means and SDs (month 3: two of the five studies)."""
STATISTIC_NAMES = (
    "mean_ln_x_plus_1", "sd_ln_x_plus_1", "ancova_slope", "ancova_resid_sd", "corr_baseline",
    "corr_previous_visit", "mean_individual_slope", "sd_individual_slope",
    "resid_rms_low_baseline", "resid_rms_high_baseline", "corr_slope_baseline",
    "max_ln_x_plus_1", "q05_change_from_baseline", "q95_change_from_baseline",
    "median_ln_x", "q25_ln_x", "q75_ln_x", "log_ancova_slope", "log_ancova_resid_sd",
    "mean_log_slope_early", "sd_log_slope_early", "mean_log_slope_late", "sd_log_slope_late",
    "mean_log_slope_change", "corr_log_slopes", "q10_log_change", "q50_log_change",
    "q90_log_change",
    "log_resid_rms_low_baseline", "log_resid_rms_high_baseline",
)  # fmt: skip
"""Every statistic name a plan can form (``[summaries] exclude`` takes these)."""
SPLIT_MONTH = 12
"""End of the early and start of the late window of the log-scale individual slopes."""


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
    structure, log_scale : add the level/tail and the log-scale statistics (module docstring).
    lloq_nmol_l : floor of the log-scale statistics' z = ln(max(x, LLOQ)), nmol/L.
    exclude : statistic names (the part before the first ``|``) left out of the features.
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
        log_scale: bool = False,
        lloq_nmol_l: float = LLOQ_NMOL_L,
        exclude=(),
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
        if log_scale:
            self._add_log_scale(names, ops, col, mean_months, targets, vm, need)
        drop = set(exclude)
        self._keep = np.array([f.split("|")[0] not in drop for f in names])
        self.feature_names = tuple(f for f, k in zip(names, self._keep) if k)
        self.structure = bool(structure)
        self.log_floor = float(np.log(lloq_nmol_l))
        col0 = col[0]
        self._col0 = col0
        self._ops = ops

    def _add_log_scale(self, names, ops, col, mean_months, targets, vm, need):
        for m in mean_months:
            rows = np.flatnonzero(self.present[:, col[m]])
            if rows.size >= 5:
                names += [f"{st}_ln_x|all|{m}" for st in ("median", "q25", "q75")]
                ops.append(("log_quantiles", col[m], rows))
        for m in targets:
            rows = np.flatnonzero(self.present[:, col[0]] & self.present[:, col[m]])
            if rows.size >= 5:
                names += [f"log_ancova_slope|all|{m}", f"log_ancova_resid_sd|all|{m}"]
                ops.append(("log_ancova", (col[0], col[m]), rows))
        for m in vm:
            rows = np.flatnonzero(self.present[:, col[0]] & self.present[:, col[m]])
            if m > 0 and rows.size >= 5:
                names += [f"{st}_log_change|all|{m}" for st in ("q10", "q50", "q90")]
                ops.append(("log_change_quantiles", (col[0], col[m]), rows))
        last = max(targets)
        win = {}
        for key, lo, hi in (("early", 0, SPLIT_MONTH), ("late", SPLIT_MONTH, last)):
            ms = [m for m in vm if lo <= m <= hi]
            if len(ms) >= 2:
                rows, w = _slope_weights(self.present[:, [col[m] for m in ms]], ms, 2)
                if rows.size >= 5:
                    win[key] = (rows, np.array([col[m] for m in ms]), w)
                    month = hi
                    names += [
                        f"mean_log_slope_{key}|all|{month}",
                        f"sd_log_slope_{key}|all|{month}",
                    ]
        if len(win) == 2:
            both = np.intersect1d(win["early"][0], win["late"][0])
            if both.size >= 5:
                names += [f"mean_log_slope_change|all|{last}", f"corr_log_slopes|all|{last}"]
                idx = (
                    np.searchsorted(win["early"][0], both),
                    np.searchsorted(win["late"][0], both),
                )
            else:
                idx = None
            ops.append(("log_slopes", win, idx))
        elif win:
            ops.append(("log_slopes", win, None))
        ms = [m for m in vm if m <= last]
        cols = np.array([col[m] for m in ms])
        rows, w = _slope_weights(self.present[:, cols], ms, 4)
        rows_w = np.isin(rows, np.flatnonzero(self.present[:, col[0]]))
        rows, w = rows[rows_w], w[rows_w]
        if rows.size >= 10:
            names += [
                f"log_resid_rms_low_baseline|all|{last}",
                f"log_resid_rms_high_baseline|all|{last}",
            ]
            ok = self.present[rows][:, cols]
            ops.append(("log_lines", cols, (rows, w, ok, np.array(ms, float) / 12.0)))

    def _log_scale(self, v: np.ndarray, op) -> list:
        kind, c, rows = op
        z = np.maximum(np.log(v), self.log_floor)
        col0 = self._col0
        if kind == "log_quantiles":
            return list(np.quantile(z[:, rows, c], [0.5, 0.25, 0.75], axis=1))
        if kind == "log_change_quantiles":
            dz = z[:, rows, c[1]] - z[:, rows, c[0]]
            return list(np.quantile(dz, [0.1, 0.5, 0.9], axis=1))
        if kind == "log_ancova":
            return list(_ancova(z[:, rows, c[0]], z[:, rows, c[1]], self.age[rows])[:2])
        if kind == "log_slopes":
            out, slopes = [], {}
            for key in ("early", "late"):
                if key in c:
                    r, cols, w = c[key]
                    slopes[key] = _weighted(np.nan_to_num(z[:, r][:, :, cols]), w)
                    out += [_mean(slopes[key]), _sd(slopes[key])]
            if rows is not None:
                e, lt = slopes["early"][:, rows[0]], slopes["late"][:, rows[1]]
                out += [_mean(lt - e), _corr(e, lt)]
            return out
        # log_lines: residuals of each participant's own line, pooled by baseline half
        r, w, ok, t = rows
        zr = np.nan_to_num(z[:, r][:, :, c])
        b = _weighted(zr, w)
        cnt = ok.sum(1)
        tm = (ok * t).sum(1) / cnt
        zbar = zr[:, :, 0] * ok[:, 0]
        for j in range(1, ok.shape[1]):
            zbar = zbar + zr[:, :, j] * ok[:, j]
        zbar = zbar / cnt
        e2 = np.zeros_like(b)
        for j in range(ok.shape[1]):
            e = zr[:, :, j] - zbar - b * (t[j] - tm)
            e2 = e2 + np.where(ok[:, j], e * e, 0.0)
        z0 = z[:, r, col0]
        low = (z0 < np.median(z0, axis=1, keepdims=True)).astype(float)
        df = (cnt - 2.0)[None, :]
        return [
            np.sqrt(_sum(e2 * low) / _sum(df * low)),
            np.sqrt(_sum(e2 * (1 - low)) / _sum(df * (1 - low))),
        ]

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
            for op in self._ops:
                kind, c, rows = op
                if kind.startswith("log_"):
                    out += self._log_scale(v, op)
                elif kind == "moments":
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
        return np.stack(out, axis=1)[:, self._keep]


def _slope_weights(present: np.ndarray, months, min_visits: int):
    """Participants with ≥ ``min_visits`` of the columns ``present`` (P, K) at ``months`` (K,)
    and the OLS weights w (n, K) of their slope on time in years: slope_i = Σ_k w_ik z_ik."""
    t = np.asarray(months, float) / 12.0
    cnt = present.sum(axis=1)
    rows = np.flatnonzero(cnt >= min_visits)
    ok = present[rows]
    tm = (ok * t).sum(1) / cnt[rows]
    dt = np.where(ok, t[None, :] - tm[:, None], 0.0)
    return rows, dt / (dt**2).sum(1, keepdims=True)


def _weighted(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_k z[:, :, k] w[:, k] (R, n) in a fixed order."""
    s = z[:, :, 0] * w[:, 0]
    for j in range(1, w.shape[1]):
        s = s + z[:, :, j] * w[:, j]
    return s


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
