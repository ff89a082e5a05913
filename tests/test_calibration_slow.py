"""Slow calibration checks: full SBC, individual-level MCMC, NPE vs likelihood agreement.

Run with ``pytest -m slow tests/test_calibration_slow.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tregsim
from tregsim.calibrate.config import load_config
from tregsim.calibrate.data import PatientData, load_patient_data
from tregsim.calibrate.simulator import DAYS_PER_MONTH, build_problem, simulate_cohorts, summarize

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "calibration" / "natural_history_npe.toml"
SHIPPED_NET = ROOT / "calibration" / "posteriors" / "natural_history_lumped" / "estimator.pt"
INDIVIDUAL = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"
MODEL = tregsim.load_model("treg_t1d")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problem():
    return build_problem(load_config(CONFIG))


def test_sbc_1000_datasets_coverage_within_5_points(problem):
    """Coverage of central 50 % / 90 % intervals within ±5 points of nominal, every parameter.

    1,000 fresh prior datasets (not the shipped SBC bank): the Monte-Carlo SE of a coverage is
    1.6 points at 50 % and 0.9 at 90 %, so ±5 points is ≥ 3 SE and a calibrated estimator
    fails this by chance with probability ~1 % over the 10 checks (at 300 datasets it would
    be ~35 %).
    """
    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.npe import load_estimator
    from tregsim.calibrate.simulator import simulate_summaries

    est = load_estimator(SHIPPED_NET)
    n = 1000
    z = problem.prior_z(777, 0, n)
    x = np.concatenate(
        [
            simulate_summaries(problem, problem.theta_from_z(z[i : i + 100]), 777, i)
            for i in range(0, n, 100)
        ]
    )
    ok = np.all(np.isfinite(x), axis=1)
    assert ok.mean() > 0.99
    zs = est.sample_z_batched(x[ok], 400, seed=2)
    for level in (0.5, 0.9):
        cov = diag.central_coverage(z[ok], zs, level)
        assert np.all(np.abs(cov - level) <= 0.05), (level, cov)


def _synthetic_long_format(problem, theta, seed):
    """One virtual placebo cohort as long-format data + its summaries (same noisy values)."""
    sim = simulate_cohorts(problem, theta[None, :], seed, 0)
    y = sim["cpeptide_nmol_l"][0]
    d = problem.data
    offs = np.r_[0, np.cumsum(problem.n_group)]
    pid, day, val = [], [], []
    for gi in range(len(d.groups)):
        for mi, month in enumerate(d.months):
            k = int(min(d.n_visit[gi, mi], problem.n_group[gi]))
            for p in range(offs[gi], offs[gi] + k):
                pid.append(p)
                day.append(month * DAYS_PER_MONTH)  # days since the baseline visit
                val.append(y[p, mi])
    data = PatientData(
        ids=np.arange(problem.n_patients).astype(str),
        age_years=sim["age_years"][0],
        visit_patient=np.asarray(pid),
        visit_day=np.asarray(day),
        cpeptide_nmol_l=np.asarray(val),
    )
    return data, summarize(problem, y[None])[0]


def test_npe_and_likelihood_posteriors_agree_on_synthetic_cohort(problem):
    """Same synthetic cohort: the shipped NPE on its summaries vs emcee on its records.

    They use different information (summaries vs every record), so the check is
    consistency, not identity: posterior means within 2 combined SDs, and the likelihood
    posterior no wider than the NPE one (more information) up to a 30 % margin. Coverage of
    the truth is SBC's job (a single dataset's 95 % intervals miss it 5 % of the time each;
    round 1 asserted it for 8 intervals, a test that fails by chance ~1 time in 3).
    """
    from tregsim.calibrate.likelihood import IndividualCalibration
    from tregsim.calibrate.npe import load_estimator

    # s0, k_re at the model values: the likelihood's curve table assumes them
    values = dict(lambda_ref=3e-3, gamma_a=0.9, omega_lambda=1.2, q=0.3, sigma=0.2)
    values |= {n: MODEL.defaults()[n] for n in problem.names if n not in values}
    truth = np.array([values[n] for n in problem.names])
    data, x = _synthetic_long_format(problem, truth, seed=31)
    est = load_estimator(SHIPPED_NET)
    npe = problem.theta_from_z(est.sample_z(x, 4000, seed=3))
    cal = IndividualCalibration(MODEL, data, baseline_day=problem.config.baseline_day)
    post = cal.sample(5, n_walkers=16, n_steps=700, burn=250, thin=2, n_starts=4, progress=False)
    lik = post.chains.reshape(-1, 7)
    for k, name in enumerate(cal.names[:5]):  # the population parameters both paths share
        j = problem.names.index(name)
        m1, s1, m2, s2 = npe[:, j].mean(), npe[:, j].std(), lik[:, k].mean(), lik[:, k].std()
        assert abs(m1 - m2) < 2 * np.hypot(s1, s2), (name, m1, s1, m2, s2)
        assert s2 < 1.3 * s1, (name, s1, s2)


@pytest.mark.skipif(
    not INDIVIDUAL.is_file(),
    reason=f"individual placebo data not found at {INDIVIDUAL} (it is not "
    "shipped with tregsim; see ../shared/data/README.md)",
)
def test_individual_calibration_on_placebo_records():
    from tregsim.calibrate.likelihood import IndividualCalibration

    data = load_patient_data(
        INDIVIDUAL,
        columns={
            "id": "participant_id",
            "day": "study_day",
            "cpeptide_nmol_l": "auc_mean_cpeptide_nmol_l",
            "age": "age_years",
        },
    )
    assert len(data.ids) == 118 and data.cpeptide_nmol_l.size == 599
    # study_day counts from randomisation (baseline MMTT at day −56…1); baseline_day = 60 puts
    # randomisation 60 d after diagnosis, as the NPE config and the experiments do
    cal = IndividualCalibration(MODEL, data, baseline_day=60.0)
    post = cal.sample(
        20261130, n_walkers=16, n_steps=700, burn=250, thin=2, n_starts=4, progress=False
    )
    assert post.map_logpost >= post.starts_logpost.max() - 1e-6
    assert 0.15 < post.acceptance < 0.7
    draws = post.draws()
    # the data show a clear decline and faster decline in the young
    assert np.quantile(draws["lambda_ref"], 0.05) > 5e-4
    assert np.quantile(draws["gamma_a"], 0.05) > 0.0
    # MAP lies inside the bulk of the MCMC draws
    for k, name in enumerate(cal.names):
        lo, hi = np.quantile(draws[name], [0.005, 0.995])
        assert lo <= post.map_theta[k] <= hi, name


# ------------------------------------------------------------ NPE vs the exact likelihood
# A case where both apply to the same data: 24 patients (ages 8–40 y) with MMTTs at days
# 0/91/182/365/730 after a day-60 baseline, generated from the likelihood's own model
# (log-normal baseline, log-normal λ0, log-normal assay noise, LLOQ/2 coding). The likelihood
# (IndividualCalibration) is exact for it; NPE (tregsim.calibrate.npe.train_npe) sees 21 pooled
# per-patient statistics instead of the records.
REC_P, REC_B, REC_LLOQ = 24, 60.0, 0.017
REC_AGES = np.linspace(8.0, 40.0, REC_P)
REC_DAYS = np.array([0.0, 91.0, 182.0, 365.0, 730.0])


def _records_logy(theta, seed):
    """theta (n, 7) = (λ_ref, γ_a, ω_λ, q, σ, μ_c, s_c) → log y (n, P, visits), one solve."""
    n = theta.shape[0]
    g = np.random.default_rng(seed)
    eta, zeta = g.standard_normal((n, REC_P)), g.standard_normal((n, REC_P))
    eps = g.standard_normal((n, REC_P, len(REC_DAYS)))
    lam, gam, om, q, sig, mu, sc = theta.T
    params = MODEL.parameters(
        n * REC_P,
        lambda_ref=np.repeat(lam, REC_P),
        gamma_a=np.repeat(gam, REC_P),
        q=np.repeat(q, REC_P),
        age=np.tile(REC_AGES, n),
        f_lambda=np.exp(om[:, None] * eta).ravel(),
        cpep0=1.0,
    )
    c = tregsim.simulate_arrays(MODEL, params, times=REC_B + REC_DAYS, rtol=1e-6, atol=1e-9)
    c = c.observables["cpeptide"].reshape(n, REC_P, len(REC_DAYS))
    level = np.exp(mu[:, None, None] + sc[:, None, None] * zeta[:, :, None])
    y = level * c / c[:, :, :1] * np.exp(sig[:, None, None] * eps)
    return np.log(np.where(y < REC_LLOQ, REC_LLOQ / 2, y))


def _record_summaries(logy):
    """(n, P, visits) → (n, 21): baseline mean/SD, decline ratios' mean/SD/age slope per visit,
    per-patient quadratic fit (in log(1 + day/100)) coefficients' mean/SD, residual variance."""
    tt = np.log1p(REC_DAYS / 100.0)
    X = np.column_stack([np.ones_like(tt), tt, tt**2])
    la = np.log(REC_AGES / 10.0)
    la = la - la.mean()
    r = logy[:, :, 1:] - logy[:, :, :1]
    coef = logy @ np.linalg.pinv(X).T
    resid = logy - coef @ X.T
    f = [logy[:, :, 0].mean(1), logy[:, :, 0].std(1)]
    f += [
        *r.mean(1).T,
        *r.std(1).T,
        *((r - r.mean(1, keepdims=True)) * la[None, :, None]).mean(1).T,
    ]
    f += [coef[:, :, 1].mean(1), coef[:, :, 1].std(1), coef[:, :, 2].mean(1), coef[:, :, 2].std(1)]
    f += [(resid**2).sum(2).mean(1) / 2.0]
    return np.stack(f, axis=1)


def _records(logy) -> PatientData:
    return PatientData(
        ids=np.array([f"p{i}" for i in range(REC_P)]),
        age_years=REC_AGES,
        visit_patient=np.repeat(np.arange(REC_P), len(REC_DAYS)),
        visit_day=np.tile(REC_DAYS, REC_P),
        cpeptide_nmol_l=np.exp(logy).ravel(),
    )


def test_npe_matches_the_exact_likelihood_on_the_same_records():
    """NPE (20,000 simulations) vs emcee on the exact marginal likelihood, 3 datasets.

    Measured (this setup): |Δ mean| / SD_lik 0.02–1.06, RMS over datasets ≤ 0.76 (q), SD ratio
    NPE/likelihood 0.82–1.45 (NPE sees summaries, so it is rarely narrower). Tolerances: RMS
    ≤ 1, every |Δ| ≤ 1.5 SD, SD ratio 0.7–1.7. A modelling mismatch fails by several SDs: NPE
    on the raw 120 log-values (no pooling) put σ 5.4 SD off with a 5× wider posterior.
    """
    from scipy import special

    from tregsim.calibrate.likelihood import IndividualCalibration
    from tregsim.calibrate.npe import train_npe

    shell = IndividualCalibration(
        MODEL, _records(np.zeros((REC_P, len(REC_DAYS)))), baseline_day=REC_B
    )

    def theta_from_z(z):
        u = np.clip(special.ndtr(z), 1e-12, 1 - 1e-12)
        return np.stack([p.ppf(u[..., k]) for k, p in enumerate(shell.priors)], axis=-1)

    n_sim = 20_000
    z = np.random.default_rng(1).standard_normal((n_sim, 7))
    th = theta_from_z(z)
    x = np.concatenate(
        [_record_summaries(_records_logy(th[i : i + 1000], 100 + i)) for i in range(0, n_sim, 1000)]
    )
    method = {
        "density_estimator": "maf",
        "hidden_features": 50,
        "num_transforms": 5,
        "training_batch_size": 200,
        "learning_rate": 5e-4,
        "stop_after_epochs": 20,
        "max_num_epochs": 400,
    }
    est, _ = train_npe(
        z, x, method=method, seed=0, names=shell.names,
        feature_names=[f"s{k}" for k in range(x.shape[1])], progress=False,
    )  # fmt: skip
    truth = np.array([[2.5e-3, 0.8, 0.6, 0.3, 0.2, np.log(0.6), 0.4]])
    shifts, ratios = [], []
    for rep in range(3):
        logy = _records_logy(truth, 7000 + rep)
        npe = theta_from_z(est.sample_z(_record_summaries(logy)[0], 8000, seed=3))
        cal = IndividualCalibration(MODEL, _records(logy[0]), baseline_day=REC_B, table=shell.table)
        post = cal.sample(
            5, n_walkers=32, n_steps=1500, burn=500, thin=5, n_starts=4, progress=False
        )
        lik = post.chains.reshape(-1, 7)
        shifts.append((npe.mean(0) - lik.mean(0)) / lik.std(0))
        ratios.append(npe.std(0) / lik.std(0))
    shifts, ratios = np.array(shifts), np.array(ratios)
    names = list(shell.names)
    assert np.all(np.sqrt((shifts**2).mean(0)) <= 1.0), dict(zip(names, shifts.T.round(2)))
    assert np.all(np.abs(shifts) <= 1.5), dict(zip(names, shifts.T.round(2)))
    assert np.all((ratios >= 0.7) & (ratios <= 1.7)), dict(zip(names, ratios.T.round(2)))
