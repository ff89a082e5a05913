"""tregsim.calibrate.variability: the structure likelihood against brute-force Monte Carlo
(scipy multivariate normal, independent integration), the OU draws against their
autocorrelation, and the simulator against the likelihood's own assumptions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import tregsim
from tregsim.calibrate import variability as V
from tregsim.calibrate.likelihood import CurveTable


@pytest.fixture(scope="module")
def table():
    model = tregsim.load_model("treg_t1d")
    return CurveTable(model, n_loglam=41, n_q=11, max_day=900.0, day_step=10.0)


def _records(days, y, age=14.0):
    n = len(days)
    return V.Records(
        ids=np.array(["p"]),
        study=np.array(["s"]),
        age_years=np.array([age]),
        visit_patient=np.zeros(n, int),
        visit_day=np.asarray(days, float),
        visit_month=np.round(np.asarray(days) / 30.4375),
        y=np.asarray(y, float),
    )


TH = {
    "lambda_ref": 2e-3,
    "gamma_a": 0.7,
    "omega_lambda": 0.6,
    "q": 0.2,
    "beta_c": 0.8,
    "sigma_meas": 0.1,
    "sigma_bio": 0.15,
    "tau_bio": 200.0,
    "kappa": 0.3,
    "mu_c": -0.4,
    "mu_a": 0.2,
    "s_c": 0.45,
}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        pytest.param({"kappa": 0.0}, marks=pytest.mark.slow),
        pytest.param({"sigma_bio": 0.0, "kappa": 0.0}, marks=pytest.mark.slow),
        pytest.param({"sigma_bio": 0.0}, marks=pytest.mark.slow),
    ],
)
def test_likelihood_matches_monte_carlo(table, extra):
    th = TH | extra
    days = np.array([0.0, 182.0, 365.0, 730.0])
    y = np.array([0.7, 0.55, 0.42, 0.2])
    quad, mc, se = _quadrature_and_monte_carlo(table, th, days, y)
    assert quad == pytest.approx(mc, abs=max(4 * se, 0.02))


def test_likelihood_caps_the_deviation_below_the_lloq(table):
    """A fast decliner: at month 24 most of the noise-free values lie below the LLOQ
    (0.017 nmol/L), where h(μ) stops growing (tregsim.observe.deviation_scale). The brute-force
    reference applies the cap by its own definition; without it the reference is outside the
    tolerance of the match."""
    th = TH | {"lambda_ref": 8e-3, "sigma_bio": 0.0, "omega_lambda": 0.3, "kappa": 0.6}
    days = np.array([0.0, 182.0, 365.0, 730.0])
    y = np.array([0.5, 0.12, 0.05, 0.02])
    quad, mc, se = _quadrature_and_monte_carlo(table, th, days, y)
    assert quad == pytest.approx(mc, abs=max(4 * se, 0.02))
    _, uncapped, se_u = _quadrature_and_monte_carlo(table, th, days, y, cap=False)
    # the same tolerance would catch a likelihood without the cap
    assert abs(uncapped - quad) > max(4 * se_u, 0.02)


def _quadrature_and_monte_carlo(table, th, days, y, *, cap=True):
    like = V.StructureLikelihood(table, _records(days, y), n_zeta=61, n_eta=61)
    quad = like.per_patient(th)[0]
    rng = np.random.default_rng(0)
    M = 40_000
    zeta, eta = rng.standard_normal(M), rng.standard_normal(M)
    la = np.log(14.0 / 10)
    lev = th["mu_c"] + th["mu_a"] * la + th["s_c"] * zeta
    loglam = np.log(th["lambda_ref"]) - th["gamma_a"] * la - th["beta_c"] * (lev - V.LOG_CREF)
    loglam = loglam + th["omega_lambda"] * eta
    logmu = (
        lev[:, None]
        + table(loglam[:, None], np.full((M, 1), th["q"]), 60.0 + days[None])
        - table(loglam[:, None], np.full((M, 1), th["q"]), np.array([[60.0]]))
    )
    R = th["sigma_bio"] ** 2 * np.exp(-np.abs(days[:, None] - days[None]) / th["tau_bio"])
    # κ scales the OU deviation when σ_bio > 0, else the residual σ_meas
    # the deviation's SD stops growing below the LLOQ (0.017 nmol/L)
    h = np.exp(-th["kappa"] * ((np.maximum(logmu, np.log(0.017)) if cap else logmu) - V.LOG_CREF))
    if th["sigma_bio"] > 0:
        cov = R[None] * h[:, :, None] * h[:, None, :] + th["sigma_meas"] ** 2 * np.eye(len(days))
    else:
        cov = ((th["sigma_meas"] * h) ** 2)[:, :, None] * np.eye(len(days))[None]
    dens = np.empty(M)
    # scipy's multivariate normal on a subset (slow), the batched formula on all
    for k in range(200):
        dens[k] = stats.multivariate_normal(logmu[k], cov[k]).pdf(np.log(y))
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, (np.log(y)[None] - logmu)[:, :, None])[..., 0]
    logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1)
    batched = np.exp(-0.5 * (z * z).sum(1) - 0.5 * logdet - 2 * np.log(2 * np.pi))
    np.testing.assert_allclose(batched[:200], dens[:200], rtol=1e-9)
    dens = batched
    mc = np.log(dens.mean()) - np.log(y).sum()
    se = dens.std() / dens.mean() / np.sqrt(M)
    return quad, mc, se


def test_censored_visit_is_a_probability(table):
    days = np.array([0.0, 365.0])
    th = TH | {"sigma_bio": 0.0, "kappa": 0.0}
    like = V.StructureLikelihood(table, _records(days, [0.5, 0.001]))  # second below the LLOQ
    base = V.StructureLikelihood(table, _records(days[:1], [0.5]))
    # p(y0, y1 < LLOQ) ≤ p(y0)
    assert like.per_patient(th)[0] < base.per_patient(th)[0]


def test_ou_paths_autocorrelation():
    rng = np.random.default_rng(1)
    days = np.array([0.0, 91.0, 182.0, 365.0])
    b = V.ou_paths(rng, (200_000,), days, 0.3, 150.0)
    assert b.std(axis=0) == pytest.approx(np.full(4, 0.3), rel=0.01)
    c = np.corrcoef(b.T)
    for i in range(4):
        for j in range(i + 1, 4):
            assert c[i, j] == pytest.approx(np.exp(-(days[j] - days[i]) / 150.0), abs=0.01)


def test_structure_check_rows(table):
    from pathlib import Path

    from tregsim.trial_statistics import COMPARISON_COLUMNS

    records = (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "placebo_cpeptide_individual.csv"
    )
    if not records.exists():
        pytest.skip("placebo records not in ../shared/data (not shipped: no licence)")
    th = TH | {"sigma_bio": 0.0}
    rows = V.structure_check(records, th, n_rep=10, n_boot=30, table=table)
    assert [(r["month"], r["statistic"]) for r in rows][:3] == [
        (6, "ancova_slope"),
        (6, "ancova_resid_sd"),
        (6, "corr_baseline"),
    ]
    assert len(rows) == 9 and all(set(COMPARISON_COLUMNS) <= set(r) for r in rows)
    # the observed month-12 residual SD of the TrialNet analysis (issue #14: 0.165)
    r = next(r for r in rows if r["month"] == 12 and r["statistic"] == "ancova_resid_sd")
    assert r["observed"] == pytest.approx(0.165, abs=0.001)
    assert all(r["simulated_lo"] <= r["simulated"] <= r["simulated_hi"] for r in rows)


def test_with_visits_equals_the_likelihoods_own_visit_restriction(table):
    """``Records.with_visits`` keeps every participant and only the chosen visits: the
    likelihood on the restricted records equals ``per_patient(θ, visits=…)`` on the full ones,
    for the baseline visits and for every visit but one month."""
    days = np.array([0.0, 91.0, 182.0, 365.0, 0.0, 182.0, 365.0, 730.0])
    rec = V.Records(
        ids=np.array(["a", "b"]),
        study=np.array(["s", "s"]),
        age_years=np.array([11.0, 24.0]),
        visit_patient=np.repeat([0, 1], 4),
        visit_day=days,
        visit_month=np.round(days / 30.4375),
        y=np.array([0.9, 0.8, 0.7, 0.5, 0.6, 0.5, 0.35, 0.2]),
    )
    full = V.StructureLikelihood(table, rec)
    for keep in (rec.visit_month == 0, rec.visit_month != 6):
        sub = rec.with_visits(keep)
        assert list(sub.ids) == ["a", "b"] and sub.y.size == keep.sum()
        want = full.per_patient(TH, visits=keep)
        np.testing.assert_allclose(V.StructureLikelihood(table, sub).per_patient(TH), want)


@pytest.mark.parametrize("beta_dyn", [-0.5, 0.4, 1.2])
def test_depletion_curve_solves_its_ode(beta_dyn):
    """ln C/C_bl under a hazard h(t)·(C/C_bl)^(−β_dyn), integrated by scipy's solve_ivp, equals
    :func:`variability.depletion_curve` of the course without the feedback (c = −∫h), here a
    decelerating hazard h(t) = 0.004·e^(−t/300) /day with an early recovery term."""
    from scipy.integrate import solve_ivp

    def h(t):
        return 0.004 * np.exp(-t / 300.0) - 0.01 * np.exp(-t / 20.0)

    days = np.linspace(0.0, 730.0, 25)
    # c(t) = −∫₀ᵗ h, closed form
    c = -(0.004 * 300.0 * (1 - np.exp(-days / 300.0)) - 0.01 * 20.0 * (1 - np.exp(-days / 20.0)))
    sol = solve_ivp(
        lambda t, y: [-h(t) * np.exp(-beta_dyn * y[0])],
        (0.0, 730.0),
        [0.0],
        t_eval=days,
        rtol=1e-10,
        atol=1e-12,
    )
    # β_dyn = 1.2 loses all function before day 730: the ODE stops there (finite-time
    # extinction), the closed form holds at its floor
    n = sol.t.size
    np.testing.assert_allclose(V.depletion_curve(c, beta_dyn)[:n], sol.y[0], atol=1e-7)
    gone = 1 + beta_dyn * c <= 1e-4
    assert (gone.sum() > 0) == (beta_dyn == 1.2)
    np.testing.assert_allclose(V.depletion_curve(c, beta_dyn)[gone], np.log(1e-4) / beta_dyn)
    assert V.depletion_curve(c, 0.0) is c


def test_student_t_deviation_is_drawn_as_student_t(table):
    """``inv_nu`` > 0: the baseline visit's log deviation from the noise-free level is
    scale·t(ν) (Kolmogorov–Smirnov against scipy's t), and not normal of the same scale."""
    th = dict(V.START) | {
        "mu_c": 0.0,
        "mu_a": 0.0,
        "s_c": 0.0,
        "omega_lambda": 0.0,
        "sigma_meas": 0.1,
        "sigma_bio": 0.0,
        "kappa": 0.0,
        "inv_nu": 0.25,
    }
    y = V.simulate_observed(
        table, th, np.full(20_000, 20.0), np.array([0]), np.random.default_rng(5)
    )
    z = np.log(y[0, :, 0]) / 0.1  # level e^0 = 1 nmol/L at every baseline
    assert stats.kstest(z, stats.t(df=4.0).cdf).pvalue > 0.001
    assert stats.kstest(z, stats.norm.cdf).pvalue < 1e-6
    # inv_nu = 0 keeps the normal draws (and the random stream) of before
    y0 = V.simulate_observed(
        table, th | {"inv_nu": 0.0}, np.full(20_000, 20.0), np.array([0]), np.random.default_rng(5)
    )
    assert stats.kstest(np.log(y0[0, :, 0]) / 0.1, stats.norm.cdf).pvalue > 0.001


def _effect_and_resid_sd(table, th, X, rng):
    """Δ (the arm coefficient) and the residual SD of the ANCOVA of ln(y₁₂ + 1) on arm,
    ln(y₀ + 1) and age over 100,000 simulated patients per arm (ages uniform 8–40 y)."""
    age = rng.uniform(8.0, 40.0, 100_000)
    arms = []
    for f in (1.0, 1.0 + X):
        y = V.simulate_observed(
            table, th, age, np.array([0, 12]), rng, treated_factor=np.full(age.size, f)
        )[0]
        arms.append(np.log1p(y))
    x0 = np.r_[arms[0][:, 0], arms[1][:, 0]]
    xm = np.r_[arms[0][:, 1], arms[1][:, 1]]
    arm = np.r_[np.zeros(age.size), np.ones(age.size)]
    X_ = np.column_stack([np.ones_like(x0), arm, x0, np.r_[age, age]])
    beta, *_ = np.linalg.lstsq(X_, xm, rcond=None)
    return float(beta[1]), float(np.std(xm - X_ @ beta, ddof=4))


@pytest.mark.parametrize("inv_nu", [0.0, 0.33])
def test_ancova_power_by_simulation_matches_the_noncentral_t(table, inv_nu):
    """The simulated ANCOVA power of 2,000 virtual trials (ages uniform 8–40 y) against the
    closed form (noncentral t, Shieh's covariate term) with Δ and the residual SD measured on
    100,000 patients per arm, at the N the closed form gives 60 % power: within 4 binomial SE
    + 0.02 (the closed form's linear, homoscedastic approximation of ln(y + 1)); and at no
    effect, the test's level 0.05 within 4 SE."""
    from tregsim.trial.closed_form import n_per_arm_for_power, power_ancova

    th = TH | {"sigma_bio": 0.0, "inv_nu": inv_nu}
    delta, sd = _effect_and_resid_sd(table, th, 0.3, np.random.default_rng(2))
    n = int(n_per_arm_for_power(0.6, delta, sd, rho=0.0, n_covariates=2))
    ref = float(power_ancova(n, n, delta, sd, rho=0.0, n_covariates=2))
    pool = np.random.default_rng(0).uniform(8.0, 40.0, 5_000)
    trials = 2_000
    sim = V.ancova_power_by_simulation(
        table, th, pool, np.array([n]), 0.3, np.random.default_rng(1), n_trials=trials
    )[0]
    assert abs(sim - ref) <= 4 * np.sqrt(ref * (1 - ref) / trials) + 0.02, (n, sim, ref)
    level = V.ancova_power_by_simulation(
        table, th, pool, np.array([n]), 0.0, np.random.default_rng(3), n_trials=trials
    )[0]
    assert abs(level - 0.05) <= 4 * np.sqrt(0.05 * 0.95 / trials), level


def test_ancova_power_by_simulation_takes_one_structure_per_trial(table):
    """A list of structures: trial r takes item r mod its length (a one-item list is the dict
    itself, draw for draw); an empty list is refused."""
    th = TH | {"sigma_bio": 0.0}
    pool = np.linspace(8.0, 40.0, 50)
    args = (pool, np.array([20, 40]), 0.5)
    one = V.ancova_power_by_simulation(table, th, *args, np.random.default_rng(4), n_trials=200)
    lst = V.ancova_power_by_simulation(table, [th], *args, np.random.default_rng(4), n_trials=200)
    np.testing.assert_array_equal(one, lst)
    # an uninformative half (σ so large the arms cannot be told apart) halves the power's excess
    noisy = th | {"sigma_meas": 5.0}
    mixed = V.ancova_power_by_simulation(
        table, [th, noisy], *args, np.random.default_rng(4), n_trials=400
    )
    alone = V.ancova_power_by_simulation(
        table, noisy, *args, np.random.default_rng(5), n_trials=400
    )
    assert np.all(mixed < one - 0.1) and np.all(mixed > alone)
    with pytest.raises(ValueError, match="empty"):
        V.ancova_power_by_simulation(table, [], *args, np.random.default_rng(4), n_trials=10)
