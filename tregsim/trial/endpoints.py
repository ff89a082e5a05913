"""Endpoint analysis of many replicate trials at once (TrialNet convention).

Every function takes arrays shaped ``(R, n)``: ``R`` replicate trials of ``n`` patient slots.
``arm`` is ``True`` for the treatment (Treg) arm, ``False`` for control. A slot is analysed
where ``include`` is ``True`` and the endpoint is not NaN (NaN = dropout / missing visit), so
arms of unequal size, dropouts and nested sub-samples are all masks on the same arrays.

C-peptide values are MMTT 2-h AUC mean C-peptide in nmol/L; the analysis scale is
``ln(AUC + 1)`` (TrialNet: Lachin et al., Diabetes 2011;60:2520, doi:10.2337/db11-0159).
The primary analysis is ANCOVA of ``ln(AUC+1)`` at the endpoint on arm, ``ln(baseline AUC+1)``
and age, two-sided. A trial whose analysis is impossible (too few patients, an empty arm,
singular design) gets NaN statistics and ``reject = False``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import special, stats

from tregsim.trial.robust import HUBER_C, huber_regression
from tregsim.units import RESPONDER_THRESHOLD_NMOL_L


@dataclass(frozen=True)
class AnalysisResult:
    """Per-trial statistics of one analysis; every array has shape ``(R,)``.

    ``estimate`` is the treatment − control difference on the analysis scale (ln(AUC+1) for
    ANCOVA and t-tests; difference of proportions for responder rates; the Hodges–Lehmann-free
    rank test reports ``U`` of the treatment arm as ``statistic`` and NaN ``estimate``/``se``).
    ``ratio`` = exp(estimate) is the ratio of (adjusted) geometric means of (AUC+1), so
    ``100·(ratio−1)`` is "% higher C-peptide"; ``ratio_low``/``ratio_high`` its CI.
    """

    estimate: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    df: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_treatment: np.ndarray
    n_control: np.ndarray
    alpha: float

    @property
    def reject(self) -> np.ndarray:
        """``(R,)`` bool: two-sided p < alpha (NaN p → False)."""
        return np.nan_to_num(self.p_value, nan=1.0) < self.alpha

    @property
    def ratio(self) -> np.ndarray:
        """``(R,)`` exp(estimate): ratio of geometric means of (AUC+1), treatment / control."""
        return np.exp(self.estimate)

    @property
    def ratio_low(self) -> np.ndarray:
        return np.exp(self.ci_low)

    @property
    def ratio_high(self) -> np.ndarray:
        return np.exp(self.ci_high)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "alpha"}


def _prepare(endpoint, arm, include, *others):
    """Broadcast to (R, n) float arrays and build the analysis mask."""
    y = np.atleast_2d(np.asarray(endpoint, dtype=float))
    a = np.broadcast_to(np.atleast_2d(np.asarray(arm, dtype=bool)), y.shape)
    m = np.isfinite(y)
    if include is not None:
        m &= np.broadcast_to(np.atleast_2d(np.asarray(include, dtype=bool)), y.shape)
    outs = []
    for o in others:
        o = np.broadcast_to(np.atleast_2d(np.asarray(o, dtype=float)), y.shape)
        m &= np.isfinite(o)
        outs.append(o)
    return (y, a, m, *outs)


def log1p_auc(auc_nmol_l: np.ndarray) -> np.ndarray:
    """The TrialNet analysis scale ``ln(AUC + 1)`` of MMTT AUC mean C-peptide in nmol/L."""
    return np.log1p(np.asarray(auc_nmol_l, dtype=float))


def _t_two_sided(t, df):
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(t) & (df > 0), 2.0 * special.stdtr(df, -np.abs(t)), np.nan)


def _t_quantile(alpha, df):
    with np.errstate(invalid="ignore"):
        return np.where(df > 0, special.stdtrit(np.maximum(df, 1), 1.0 - alpha / 2.0), np.nan)


@dataclass(frozen=True)
class AncovaDesign:
    """The design of R replicate trials' ANCOVA: ``X`` (R, n, p) = [1, arm, centred
    covariates…], zero rows where a slot is not analysed; ``y`` (R, n) the outcome, 0 there;
    ``mask`` (R, n) the analysed slots; patients analysed per trial (R,)."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    n_used: np.ndarray
    n_treatment: np.ndarray
    n_control: np.ndarray


def ancova_design(endpoint, arm, covariates=(), include=None) -> AncovaDesign:
    """:class:`AncovaDesign` of ``endpoint`` (R, n) on ``arm`` (R, n) bool and ``covariates``
    (list of (R, n)); a NaN anywhere or ``include`` False drops the slot. Covariates are
    centred within each trial's analysed slots (the arm coefficient does not change, and the
    normal equations stay well conditioned)."""
    y, a, m, *xs = _prepare(endpoint, arm, include, *covariates)
    R, n = y.shape
    w = m.astype(float)
    n_used = w.sum(axis=1)
    n_t = (w * a).sum(axis=1)
    cols = [np.ones((R, n)), a.astype(float)]
    for x in xs:
        x0 = np.where(m, x, 0.0)
        mean = x0.sum(axis=1, keepdims=True) / np.maximum(n_used, 1)[:, None]
        cols.append(np.where(m, x - mean, 0.0))
    X = np.stack(cols, axis=-1) * w[:, :, None]
    return AncovaDesign(X, np.where(m, y, 0.0), m, n_used, n_t, n_used - n_t)


def ancova(
    endpoint: np.ndarray,
    arm: np.ndarray,
    covariates: list[np.ndarray] | tuple[np.ndarray, ...] = (),
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
) -> AnalysisResult:
    """Batched OLS ``y = b0 + b1·arm + Σ c_j·x_j + e`` for R trials in one linear solve.

    Parameters
    ----------
    endpoint : (R, n) outcome on the analysis scale (e.g. ``ln(AUC+1)``); NaN = missing.
    arm : (R, n) bool, True = treatment.
    covariates : list of (R, n) arrays (e.g. ``ln(baseline AUC+1)``, age in years); a NaN
        covariate drops that slot.
    include : (R, n) bool mask of slots to analyse (default all).
    alpha : two-sided significance level.

    Returns
    -------
    AnalysisResult with the arm coefficient (R,), its SE, t, residual df = n_used − p, p-value and
    the (1−alpha) t-interval.

    Notes
    -----
    Covariates are centred within each trial's analysed slots before forming the normal
    equations ``XᵀX b = Xᵀy`` (a (R, p, p) stack), which leaves the arm coefficient unchanged
    and keeps the system well conditioned.
    """
    d = ancova_design(endpoint, arm, covariates, include)
    X, yw, m = d.X, d.y, d.mask
    n_used, n_t, n_c = d.n_used, d.n_treatment, d.n_control
    R = yw.shape[0]
    p = X.shape[-1]
    XtX = np.einsum("rni,rnj->rij", X, X)
    Xty = np.einsum("rni,rn->ri", X, yw)
    df = n_used - p
    ok = (n_t >= 1) & (n_c >= 1) & (df >= 1)
    # Singular (e.g. a constant covariate) or impossible trials: solve an identity system and
    # report NaN, so one bad replicate never breaks the batch.
    eye = np.eye(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.linalg.cond(np.where(ok[:, None, None], XtX, eye))
    ok &= np.isfinite(cond) & (cond < 1e12)
    XtX = np.where(ok[:, None, None], XtX, eye)
    Xty = np.where(ok[:, None], Xty, 0.0)
    beta = np.linalg.solve(XtX, Xty[..., None])[..., 0]
    # Only the arm row of (XᵀX)⁻¹ is needed for its variance.
    e1 = np.zeros((R, p, 1))
    e1[:, 1, 0] = 1.0
    inv_11 = np.linalg.solve(XtX, e1)[:, 1, 0]
    resid = np.where(m, yw - np.einsum("rni,ri->rn", X, beta), 0.0)
    rss = (resid**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(ok, rss / np.maximum(df, 1), np.nan)
        se = np.sqrt(s2 * inv_11)
        est = np.where(ok, beta[:, 1], np.nan)
    return t_result(est, se, df, ok, n_t, n_c, alpha)


def t_result(est, se, df, ok, n_treatment, n_control, alpha: float) -> AnalysisResult:
    """:class:`AnalysisResult` of an arm coefficient ``est`` (R,) with standard error ``se``
    on ``df`` degrees of freedom: two-sided t-test and (1 − alpha) interval; trials not ``ok``
    report NaN df."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / se
    q = _t_quantile(alpha, df)
    return AnalysisResult(
        estimate=est,
        se=se,
        statistic=t,
        df=np.where(ok, df, np.nan),
        p_value=_t_two_sided(t, df),
        ci_low=est - q * se,
        ci_high=est + q * se,
        n_treatment=n_treatment,
        n_control=n_control,
        alpha=alpha,
    )


def ancova_trialnet(
    endpoint_auc_nmol_l: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    age_years: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
) -> AnalysisResult:
    """The TrialNet primary analysis: ANCOVA of ln(AUC+1) on arm, ln(baseline AUC+1), age.

    All arrays (R, n); C-peptide in nmol/L (MMTT 2-h AUC mean), age in years.
    ``result.ratio`` is the ratio of adjusted geometric means of (AUC+1), treatment / control.
    """
    return ancova(
        log1p_auc(endpoint_auc_nmol_l),
        arm,
        [log1p_auc(baseline_auc_nmol_l), age_years],
        include=include,
        alpha=alpha,
    )


def ancova_huber(
    endpoint: np.ndarray,
    arm: np.ndarray,
    covariates: list[np.ndarray] | tuple[np.ndarray, ...] = (),
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
    c: float = HUBER_C,
) -> AnalysisResult:
    """The robust counterpart of :func:`tregsim.trial.endpoints.ancova`: Huber M-estimate of
    ``y = b0 + b1·arm + Σ c_j·x_j + e`` for R trials (arrays (R, n); see the module), the
    arm coefficient's SE from Huber's H1 covariance, a two-sided t-test on n − p degrees of
    freedom and its (1 − alpha) interval."""
    d = ancova_design(endpoint, arm, covariates, include)
    fit = huber_regression(d.X, d.y, d.mask, c=c)
    R, _, p = d.X.shape
    df = d.n_used - p
    ok = (d.n_treatment >= 1) & (d.n_control >= 1) & (df >= 1) & np.isfinite(fit.beta[:, 1])
    XtX = np.einsum("rni,rnj->rij", d.X, d.X)
    XtX = np.where(ok[:, None, None], XtX, np.eye(p))
    e1 = np.zeros((R, p, 1))
    e1[:, 1, 0] = 1.0
    inv_11 = np.linalg.solve(XtX, e1)[:, 1, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.where(ok, fit.beta[:, 1], np.nan)
        se = np.where(ok, fit.effective_sd * np.sqrt(inv_11), np.nan)
    return t_result(est, se, df, ok, d.n_treatment, d.n_control, alpha)


def ancova_trialnet_huber(
    endpoint_auc_nmol_l: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    age_years: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
) -> AnalysisResult:
    """The TrialNet ANCOVA (ln(AUC+1) on arm, ln(baseline AUC+1), age; C-peptide in nmol/L,
    age in years; arrays (R, n)) by Huber M-estimation: :func:`ancova_huber`."""
    return ancova_huber(
        log1p_auc(endpoint_auc_nmol_l),
        arm,
        [log1p_auc(baseline_auc_nmol_l), age_years],
        include=include,
        alpha=alpha,
    )


def ancova_prognostic(
    endpoint_auc_nmol_l: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    age_years: np.ndarray,
    prognostic_ln_auc_plus_1: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
) -> AnalysisResult:
    """ANCOVA of ln(AUC+1) at the endpoint on arm, ln(baseline AUC+1), age and the prognostic
    score (the twin's predicted control-arm ln(AUC+1) at the endpoint visit): prognostic
    covariate adjustment (PROCOVA; EMA qualification opinion 2022; Schuler et al., Int J
    Biostat 2022;18:329), see docs/twin.md.

    All arrays (R, n): C-peptide in nmol/L (MMTT 2-h AUC mean), age in years, prognostic score
    on the ln(AUC+1) scale; NaN in any of them drops the slot. ``result.estimate`` is the
    adjusted treatment − control difference of ln(AUC+1), ``result.ratio`` the ratio of
    adjusted geometric means of (AUC+1).
    """
    return ancova(
        log1p_auc(endpoint_auc_nmol_l),
        arm,
        [log1p_auc(baseline_auc_nmol_l), age_years, prognostic_ln_auc_plus_1],
        include=include,
        alpha=alpha,
    )


def t_test(
    endpoint: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
    equal_var: bool = False,
) -> AnalysisResult:
    """Two-sample t-test (Welch by default, pooled if ``equal_var``) for R trials.

    endpoint : (R, n) on the analysis scale (``ln(AUC+1)``); arm : (R, n) bool.
    The estimate is mean(treatment) − mean(control); the CI uses the test's df.
    """
    y, a, m = _prepare(endpoint, arm, include)
    mt = m & a
    mc = m & ~a
    n1 = mt.sum(axis=1).astype(float)
    n0 = mc.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean1 = np.where(mt, y, 0.0).sum(axis=1) / n1
        mean0 = np.where(mc, y, 0.0).sum(axis=1) / n0
        ss1 = np.where(mt, (y - mean1[:, None]) ** 2, 0.0).sum(axis=1)
        ss0 = np.where(mc, (y - mean0[:, None]) ** 2, 0.0).sum(axis=1)
        v1 = ss1 / (n1 - 1)
        v0 = ss0 / (n0 - 1)
        if equal_var:
            df = n1 + n0 - 2
            sp2 = (ss1 + ss0) / df
            se = np.sqrt(sp2 * (1 / n1 + 1 / n0))
        else:
            a1, a0 = v1 / n1, v0 / n0
            se = np.sqrt(a1 + a0)
            df = (a1 + a0) ** 2 / (a1**2 / (n1 - 1) + a0**2 / (n0 - 1))
        ok = (n1 >= 2) & (n0 >= 2) & (se > 0)
        est = np.where(ok, mean1 - mean0, np.nan)
        se = np.where(ok, se, np.nan)
        df = np.where(ok, df, np.nan)
        t = est / se
    pval = _t_two_sided(t, np.nan_to_num(df, nan=0.0))
    q = _t_quantile(alpha, np.nan_to_num(df, nan=0.0))
    return AnalysisResult(est, se, t, df, pval, est - q * se, est + q * se, n1, n0, alpha)


def _rank_rows(x: np.ndarray, m: np.ndarray):
    """Average ranks (1-based) of the included entries of each row, and Σ(t³ − t) over ties.

    Excluded entries get rank NaN. x, m : (R, n).
    """
    R, n = x.shape
    xs = np.where(m, x, np.inf)
    order = np.argsort(xs, axis=1, kind="stable")
    s = np.take_along_axis(xs, order, axis=1)
    ms = np.take_along_axis(m, order, axis=1)
    # Tie groups among included values: a new group starts where the sorted value changes.
    new = np.ones((R, n), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    gid = np.cumsum(new, axis=1) - 1 + (np.arange(R) * n)[:, None]
    pos = np.broadcast_to(np.arange(1, n + 1, dtype=float), (R, n))
    flat = gid.ravel()
    cnt = np.bincount(flat, weights=ms.ravel().astype(float), minlength=R * n)
    first = np.full(R * n, np.inf)
    np.minimum.at(first, flat, np.where(ms, pos, np.inf).ravel())
    avg = first + (cnt - 1) / 2.0
    ranks_sorted = np.where(ms, avg[gid], np.nan)
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=1)
    tie = (cnt**3 - cnt).reshape(R, n).sum(axis=1)
    return ranks, tie


def mann_whitney(
    endpoint: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
    continuity: bool = True,
) -> AnalysisResult:
    """Wilcoxon–Mann–Whitney rank-sum test, normal approximation with tie correction.

    endpoint : (R, n) (any monotone scale; ranks are scale-free); arm : (R, n) bool.
    ``statistic`` is U of the treatment arm; ``estimate`` is the probabilistic index
    U/(n₁n₀) = P(treated > control) + ½P(tie) (0.5 = no effect); ``se``/CI are NaN.
    Matches ``scipy.stats.mannwhitneyu(method="asymptotic")``.
    """
    y, a, m = _prepare(endpoint, arm, include)
    ranks, tie = _rank_rows(y, m)
    n1 = (m & a).sum(axis=1).astype(float)
    n0 = (m & ~a).sum(axis=1).astype(float)
    N = n1 + n0
    r1 = np.where(m & a, ranks, 0.0).sum(axis=1)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n0 / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        var = n1 * n0 / 12 * ((N + 1) - tie / (N * (N - 1)))
        ok = (n1 >= 1) & (n0 >= 1) & (var > 0)
        u = np.maximum(u1, n1 * n0 - u1)
        z = (u - mu - (0.5 if continuity else 0.0)) / np.sqrt(var)
        pval = np.where(ok, np.minimum(2 * special.ndtr(-z), 1.0), np.nan)
        est = np.where(ok, u1 / (n1 * n0), np.nan)
    nan = np.full_like(est, np.nan)
    return AnalysisResult(est, nan, np.where(ok, u1, np.nan), nan, pval, nan, nan, n1, n0, alpha)


def responder_test(
    responder: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
) -> AnalysisResult:
    """Difference of responder proportions (treatment − control), Fisher exact two-sided p.

    responder : (R, n) bool (or NaN for a missing endpoint); arm : (R, n) bool.
    The CI is the Newcombe hybrid-score interval (method 10, Newcombe 1998,
    Stat Med 17:873) built from Wilson intervals of each arm. The p-value is Fisher's exact
    test ("minimum likelihood" two-sided, as ``scipy.stats.fisher_exact``), evaluated for all
    trials at once on the hypergeometric support.
    """
    r = np.atleast_2d(np.asarray(responder, dtype=float))
    y, a, m = _prepare(r, arm, include)
    x1 = np.where(m & a, y, 0.0).sum(axis=1)
    x0 = np.where(m & ~a, y, 0.0).sum(axis=1)
    n1 = (m & a).sum(axis=1).astype(float)
    n0 = (m & ~a).sum(axis=1).astype(float)
    ok = (n1 >= 1) & (n0 >= 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = x1 / n1
        p0 = x0 / n0
        est = np.where(ok, p1 - p0, np.nan)
        l1, u1 = wilson_interval(x1, n1, alpha)
        l0, u0 = wilson_interval(x0, n0, alpha)
        lo = est - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
        hi = est + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    pval = np.where(ok, _fisher_two_sided(x1, n1, x0, n0), np.nan)
    nan = np.full_like(est, np.nan)
    return AnalysisResult(est, nan, est, nan, pval, lo, hi, n1, n0, alpha)


def _fisher_two_sided(x1, n1, x0, n0) -> np.ndarray:
    """Two-sided Fisher exact p for R 2×2 tables (x1 of n1 vs x0 of n0), vectorized."""
    n1 = n1.astype(int)
    n0 = n0.astype(int)
    x1 = x1.astype(int)
    k = (x1 + x0).astype(int)
    N = n1 + n0
    kmax = int(max(n1.max(initial=0), 0))
    j = np.arange(kmax + 1)[None, :]  # candidate successes in the treatment arm
    lo = np.maximum(0, k - n0)[:, None]
    hi = np.minimum(k, n1)[:, None]
    valid = (j >= lo) & (j <= hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        logpmf = stats.hypergeom.logpmf(j, N[:, None], n1[:, None], k[:, None])
        logobs = stats.hypergeom.logpmf(x1, N, n1, k)
    # scipy's relative tolerance for "as or less likely" (ties in float pmf)
    pmf = np.where(valid, np.exp(logpmf), 0.0)
    obs = np.exp(logobs)[:, None]
    p = np.where(pmf <= obs * (1 + 1e-7), pmf, 0.0).sum(axis=1)
    return np.minimum(p, 1.0)


def responders(
    endpoint_auc_nmol_l: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    *,
    threshold_nmol_l: float = RESPONDER_THRESHOLD_NMOL_L,
) -> dict[str, np.ndarray]:
    """Responder indicators, (R, n) float (1/0, NaN where the endpoint is missing).

    ``above_threshold``: endpoint AUC ≥ ``threshold_nmol_l`` (default 0.2 nmol/L);
    ``no_decline``: endpoint AUC ≥ baseline AUC.
    """
    y = np.asarray(endpoint_auc_nmol_l, dtype=float)
    b = np.asarray(baseline_auc_nmol_l, dtype=float)
    miss = ~np.isfinite(y)
    with np.errstate(invalid="ignore"):
        above = np.where(miss, np.nan, (y >= threshold_nmol_l).astype(float))
        nodec = np.where(miss | ~np.isfinite(b), np.nan, (y >= b).astype(float))
    return {"above_threshold": above, "no_decline": nodec}


def wilson_interval(successes, trials, alpha: float = 0.05):
    """Wilson score interval for a binomial proportion; arrays of any (equal) shape."""
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = special.ndtri(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        den = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    # rounding leaves ±1e-19 at x = 0 or x = n; the exact bounds are 0 and 1 there
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def clopper_pearson_interval(successes, trials, alpha: float = 0.05):
    """Exact (Clopper–Pearson) binomial interval; arrays of any (equal) shape."""
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore"):
        lo = np.where(x > 0, special.betaincinv(x, n - x + 1, alpha / 2), 0.0)
        hi = np.where(x < n, special.betaincinv(x + 1, n - x, 1 - alpha / 2), 1.0)
    return lo, hi


def analyse_trials(
    endpoint_auc_nmol_l: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    age_years: np.ndarray,
    arm: np.ndarray,
    *,
    include: np.ndarray | None = None,
    alpha: float = 0.05,
    tests: tuple[str, ...] = ("ancova", "welch", "ranksum"),
    prognostic_ln_auc_plus_1: np.ndarray | None = None,
) -> dict[str, AnalysisResult]:
    """Run the named analyses on R trials; all arrays (R, n), C-peptide in nmol/L.

    tests : any of ``"ancova"`` (primary, TrialNet), ``"ancova_huber"`` (the same by Huber
    M-estimation: :func:`ancova_huber`), ``"ancova_prognostic"`` (the same plus
    ``prognostic_ln_auc_plus_1``, each participant's twin-predicted control outcome from
    pre-randomization data: :mod:`tregsim.trial.prognostic`), ``"welch"``, ``"pooled_t"``
    (on ln(AUC+1)), ``"ranksum"`` (Mann–Whitney on AUC), ``"responder_0.2"``
    (AUC ≥ 0.2 nmol/L), ``"no_decline"`` (AUC ≥ baseline).
    """
    out = {}
    ly = log1p_auc(endpoint_auc_nmol_l)
    resp = None
    for name in tests:
        if name in ("ancova", "ancova_huber"):
            fit = ancova_trialnet if name == "ancova" else ancova_trialnet_huber
            out[name] = fit(
                endpoint_auc_nmol_l,
                baseline_auc_nmol_l,
                age_years,
                arm,
                include=include,
                alpha=alpha,
            )
        elif name == "ancova_prognostic":
            if prognostic_ln_auc_plus_1 is None:
                from tregsim.errors import ArgumentError

                raise ArgumentError(
                    "ancova_prognostic needs each participant's prognostic score",
                    field="tests",
                    fix="pass prognostic_ln_auc_plus_1 (model-based trials with a twin)",
                )
            out[name] = ancova_prognostic(
                endpoint_auc_nmol_l,
                baseline_auc_nmol_l,
                age_years,
                prognostic_ln_auc_plus_1,
                arm,
                include=include,
                alpha=alpha,
            )
        elif name in ("welch", "pooled_t"):
            out[name] = t_test(
                ly, arm, include=include, alpha=alpha, equal_var=(name == "pooled_t")
            )
        elif name == "ranksum":
            out[name] = mann_whitney(ly, arm, include=include, alpha=alpha)
        elif name in ("responder_0.2", "no_decline"):
            if resp is None:
                resp = responders(endpoint_auc_nmol_l, baseline_auc_nmol_l)
            key = "above_threshold" if name == "responder_0.2" else "no_decline"
            out[name] = responder_test(resp[key], arm, include=include, alpha=alpha)
        else:
            from tregsim.errors import ArgumentError

            raise ArgumentError(
                f"unknown analysis {name!r}",
                field="tests",
                fix="use any of ancova, ancova_huber, ancova_prognostic, welch, pooled_t, ranksum, "
                "responder_0.2, no_decline",
            )
    return out
