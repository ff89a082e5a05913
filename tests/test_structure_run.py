"""`tregsim calibrate` with `[method] kind = "structure_likelihood"`: config validation, the
vectorised likelihood against the per-participant loop, the sampler on a case with a known
answer, and the output files (posterior names per the interface contract, manifest,
predictive check).

Known answer: with baseline visits only, the hazard parameters (λ_ref, γ_a, ω_λ, q) do not
enter the likelihood at all (the curve is normalised to 1 at the baseline visit), so their
posterior marginals must equal their priors; the sampler runs in transformed coordinates with
Jacobians, so this checks transforms, Jacobians, priors and emcee together. The slow test
recovers a known θ of the chosen structure from synthetic records.

Records are synthetic (``variability.simulate_records`` from a known θ); nothing from
``../shared`` is needed except by the shipped-config test, which is skipped without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import tregsim
from tregsim.calibrate import structure_run as S
from tregsim.calibrate import variability as V
from tregsim.calibrate.likelihood import CurveTable
from tregsim.cli import main
from tregsim.model.priors import Prior

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {
    "lambda_ref": 2.5e-3,
    "gamma_a": 0.7,
    "omega_lambda": 0.6,
    "q": 0.15,
    "beta_c": 0.0,
    "beta_lin": 1.5,
    "sigma_meas": 0.15,
    "kappa": 0.3,
    "mu_c": -0.5,
    "mu_a": 0.2,
    "s_c": 0.45,
    "sigma_bio": 0.0,
    "tau_bio": 180.0,
}
VISIT_MONTHS = (0, 3, 6, 12, 18, 24)
PRIORS = """
[parameters.priors]
lambda_ref = { dist = "lognormal", median = 1.7e-3, sdlog = 0.5 }
gamma_a = { dist = "normal", mean = 0.5, sd = 0.3 }
omega_lambda = { dist = "halfnormal", scale = 1.0 }
q = { dist = "beta", a = 2.0, b = 2.0 }
beta_c = { dist = "normal", mean = 0.0, sd = 1.0 }
beta_lin = { dist = "normal", mean = 0.0, sd = 2.0 }
sigma_meas = { dist = "halfnormal", scale = 0.3 }
kappa = { dist = "normal", mean = 0.0, sd = 1.0 }
mu_c = { dist = "normal", mean = -0.510826, sd = 1.0 }
mu_a = { dist = "normal", mean = 0.0, sd = 1.0 }
s_c = { dist = "halfnormal", scale = 1.0 }
"""
CONFIG = (
    """schema_version = 1
name = "structure_test"
model = "treg_t1d"
seed = 7

[data]
records = "visits.csv"

[data.columns]
id = "pid"
cpeptide_nmol_l = "auc"

[cohort]
baseline_day = 60.0

[parameters]
candidate = "lincovariate+power"
calibrate = ["lambda_ref", "gamma_a", "omega_lambda", "q", "beta_c", "beta_lin",
             "sigma_meas", "kappa", "mu_c", "mu_a", "s_c"]
fixed = { s0 = 0.41, k_re = 0.02 }
"""
    + PRIORS
    + """
[method]
kind = "structure_likelihood"
n_walkers = 22
n_steps = 40
burn = 10
thin = 2
min_ess = 0     # the fixed budget (the ESS floor has its own test)
n_zeta = 9
n_eta = 9
n_predictive_draws = 20
n_bootstrap = 100
table = { n_loglam = 41, n_q = 11, day_step = 10.0 }
"""
)


@pytest.fixture(scope="module")
def table():
    model = tregsim.load_model("treg_t1d")
    return CurveTable(
        model, fixed={"s0": 0.41, "k_re": 0.02}, n_loglam=41, n_q=11, max_day=900.0, day_step=10.0
    )


def _synthetic(table, n: int, seed: int, months=VISIT_MONTHS) -> V.Records:
    rng = np.random.default_rng(seed)
    months = np.asarray(months, float)
    age = rng.uniform(8.0, 35.0, n)
    vp = np.repeat(np.arange(n), len(months))
    vm = np.tile(months, n)
    vd = np.round(vm * 30.4375) + np.where(vm > 0, rng.integers(-7, 8, vp.size), 0)
    rec = V.Records(
        ids=np.array([f"p{i:03d}" for i in range(n)]),
        study=np.where(np.arange(n) % 2 == 0, "A", "B"),
        age_years=age,
        visit_patient=vp,
        visit_day=vd.astype(float),
        visit_month=vm,
        y=np.ones(vp.size),
    )
    rec.y = V.simulate_records(table, TRUTH, rec, rng)[0]
    return rec


def _write_csv(rec: V.Records, path: Path) -> None:
    pd.DataFrame(
        {
            "study": rec.study[rec.visit_patient],
            "pid": rec.ids[rec.visit_patient],
            "age_years": rec.age_years[rec.visit_patient],
            "study_day": rec.visit_day,
            "month": rec.visit_month,
            "auc": rec.y,
        }
    ).to_csv(path, index=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, table):
    d = tmp_path_factory.mktemp("structure")
    _write_csv(_synthetic(table, 40, 1), d / "visits.csv")
    (d / "s.toml").write_text(CONFIG)
    return d


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ("n_eta = 9", "n_eta = 9\nn_eat = 9", "method.n_eat", "unknown key"),
        (
            'sigma_meas = { dist = "halfnormal", scale = 0.3 }',
            'sigma_meas = { dist = "normal", mean = 0.2, sd = 0.1 }',
            "parameters.priors.sigma_meas",
            "support",
        ),
        (
            'kappa = { dist = "normal", mean = 0.0, sd = 1.0 }',
            'kappa = { dist = "gamma", a = 1.0 }',
            "parameters.priors.kappa.dist",
            "unknown prior distribution",
        ),
        (
            'q = { dist = "beta", a = 2.0, b = 2.0 }\n',
            "",
            "parameters.priors.q",
            "no prior",
        ),
        (
            'q = { dist = "beta", a = 2.0, b = 2.0 }',
            'q = { dist = "lognormal", median = 0.2, sdlog = 0.5 }',
            "parameters.priors.q",
            "support",
        ),
        ('"mu_a", "s_c"]', '"mu_a"]', "parameters.calibrate", "free parameters"),
        ('candidate = "lincovariate+power"', 'candidate = "best"', "parameters.candidate", ""),
        ("n_walkers = 22", 'n_walkers = 12\nmove = "stretch"', "method.n_walkers", "at least 22"),
        ("n_walkers = 22", "n_walkers = 3", "method.n_walkers", "at least 4"),
        ("n_walkers = 22", 'n_walkers = 22\nmove = "gibbs"', "method.move", "unknown value"),
        ("n_walkers = 22", 'n_walkers = 21\nmove = "slice"', "method.n_walkers", "even"),
        ("n_eta = 9", "n_eta = 9\nn_xi = 5", "method.n_xi", "omega_q"),
        ("n_eta = 9", 'n_eta = 9\neta_nodes = "dense"', "method.eta_nodes", "unknown value"),
        ("n_eta = 9", "n_eta = 9\nmax_steps = 10", "method.max_steps", "below n_steps"),
        ("min_ess = 0 ", "min_ess = -1 ", "method.min_ess", ""),
        ('records = "visits.csv"', 'records = "absent.csv"', "data.records", "not found"),
        ("fixed = { s0", "fixed = { q = 0.3, s0", "parameters.fixed.q", "cannot be fixed"),
    ],
)
def test_bad_config_is_one_line_exit_2(folder, tmp_path, capsys, old, new, field, words):
    assert CONFIG.count(old) == 1, old
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace(old, new))
    out = tmp_path / "out"
    rc, stdout, err = _run(["calibrate", str(cfg), "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert "bad.toml" in lines[0] and f"[{field}]" in lines[0] and "; fix: " in lines[0]
    assert words in lines[0]
    assert "Traceback" not in stdout + err and not out.exists()


def test_missing_records_column_is_data_error(folder, tmp_path, capsys):
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('id = "pid"', 'id = "participant"'))
    rc, _, err = _run(["calibrate", str(cfg), "--out", str(tmp_path / "out")], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "visits.csv" in lines[0] and "participant" in lines[0]


def test_shipped_config_loads_and_states_every_prior():
    from tregsim.calibrate.config import load_config

    path = ROOT / "calibration" / "placebo_records_structure.toml"
    text = path.read_text()
    assert '"../../shared/data/placebo_cpeptide_individual.csv"' in text
    if not (ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv").is_file():
        pytest.skip("records not present beside the checkout")
    cfg = load_config(path)
    free = V.CANDIDATES[cfg.candidate][0]
    assert cfg.candidate == "lincovariate+power+t"  # round 19: the Student-t deviation
    assert cfg.kind == "structure_likelihood" and set(cfg.priors) == set(free)
    # the stated priors are the ones of variability.PARAMS (those of the structure MAP)
    for n in free:
        ref = V.PARAMS[n][1]
        for x in ref.ppf([0.1, 0.5, 0.9]):
            assert cfg.priors[n].frozen().logpdf(x) == pytest.approx(ref.logpdf(x), abs=1e-5)


# ------------------------------------------------------------------------------ likelihood
def test_vectorised_likelihood_equals_the_loop(table):
    rec = _synthetic(table, 25, 3)
    rec.y[[4, 11]] = 0.0085  # two visits below the LLOQ (censored)
    like = V.StructureLikelihood(table, rec, n_zeta=15, n_eta=13)
    for th in (
        TRUTH,
        TRUTH | {"kappa": 0.0, "beta_c": 0.5},
        TRUTH | {"sigma_add": 0.01},
        TRUTH | {"beta_c": -0.7, "gamma_beta": -0.7},  # age-dependent covariate
        TRUTH | {"lambda_ref": 0.5, "kappa": 1.5},  # hazards beyond the table's ln λ grid
    ):
        np.testing.assert_allclose(
            S.independent_log_lik(like, th), like.per_patient(th), rtol=1e-12, atol=1e-10
        )
    like_q = V.StructureLikelihood(table, rec, n_zeta=9, n_eta=9, n_xi=3)
    th = TRUTH | {"omega_q": 0.7}
    np.testing.assert_allclose(
        S.independent_log_lik(like_q, th), like_q.per_patient(th), rtol=1e-12, atol=1e-10
    )


def test_kernel_equals_the_loop_on_adaptive_zeta_nodes(table):
    rec = _synthetic(table, 25, 3)
    rec.y[[4, 11]] = 0.0085
    rec.y[6] = 0.0085  # a censored baseline: that participant keeps the ±4.5 nodes
    like = V.StructureLikelihood(table, rec, n_zeta=15, n_eta=13, adaptive_zeta=True)
    assert like._base_visit[1] == -1 and np.all(np.delete(like._base_visit, 1) >= 0)
    for th in (TRUTH, TRUTH | {"sigma_add": 0.01}, TRUTH | {"beta_c": -0.7, "gamma_beta": -0.7}):
        np.testing.assert_allclose(
            S.independent_log_lik(like, th), like.per_patient(th), rtol=1e-12, atol=1e-10
        )
    like_q = V.StructureLikelihood(table, rec, n_zeta=9, n_eta=9, n_xi=3, adaptive_zeta=True)
    th = TRUTH | {"omega_q": 0.7}
    np.testing.assert_allclose(
        S.independent_log_lik(like_q, th), like_q.per_patient(th), rtol=1e-12, atol=1e-10
    )


def test_baseline_moments_match_scipy_quad(table):
    """Mean and SD of ζ given the baseline visit alone (heteroscedastic, so not Gaussian)
    against scipy.integrate.quad of the same density, for a wide (κ = 1.2, σ 0.4), a narrow
    (σ 0.01) and an additive-error case."""
    from scipy import integrate

    from tregsim.observe import deviation_scale

    rec = _synthetic(table, 6, 4)
    for th in (
        TRUTH | {"kappa": 1.2, "sigma_meas": 0.4},
        TRUTH | {"sigma_meas": 0.01, "s_c": 0.9},
        TRUTH | {"sigma_add": 0.05, "kappa": -0.5},
    ):
        like = V.StructureLikelihood(table, rec, n_zeta=9, n_eta=5, adaptive_zeta=True)
        m, sd = like.baseline_moments(th)
        for p in range(6):
            ly0 = np.log(rec.y[like._base_visit[p]])
            b = th["mu_c"] + th["mu_a"] * np.log(rec.age_years[p] / 10)

            def dens(z, k=0, ly0=ly0, b=b, th=th):
                lev = b + th["s_c"] * z
                v = (th["sigma_meas"] * deviation_scale(lev, th["kappa"])) ** 2
                v += (th.get("sigma_add", 0.0) * np.exp(-lev)) ** 2
                return z**k * np.exp(-0.5 * ((ly0 - lev) ** 2 / v + np.log(v) + z * z))

            # the narrow peak sits near ζ̂ = (ln y0 − b) / s_c: give quad that point
            zh = (ly0 - b) / th["s_c"]
            mom = [
                integrate.quad(dens, -9, 9, args=(k,), points=[zh], limit=400, epsabs=0)[0]
                for k in range(3)
            ]
            mean = mom[1] / mom[0]
            np.testing.assert_allclose(m[p], mean, rtol=0, atol=1e-3 * np.sqrt(mom[2] / mom[0]))
            np.testing.assert_allclose(sd[p], np.sqrt(mom[2] / mom[0] - mean**2), rtol=0.02)


def test_adaptive_zeta_nodes_resolve_a_level_narrower_than_the_grid(table):
    """Little noise against a wide between-patient spread (σ_meas 0.05, s_c 0.8, six visits):
    ζ's integrand has SD ≈ 0.05 / 0.8 / √6 ≈ 0.026, a tenth of the fixed grid's spacing.
    Reference: the fixed rule on 1,801 ζ nodes (spacing 0.005, a fifth of that SD, where the
    trapezoid rule on a smooth peak is exact to far below 1e-3) with the same η nodes. The
    adaptive nodes (37, spanning ±6 of the baseline-only SD 0.0625: spacing ≈ 0.8 of the
    integrand's SD) must agree to 1e-3 nats per participant; the fixed 37-node grid must not
    (else the case would not test anything)."""
    th = TRUTH | {"sigma_meas": 0.05, "s_c": 0.8, "kappa": 0.0}
    rec = _synthetic(table, 20, 8)
    rec.y = V.simulate_records(table, th, rec, np.random.default_rng(81))[0]
    ref = S.independent_log_lik(V.StructureLikelihood(table, rec, n_zeta=1801, n_eta=33), th)
    ad = S.independent_log_lik(
        V.StructureLikelihood(table, rec, n_zeta=37, n_eta=33, adaptive_zeta=True), th
    )
    fixed = S.independent_log_lik(V.StructureLikelihood(table, rec, n_zeta=37, n_eta=33), th)
    np.testing.assert_allclose(ad, ref, atol=1e-3, rtol=0)
    assert np.abs(fixed - ref).max() > 0.1


def test_kernel_equals_numpy_on_adaptive_eta_nodes(table):
    """At the same adaptive η nodes (one set per participant and ζ node) the compiled kernel
    and the numpy path give the same log-likelihood: normal and Student-t deviations, censored
    visits, hazards beyond the table's ln λ grid; with the half-rule refinement (round 27)
    the nodes returned are the rule the kernel's value was taken on."""
    rec = _synthetic(table, 25, 3)
    rec.y[[4, 11]] = 0.0085
    like = V.StructureLikelihood(
        table, rec, n_zeta=15, n_eta=13, adaptive_zeta=True, adaptive_eta=True
    )
    for th in (
        TRUTH,
        TRUTH | {"inv_nu": 0.3},
        TRUTH | {"omega_lambda": 1.5, "sigma_meas": 0.08, "inv_nu": 0.3},
        TRUTH | {"lambda_ref": 0.5, "kappa": 1.5},
    ):
        zeta, lwz = like.zeta_nodes(th)
        eta, _ = like.eta_nodes(th, zeta, lwz)
        assert eta.shape[:2] == (25, 15) and eta.shape[2] in (13, 25)
        assert np.all(np.diff(eta, axis=2) > 0)
        np.testing.assert_allclose(
            S.independent_log_lik(like, th), S.array_log_lik(like, th), rtol=1e-12, atol=1e-10
        )


def test_adaptive_eta_nodes_resolve_a_hazard_narrower_than_the_grid(table):
    """A wide hazard spread observed tightly (ω_λ 1.2, σ_meas 0.08, six visits; the case of the
    quadrature check's test): a participant's visits pin η more tightly than the fixed grid's
    spacing of 0.25. Reference: the fixed rule on 4,001 η nodes over [−10, 10] (spacing 0.005)
    with the same adaptive ζ nodes. The adaptive rule's 33 η nodes must agree to 0.01 nats per
    participant, at θ* and at q moved by ±1 on the logit scale (where round 25 saw the fixed
    grid's error swing); the fixed 33-node grid must not (else the case tests nothing)."""

    th = TRUTH | {"omega_lambda": 1.2, "sigma_meas": 0.08, "kappa": 0.0}
    rec = _synthetic(table, 40, 14)
    rec.y = V.simulate_records(table, th, rec, np.random.default_rng(141))[0]
    ref = V.StructureLikelihood(table, rec, n_zeta=37, n_eta=4001, adaptive_zeta=True)
    ref.eta = np.linspace(-10.0, 10.0, 4001)
    lw = stats.norm.logpdf(ref.eta)
    ref._lwe = lw - special.logsumexp(lw)
    ad = V.StructureLikelihood(
        table, rec, n_zeta=37, n_eta=33, adaptive_zeta=True, adaptive_eta=True
    )
    fixed = V.StructureLikelihood(table, rec, n_zeta=37, n_eta=33, adaptive_zeta=True)
    worst_fixed = 0.0
    for dq in (-1.0, 0.0, 1.0):
        t = th | {"q": float(special.expit(special.logit(th["q"]) + dq))}
        r = S.independent_log_lik(ref, t)
        np.testing.assert_allclose(S.independent_log_lik(ad, t), r, atol=0.01, rtol=0)
        worst_fixed = max(worst_fixed, float(np.abs(S.independent_log_lik(fixed, t) - r).max()))
    assert worst_fixed > 0.1


def test_half_rule_refinement_resolves_what_the_adaptive_rule_misses(table):
    """Round 27: a wide hazard spread observed tightly, a heavy-tailed deviation and every
    seventh visit censored give η integrands with narrow bumps inside a wide SD. On 17
    adaptive nodes some participants are off by more than ``ETA_REFINE_NATS`` against the
    4,001-node reference (else the case tests nothing); with the half-rule refinement none
    is, and the refined participants' nodes and weights are the rule the value came from."""
    th = TRUTH | {"omega_lambda": 1.5, "sigma_meas": 0.05, "inv_nu": 0.4}
    rec = _synthetic(table, 40, 14)
    rec.y = V.simulate_records(table, th, rec, np.random.default_rng(141))[0]
    rec.y[::7] = 0.0085
    ref = V.StructureLikelihood(table, rec, n_zeta=37, n_eta=4001, adaptive_zeta=True)
    ref.eta = np.linspace(-10.0, 10.0, 4001)
    lw = stats.norm.logpdf(ref.eta)
    ref._lwe = lw - special.logsumexp(lw)
    nodes = {"n_zeta": 37, "n_eta": 17, "adaptive_zeta": True, "adaptive_eta": True}
    plain = V.StructureLikelihood(table, rec, refine_eta=False, **nodes)
    refined = V.StructureLikelihood(table, rec, **nodes)
    with np.errstate(all="ignore"):
        r = S.independent_log_lik(ref, th)
        before = np.abs(S.independent_log_lik(plain, th) - r)
        after = S.independent_log_lik(refined, th)
        assert before.max() > V.ETA_REFINE_NATS
        assert np.abs(after - r).max() <= V.ETA_REFINE_NATS
        np.testing.assert_allclose(after, S.array_log_lik(refined, th), rtol=1e-12, atol=1e-10)


def test_adaptive_eta_nodes_refuse_what_they_do_not_cover(table):
    rec = _synthetic(table, 5, 3)
    with pytest.raises(ValueError, match="n_xi"):
        V.StructureLikelihood(table, rec, n_zeta=9, n_eta=9, n_xi=3, adaptive_eta=True)
    like = V.StructureLikelihood(table, rec, n_zeta=9, n_eta=9, adaptive_eta=True)
    with pytest.raises(ValueError, match="sigma_bio"):
        like.nodes(TRUTH | {"sigma_bio": 0.1, "tau_bio": 100.0})


def _grid_config(n_zeta: int, n_eta: int):
    from types import SimpleNamespace

    method = {"n_zeta": n_zeta, "n_eta": n_eta, "zeta_nodes": "adaptive"}
    return SimpleNamespace(method=method, baseline_day=60.0, lloq_nmol_l=V.LLOQ_NMOL_L)


def test_quadrature_check_measures_the_error_a_dense_grid_shows(table):
    """A wide, tightly observed hazard spread (ω_λ 1.2, σ_meas 0.08, six visits) at points
    around θ*. Reference: the same likelihood on 145 × 257 nodes (spacing ⅛ of the refined
    grid's in η). On the config's own 37 × 33 nodes the check's error (config nodes − 2n − 1
    nodes) must match config − reference to 0.05 nats at the first point and in its spread,
    and its verdict must be the reference's; on 9 × 9 nodes the reference's spread exceeds the
    threshold, and the check must say so and name the axis whose dense refinement alone moves
    the likelihood more."""
    th = TRUTH | {"omega_lambda": 1.2, "sigma_meas": 0.08, "kappa": 0.0}
    rec = _synthetic(table, 40, 14)
    rec.y = V.simulate_records(table, th, rec, np.random.default_rng(141))[0]
    priors = {n: Prior(*_prior_args(n)) for n in V.CANDIDATES["lincovariate+power"][0]}
    ref_like = S.likelihood_for(_grid_config(145, 257), table, rec)
    g = np.random.default_rng(142)
    spreads = {}
    for nz, ne in ((37, 33), (9, 9)):
        cfg = _grid_config(nz, ne)
        post = S.StructurePosterior(S.likelihood_for(cfg, table, rec), "lincovariate+power", priors)
        u0 = post.u_of(th)
        us = np.vstack([u0, u0 + 0.05 * g.standard_normal((5, u0.size))])
        qc = S.quadrature_check(cfg, table, rec, post, us)
        truth_err = np.array(
            [
                S.independent_log_lik(post.like, post.theta(u)).sum()
                - S.independent_log_lik(ref_like, post.theta(u)).sum()
                for u in us
            ]
        )
        assert qc["refined_nodes"] == f"{2 * nz - 1} x {2 * ne - 1}" and qc["n_points"] == 6
        spreads[nz] = (qc, float(truth_err.max() - truth_err.min()), truth_err[0])
    qc, true_spread, true_map = spreads[37]
    assert abs(qc["error_map_nats"] - true_map) < 0.05
    assert abs(qc["error_spread_nats"] - true_spread) < 0.05
    assert qc["ok"] == (true_spread <= S.QUADRATURE_SPREAD_NATS)
    qc, true_spread, _ = spreads[9]
    assert true_spread > S.QUADRATURE_SPREAD_NATS and not qc["ok"]
    # the axis it names is the one whose dense refinement alone moves the likelihood more
    cfg = _grid_config(9, 9)
    post = S.StructurePosterior(S.likelihood_for(cfg, table, rec), "lincovariate+power", priors)
    u0 = post.u_of(th)
    us = np.vstack([u0, u0 + 0.05 * np.random.default_rng(142).standard_normal((5, u0.size))])
    own = np.array([S.independent_log_lik(post.like, post.theta(u)).sum() for u in us])
    true_axis = {}
    for axis, nodes in (("zeta", (145, 9)), ("eta", (9, 257))):
        dense = S.likelihood_for(_grid_config(*nodes), table, rec)
        e = own - np.array([S.independent_log_lik(dense, post.theta(u)).sum() for u in us])
        true_axis[axis] = float(e.max() - e.min())
    assert qc["axis"] == max(true_axis, key=true_axis.get), (qc, true_axis)
    assert qc["ok"] is False and set(qc) >= {"error_spread_zeta_nats", "error_spread_eta_nats"}


def test_kernel_log_ndtr_matches_scipy():
    from tregsim.calibrate.structure_kernel import _log_ndtr

    x = np.r_[-60.0, -37.5, -20.0001, -19.9999, np.linspace(-19, 8, 55)]
    got = np.array([_log_ndtr(v) for v in x])
    np.testing.assert_allclose(got, special.log_ndtr(x), rtol=1e-10, atol=1e-14)


def test_kernel_exp_is_numpy_exp_to_two_ulp():
    """The kernel's vectorisable exp (mantissa × two powers of two) against numpy's: within
    2 ulp on the double range, and 0, inf and NaN where exp gives them."""
    from tregsim.calibrate.structure_kernel import _exp_parts

    x = np.r_[
        np.random.default_rng(7).uniform(-740.0, 709.0, 20000),
        -745.1,
        -708.5,
        -1e-300,
        0.0,
        1e-300,
        709.7,
        -np.inf,
        -800.0,
        709.79,
        800.0,
        np.inf,
        np.nan,
    ]
    mant, k1, k2 = np.empty_like(x), np.empty(x.size, np.int64), np.empty(x.size, np.int64)
    _exp_parts(x, mant, k1, k2)
    with np.errstate(over="ignore", invalid="ignore"):
        got = mant * k1.view(np.float64) * k2.view(np.float64)
        ref = np.exp(x)
    normal = np.isfinite(ref) & (ref >= np.finfo(float).tiny)
    assert np.all(np.abs(got[normal] / ref[normal] - 1) <= 2 * np.finfo(float).eps)
    sub = np.isfinite(ref) & ~normal  # subnormal or 0: within two of the smallest steps
    assert np.all(np.abs(got[sub] - ref[sub]) <= 2 * np.finfo(float).smallest_subnormal)
    assert np.array_equal(got[~np.isfinite(ref)], ref[~np.isfinite(ref)], equal_nan=True)


def _omnibus_table(draws, observed, groups):
    """predictive_check's columns for statistics with simulated ``draws`` (K, S)."""
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    return pd.DataFrame(
        {
            "group": groups,
            "predicted_lo": lo,
            "predicted_hi": hi,
            "predictive_p": np.mean(draws >= observed, axis=0),
            "inside_95": (lo <= observed) & (observed <= hi),
        }
    )


def test_predictive_omnibus_matches_binomial_and_perfect_correlation():
    """Independent statistics: a copy's number outside its 95 % intervals is Binomial(S, 0.05)
    and its smallest two-sided p has P(min p ≤ m) = 1 − (1 − m)^S. Perfectly correlated
    statistics: one statistic repeated, so P(as many outside) is 0.05 whether one or all
    are outside."""
    g = np.random.default_rng(5)
    K, n_stat = 4000, 20
    draws = g.standard_normal((K, n_stat))
    obs = np.r_[2.5, -2.3, 2.2, np.zeros(n_stat - 3)]  # three outside
    ppc = _omnibus_table(draws, obs, ["a"] * 10 + ["b"] * 10)
    res = S.predictive_omnibus(ppc, draws)
    assert (
        res["every statistic"]["outside"] == 3
        and res["a"]["outside"] == 3
        and res["b"]["outside"] == 0
    )
    binom = stats.binom(n_stat, 0.05).sf(2)  # P(≥ 3)
    se = np.sqrt(binom * (1 - binom) / K)
    assert abs(res["every statistic"]["p_outside"] - binom) < 4 * se + 0.01
    m = res["every statistic"]["min_p"]
    ref = 1 - (1 - m) ** n_stat
    assert abs(res["every statistic"]["p_min_p"] - ref) < 4 * np.sqrt(ref * (1 - ref) / K) + 0.01
    assert res["b"]["p_outside"] == 1.0  # none outside: every copy has at least as many
    one = g.standard_normal((K, 1))
    same = np.repeat(one, 8, axis=1)
    ppc = _omnibus_table(same, np.full(8, 2.5), ["c"] * 8)
    res = S.predictive_omnibus(ppc, same)
    assert res["c"]["outside"] == 8
    assert abs(res["c"]["p_outside"] - 0.05) < 0.01
    with pytest.raises(ValueError, match="rows"):
        S.predictive_omnibus(ppc, same[:, :3])


def test_simulate_records_matches_simulate_observed_in_distribution(table):
    """At nominal days, the records simulator and the cohort simulator draw the same law."""
    n = 400
    rec = V.Records(
        ids=np.arange(n).astype(str),
        study=np.full(n, "A"),
        age_years=np.full(n, 15.0),
        visit_patient=np.repeat(np.arange(n), 2),
        visit_day=np.tile([0.0, 12 * 30.4375], n),
        visit_month=np.tile([0.0, 12.0], n),
        y=np.ones(2 * n),
    )
    a = V.simulate_records(table, TRUTH, rec, np.random.default_rng(1), n_rep=5)
    a = a.reshape(5 * n, 2)
    b = V.simulate_observed(
        table, TRUTH, np.full(n, 15.0), np.array([0, 12]), np.random.default_rng(2), n_rep=5
    ).reshape(5 * n, 2)
    for j in range(2):
        assert stats.ks_2samp(np.log(a[:, j]), np.log(b[:, j])).pvalue > 1e-3


def test_predictive_check_simulate_hook(table):
    """``predictive_check(simulate=…)``: the structure's own simulation passed as the hook gives
    the default's table exactly; a hook that halves every value moves the predicted means of
    ln(x + 1) below the default's, and the observed columns stay the records'."""
    rec = _synthetic(table, 30, 5)
    kw = dict(seed=3, n_boot=50)
    thetas = [TRUTH] * 6
    default = S.predictive_check(table, rec, thetas, **kw)

    def own(th, g):
        return V.simulate_records(table, th, rec, g)[0]

    assert default.equals(S.predictive_check(table, rec, thetas, simulate=own, **kw))
    half = S.predictive_check(table, rec, thetas, simulate=lambda th, g: 0.5 * own(th, g), **kw)
    m = default.statistic == "mean_ln_x_plus_1"
    assert (half.predicted_median[m] < default.predicted_median[m]).all()
    assert half.observed.equals(default.observed)


# --------------------------------------------------------------------------- known answer
@pytest.mark.parametrize(
    "move, n_steps",
    [
        ("independence", 150),
        ("stretch", 250),
        pytest.param("stretch", 700, marks=pytest.mark.slow),
    ],
)
def test_non_identified_parameters_keep_their_prior(table, move, n_steps):
    """Baseline visits only: the hazard parameters' posterior marginals equal their priors
    (F_prior(draws) uniform: quantiles within 4 Monte Carlo SE computed from the ESS)."""
    import arviz as az

    full = _synthetic(table, 30, 5)
    rec = full.subset(np.ones(30, bool))
    keep = rec.visit_month == 0
    rec = V.Records(
        rec.ids,
        rec.study,
        rec.age_years,
        rec.visit_patient[keep],
        rec.visit_day[keep],
        rec.visit_month[keep],
        rec.y[keep],
    )
    like = V.StructureLikelihood(table, rec, n_zeta=9, n_eta=5)
    priors = {
        "lambda_ref": Prior("lognormal", {"median": 1.7e-3, "sdlog": 0.5}),
        "gamma_a": Prior("normal", {"mean": 0.5, "sd": 0.3}),
        "omega_lambda": Prior("halfnormal", {"scale": 1.0}),
        "q": Prior("beta", {"a": 2.0, "b": 2.0}),
        "sigma_meas": Prior("halfnormal", {"scale": 0.3}),
        "mu_c": Prior("normal", {"mean": -0.5, "sd": 1.0}),
        "mu_a": Prior("normal", {"mean": 0.0, "sd": 1.0}),
        "s_c": Prior("halfnormal", {"scale": 1.0}),
    }
    post = S.StructurePosterior(like, "lumped", priors)
    burn = 50
    _, _, chain, acc, _ = S.sample_posterior(
        post, n_walkers=32, n_steps=n_steps, seed=11, move=move, burn=burn
    )
    assert 0.15 < acc < 0.8
    for k, n in enumerate(post.free[:4]):
        u = priors[n].frozen().cdf(V._from_u(n, chain[burn:, :, k]))  # (steps, walkers)
        ess = float(az.ess(np.swapaxes(u, 0, 1)))
        for p in (0.1, 0.25, 0.5, 0.75, 0.9):
            se = np.sqrt(p * (1 - p) / ess)
            assert abs(np.quantile(u, p) - p) < 4 * se, (n, p, np.quantile(u, p), ess)


class _RoughGaussian:
    """A log posterior with a known answer and a tabulated likelihood's trouble, in the
    records structure's 11 coordinates: independent Gaussians with SDs like the shipped
    posterior's, except β_c and β_lin (SDs 1.0 and 1.5, correlation −0.9), which also carry a
    ripple of ±0.03 nats with period 0.1 in u. The ripple barely moves the distribution, but
    the Hessian at a 0.02 step sees its curvature (≈ 100 per unit u²) instead of the
    Gaussian's, as on some SBC datasets (docs/calibration.md, "Round 12")."""

    free = tuple(V.CANDIDATES["lincovariate+power"][0])
    dim = len(free)
    sd = np.array([0.15, 0.18, 0.13, 0.5, 1.0, 1.5, 0.045, 0.045, 0.07, 0.1, 0.08])
    pair = (4, 5)  # beta_c, beta_lin
    amp, period = 0.03, 0.1

    def __init__(self):
        c = np.diag(self.sd**2)
        i, j = self.pair
        c[i, j] = c[j, i] = -0.9 * self.sd[i] * self.sd[j]
        self.cov = c
        self.prec = np.linalg.inv(c)
        self.u0 = np.array([V._to_u(n, V.START[n]) for n in self.free])

    def log_prior(self, u):
        return -0.5 * float(np.sum((np.asarray(u) - self.u0) ** 2)) / 100.0  # nearly flat

    def ripple(self, d_pair):
        return -self.amp * np.sum(1 - np.cos(2 * np.pi * np.asarray(d_pair) / self.period), -1)

    def __call__(self, u):
        d = np.asarray(u, float) - self.u0
        return (
            -0.5 * float(d @ self.prec @ d)
            + float(self.ripple(d[list(self.pair)]))
            + (self.log_prior(u))
        )


def _pair_moments(t):
    """Mean and covariance of (β_c, β_lin) − u0 by a 2-D grid: the pair is independent of the
    other coordinates, so its marginal is its Gaussian block × the ripple × the prior."""
    x = np.linspace(-8, 8, 801)
    X, Y = np.meshgrid(x, x, indexing="ij")
    D = np.stack([X.ravel(), Y.ravel()], axis=1)
    i, j = t.pair
    p = np.linalg.inv(t.cov[np.ix_([i, j], [i, j])])
    lp = -0.5 * np.einsum("ni,ij,nj->n", D, p, D) + t.ripple(D) - 0.5 * (D**2).sum(1) / 100
    w = np.exp(lp - lp.max())
    w /= w.sum()
    m = w @ D
    return m, (D - m).T @ ((D - m) * w[:, None])


@pytest.mark.parametrize("wide_step, ok", [(S.WIDE_STEP, True), (0.02, False)])
def test_independence_sampler_survives_a_rough_likelihood(monkeypatch, wide_step, ok):
    """With the wide-step Laplace component the chain has the pair's SDs and means (within 4
    Monte Carlo SE from the ESS); without it (both components at the 0.02 step, the sampler
    before round 12) the SDs come out ≈ 0.5–0.7 of the truth, as on SBC dataset 47."""
    import arviz as az

    monkeypatch.setattr(S, "WIDE_STEP", wide_step)
    if not ok:  # the sampler before round 12 had no tail components either
        monkeypatch.setattr(S, "tail_components", lambda *a: [])
    t = _RoughGaussian()
    m_ref, c_ref = _pair_moments(t)
    u_map, _ = S.map_estimate(t, dict(zip(t.free, [V.START[n] for n in t.free])))
    narrow = np.sqrt(np.diag(S.laplace_covariance(t, u_map)))[list(t.pair)]
    assert np.all(narrow < 0.5 * np.sqrt(np.diag(c_ref)))  # the trouble is there
    burn = 50
    _, _, chain, acc, _ = S.sample_posterior(
        t, n_walkers=16, n_steps=300, seed=1, move="independence", burn=burn
    )
    kept = chain[burn:] - t.u0  # (steps, walkers, d)
    good = []
    for k, idx in enumerate(t.pair):
        ess = float(az.ess(np.swapaxes(kept[:, :, idx], 0, 1)))
        sd_ref = np.sqrt(c_ref[k, k])
        x = kept[:, :, idx].ravel()
        good.append(
            abs(x.mean() - m_ref[k]) < 4 * sd_ref / np.sqrt(ess)
            and abs(x.std() - sd_ref) < 4 * sd_ref / np.sqrt(2 * ess)
        )
        if not ok:
            assert x.std() < 0.8 * sd_ref, (k, x.std(), sd_ref)
    assert all(good) == ok, (good, acc)


def test_chain_ess_matches_an_ar1_chain():
    """:func:`structure_run.chain_ess` on 16 Gaussian AR(1) chains (ρ 0.8, 2,000 steps each):
    the bulk ESS of an AR(1) is N (1 − ρ)/(1 + ρ) = 3,556, and the tail ESS of the 5 % / 95 %
    indicators is larger (their autocorrelation is below ρ^k), so the minimum is the bulk's.
    The estimator's own relative SD at this length is ≈ 3 %; 12 % is four of it."""
    rho, n, chains = 0.8, 2000, 16
    g = np.random.default_rng(5)
    x = np.empty((n, chains, 2))
    x[0] = g.standard_normal((chains, 2))
    e = g.standard_normal((n, chains, 2)) * np.sqrt(1 - rho**2)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    x[:, :, 1] = np.exp(x[:, :, 1])  # rank-normalised: a monotone map changes nothing
    ess = S.chain_ess(x)
    ref = n * chains * (1 - rho) / (1 + rho)
    assert np.all(np.abs(ess / ref - 1) < 0.12), ess


def test_ess_floor_extends_the_chain_with_the_same_kernel():
    """``min_ess``: the first ``n_steps`` are the run without the floor, step for step (the
    extension continues the same chains and random stream); the chain stops at the first block
    boundary where every coordinate's ESS reaches the floor, and at ``max_steps`` when the floor
    is out of reach."""
    t = _RoughGaussian()
    kw = dict(n_walkers=16, n_steps=100, seed=3, move="independence", burn=50)
    _, _, base, _, _ = S.sample_posterior(t, **kw)
    _, _, capped, _, _ = S.sample_posterior(t, min_ess=1e6, max_steps=250, **kw)
    assert base.shape[0] == 100 and capped.shape[0] == 250
    np.testing.assert_array_equal(capped[:100], base)
    _, _, run, _, _ = S.sample_posterior(t, min_ess=1200, max_steps=1000, **kw)
    n = run.shape[0]
    assert 100 < n < 1000 and (n - 100) % 50 == 0
    assert S.chain_ess(run[50:]).min() >= 1200
    assert S.chain_ess(run[50 : n - 50]).min() < 1200  # it did not run a block too many
    np.testing.assert_array_equal(run[:100], base)


class _FlatTail:
    """A log posterior with a known marginal and a prior-dominated tail, in the records
    structure's 11 coordinates: Gaussians with SDs like the shipped posterior's, except logit q,
    whose likelihood is flat below −3 and falls steeply above it (half-Gaussian, SD 0.3),
    under a normal prior N(−2.8, 1.83) (the regional SBC prior of logit q). As on SBC datasets
    with θ* q ≈ 10⁻³ (docs/calibration.md, "Round 13"), the curvature at the MAP says SD ≈ 0.3
    while the left tail is the prior's."""

    free = tuple(V.CANDIDATES["lincovariate+power"][0])
    dim = len(free)
    sd = np.array([0.15, 0.18, 0.13, 0.5, 0.6, 1.0, 0.045, 0.045, 0.07, 0.1, 0.08])
    iq = free.index("q")
    mu, sg, edge, steep = -2.8, 1.83, -3.0, 0.3

    def __init__(self):
        self.u0 = np.array([V._to_u(n, V.START[n]) for n in self.free])
        self.u0[self.iq] = 0.0

    def log_prior(self, u):
        u = np.asarray(u, float)
        rest = np.delete(u - self.u0, self.iq)
        return -0.5 * ((u[self.iq] - self.mu) / self.sg) ** 2 - 0.5 * float(rest @ rest) / 100

    def log_lik_q(self, x):
        return -0.5 * (np.maximum(x - self.edge, 0.0) / self.steep) ** 2

    def mass_below(self, x0: float) -> float:
        """P(logit q < x0) from the 1-D integral of prior × likelihood of logit q (the other
        coordinates are independent of it)."""
        x = np.linspace(-20.0, 5.0, 25001)
        w = np.exp(-0.5 * ((x - self.mu) / self.sg) ** 2 + self.log_lik_q(x))
        return float(w[x < x0].sum() / w.sum())

    def __call__(self, u):
        u = np.asarray(u, float)
        z = np.delete((u - self.u0), self.iq) / np.delete(self.sd, self.iq)
        return -0.5 * float(z @ z) + float(self.log_lik_q(u[self.iq])) + self.log_prior(u)


@pytest.mark.parametrize("tails, ok", [(True, True), (False, False)])
def test_independence_sampler_reaches_a_prior_dominated_tail(monkeypatch, tails, ok):
    """The chain's mass of logit q below −5 against the 1-D integral of the known marginal
    (prior × likelihood of logit q: the other coordinates are independent of it): within 4
    Monte Carlo SE, with an ESS of the indicator of at least 300 of the 4,000 kept draws.
    Without the tail components (the sampler of round 12) the chain sticks in the tail: over
    seeds 0–5 the ESS was 35–115 and the mass 0.06–0.20 against 0.213 (with them: ESS
    611–1,023, mass 0.18–0.23), as on the SBC datasets with θ* q ≈ 10⁻³."""
    import arviz as az

    found = []
    real = S.tail_components

    def scan(*a):  # the components the sampler gets (none: the sampler of round 12)
        found.extend(real(*a) if tails else [])
        return found

    monkeypatch.setattr(S, "tail_components", scan)
    t = _FlatTail()
    p_ref = t.mass_below(-5.0)
    burn = 50
    _, _, chain, _, _ = S.sample_posterior(
        t, n_walkers=16, n_steps=300, seed=0, move="independence", burn=burn
    )
    if tails:  # one component, logit q's, about as wide as the prior
        ((_, c),) = found
        assert np.argmax(np.diag(c)) == t.iq and 0.5 * t.sg < np.sqrt(c[t.iq, t.iq]) < 2 * t.sg
    below = (chain[burn:, :, t.iq] < -5).astype(float)  # (steps, walkers)
    ess = float(az.ess(np.swapaxes(below, 0, 1)))
    p = below.mean()
    se = np.sqrt(p_ref * (1 - p_ref) / ess)
    assert (ess >= 300 and abs(p - p_ref) < 4 * se) == ok, (p, p_ref, se, ess)


def test_unmet_ess_floor_is_reported_with_its_fix(folder, tmp_path, capsys):
    """A floor out of reach: the run goes to max_steps, finishes, and says which parameter
    fell short and what to change (raise max_steps; move = "auto" when the independence
    move accepted < 20 %)."""
    cfg = tmp_path / "floor.toml"
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    cfg.write_text(CONFIG.replace("min_ess = 0 ", "min_ess = 1e9\nmax_steps = 60 "))
    rc, _, err = _run(["calibrate", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if "below min_ess" in ln)
    assert "after 60 steps" in line and "fix: " in line and "max_steps" in line
    m = json.loads((tmp_path / "out" / "structure_test" / "manifest.json").read_text())
    assert m["results"]["n_steps_run"] == 60
    assert ('move = "auto"' in line) == (m["results"]["acceptance"] < S.LOW_ACCEPTANCE)


def test_slice_sampler_reaches_a_prior_dominated_tail():
    """``move = "slice"`` (ensemble slice sampling) on the same target: the mass of logit q
    below −5 within 4 Monte Carlo SE of the 1-D integral, the SE from the smaller of the
    indicator's ESS and the ensemble's autocorrelation ESS. No tail components: a slice step
    finds the tail by stepping out along the walkers' differences."""
    import arviz as az

    from tregsim.calibrate.likelihood import ensemble_ess

    t = _FlatTail()
    p_ref = t.mass_below(-5.0)
    burn = 100
    _, _, chain, acc, tm = S.sample_posterior(
        t, n_walkers=22, n_steps=700, seed=0, move="slice", burn=burn
    )
    assert acc == 1.0 and 3 < tm["evals_per_walker_step"] < 12
    below = (chain[burn:, :, t.iq] < -5).astype(float)
    ess = min(float(az.ess(np.swapaxes(below, 0, 1))), ensemble_ess(chain[burn:]))
    se = np.sqrt(p_ref * (1 - p_ref) / ess)
    assert ess >= 300 and abs(below.mean() - p_ref) < 4 * se, (below.mean(), p_ref, se, ess)


def test_slice_ess_floor_extends_the_same_chain():
    """The ESS floor with ``move = "slice"``: the first ``n_steps`` are the run without it,
    step for step; an unreachable floor stops at ``max_steps``."""
    t = _RoughGaussian()
    kw = dict(n_walkers=22, n_steps=60, seed=3, move="slice", burn=20)
    _, _, base, _, _ = S.sample_posterior(t, **kw)
    _, _, capped, _, _ = S.sample_posterior(t, min_ess=1e6, max_steps=140, **kw)
    assert base.shape == (60, 22, t.dim) and capped.shape[0] == 140
    np.testing.assert_array_equal(capped[:60], base)


@pytest.mark.parametrize("low, switched", [(1.01, True), (0.0, False)])
def test_auto_move_switches_to_slice_below_the_acceptance_threshold(monkeypatch, low, switched):
    """``move = "auto"``: when the independence move's acceptance after the burn-in is below
    :data:`LOW_ACCEPTANCE`, the chain is the one ``move = "slice"`` gives with max(2·d, even)
    walkers, draw for draw; otherwise it is the independence move's. The threshold is set so
    that one run must switch and the other must not."""
    monkeypatch.setattr(S, "LOW_ACCEPTANCE", low)
    t = _RoughGaussian()
    kw = dict(n_steps=40, seed=3, burn=16)
    _, lp, chain, acc, tm = S.sample_posterior(t, n_walkers=15, move="auto", **kw)
    ref = (
        S.sample_posterior(t, n_walkers=22, move="slice", **kw)
        if switched
        else S.sample_posterior(t, n_walkers=15, move="independence", **kw)
    )
    np.testing.assert_array_equal(chain, ref[2])
    assert lp == ref[1] and acc == ref[3]
    assert tm["switched_to_slice"] == float(switched)
    assert 0.0 < tm["independence_acceptance"] < 1.0


def test_auto_move_decides_before_the_ess_floor(monkeypatch):
    """With an ESS floor, ``move = "auto"`` decides on the first ``n_steps``: a switching run
    never extends the independence chain (no ESS is taken of its 15 walkers), and its chain is
    the slice move's with the same floor."""
    monkeypatch.setattr(S, "LOW_ACCEPTANCE", 1.01)
    seen = []
    real = S.chain_ess

    def spy(kept):
        seen.append(kept.shape[1])
        return real(kept)

    monkeypatch.setattr(S, "chain_ess", spy)
    t = _RoughGaussian()
    kw = dict(n_steps=40, seed=3, burn=16, min_ess=1e6, max_steps=64)
    _, _, chain, _, tm = S.sample_posterior(t, n_walkers=15, move="auto", **kw)
    assert tm["switched_to_slice"] == 1.0 and 15 not in seen and chain.shape[:2] == (64, 22)
    ref = S.sample_posterior(t, n_walkers=22, move="slice", **kw)[2]
    np.testing.assert_array_equal(chain, ref)


def test_auto_move_is_reported_and_recorded(folder, tmp_path, capsys, monkeypatch):
    """``tregsim calibrate`` with ``move = "auto"`` that switches: the summary line says so
    with the acceptance that decided, and the posterior file and manifest name the sampler
    used and its walkers."""
    import arviz as az

    monkeypatch.setattr(S, "LOW_ACCEPTANCE", 1.01)
    cfg = tmp_path / "auto.toml"
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    cfg.write_text(CONFIG.replace("n_walkers = 22", 'n_walkers = 16\nmove = "auto"'))
    rc, out, err = _run(["calibrate", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert "move auto (switched: independence acceptance" in out
    assert "ensemble slice sampling: 22 walkers" in out
    post = az.from_netcdf(tmp_path / "out" / "structure_test.nc").posterior
    assert (post.attrs["move"], post.attrs["move_used"], post.sizes["chain"]) == (
        "auto",
        "slice",
        22,
    )
    m = json.loads((tmp_path / "out" / "structure_test" / "manifest.json").read_text())
    assert m["results"]["timings_s"]["switched_to_slice"] == 1.0


def test_adaptive_eta_nodes_from_the_config(folder, tmp_path, capsys):
    """``[method] eta_nodes = "adaptive"``: ``tregsim calibrate`` runs on it, says so in its
    progress line, records it in the manifest's settings, and its quadrature check refines the
    adaptive nodes (2n − 1 of them)."""
    cfg = tmp_path / "eta.toml"
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    cfg.write_text(CONFIG.replace("n_eta = 9", 'n_eta = 9\neta_nodes = "adaptive"'))
    rc, _, err = _run(["calibrate", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert "(zeta adaptive, eta adaptive)" in err
    m = json.loads((tmp_path / "out" / "structure_test" / "manifest.json").read_text())
    assert m["settings"]["method"]["eta_nodes"] == "adaptive"
    assert m["results"]["quadrature_check"]["refined_nodes"] == "17 x 17"


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def run_a(folder):
    out = folder / "out_a"
    rc = main(["calibrate", str(folder / "s.toml"), "--out", str(out), "--quiet"])
    return rc, out / "structure_test"  # published layout: NAME/ beside NAME.nc


def test_cli_writes_contract_posterior_and_files(run_a):
    import arviz as az

    rc, out = run_a
    assert rc == 0
    idata = az.from_netcdf(out.with_suffix(".nc"))
    post = idata.posterior
    contract = {
        "lambda_ref",
        "gamma_a",
        "omega_lambda",
        "q",
        "beta_c",
        "beta_lin",
        "sigma_meas",
        "kappa",
        "s0",
        "k_re",
    }
    assert contract <= set(post.data_vars)
    assert {"sigma_bio", "tau_bio", "sigma"}.isdisjoint(post.data_vars)
    assert post.sizes["chain"] == 22 and post.sizes["draw"] == (40 - 10) // 2
    assert np.all(post["s0"].values == 0.41) and np.all(post["k_re"].values == 0.02)
    assert post["lambda_ref"].attrs["units"] == "1/day"
    assert post["beta_lin"].attrs["units"] == "1/(nmol/L)"
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["inputs"]) == {"config", "data", "model"}
    assert all(not Path(v["path"]).is_absolute() for v in m["inputs"].values())
    assert m["seed"] == 7 and m["settings"]["method"]["kind"] == "structure_likelihood"
    assert m["results"]["n_steps_run"] == 40 and m["results"]["min_ess"] == 0
    qc = m["results"]["quadrature_check"]
    assert qc["refined_nodes"] == "17 x 17" and qc["n_points"] == S.QUADRATURE_CHECK_DRAWS + 1
    ppc = pd.read_csv(out / "predictive_check.csv")
    assert (ppc["n_participants"] >= 5).all()
    assert (ppc.loc[ppc.group != "all", "n_participants"] >= 20).all()
    assert {"mean_ln_x_plus_1", "ancova_slope", "ancova_resid_sd", "corr_baseline"} <= set(
        ppc.statistic
    )
    assert ppc["predictive_p"].between(0, 1).all()
    s = pd.read_csv(out / "summary.csv")
    assert {"rhat", "ess_bulk", "autocorr_time_steps", "contraction"} <= set(s.columns)
    for f in ("trace.png", "prior_posterior.png"):
        assert (out / "figures" / f).stat().st_size > 1000


@pytest.mark.slow
def test_recovers_known_structure_from_synthetic_records(table, tmp_path):
    """150 synthetic participants from TRUTH: every free parameter's truth within 4
    posterior SD of the posterior mean (≈ 4 min on a busy 2-core machine)."""
    rec = _synthetic(table, 150, 21)
    priors = {n: Prior(*_prior_args(n)) for n in V.CANDIDATES["lincovariate+power"][0]}
    like = V.StructureLikelihood(table, rec, n_zeta=21, n_eta=17)
    post = S.StructurePosterior(like, "lincovariate+power", priors)
    _, _, chain, _, _ = S.sample_posterior(
        post, n_walkers=16, n_steps=300, seed=3, move="independence", burn=50
    )
    for k, n in enumerate(post.free):
        x = V._from_u(n, chain[50:, :, k]).ravel()
        assert abs(x.mean() - TRUTH[n]) < 4 * x.std(), (n, x.mean(), x.std(), TRUTH[n])


def _prior_args(name):
    import tomllib

    t = tomllib.loads(PRIORS)["parameters"]["priors"][name]
    return t["dist"], {k: float(v) for k, v in t.items() if k != "dist"}


def test_q_random_effect_likelihood_matches_monte_carlo(table):
    """Quadrature with a random effect on q (logit q_i = logit q + ω_q ξ_i, Gauss–Hermite)
    against plain Monte Carlo over (ζ, η, ξ) for one participant (independent visits)."""
    from scipy import special

    th = TRUTH | {"omega_q": 0.8, "q": 0.3}
    days = np.array([0.0, 182.0, 365.0, 730.0])
    y = np.array([0.7, 0.55, 0.42, 0.2])
    rec = V.Records(
        ids=np.array(["p"]),
        study=np.array(["s"]),
        age_years=np.array([14.0]),
        visit_patient=np.zeros(4, int),
        visit_day=days,
        visit_month=np.array([0.0, 6.0, 12.0, 24.0]),
        y=y,
    )
    quad = V.StructureLikelihood(table, rec, n_zeta=41, n_eta=41, n_xi=9).per_patient(th)[0]
    with pytest.raises(ValueError, match="n_xi"):
        V.StructureLikelihood(table, rec, n_zeta=9, n_eta=9).per_patient(th)
    rng = np.random.default_rng(0)
    M = 100_000
    zeta, eta, xi = rng.standard_normal((3, M))
    la = np.log(14.0 / 10)
    lev = th["mu_c"] + th["mu_a"] * la + th["s_c"] * zeta
    loglam = (
        np.log(th["lambda_ref"])
        - th["gamma_a"] * la
        - th["beta_c"] * (lev - V.LOG_CREF)
        - th["beta_lin"] * (np.exp(lev) - 0.6)
        + th["omega_lambda"] * eta
    )
    qi = special.expit(special.logit(th["q"]) + th["omega_q"] * xi)
    logmu = (
        lev[:, None]
        + table(loglam[:, None], qi[:, None], 60.0 + days[None])
        - table(loglam[:, None], qi[:, None], np.array([[60.0]]))
    )
    sd = th["sigma_meas"] * np.exp(-th["kappa"] * (logmu - V.LOG_CREF))
    dens = np.exp(stats.norm.logpdf(np.log(y)[None], logmu, sd).sum(1))
    mc = np.log(dens.mean()) - np.log(y).sum()
    se = dens.std() / dens.mean() / np.sqrt(M)
    assert quad == pytest.approx(mc, abs=max(4 * se, 0.02))


class _SetNormals:
    """A generator whose first ``standard_normal`` calls return the given arrays (ζ, then η),
    the rest from a real generator."""

    def __init__(self, arrays, seed: int = 0):
        self._next = list(arrays)
        self._g = np.random.default_rng(seed)

    def standard_normal(self, shape):
        return self._next.pop(0) if self._next else self._g.standard_normal(shape)

    def __getattr__(self, name):
        return getattr(self._g, name)


def test_simulated_course_is_the_likelihoods_at_the_same_random_effects(table):
    """What the SBC simulates and what the likelihood integrates are the same curve: with no
    within-patient deviation, ``simulate_records`` at ζ and η set to a quadrature node gives
    the likelihood's ``log_mu`` column of that node at every visit (round 27: β's remaining
    over-confidence on the hard SBC sets is not a mismatch between the two), including
    hazards beyond the table's ln λ grid and q between its nodes."""
    rec = _synthetic(table, 12, 5)
    like = V.StructureLikelihood(table, rec, n_zeta=5, n_eta=7)
    P = len(rec.ids)
    for th in (TRUTH | {"q": 0.137}, TRUTH | {"lambda_ref": 0.4, "omega_lambda": 1.4}):
        th = th | {"sigma_meas": 0.0, "inv_nu": 0.3}
        logmu = like.log_mu(th)  # (V, Z·E), ζ major
        for j in (0, 2, 4):
            for k in (0, 3, 6):
                z = np.full((1, P), like.zeta[j])
                e = np.full((1, P), like.eta[k])
                y = V.simulate_records(table, th, rec, _SetNormals([z, e]), below_lloq="keep")
                np.testing.assert_allclose(
                    np.log(y[0]), logmu[:, j * like.eta.size + k], rtol=0, atol=1e-12
                )
