"""The records-structure twin of real participants (tregsim.twin_structure.StructureTwin)
against Monte Carlo of the same world through independent code: the posterior's baseline law,
the model solver (per-patient hazard covariate and random effect, each patient's own draw θ_k)
and tregsim.observe.observe_visits, conditioned on the observed measurements by rejection."""

from __future__ import annotations

import numpy as np
import pytest

import tregsim
from tregsim.errors import ArgumentError
from tregsim.observe import observe_visits
from tregsim.posterior import load_posterior
from tregsim.solve import simulate_arrays
from tregsim.twin import TwinRecords, predict_structure_twin
from tregsim.twin_structure import STRUCTURE_NAMES, StructureTwin, has_structure
from tregsim.units import DAYS_PER_MONTH

# two posterior draws of the records structure, near the shipped posterior: a heavy-tailed t
# and a normal one with another hazard (the twin weighs them by each participant's data)
DRAWS = {
    "lambda_ref": np.array([0.0029, 0.0022]),
    "gamma_a": np.array([0.7, 0.5]),
    "omega_lambda": np.array([0.72, 0.6]),
    "q": np.array([0.10, 0.25]),
    "beta_c": np.array([-0.3, 0.2]),
    "beta_lin": np.array([2.0, 1.2]),
    "sigma_meas": np.array([0.16, 0.22]),
    "inv_nu": np.array([0.33, 0.0]),
    "kappa": np.array([0.25, 0.3]),
    "mu_c": np.array([-0.45, -0.55]),
    "mu_a": np.array([0.25, 0.1]),
    "s_c": np.array([0.43, 0.5]),
    "s0": np.array([0.41, 0.41]),
    "k_re": np.array([0.02, 0.02]),
}
AGE, T_BASE, MONTHS = 14.0, 80.0, np.array([6.0, 12.0])


@pytest.fixture(scope="module")
def world():
    """200,000 patients of age 14, each with draw 0 or 1 and its noise-free level on day 60
    (the reference day) from the draw's baseline law, observed on days 50, 60, 80 (the
    baseline visit), 80 + 6 and 80 + 12 months, and 80 + 18 months."""
    model = tregsim.load_model("treg_t1d")
    g = np.random.default_rng(11)
    n = 200_000
    k = g.integers(0, 2, n)
    th = {name: v[k] for name, v in DRAWS.items()}
    lev = th["mu_c"] + th["mu_a"] * np.log(AGE / 10) + th["s_c"] * g.standard_normal(n)
    mu0 = np.exp(lev)
    f = np.exp(th["omega_lambda"] * g.standard_normal(n))
    pop = {p: th[p] for p in ("lambda_ref", "gamma_a", "q", "beta_c", "beta_lin", "s0", "k_re")}
    params = model.parameters(n, **pop, age=AGE, cpep_bl=mu0, cpep0=1.0, f_lambda=f)
    days = np.r_[50.0, 60.0, T_BASE + np.r_[0.0, 6.0, 12.0, 18.0] * DAYS_PER_MONTH]
    c = simulate_arrays(model, params, None, days).observables["cpeptide"]
    mu = mu0[:, None] * c / c[:, 1:2]  # the course is proportional to cpep0; μ(day 60) = μ₀
    y = np.empty_like(mu)
    for kk in (0, 1):  # observe_visits takes one ν per call
        s = k == kk
        y[s], _ = observe_visits(
            mu[s], days, g.standard_normal((int(s.sum()), 2, days.size)),
            sigma_meas=DRAWS["sigma_meas"][kk], kappa=DRAWS["kappa"][kk], lloq=0.017,
            inv_nu=DRAWS["inv_nu"][kk],
        )  # fmt: skip
    return model, y, k


# columns of the world's y
SCREEN, BASE, M6, M12, M18 = 0, 2, 3, 4, 5


def _ln1(y):
    """Observed ln(AUC + 1) as the twin records it: observe_visits codes a visit below the
    LLOQ as the LLOQ, the records and the twin as LLOQ/2."""
    return np.log1p(np.where(y <= 0.017, 0.0085, y))


def test_structure_names_are_the_records_posteriors():
    post = load_posterior()
    assert has_structure(post) and all(k in post for k in STRUCTURE_NAMES)


def _twin(model, **kw) -> StructureTwin:
    # every draw once (n_draws=None), as the Monte-Carlo world gives each half the patients
    return StructureTwin(model, DRAWS, n_draws=None, lloq_nmol_l=0.017, **kw)


def test_baseline_only_matches_monte_carlo(world):
    """One baseline MMTT: the predictive mean and quartiles of ln(AUC + 1) at months 6 and 12
    against the Monte-Carlo patients whose baseline fell within ±2 % of it. Tolerance: 4
    Monte-Carlo SE plus the bin's own width (±2 % in y₀ moves the mean ≲ 0.003); the
    quantiles' SE from the order statistics' binomial SD. (The SD is checked below on the
    normal draw: under ν ≈ 3 a sample SD has no usable standard error.)"""
    model, y, _ = world
    tw = _twin(model)
    for v in (0.3, 0.6, 1.1):
        rec = TwinRecords.from_baseline([v], [AGE], [T_BASE], lloq_nmol_l=0.017)
        pred = predict_structure_twin(tw, rec, months=MONTHS, levels=(0.25, 0.5, 0.75), min_ess=1)
        sel = np.abs(np.log(y[:, BASE] / v)) < 0.02
        n = int(sel.sum())
        assert n > 800
        for j in range(MONTHS.size):
            x = _ln1(y[sel, M6 + j])
            se = x.std() / np.sqrt(n)
            assert abs(pred.mean[0, j] - x.mean()) < 4 * se + 0.003, (v, j, pred.mean[0, j])
            for lev, qp in zip((0.25, 0.5, 0.75), pred.quantiles[0, j], strict=True):
                # the quantile's MC SE: rank SD √(n p (1−p)) turned into x by the local slope
                lo, hi = np.quantile(x, [lev - 0.02, lev + 0.02])
                q_se = np.sqrt(lev * (1 - lev) / n) * (hi - lo) / 0.04
                assert abs(qp - np.quantile(x, lev)) < 4 * q_se + 0.004, (v, j, lev)


def test_predictive_sd_matches_monte_carlo_under_the_normal_draw(world):
    """The predictive SD (ℓ, η and the visit's deviation mixed) against the Monte-Carlo
    patients of the normal draw alone: 4 SE of a normal sample SD, 1/√(2n), plus 2 % for the
    bin's width."""
    model, y, k = world
    tw = StructureTwin(model, {n: v[1:] for n, v in DRAWS.items()}, n_draws=None, lloq_nmol_l=0.017)
    for v in (0.3, 0.9):
        rec = TwinRecords.from_baseline([v], [AGE], [T_BASE], lloq_nmol_l=0.017)
        pred = predict_structure_twin(tw, rec, months=MONTHS, levels=(0.5,), min_ess=1)
        sel = (k == 1) & (np.abs(np.log(y[:, BASE] / v)) < 0.02)
        n = int(sel.sum())
        assert n > 400
        for j in range(MONTHS.size):
            x = _ln1(y[sel, M6 + j])
            assert abs(pred.sd[0, j] / x.std() - 1) < 4 / np.sqrt(2 * n) + 0.02, (v, j)


def test_screening_and_censored_baseline(world):
    """A screening MMTT on day 50 as well (both within ±3 %): the same comparison of the
    month-12 mean (4 SE plus the bins' width); the screening visit moves the prediction, and
    the ESS of the two draws is reported."""
    model, y, _ = world
    tw = _twin(model)
    ys, yb = 0.75, 0.6
    rec = TwinRecords.from_baseline(
        [yb], [AGE], [T_BASE], screening_nmol_l=[ys], screening_day=[50.0], lloq_nmol_l=0.017
    )
    pred = predict_structure_twin(tw, rec, months=MONTHS, levels=(0.5,), min_ess=1)
    sel = (np.abs(np.log(y[:, SCREEN] / ys)) < 0.03) & (np.abs(np.log(y[:, BASE] / yb)) < 0.03)
    n = int(sel.sum())
    assert n > 250
    x = _ln1(y[sel, M12])
    assert abs(pred.mean[0, 1] - x.mean()) < 4 * x.std() / np.sqrt(n) + 0.005
    alone = predict_structure_twin(tw, TwinRecords.from_baseline([yb], [AGE], [T_BASE], lloq_nmol_l=0.017),
        months=MONTHS, levels=(0.5,), min_ess=1,
    )  # fmt: skip
    # the screening visit informs the prediction: with independent visit deviations a second,
    # higher MMTT raises the estimate of the level more than it signals a faster loss
    assert pred.mean[0, 1] > alone.mean[0, 1] + 0.01
    assert 1.0 <= pred.ess[0] <= 2.0


def test_censored_visit_matches_monte_carlo(world):
    """A participant whose baseline visit is the world's month 12 (day 445) and below the
    LLOQ, with an earlier MMTT on day 80 within ±5 % of 0.3 nmol/L: the predicted month-6
    (the world's month 18) mean of ln(AUC + 1), LLOQ/2 below the LLOQ, against those
    Monte-Carlo patients (4 SE plus 0.005 for the bin's width)."""
    model, y, _ = world
    tw = _twin(model)
    v, tb = 0.3, T_BASE + 12 * DAYS_PER_MONTH
    rec = TwinRecords.from_baseline(
        [0.01], [AGE], [tb], screening_nmol_l=[v], screening_day=[T_BASE], lloq_nmol_l=0.017
    )
    pred = predict_structure_twin(tw, rec, months=[6.0], levels=(0.5,), min_ess=1)
    sel = (np.abs(np.log(y[:, BASE] / v)) < 0.05) & (y[:, M12] <= 0.017)
    n = int(sel.sum())
    assert n > 100
    x = _ln1(y[sel, M18])
    assert abs(pred.mean[0, 0] - x.mean()) < 4 * x.std() / np.sqrt(n) + 0.005, (n, x.mean())


def test_refuses_a_posterior_without_the_structure():
    model = tregsim.load_model("treg_t1d")
    with pytest.raises(ArgumentError, match="records structure"):
        StructureTwin(model, {"lambda_ref": np.ones(3)})


def test_a_normal_posterior_is_the_limit_of_the_t():
    """A posterior of the normal structure (no ``inv_nu``, e.g. candidate
    "lincovariate+power") runs, and predicts what the same draws with ν = 10⁹ predict (the t
    path, through scipy's t distribution, at a ν where it is the normal to ~1e-9)."""
    model = tregsim.load_model("treg_t1d")
    normal = {k: v for k, v in DRAWS.items() if k != "inv_nu"}
    rec = TwinRecords.from_baseline([0.05, 0.4, 1.2], AGE, T_BASE, lloq_nmol_l=0.017)
    levels = np.array([0.1, 0.5, 0.9])
    out = [
        StructureTwin(model, d, n_draws=None, lloq_nmol_l=0.017).predict_arrays(
            rec, months=MONTHS, levels=levels
        )
        for d in (normal, normal | {"inv_nu": np.full(2, 1e-9)})
    ]
    for a, b in zip(out[0][1:], out[1][1:], strict=True):  # mean, sd, quantiles, ess
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_baseline_prior_p_matches_monte_carlo(world):
    """``baseline_p``: the two-sided prior predictive p of the baseline MMTT against the
    world's own baseline measurements (day 80, both draws, no conditioning), from the tail
    to the bulk; the flag follows it."""
    model, y, _ = world
    y0 = np.array([0.06, 0.15, 0.4, 1.1, 2.5])
    rec = TwinRecords.from_baseline(y0, AGE, T_BASE, lloq_nmol_l=0.017)
    pred = predict_structure_twin(_twin(model), rec, months=MONTHS)
    F = (y[:, BASE][:, None] <= y0[None, :]).mean(axis=0)
    p_mc = 2 * np.minimum(F, 1 - F)
    se = 2 * np.sqrt(F * (1 - F) / y.shape[0])
    assert np.all(np.abs(pred.baseline_p - p_mc) < 4 * se + 1e-3), (pred.baseline_p, p_mc)
    assert p_mc.min() < 0.01 < p_mc.max()  # the values reach the flag's range
    np.testing.assert_array_equal(pred.baseline_conflict, pred.baseline_p < 0.01)
