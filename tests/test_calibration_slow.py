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
SHIPPED_NET = ROOT / "calibration" / "posteriors" / "natural_history_estimator.pt"
INDIVIDUAL = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"
MODEL = tregsim.load_model("treg_t1d")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problem():
    return build_problem(load_config(CONFIG))


def test_sbc_300_datasets_coverage_within_5_points(problem):
    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.npe import load_estimator
    from tregsim.calibrate.simulator import simulate_summaries

    est = load_estimator(SHIPPED_NET)
    n = 300
    z = problem.prior_z(777, 0, n)
    x = np.concatenate(
        [
            simulate_summaries(problem, problem.theta_from_z(z[i : i + 100]), 777, i)
            for i in range(0, n, 100)
        ]
    )
    ok = np.all(np.isfinite(x), axis=1)
    zs = est.sample_z_batched(x[ok], 200, seed=2)
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
                day.append(month * DAYS_PER_MONTH)
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
    """Same synthetic cohort: NPE on its summaries vs emcee on its individual records.

    They use different information (summaries vs every record), so the check is
    consistency, not identity: posterior means within 2 combined SDs, both 95 % intervals
    cover the truth for the decline parameters, and the likelihood posterior is no wider
    than the NPE one (more information) up to a 30 % Monte-Carlo/approximation margin.
    """
    from tregsim.calibrate.likelihood import IndividualCalibration
    from tregsim.calibrate.npe import load_estimator

    truth = np.array([3e-3, 0.9, 1.2, 0.3, 0.2])
    data, x = _synthetic_long_format(problem, truth, seed=31)
    est = load_estimator(SHIPPED_NET)
    npe = problem.theta_from_z(est.sample_z(x, 4000, seed=3))
    cal = IndividualCalibration(MODEL, data)
    post = cal.sample(5, n_walkers=16, n_steps=700, burn=250, thin=2, n_starts=4, progress=False)
    lik = post.chains.reshape(-1, 7)[:, :5]
    for j, name in enumerate(problem.names):
        m1, s1, m2, s2 = npe[:, j].mean(), npe[:, j].std(), lik[:, j].mean(), lik[:, j].std()
        assert abs(m1 - m2) < 2 * np.hypot(s1, s2), (name, m1, s1, m2, s2)
        assert s2 < 1.3 * s1, (name, s1, s2)
    for j in range(4):
        for draws in (npe[:, j], lik[:, j]):
            lo, hi = np.quantile(draws, [0.025, 0.975])
            assert lo <= truth[j] <= hi, (problem.names[j], lo, hi, truth[j])


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
    cal = IndividualCalibration(MODEL, data)
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
