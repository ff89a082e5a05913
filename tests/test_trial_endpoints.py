"""Batched endpoint analyses against statsmodels / scipy, trial by trial."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from tregsim.trial import endpoints as ep


@pytest.fixture
def rng():
    return np.random.default_rng(20261130)


def _random_trials(rng, R=40, n=30, missing=0.1):
    arm = rng.random((R, n)) < 0.5
    base = rng.lognormal(-0.5, 0.5, (R, n))
    age = rng.uniform(8, 65, (R, n))
    y = np.expm1(0.3 + 0.8 * np.log1p(base) + 0.002 * age + 0.1 * arm + rng.normal(0, 0.2, (R, n)))
    y = np.maximum(y, 0.0)
    y[rng.random((R, n)) < missing] = np.nan
    include = rng.random((R, n)) < 0.9
    return y, base, age, arm, include


def test_ancova_matches_statsmodels_ols(rng):
    y, base, age, arm, inc = _random_trials(rng)
    res = ep.ancova_trialnet(y, base, age, arm, include=inc, alpha=0.05)
    for r in range(y.shape[0]):
        m = inc[r] & np.isfinite(y[r])
        X = sm.add_constant(
            np.column_stack([arm[r, m].astype(float), np.log1p(base[r, m]), age[r, m]])
        )
        fit = sm.OLS(np.log1p(y[r, m]), X).fit()
        np.testing.assert_allclose(res.estimate[r], fit.params[1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.se[r], fit.bse[1], rtol=1e-10)
        np.testing.assert_allclose(res.p_value[r], fit.pvalues[1], rtol=1e-9, atol=1e-14)
        lo, hi = fit.conf_int(0.05)[1]
        np.testing.assert_allclose([res.ci_low[r], res.ci_high[r]], [lo, hi], rtol=1e-10)
        assert res.df[r] == fit.df_resid


def test_ancova_degenerate_trials_are_nan_not_fatal(rng):
    y, base, age, arm, _ = _random_trials(rng, R=3, n=12, missing=0.0)
    arm[0] = True  # no control patient
    age[1] = 30.0  # constant covariate → singular design
    res = ep.ancova_trialnet(y, base, age, arm)
    assert np.isnan(res.estimate[:2]).all() and not res.reject[:2].any()
    assert np.isfinite(res.estimate[2])


@pytest.mark.parametrize("equal_var", [False, True])
def test_t_test_matches_scipy(rng, equal_var):
    y, _, _, arm, inc = _random_trials(rng)
    ly = np.log1p(y)
    res = ep.t_test(ly, arm, include=inc, equal_var=equal_var)
    for r in range(ly.shape[0]):
        m = inc[r] & np.isfinite(ly[r])
        a, b = ly[r, m & arm[r]], ly[r, m & ~arm[r]]
        ref = stats.ttest_ind(a, b, equal_var=equal_var)
        np.testing.assert_allclose(res.statistic[r], ref.statistic, rtol=1e-10)
        np.testing.assert_allclose(res.p_value[r], ref.pvalue, rtol=1e-9)
        ci = ref.confidence_interval(0.95)
        np.testing.assert_allclose([res.ci_low[r], res.ci_high[r]], [ci.low, ci.high], rtol=1e-9)


def test_mann_whitney_matches_scipy_with_ties(rng):
    y, _, _, arm, inc = _random_trials(rng)
    y = np.round(y, 1)  # many ties
    res = ep.mann_whitney(y, arm, include=inc)
    for r in range(y.shape[0]):
        m = inc[r] & np.isfinite(y[r])
        a, b = y[r, m & arm[r]], y[r, m & ~arm[r]]
        ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
        u1 = stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").statistic
        np.testing.assert_allclose(res.p_value[r], ref.pvalue, rtol=1e-10)
        np.testing.assert_allclose(res.statistic[r], u1, rtol=1e-12)


def test_fisher_and_responders_match_scipy(rng):
    R, n = 60, 16
    arm = rng.random((R, n)) < 0.5
    resp = (rng.random((R, n)) < np.where(arm, 0.7, 0.4)).astype(float)
    res = ep.responder_test(resp, arm)
    for r in range(R):
        a, c = resp[r, arm[r]], resp[r, ~arm[r]]
        table = [[a.sum(), a.size - a.sum()], [c.sum(), c.size - c.sum()]]
        np.testing.assert_allclose(res.p_value[r], stats.fisher_exact(table).pvalue, rtol=1e-9)
        np.testing.assert_allclose(res.estimate[r], a.mean() - c.mean(), rtol=1e-12)
        assert res.ci_low[r] <= res.estimate[r] <= res.ci_high[r]
    ind = ep.responders(np.array([[0.1, 0.3, np.nan]]), np.array([[0.2, 0.2, 0.2]]))
    np.testing.assert_array_equal(ind["above_threshold"], [[0.0, 1.0, np.nan]])
    np.testing.assert_array_equal(ind["no_decline"], [[0.0, 1.0, np.nan]])


def test_binomial_intervals_match_statsmodels():
    x = np.array([0, 1, 7, 19, 20])
    lo, hi = ep.wilson_interval(x, 20, 0.05)
    ref = proportion_confint(x, 20, 0.05, method="wilson")
    np.testing.assert_allclose(lo, ref[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hi, ref[1], rtol=1e-10)
    lo, hi = ep.clopper_pearson_interval(x, 20, 0.05)
    ref = proportion_confint(x, 20, 0.05, method="beta")
    np.testing.assert_allclose(lo, ref[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hi, ref[1], rtol=1e-10)


def test_ratio_is_percent_higher_geometric_mean():
    # Without covariates the ANCOVA estimate is the difference of mean ln(AUC+1): exp of it is
    # the ratio of geometric means of (AUC+1).
    y = np.array([[0.5, 0.7, 0.6, 0.2, 0.3, 0.25]])
    arm = np.array([[True, True, True, False, False, False]])
    res = ep.ancova(np.log1p(y), arm)
    gm = stats.gmean(1 + y[0, :3]) / stats.gmean(1 + y[0, 3:])
    np.testing.assert_allclose(res.ratio[0], gm, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(-50, 50),
    scale=st.floats(0.1, 10),
)
def test_ancova_arm_effect_is_invariant_to_affine_covariates(seed, shift, scale):
    g = np.random.default_rng(seed)
    y, base, age, arm, inc = _random_trials(g, R=5, n=14, missing=0.0)
    a = ep.ancova_trialnet(y, base, age, arm, include=inc)
    b = ep.ancova_trialnet(y, base, shift + scale * age, arm, include=inc)
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-6, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_rank_test_depends_only_on_ranks(seed):
    g = np.random.default_rng(seed)
    y, _, _, arm, inc = _random_trials(g, R=5, n=16)
    a = ep.mann_whitney(y, arm, include=inc)
    b = ep.mann_whitney(np.exp(3 * y), arm, include=inc)  # strictly increasing transform
    np.testing.assert_array_equal(a.statistic, b.statistic)
    np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-12)
