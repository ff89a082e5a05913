"""Calibration: config validation, cohort simulator, posterior files, NPE, likelihood, kinetics.

References are independent: scipy distributions for priors, hand-written numpy summaries,
direct ODE solves for the curve table, scipy.integrate for the marginal likelihood, the exact
Gaussian posterior for NPE.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, special, stats

import tregsim
from tregsim.calibrate.config import load_config
from tregsim.calibrate.data import PatientData
from tregsim.calibrate.simulator import build_problem, simulate_cohorts, simulate_summaries
from tregsim.errors import ConfigFileError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "calibration" / "natural_history_npe.toml"
SHIPPED = ROOT / "calibration" / "posteriors" / "natural_history_lumped.nc"
SHIPPED_NET = ROOT / "calibration" / "posteriors" / "natural_history_lumped" / "estimator.pt"
MODEL = tregsim.load_model("treg_t1d")


@pytest.fixture(scope="module")
def problem():
    return build_problem(load_config(CONFIG))


# ------------------------------------------------------------------------------- config
def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    (tmp_path / "natural_history_summary.csv").write_text(
        (ROOT / "calibration" / "natural_history_summary.csv").read_text()
    )
    return p


def test_config_loads_with_model_priors():
    cfg = load_config(CONFIG)
    assert cfg.calibrate == ("lambda_ref", "gamma_a", "omega_lambda", "q", "sigma", "s0", "k_re")
    assert cfg.baseline_day == 60.0
    assert cfg.months[0] == 0 and cfg.n_simulations == 30000


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("seed = 20261130", "seed = 20261130\nsede = 1", "sede"),
        ("chunk_size = 100", "chunk_size = 100\nchunks = 3", "budget.chunks"),
        ("seed = 20261130", 'seed = "x"', "seed"),
        ('"s0", "k_re"]', '"s0", "k_ree"]', "parameters.calibrate"),
        ("baseline_day = 60.0", "baseline_day = -5.0", "cohort.baseline_day"),
        ('below_lloq = "half_lloq"', 'below_lloq = "zero"', "observation.below_lloq"),
        ("months = [0, 3, 6, 12, 18, 24, 30]", "months = [3, 6]", "data.months"),
    ],
)
def test_config_rejects_bad_input(tmp_path, old, new, field):
    text = CONFIG.read_text()
    assert old in text
    with pytest.raises(ConfigFileError) as e:
        load_config(_write(tmp_path, text.replace(old, new, 1)))
    assert e.value.field == field and e.value.fix and "c.toml" in str(e.value)


# ---------------------------------------------------------------------------- simulator
def test_prior_transform_matches_scipy_priors(problem):
    z = problem.prior_z(7, 0, 4000)
    th = problem.theta_from_z(z)
    for j, p in enumerate(problem.priors):
        assert stats.kstest(th[:, j], p.frozen().cdf).pvalue > 1e-3
    np.testing.assert_allclose(problem.z_from_theta(th), z, atol=1e-6)


def test_prior_draws_do_not_depend_on_chunking(problem):
    a = problem.prior_z(3, 0, 2100)
    b = np.concatenate([problem.prior_z(3, 0, 1000), problem.prior_z(3, 1000, 2100)])
    np.testing.assert_array_equal(a, b)


def test_summaries_match_hand_computation_and_chunks(problem):
    th = problem.theta_from_z(problem.prior_z(11, 0, 4))
    sim = simulate_cohorts(problem, th, 11, 0)
    y = sim["cpeptide_nmol_l"]
    x = simulate_summaries(problem, th, 11, 0)
    d = problem.data
    # hand-computed: group 13-17 (patients 29..73), month 12 (index 3), its n visits
    gi, mi = 1, 3
    k = d.n_visit[gi, mi]
    block = y[:, 29 : 29 + k, mi]
    names = d.feature_names
    np.testing.assert_allclose(
        x[:, names.index("mean_ln_x_plus_1|13-17|12")], np.log1p(block).mean(1), rtol=1e-12
    )
    np.testing.assert_allclose(
        x[:, names.index("sd_ln_x_plus_1|13-17|12")], np.log1p(block).std(1, ddof=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        x[:, names.index("frac_above_threshold|13-17|12")], (block >= 0.2).mean(1)
    )
    # censoring: nothing below LLOQ except LLOQ/2 substitutes
    assert np.all((y >= 0.017) | (y == 0.0085))
    # chunk independence: items 2..3 alone equal items 2..3 of the batch (solver tolerance)
    x2 = simulate_summaries(problem, th[2:], 11, 2)
    np.testing.assert_allclose(x2, x[2:], rtol=1e-3, atol=1e-4)


def test_baseline_matches_observed_month0(problem):
    """Simulated month-0 observed C-peptide reproduces the table's month-0 mean and SD."""
    th = np.repeat(problem.theta_from_z(np.zeros((1, len(problem.names)))), 60, axis=0)
    y0 = simulate_cohorts(problem, th, 5, 0)["cpeptide_nmol_l"][:, :, 0]
    offs = np.r_[0, np.cumsum(problem.n_group)]
    for gi in range(3):
        v = y0[:, offs[gi] : offs[gi + 1]].ravel()
        m, s = problem.data.baseline_mean_nmol_l[gi], problem.data.baseline_sd_nmol_l[gi]
        assert abs(v.mean() - m) < 4 * s / np.sqrt(v.size)
        assert abs(v.std() / s - 1) < 0.1


def test_simulator_frame_matches_the_experiments_cohorts(problem):
    """Month m is day baseline_day + 30.4375·m and month 0 hits the drawn baseline, exactly as
    tregsim.population derives cpep0 for experiment cohorts (independent code path: a solve
    for cpep0 at diagnosis, then a direct simulation)."""
    from tregsim.population.sampling import _cpep0_for_baseline

    cfg = problem.config
    assert cfg.baseline_day == 60.0
    values = dict(lambda_ref=2.5e-3, gamma_a=0.7, omega_lambda=0.8, q=0.3, sigma=0.15)
    values |= dict(s0=0.4, k_re=0.02)
    theta = np.array([[values[n] for n in problem.names]])
    sim = simulate_cohorts(problem, theta, 5, 0)
    mean = sim["cpeptide_mean_nmol_l"][0]  # (P, T)
    P = problem.n_patients
    f_lambda = np.exp(0.8 * problem_draws(problem, 5)["z_lambda"][0])
    model_values = {k: v for k, v in values.items() if k in problem.names}
    del model_values["omega_lambda"], model_values["sigma"]
    params = MODEL.parameters(P, **model_values, age=sim["age_years"][0], f_lambda=f_lambda)
    params = params.replace(cpep0=_cpep0_for_baseline(MODEL, params, mean[:, 0], 60.0))
    days = 60.0 + 30.4375 * np.asarray(problem.data.months, float)
    ref = tregsim.simulate_arrays(MODEL, params, times=days).observables["cpeptide"]
    np.testing.assert_allclose(mean, ref, rtol=1e-4)


def problem_draws(problem, seed):
    from tregsim.calibrate.simulator import _cohort_draws

    return _cohort_draws(problem, seed, 0, 1)


def test_model_output_is_proportional_to_cpep0():
    """The exact scaling the likelihood path relies on (C ∝ cpep0, λ0 the only age route)."""
    days = np.array([0.0, 100.0, 400.0, 900.0])
    n = 5
    rng = np.random.default_rng(2)
    base = dict(lambda_ref=rng.uniform(5e-4, 5e-3, n), q=rng.uniform(0.1, 0.9, n))
    c1 = tregsim.simulate_arrays(MODEL, MODEL.parameters(n, cpep0=1.0, **base), times=days)
    c2 = tregsim.simulate_arrays(MODEL, MODEL.parameters(n, cpep0=0.3, **base), times=days)
    np.testing.assert_allclose(
        c2.observables["cpeptide"], 0.3 * c1.observables["cpeptide"], rtol=1e-6
    )


# ---------------------------------------------------------------------------- posterior
def test_shipped_posterior_round_trips_through_arviz(tmp_path):
    import arviz as az

    from tregsim.posterior import load_posterior, posterior_rows, save_posterior

    idata = az.from_netcdf(SHIPPED)
    post = idata.posterior
    assert set(post.data_vars) == {
        *("lambda_ref", "gamma_a", "omega_lambda", "q", "sigma", "s0", "k_re")
    }
    assert post["lambda_ref"].dims == ("chain", "draw") and post.sizes["draw"] == 2000
    assert post["lambda_ref"].attrs["units"] == "1/day"
    assert len(post.attrs["data_sha256"]) == 64 and "natural_history" in post.attrs["config"]
    draws = load_posterior(SHIPPED)
    np.testing.assert_array_equal(draws["q"], post["q"].values.ravel())
    # write → read through ArviZ again, with 2 chains
    two = {k: v.reshape(2, -1) for k, v in draws.items()}
    out = save_posterior(tmp_path / "p.nc", two, units={k: "1" for k in two}, attrs={"x": "y"})
    back = az.from_netcdf(out).posterior
    np.testing.assert_array_equal(back["gamma_a"].values, two["gamma_a"])
    # posterior_rows: item i takes the joint draw i mod n_draws, whatever the chunk
    rows = posterior_rows(draws, 1999, 2003)
    for j, i in enumerate(range(1999, 2003)):
        for k in draws:
            assert rows[k][j] == post[k].values.ravel()[i % 2000]


def test_loaded_estimator_reproduces_shipped_posterior(problem):
    from tregsim.calibrate.npe import load_estimator
    from tregsim.posterior import load_posterior

    est = load_estimator(SHIPPED_NET)
    z = est.sample_z(problem.data.observed, 4000, seed=99)
    th = problem.theta_from_z(z)
    shipped = load_posterior(SHIPPED)
    for j, n in enumerate(problem.names):
        se = np.sqrt(th[:, j].var() / 4000 + shipped[n].var() / 2000)
        assert abs(th[:, j].mean() - shipped[n].mean()) < 5 * se, n


def test_sbc_smoke_with_shipped_estimator(problem):
    """30 fresh synthetic datasets with known θ: 90 % intervals cover loosely."""
    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.npe import load_estimator

    est = load_estimator(SHIPPED_NET)
    z = problem.prior_z(123, 0, 30)
    x = simulate_summaries(problem, problem.theta_from_z(z), 123, 0)
    ok = np.all(np.isfinite(x), axis=1)
    zs = est.sample_z_batched(x[ok], 200, seed=1)
    cov90 = diag.central_coverage(z[ok], zs, 0.9)
    assert np.all(cov90 >= 0.7), cov90
    ranks = diag.sbc_ranks(z[ok], zs)
    # ranks against an independent route: the truth's insertion point among the sorted draws
    srt = np.sort(zs, axis=1)
    ref = [
        [np.searchsorted(srt[i, :, j], z[ok][i, j]) for j in range(zs.shape[2])]
        for i in range(zs.shape[0])
    ]
    np.testing.assert_array_equal(ranks, ref)
    # calibrated posterior ⇒ ranks uniform on 0..200: KS test per parameter, Bonferroni 0.001
    from scipy import stats

    u = (ranks + 0.5) / 201
    for j in range(u.shape[1]):
        assert stats.kstest(u[:, j], "uniform").pvalue > 0.001 / u.shape[1], j


def test_npe_matches_exact_gaussian_posterior():
    """Linear-Gaussian toy: z ~ N(0, I), x = A z + noise; exact posterior is Gaussian."""
    from tregsim.calibrate.npe import train_npe

    rng = np.random.default_rng(0)
    n, d = 3000, 2
    A = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
    s = 0.5
    z = rng.standard_normal((n, d))
    x = z @ A.T + s * rng.standard_normal((n, 3))
    # (a 2-transform MAF with 20 hidden units was measured to miss the x-dependence of
    # the first coordinate here; the project's default architecture recovers it)
    est, info = train_npe(
        z,
        x,
        method={
            "density_estimator": "maf",
            "hidden_features": 50,
            "num_transforms": 5,
            "training_batch_size": 200,
            "learning_rate": 5e-4,
            "stop_after_epochs": 20,
            "max_num_epochs": 300,
        },
        seed=0,
        names=["a", "b"],
        feature_names=["x1", "x2", "x3"],
        progress=False,
    )
    assert info["n_used"] == n and info["n_dropped_nonfinite"] == 0
    x_o = np.array([0.8, -0.5, 1.0])
    cov = np.linalg.inv(np.eye(d) + A.T @ A / s**2)
    mean = cov @ A.T @ x_o / s**2
    draws = est.sample_z(x_o, 4000, seed=1)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(draws.std(0), np.sqrt(np.diag(cov)), rtol=0.2)


def test_npe_ensemble_is_the_mixture_of_its_members(tmp_path):
    """Two flows trained from different seeds: the ensemble density is their equal-weight
    mixture (checked against each member on its own), draws come half from each, the mixture
    still matches the exact Gaussian posterior, and save/load (weights_only) reproduces it."""
    from tregsim.calibrate.npe import Estimator, load_estimator, save_estimator, train_npe

    rng = np.random.default_rng(1)
    n, d = 3000, 2  # at 2,000 one member was measured to miss the x-dependence
    A = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
    s = 0.5
    z = rng.standard_normal((n, d))
    x = z @ A.T + s * rng.standard_normal((n, 3))
    method = {
        "density_estimator": "maf",
        "hidden_features": 50,
        "num_transforms": 5,
        "training_batch_size": 200,
        "learning_rate": 5e-4,
        "stop_after_epochs": 20,
        "max_num_epochs": 300,
        "n_ensemble": 2,
    }
    est, info = train_npe(
        z,
        x,
        method=method,
        seed=0,
        names=["a", "b"],
        feature_names=["x1", "x2", "x3"],
        progress=False,
    )
    assert len(est.nets) == 2 and info["n_members"] == 2 and len(info["epochs"]) == 2
    x_o = np.array([0.8, -0.5, 1.0])
    zq = rng.standard_normal((50, d))
    members = [Estimator(nets=[net], meta=est.meta).log_prob_z(zq, x_o) for net in est.nets]
    assert np.max(np.abs(members[0] - members[1])) > 1e-4  # different seeds, different flows
    np.testing.assert_allclose(
        est.log_prob_z(zq, x_o), np.logaddexp(*members) - np.log(2), rtol=1e-5, atol=1e-5
    )
    cov = np.linalg.inv(np.eye(d) + A.T @ A / s**2)
    mean = cov @ A.T @ x_o / s**2
    draws = est.sample_z(x_o, 4000, seed=1)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(draws.std(0), np.sqrt(np.diag(cov)), rtol=0.2)
    save_estimator(est, tmp_path / "e.pt")
    back = load_estimator(tmp_path / "e.pt")
    assert len(back.nets) == 2
    np.testing.assert_array_equal(back.sample_z(x_o, 100, seed=4), est.sample_z(x_o, 100, seed=4))


def test_disjoint_member_banks_train_each_member_on_its_own_part():
    """member_banks = "disjoint": member m is exactly the flow trained alone (seed + m) on rows
    m·n … (m+1)·n; a non-finite row of one part drops only there; a bank that does not
    split into equal parts is refused."""
    import torch

    from tregsim.calibrate.npe import bank_size, member_rows, train_npe

    rng = np.random.default_rng(2)
    n, d = 300, 2
    z = rng.standard_normal((2 * n, d))
    x = z @ np.array([[1.0, 0.5], [0.0, 1.0]]).T + 0.5 * rng.standard_normal((2 * n, 2))
    x[n + 7, 0] = np.nan
    method = {
        "density_estimator": "maf",
        "hidden_features": 10,
        "num_transforms": 2,
        "training_batch_size": 100,
        "learning_rate": 5e-4,
        "stop_after_epochs": 2,
        "max_num_epochs": 3,
        "n_ensemble": 2,
        "member_banks": "disjoint",
    }
    assert bank_size(n, method) == 2 * n and bank_size(n, {"n_ensemble": 2}) == n
    kw = {"names": ["a", "b"], "feature_names": ["x1", "x2"], "progress": False}
    est, info = train_npe(z, x, method=method, seed=3, **kw)
    assert est.meta["member_banks"] == "disjoint" and info["n_dropped_nonfinite"] == 1
    alone = dict(method, n_ensemble=1, member_banks="shared")
    for m, part in enumerate(member_rows(2 * n, method)):
        keep = np.all(np.isfinite(x[part]), axis=1)
        one, _ = train_npe(z[part][keep], x[part][keep], method=alone, seed=3 + m, **kw)
        for a, b in zip(est.nets[m].state_dict().values(), one.nets[0].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="k x n rows"):
        member_rows(2 * n + 1, method)


# ---------------------------------------------------------------------------- likelihood
@pytest.fixture(scope="module")
def small_table():
    from tregsim.calibrate.likelihood import CurveTable

    return CurveTable(MODEL, n_loglam=81, n_q=21, max_day=800.0, day_step=10.0)


def test_curve_table_matches_direct_solves(small_table):
    rng = np.random.default_rng(3)
    n = 40
    ll = rng.uniform(np.log(3e-4), np.log(1e-2), n)
    q = rng.uniform(0.05, 0.95, n)
    age = rng.uniform(8, 45, n)
    gam = rng.uniform(0, 1, n)
    days = np.array([0.0, 95.0, 370.0, 733.0])
    ref = tregsim.simulate_arrays(
        MODEL,
        MODEL.parameters(
            n, lambda_ref=np.exp(ll) * (age / 10) ** gam, gamma_a=gam, age=age, q=q, cpep0=0.8
        ),
        times=days,
    ).observables["cpeptide"]
    approx = 0.8 * np.exp(small_table(ll[:, None], q[:, None], days[None, :]))
    big = ref > 0.02
    assert np.max(np.abs(approx[big] / ref[big] - 1)) < 0.03


def test_likelihood_baseline_frame_matches_direct_solves(small_table):
    """With baseline_day b the per-visit curve is C(b + d)/C(b) (direct solves as reference)."""
    from tregsim.calibrate.likelihood import HierarchicalLikelihood

    days = np.array([-20.0, 0.0, 91.0, 365.0, 700.0])
    data = PatientData(
        ids=np.array(["a"]),
        age_years=np.array([10.0]),
        visit_patient=np.zeros(5, int),
        visit_day=days,
        cpeptide_nmol_l=np.full(5, 0.5),
    )
    L = HierarchicalLikelihood(small_table, data, baseline_day=60.0)
    il, iq = 40, 6  # a table node: no interpolation error in λ0, q
    lam, q = np.exp(small_table.loglam[il]), small_table.q[iq]
    ref = tregsim.simulate_arrays(
        MODEL, MODEL.parameters(1, lambda_ref=lam, gamma_a=0.0, q=q, cpep0=1.0), times=60 + days
    ).observables["cpeptide"][0]
    got = L._logc_v[:, il, iq]
    # linear interpolation in time on a 10-day grid: ~1e-3 on log C
    np.testing.assert_allclose(got, np.log(ref / ref[1]), atol=2e-3)
    assert abs(got[1]) < 1e-12  # normalised to 1 at the baseline visit


def test_marginal_likelihood_matches_scipy_quadrature(small_table):
    """Two patients (one with a censored visit) against nested scipy.integrate.quad."""
    from tregsim.calibrate.likelihood import HierarchicalLikelihood

    data = PatientData(
        ids=np.array(["a", "b"]),
        age_years=np.array([12.0, 30.0]),
        visit_patient=np.array([0, 0, 0, 1, 1, 1]),
        visit_day=np.array([0.0, 180.0, 700.0, 0.0, 365.0, 730.0]),
        cpeptide_nmol_l=np.array([0.5, 0.3, 0.0085, 0.9, 0.7, 0.6]),
    )
    th = np.array([2e-3, 0.6, 0.5, 0.5, 0.25, np.log(0.6), 0.4])
    L = HierarchicalLikelihood(small_table, data, n_zeta=40)
    got = L(th[None])[0]
    lam, gam, om, q, sig, mu, sc = th
    ref = 0.0
    for i in range(2):
        sel = data.visit_patient == i
        y, day = data.cpeptide_nmol_l[sel], data.visit_day[sel]
        base = np.log(lam) - gam * np.log(data.age_years[i] / 10)

        # brute force: dense trapezoid grids over η (on the table's support, where the
        # implementation normalises) and ζ, no closed form
        lo = max((small_table.loglam[0] - base) / om, -8)
        hi = min((small_table.loglam[-1] - base) / om, 8)
        eta = np.linspace(lo, hi, 4001)[:, None, None]
        zeta = np.linspace(-8, 8, 801)[None, :, None]
        logc = small_table(base + om * eta, q, day[None, None, :])
        logmu = mu + sc * zeta + logc
        ll = np.where(
            y < 0.017,
            special.log_ndtr((np.log(0.017) - logmu) / sig),
            stats.norm.logpdf(np.log(y), logmu, sig) - np.log(y),
        ).sum(-1)
        f = np.exp(ll) * stats.norm.pdf(zeta[..., 0]) * stats.norm.pdf(eta[..., 0])
        val = integrate.trapezoid(integrate.trapezoid(f, zeta[0, :, 0], axis=1), eta[:, 0, 0])
        mass = stats.norm.cdf(hi) - stats.norm.cdf(lo)
        ref += np.log(val / mass)
    assert abs(got - ref) < 0.02


def test_long_format_loader_errors(tmp_path):
    from tregsim.calibrate.data import load_patient_data
    from tregsim.errors import DataFileError

    p = tmp_path / "d.csv"
    p.write_text("id,day,cpeptide_nmol_l\nA,0,0.5\n")
    with pytest.raises(DataFileError, match="age"):
        load_patient_data(p)
    p.write_text("id,day,cpeptide_nmol_l,age\nA,0,0.5,12\nA,30,-0.1,12\n")
    with pytest.raises(DataFileError, match=r"line 3, column cpeptide_nmol_l.*fix: .*LLOQ"):
        load_patient_data(p)
    # the file's own column names (columns=) are named in errors
    p.write_text("pid,t,y,age_years\nA,0,0.5,12\nA,30,0.4,-3\n")
    cols = {"id": "pid", "day": "t", "cpeptide_nmol_l": "y", "age": "age_years"}
    with pytest.raises(DataFileError, match=r"line 3, column age_years"):
        load_patient_data(p, columns=cols)


# ---------------------------------------------------------------------------- kinetics
def test_treg_kinetics_abc_respects_persistence_bounds():
    from tregsim.calibrate.kinetics import load_targets, treg_kinetics_abc

    tg = load_targets(ROOT / "calibration" / "treg_persistence.csv")
    r = treg_kinetics_abc(MODEL, tg, 400, seed=1)
    f91 = r.frac_of_peak[:, np.searchsorted(r.days, 91.0)]
    f365 = r.frac_of_peak[:, np.searchsorted(r.days, 365.0)]
    assert np.all(f91[r.accepted] <= 0.5) and np.all(f365[r.accepted] <= 0.25)
    assert np.all(f365[r.accepted] >= 0.01)
    assert np.any(~r.accepted) and 0.2 < r.acceptance_rate < 1.0
    # the curves against an independent scipy solution of the product's equations
    # (docs/model_spec.md: dX/dt = [ρ_X χ − α_X (1 − χ)] X, dM/dt = (1 − χ) F_M (α_X − β_M) X − β_M M,
    # χ = logistic((T_max − τ)/ε), ρ_X = ln FX / T_max; one dose at τ = 0)
    from scipy.integrate import solve_ivp
    from scipy.special import expit

    eps = MODEL.defaults()["eps_gate"]

    def rhs(t, y, fx, t_max, a_x, f_m, b_m):
        chi = expit((t_max - t) / eps)
        rho = np.log(fx) / t_max
        x, m = y
        return [(rho * chi - a_x * (1 - chi)) * x, (1 - chi) * f_m * (a_x - b_m) * x - b_m * m]

    for i in range(5):
        sol = solve_ivp(
            rhs,
            (0, r.days[-1]),
            [1e7, 0.0],
            t_eval=r.days,
            args=tuple(r.prior_draws[i]),
            rtol=1e-10,
            atol=1e-6,
        )
        cells = sol.y.sum(axis=0)
        np.testing.assert_allclose(r.frac_of_peak[i], cells / cells.max(), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------------- CLI
def test_cli_help_does_not_import_torch():
    code = (
        "import sys; from tregsim.cli import build_parser; build_parser(); "
        "import tregsim.cli.calibrate; assert 'torch' not in sys.modules; "
        "assert 'sbi' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    p = _write(tmp_path, CONFIG.read_text().replace("seed = 20261130", "sed = 1"))
    r = subprocess.run(
        [sys.executable, "-m", "tregsim", "calibrate", str(p), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "sed" in r.stderr and not (tmp_path / "o").exists()


def test_bank_resumes_and_extends(problem, tmp_path):
    from tregsim.calibrate.pipeline import simulate_bank
    from tregsim.errors import OutputFolderError

    path = tmp_path / "bank.npz"
    a = simulate_bank(problem, 3, 8, path=path, chunk_size=2, progress=False)
    b = simulate_bank(problem, 5, 8, path=path, chunk_size=2, progress=False)
    np.testing.assert_array_equal(b["x"][:3], a["x"])  # reused from the file, not recomputed
    fresh = simulate_bank(problem, 5, 8, chunk_size=5, progress=False)
    np.testing.assert_allclose(b["x"], fresh["x"], rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(b["theta"], fresh["theta"])
    with pytest.raises(OutputFolderError):
        simulate_bank(problem, 5, 9, path=path, progress=False)  # other seed


def test_posterior_and_predictive_round_trip_through_arviz(tmp_path):
    """Posterior and posterior-predictive draws written by tregsim load in ArviZ with their
    names, dims, coordinates and units, and equal values."""
    az = pytest.importorskip("arviz")
    from tregsim.posterior import load_posterior, save_posterior

    g = np.random.default_rng(3)
    draws = {"lambda_ref": g.lognormal(np.log(2e-3), 0.2, (2, 50)), "q": g.beta(2, 2, (2, 50))}
    months = np.array([0.0, 6.0, 12.0, 24.0])
    pp = {"cpeptide": g.lognormal(np.log(0.5), 0.3, (2, 50, 4))}
    f = save_posterior(
        tmp_path / "post.nc",
        draws,
        units={"lambda_ref": "1/day", "q": "1"},
        attrs={"model": "treg_t1d"},
        posterior_predictive=pp,
        predictive_dims={"cpeptide": ("month",)},
        predictive_coords={"month": months},
        predictive_units={"cpeptide": "nmol/L"},
    )
    idata = az.from_netcdf(f)
    assert set(idata.posterior.data_vars) == {"lambda_ref", "q"}
    np.testing.assert_array_equal(idata.posterior["q"].values, draws["q"])
    assert idata.posterior["lambda_ref"].attrs["units"] == "1/day"
    cp = idata.posterior_predictive["cpeptide"]
    assert cp.dims == ("chain", "draw", "month")
    np.testing.assert_array_equal(cp["month"].values, months)
    np.testing.assert_array_equal(cp.values, pp["cpeptide"])
    assert cp.attrs["units"] == "nmol/L"
    # and tregsim's own reader still sees the posterior group
    np.testing.assert_array_equal(load_posterior(f)["q"], draws["q"].reshape(-1))


@pytest.mark.parametrize("offset, spread", [(0.0, 1.0), (-0.3, 0.8), (0.2, 1.25)])
def test_sbc_location_spread_recovers_a_known_miscalibration(offset, spread):
    """Ranks of truths placed at N(offset, spread²) among N(0, 1) posterior draws: the effect
    sizes recover offset and spread (the rank's discreteness at L = 200 is negligible)."""
    from tregsim.calibrate import diagnostics as diag

    g = np.random.default_rng(11)
    m, L = 4000, 200
    truth = (offset + spread * g.standard_normal(m))[:, None]
    draws = g.standard_normal((m, L, 1))
    ranks = diag.sbc_ranks(truth, draws)
    mean, sd = diag.sbc_location_spread(ranks / L, L)
    se_mean, se_sd = spread / np.sqrt(m), spread / np.sqrt(2 * m)
    # 4 SE plus the probit of a 200-draw rank's own noise (Φ⁻¹ of a Beta around Φ(z))
    assert abs(mean[0] - offset) < 4 * se_mean + 0.02
    assert abs(sd[0] - spread) < 4 * se_sd + 0.03
