"""The Huber M-estimation ANCOVA (``tregsim.trial.robust``, ``endpoints.ancova_huber``) against statsmodels' ``RLM``, its
asymptotic efficiency under a Student-t deviation against the integral that defines it, its
level, and its place among a power study's analyses."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import integrate, stats

from tregsim.errors import ArgumentError
from tregsim.trial import endpoints as ep
from tregsim.trial.endpoints import ancova_huber, ancova_trialnet_huber
from tregsim.trial.robust import HUBER_C, huber_regression


def _trials(rng, R, n, df_t: float | None = 3.0, effect=0.0):
    """R trials of n (half treated): y on the ln(AUC+1) scale with t(df_t) deviations
    (normal if None)."""
    arm = np.zeros((R, n), bool)
    arm[:, n // 2 :] = True
    x0 = rng.normal(0.5, 0.3, (R, n))
    age = rng.uniform(8, 45, (R, n))
    e = rng.standard_normal((R, n)) if df_t is None else rng.standard_t(df_t, (R, n))
    y = 0.1 + effect * arm + 0.9 * x0 - 0.002 * age + 0.15 * e
    return y, arm, x0, age


def test_huber_ancova_matches_statsmodels_rlm(rng):
    """Arm coefficient, its SE (H1) and the MAD scale of every trial = statsmodels'
    ``RLM(..., HuberT()).fit()`` run to its own tight tolerance, with missing and excluded
    slots dropped the same way."""
    y, arm, x0, age = _trials(rng, 25, 60)
    y[3, 5] = np.nan
    age[4, 7] = np.nan
    include = np.ones_like(arm)
    include[7, :10] = False
    res = ancova_huber(y, arm, [x0, age], include=include)
    d = ep.ancova_design(y, arm, [x0, age], include)
    fit = huber_regression(d.X, d.y, d.mask)
    assert fit.converged.all()
    for r in range(y.shape[0]):
        k = np.isfinite(y[r]) & np.isfinite(age[r]) & include[r]
        X = sm.add_constant(np.column_stack([arm[r, k], x0[r, k], age[r, k]]).astype(float))
        ref = sm.RLM(y[r, k], X, M=sm.robust.norms.HuberT(t=HUBER_C)).fit(tol=1e-13, maxiter=1000)
        assert res.estimate[r] == pytest.approx(ref.params[1], rel=1e-7, abs=1e-9)
        assert res.se[r] == pytest.approx(ref.bse[1], rel=1e-7)
        assert fit.scale[r] == pytest.approx(ref.scale, rel=1e-7)
        assert res.n_treatment[r] + res.n_control[r] == k.sum()
        p_t = 2 * stats.t.sf(abs(ref.params[1] / ref.bse[1]), k.sum() - 4)
        assert res.p_value[r] == pytest.approx(p_t, rel=1e-6)


def _huber_are_t(nu: float, c: float = HUBER_C) -> float:
    """Asymptotic variance of the Huber location estimate with MAD scale, relative to the
    mean's (ν/(ν − 2)), for Student-t(ν) errors: s = median|e|/Φ⁻¹(3/4), then
    E[ψ(e/s)²]·s² / P(|e| ≤ c·s)²."""
    s = stats.t.ppf(0.75, nu) / stats.norm.ppf(0.75)
    psi2 = integrate.quad(lambda e: min(e / s, c) ** 2 * stats.t.pdf(e, nu), 0, np.inf)[0] * 2
    dpsi = 2 * (stats.t.cdf(c * s, nu) - 0.5)
    return psi2 * s**2 / dpsi**2 / (nu / (nu - 2))


def test_huber_efficiency_under_a_student_t_deviation_matches_its_integral():
    """Var(β̂_arm, Huber) / Var(β̂_arm, OLS) over 3,000 trials of 240 patients with t(4)
    deviations against the asymptotic ratio from the defining integrals (a finite fourth
    moment keeps the OLS variance's estimate stable); the H1 SE's mean square matches the
    Huber estimate's own variance. Both within 4 Monte-Carlo SE."""
    rng = np.random.default_rng(20261207)
    R, n, nu = 3000, 240, 4.0
    y, arm, x0, age = _trials(rng, R, n, df_t=nu)
    hub = ancova_huber(y, arm, [x0, age])
    ols = ep.ancova(y, arm, [x0, age])
    ratio = np.var(hub.estimate) / np.var(ols.estimate)
    expect = _huber_are_t(nu)
    assert 0.6 < expect < 0.8  # the integral itself: Huber gains under t(4)
    # delta-method SE of a ratio of two correlated variances, from the trials themselves
    a, b = hub.estimate - hub.estimate.mean(), ols.estimate - ols.estimate.mean()
    g = a**2 / np.mean(a**2) - b**2 / np.mean(b**2)
    se = ratio * np.std(g) / np.sqrt(R)
    assert abs(ratio - expect) < 4 * se, (ratio, expect, se)
    v = np.var(hub.estimate)
    se_v = np.std((hub.estimate - hub.estimate.mean()) ** 2) / np.sqrt(R)
    se_ms = np.std(hub.se**2) / np.sqrt(R)
    assert abs(np.mean(hub.se**2) - v) < 4 * np.hypot(se_v, se_ms)


@pytest.mark.parametrize("df_t", [3.0, None])
def test_huber_ancova_holds_its_level(df_t):
    """With no effect the two-sided 5 % test rejects at most 5 % + 3 binomial SE of 4,000
    trials of 100 patients, under t(3) and normal deviations (the t reference on n − p df is
    the conservative choice), and not far below it (≥ 3 %)."""
    rng = np.random.default_rng(7)
    y, arm, x0, age = _trials(rng, 4000, 100, df_t=df_t)
    rate = ancova_huber(y, arm, [x0, age]).reject.mean()
    se = np.sqrt(0.05 * 0.95 / 4000)
    assert 0.03 < rate < 0.05 + 3 * se, rate


def test_huber_ancova_degenerate_trials_are_nan_not_fatal(rng):
    y, arm, x0, age = _trials(rng, 3, 12)
    include = np.ones_like(arm)
    include[0] = False
    include[0, :3] = True  # 3 patients, 4 columns
    include[1, arm[1]] = False  # no treated patient
    res = ancova_huber(y, arm, [x0, age], include=include)
    assert np.isnan(res.estimate[:2]).all() and not res.reject[:2].any()
    assert np.isfinite(res.estimate[2])


def test_analyse_trials_runs_the_huber_ancova_and_names_it_in_errors(rng):
    y, arm, x0, age = _trials(rng, 5, 40, effect=0.2)
    auc_m, auc_0 = np.expm1(y), np.expm1(x0)
    out = ep.analyse_trials(auc_m, auc_0, age, arm, tests=("ancova", "ancova_huber"))
    direct = ancova_trialnet_huber(auc_m, auc_0, age, arm)
    np.testing.assert_array_equal(out["ancova_huber"].estimate, direct.estimate)
    assert not np.allclose(out["ancova_huber"].estimate, out["ancova"].estimate)
    with pytest.raises(ArgumentError, match="ancova_huber"):
        ep.analyse_trials(auc_m, auc_0, age, arm, tests=("huber",))


def test_huber_effective_sd_is_the_residual_sd_under_normal_errors():
    """With normal deviations the Huber effective SD estimates the residual SD / √0.95 (its
    95 % efficiency): on one trial of 200,000 patients within 1 %."""
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + 0.2 * rng.standard_normal(n)
    X = np.column_stack([np.ones(n), x])
    fit = huber_regression(X[None], y[None], np.ones((1, n), bool))
    psi2 = integrate.quad(lambda e: min(abs(e), HUBER_C) ** 2 * stats.norm.pdf(e), -50, 50)[0]
    expect = 0.2 * np.sqrt(psi2) / (2 * stats.norm.cdf(HUBER_C) - 1)
    assert fit.effective_sd[0] == pytest.approx(expect, rel=0.01)
