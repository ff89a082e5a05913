"""Model-based virtual trials: patient mapping, assay noise, chunk invariance, type I error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tregsim.cohort import simulate_arms
from tregsim.errors import ArgumentError
from tregsim.experiment import load_experiment
from tregsim.population import sample_population
from tregsim.trial.power import simulated_power
from tregsim.trial.virtual import virtual_trials

EXP = Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml"
SEED = 7


@pytest.fixture(scope="module")
def exp():
    if not EXP.exists():
        pytest.skip(f"{EXP} not found")
    return load_experiment(EXP)


def test_each_slot_is_one_patient_in_its_allocated_arm(exp):
    """With σ = 0 the observed values are the noise-free model values of the patients
    [r·M, (r+1)·M) simulated directly, taken from the arm each was allocated to."""
    R, nmax = 4, 3
    m = 2 * nmax
    d = virtual_trials(
        exp,
        n_trials=R,
        n_max_per_arm=nmax,
        seed=SEED,
        theta={"phi": 50.0, "sigma": 0.0},
        variability="lumped",  # σ = 0: the lumped observation is the noise-free value
        progress=False,
    )
    pop = sample_population(exp, R * m, SEED, theta={"phi": 50.0, "sigma": 0.0})
    month12 = int(np.nonzero(exp.visit_months == 12)[0][0])
    ref = simulate_arms(exp, pop, times=exp.visits_days[[0, month12]])
    t = ref[exp.treatment_arms[0]].reshape(R, m, 2)
    c = ref[exp.control_arm].reshape(R, m, 2)
    want = np.where(d.arm[:, :, None], t, c)
    lloq = 0.017
    want = np.where(want < lloq, lloq / 2, want)
    np.testing.assert_allclose(d.baseline_auc_nmol_l, want[:, :, 0], rtol=1e-12)
    np.testing.assert_allclose(d.endpoint_auc_nmol_l, want[:, :, 1], rtol=1e-12)
    np.testing.assert_allclose(d.age_years, pop.covariates["age"].reshape(R, m))
    assert np.all(d.arm.sum(axis=1) == nmax)
    # the true effect is the mean paired difference of ln(AUC+1) at the endpoint
    np.testing.assert_allclose(d.true_effect, (np.log1p(t[:, :, 1]) - np.log1p(c[:, :, 1])).mean(1))
    assert np.all(d.true_effect > 0)
    # paired simulation of only the first 2 slots: same outcomes, effect from those 2 slots
    d2 = virtual_trials(
        exp,
        n_trials=R,
        n_max_per_arm=nmax,
        seed=SEED,
        effect_patients=2,
        theta={"phi": 50.0, "sigma": 0.0},
        variability="lumped",  # σ = 0: the lumped observation is the noise-free value
        progress=False,
    )
    np.testing.assert_allclose(d2.endpoint_auc_nmol_l, d.endpoint_auc_nmol_l, rtol=1e-12)
    np.testing.assert_allclose(
        d2.true_effect, (np.log1p(t[:, :2, 1]) - np.log1p(c[:, :2, 1])).mean(1), rtol=1e-10
    )


def test_assay_noise_has_the_model_sigma_and_chunks_do_not_matter(exp):
    kw = dict(
        n_trials=8, n_max_per_arm=4, seed=SEED, theta={"phi": 2.0}, progress=False,
        variability="lumped",  # the model's one residual sigma (records: tests/test_trial_variability.py)
    )  # fmt: skip
    a = virtual_trials(exp, chunk_size=8, **kw)
    b = virtual_trials(exp, chunk_size=3, **kw)
    np.testing.assert_array_equal(a.endpoint_auc_nmol_l, b.endpoint_auc_nmol_l)
    np.testing.assert_array_equal(a.baseline_auc_nmol_l, b.baseline_auc_nmol_l)
    quiet = virtual_trials(exp, chunk_size=8, **{**kw, "theta": {"phi": 2.0, "sigma": 0.0}})
    r = np.log(
        np.stack(
            [
                a.baseline_auc_nmol_l / quiet.baseline_auc_nmol_l,
                a.endpoint_auc_nmol_l / quiet.endpoint_auc_nmol_l,
            ]
        )
    ).ravel()
    sigma = float(exp.model.defaults()["sigma"])
    # 128 log-ratios: sample SD within ±30 % of σ (≈ 3.4 SE of an SD estimate)
    assert abs(r.std() / sigma - 1) < 0.30
    assert abs(r.mean()) < 4 * sigma / np.sqrt(r.size)


@pytest.mark.slow
def test_type_one_error_without_therapy_effect(exp):
    """φ = 0: infused cells do nothing, so a randomized trial rejects at rate α."""
    R = 200
    d = virtual_trials(
        exp,
        n_trials=R,
        n_max_per_arm=10,
        seed=SEED,
        theta={"phi": 0.0},
        progress=False,
        dropout=0.1,
    )
    assert np.abs(d.true_effect).max() < 1e-3  # φ = 0 leaves a negligible model effect
    res = simulated_power(d, [10], tests=("ancova", "welch"))
    se = np.sqrt(0.05 * 0.95 / R)
    for t in ("ancova", "welch"):
        assert abs(res.power(t)[0] - 0.05) <= 3 * se, (t, res.power(t))


def test_bad_endpoint_month_names_the_fix(exp):
    with pytest.raises(ArgumentError, match=r"\[endpoint_month\].*fix: use one of"):
        virtual_trials(exp, n_trials=2, n_max_per_arm=2, seed=1, endpoint_month=7.0, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["observed", "noise-free"])
def test_non_randomized_virtual_trial_biases_naive_and_ancova_only_through_noise(exp, noise):
    """Model-based, records structure: 400 trials of 10 per arm at φ = 2 (true effect ≈ 0)
    under the default logistic allocation, which selects on each patient's *true* baseline
    C-peptide (the screening covariate). The naive comparison is biased either way. ANCOVA
    adjusts for the *measured* baseline: without measurement error (σ_meas = κ = 0) it blocks
    the selection and is unbiased; with it, part of the selection passes the adjustment
    (residual confounding by an error-prone covariate), so ANCOVA's bias is positive — the
    direction of the selection — and smaller than the naive one. Measured (round 5): naive
    +0.119 ± 0.005 / +0.082 ± 0.004, ANCOVA +0.020 ± 0.004 / −0.001 ± 0.002; round 16 (the
    baseline measured once): naive +0.105 ± 0.005 / +0.082 ± 0.004, ANCOVA +0.021 ± 0.004 /
    −0.001 ± 0.002."""
    from tregsim.trial.allocation import LogisticAllocation
    from tregsim.trial.power import allocation_bias

    theta = {"phi": 2.0} | ({"sigma_meas": 0.0, "kappa": 0.0} if noise == "noise-free" else {})
    d = virtual_trials(
        exp,
        n_trials=400,
        n_max_per_arm=10,
        seed=11,
        theta=theta,
        allocation=LogisticAllocation(),
        progress=False,
        chunk_size=100,
        variability="records",
    )
    b = allocation_bias(d, 10)
    nv, an = b["naive"], b["ancova"]
    assert nv["mean_bias"] > 0.06 and nv["mean_bias"] > 10 * nv["mc_se"]
    if noise == "noise-free":
        assert abs(an["mean_bias"]) < 3 * an["mc_se"] + 0.005
    else:
        assert an["mean_bias"] > 3 * an["mc_se"] and an["mean_bias"] < nv["mean_bias"]
    assert an["rmse"] < nv["rmse"]
