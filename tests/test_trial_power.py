"""Simulated power against closed forms (noncentral t), type I error, assurance, bias."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from tregsim.errors import ArgumentError
from tregsim.trial import closed_form as cf
from tregsim.trial.allocation import LogisticAllocation, first_n_per_arm
from tregsim.trial.design import draw_effects, synthetic_trials
from tregsim.trial.power import (
    allocation_bias,
    closed_form_mde_table,
    parse_grid,
    simulated_mde,
    simulated_power,
    variance_components,
)

SEED = 20261130
# A normal endpoint on ln(AUC+1): baseline mean 1.0 keeps ln(c0+1) far from its clip at 0.
NORMAL = dict(baseline_log_mean=1.0, slope_age_per_year=0.0, floor_nmol_l=None)
SD_B, SLOPE, SD_RES = 0.193, 0.964, 0.165
SD_TOTAL = np.sqrt(SLOPE**2 * SD_B**2 + SD_RES**2)
RHO = SLOPE * SD_B / SD_TOTAL


def _within_3_se(sim, exact, R):
    se = np.sqrt(exact * (1 - exact) / R)
    assert np.all(np.abs(sim - exact) <= 3 * se), (sim, exact, 3 * se)


def test_closed_form_t_power_and_n_match_statsmodels():
    ref = TTestIndPower()
    for n, d in [(5, 1.2), (20, 0.5), (64, 0.5)]:
        np.testing.assert_allclose(cf.power_t_test(n, n, d, 1.0), ref.power(d, n, 0.05), rtol=1e-8)
    n = cf.n_per_arm_for_power(0.8, 0.5, 1.0)
    assert n == int(np.ceil(ref.solve_power(0.5, nobs1=None, alpha=0.05, power=0.8)))
    mde = cf.minimal_detectable_effect(10, 1.0, target=0.8)
    np.testing.assert_allclose(
        ref.solve_power(None, nobs1=10, alpha=0.05, power=0.8), mde, rtol=1e-6
    )
    # ANCOVA with ρ = 0 and no covariates is the t-test.
    np.testing.assert_allclose(
        cf.power_ancova(12, 12, 0.4, 1.0, 0.0, 0), cf.power_t_test(12, 12, 0.4, 1.0)
    )
    with pytest.raises(ArgumentError, match=r"\[rho\]"):
        cf.power_ancova(10, 10, 0.3, 1.0, rho=1.2)


def test_simulated_power_matches_closed_form_t_and_ancova():
    R, effect, grid = 4000, 0.15, np.array([5, 10, 20, 40])
    data = synthetic_trials(SEED, R, grid.max(), effect=effect, **NORMAL)
    res = simulated_power(data, grid, tests=("ancova", "pooled_t"))
    t_exact = cf.power_t_test(grid, grid, effect, SD_TOTAL)
    # two covariates: ln(baseline+1) (correlated) and age (independent of the outcome here)
    a_exact = cf.power_ancova(grid, grid, effect, SD_TOTAL, RHO, n_covariates=2)
    _within_3_se(res.power("pooled_t"), t_exact, R)
    _within_3_se(res.power("ancova"), a_exact, R)
    # the comparison has teeth: ANCOVA power is well above t-test power at N = 20
    assert a_exact[2] - t_exact[2] > 0.3


@pytest.mark.parametrize("tests", [("ancova", "welch", "ranksum", "responder_0.2")])
def test_type_one_error_is_alpha_under_randomization(tests):
    R = 4000
    data = synthetic_trials(SEED + 1, R, 30, effect=0.0)
    res = simulated_power(data, [10, 30], tests=tests)
    for t in ("ancova", "welch", "ranksum"):
        _within_3_se(res.power(t), np.array([0.05, 0.05]), R)
    # Fisher's exact test is conservative: never above alpha beyond MC error
    assert np.all(res.power("responder_0.2") <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / R))


def test_assurance_equals_closed_form_power_averaged_over_effect_draws():
    R, grid = 4000, np.array([10, 25])
    eff = draw_effects(SEED, R, mean=0.12, sd=0.08)
    data = synthetic_trials(SEED + 2, R, grid.max(), effect=eff, **NORMAL)
    res = simulated_power(data, grid, tests=("ancova",))
    exact = cf.power_ancova(
        grid[None, :], grid[None, :], eff[:, None], SD_TOTAL, RHO, 2, n_nodes=64
    ).mean(axis=0)
    _within_3_se(res.power("ancova"), exact, R)
    np.testing.assert_array_equal(res.true_effect, eff)


def test_non_randomized_allocation_biases_naive_estimate_but_not_ancova():
    truth = 0.10
    data = synthetic_trials(SEED + 3, 2000, 20, effect=truth, allocation=LogisticAllocation())
    b = allocation_bias(data, 20)
    # Selection on baseline C-peptide shifts the unadjusted difference by about +0.12 ln units.
    assert b["naive"]["mean_bias"] > 0.08
    assert b["naive"]["mean_bias"] > 20 * b["naive"]["mc_se"]
    assert abs(b["ancova"]["mean_bias"]) < 3 * b["ancova"]["mc_se"] + 0.005
    assert b["ancova"]["rmse"] < 0.5 * b["naive"]["rmse"]
    assert b["naive"]["coverage"] < 0.8 < 0.93 < b["ancova"]["coverage"]
    # randomized: both unbiased
    rnd = allocation_bias(synthetic_trials(SEED + 3, 2000, 20, effect=truth), 20)
    assert abs(rnd["naive"]["mean_bias"]) < 3 * rnd["naive"]["mc_se"] + 0.005


def test_nested_subsamples_dropout_and_determinism():
    data = synthetic_trials(SEED, 300, 20, effect=0.1, dropout=0.2)
    inc = first_n_per_arm(data.arm, 7)
    assert np.all((inc & data.arm).sum(axis=1) == 7) and np.all((inc & ~data.arm).sum(axis=1) == 7)
    res = simulated_power(data, [10, 20])
    frac = res.n_analysed.sum(axis=2).mean(axis=0) / (2 * res.n_per_arm)
    np.testing.assert_allclose(frac, 0.8, atol=0.02)
    again = simulated_power(synthetic_trials(SEED, 300, 20, effect=0.1, dropout=0.2), [10, 20])
    np.testing.assert_array_equal(again.estimate["ancova"], res.estimate["ancova"])
    # replicate r is the same trial whatever chunk it is drawn in
    tail = synthetic_trials(SEED, 100, 20, effect=0.1, dropout=0.2, start=200)
    np.testing.assert_array_equal(tail.endpoint_auc_nmol_l, data.endpoint_auc_nmol_l[200:])


def test_simulated_mde_agrees_with_closed_form():
    n = 10
    mde, pw = simulated_mde(
        lambda e: synthetic_trials(SEED, 3000, n, effect=e, **NORMAL),
        n,
        np.linspace(0.0, 0.4, 17),
        target=0.8,
        test="pooled_t",
    )
    exact = cf.minimal_detectable_effect(n, SD_TOTAL, target=0.8)
    assert abs(mde - exact) < 0.02, (mde, exact)
    assert pw[0] < 0.08 and pw[-1] > 0.8


def test_grid_parsing_and_sample_size_from_curve():
    np.testing.assert_array_equal(parse_grid("5:20:5"), [5, 10, 15, 20])
    np.testing.assert_array_equal(parse_grid("8,12"), [8, 12])
    with pytest.raises(ArgumentError, match=r"\[n_per_arm\]"):
        parse_grid("5:x")
    data = synthetic_trials(SEED, 1000, 40, effect=0.15, **NORMAL)
    res = simulated_power(data, parse_grid("5:40:5"), tests=("ancova",))
    n80 = res.n_for_power(0.8)
    exact = cf.n_per_arm_for_power(0.8, 0.15, SD_TOTAL, rho=RHO, n_covariates=2)
    assert abs(n80 - exact) <= 5  # grid step


@pytest.mark.parametrize("per_arm", [20, 3])
def test_variance_components_are_within_trial(per_arm):
    """Replicates that differ in level (as trials with different posterior draws do): a
    shift of ln(AUC₁₂ + 1) by N(0, 0.15²) per replicate. The within-trial SD and ρ are still
    the generating model's; pooling every replicate's patients would add 0.15² to the
    residual variance (0.165 → 0.224). 20 per arm: each replicate's own ANCOVA; 3 per arm
    (too few to fit one): an intercept per replicate and common slopes."""
    import dataclasses

    data = synthetic_trials(SEED, 1000, per_arm, effect=0.1, **NORMAL)
    shift = np.random.default_rng(3).normal(0.0, 0.15, (data.n_trials, 1))
    y = np.expm1(np.log1p(data.endpoint_auc_nmol_l) + shift)
    vc = variance_components(dataclasses.replace(data, endpoint_auc_nmol_l=y))
    np.testing.assert_allclose(vc["sd"], SD_TOTAL, rtol=0.03)
    np.testing.assert_allclose(vc["rho"], RHO, atol=0.02)
    resid = vc["sd"] * np.sqrt(1 - vc["rho"] ** 2)
    np.testing.assert_allclose(resid, SD_RES, rtol=0.03)


def test_variance_components_recover_the_generating_model():
    data = synthetic_trials(SEED, 1000, 20, effect=0.1, **NORMAL)
    vc = variance_components(data)
    assert vc["n"] == 20_000
    np.testing.assert_allclose(vc["sd"], SD_TOTAL, rtol=0.03)
    np.testing.assert_allclose(vc["rho"], RHO, atol=0.02)
    tab = closed_form_mde_table(vc["sd"], vc["rho"], [10, 20])
    # ANCOVA needs a smaller effect than the t-test, and the MDE shrinks ~ 1/sqrt(N)
    assert np.all(tab["mde80_ancova_ln_auc_plus_1"] < tab["mde80_t_test_ln_auc_plus_1"])
    ratio = tab["mde80_ancova_ln_auc_plus_1"][0] / tab["mde80_ancova_ln_auc_plus_1"][1]
    assert 1.3 < ratio < 1.55
