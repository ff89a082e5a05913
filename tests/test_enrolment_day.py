"""Each patient's own enrolment day (``[population.t_baseline]``, issue #14 item 2): visits at
t_baseline_i + visit months and doses at t_baseline_i + (dose day − baseline_day).

Reference: the solver called once per patient with that patient's own 1-D visit days and 1-D
dose times (no per-patient time arrays, no shifting helper) — the cohort must equal it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tregsim.experiment import load_experiment
from tregsim.units import DAYS_PER_MONTH

ROOT = Path(__file__).resolve().parents[1]
FIXED = """distribution = "fixed"
value = 60.0
"""
UNIFORM = """distribution = "uniform"
low = 20.0
high = 100.0
"""


def _experiment(tmp_path, block: str):
    text = (ROOT / "experiments" / "nct06708780.toml").read_text(encoding="utf-8")
    assert FIXED in text
    p = tmp_path / "exp.toml"
    p.write_text(text.replace(FIXED, block), encoding="utf-8")
    return load_experiment(p)


def test_cohort_follows_each_patients_enrolment_day(tmp_path):
    from tregsim.cohort import run_cohort
    from tregsim.population.sampling import sample_population
    from tregsim.solve import Doses, simulate_arrays

    exp = _experiment(tmp_path, UNIFORM)
    n = 40
    res = run_cohort(exp, n, seed=3, progress=False, spaghetti_n=0)
    pop = sample_population(exp, n, 3)
    tb = np.asarray(pop.covariates["t_baseline"], float)
    assert tb.min() < 50 and tb.max() > 70  # really different days
    c = res.patients["cpeptide"]  # (n, arms, visits)
    arm_names = list(exp.arms)
    for i in range(n):
        one = pop.subset(np.array([i]))
        visits = tb[i] + (exp.visits_days - exp.baseline_day)
        for a, name in enumerate(arm_names):
            reg = exp.arms[name].regimen
            doses = None
            if getattr(reg, "infusion_day", None) is not None:
                t = reg.times_days - exp.baseline_day + tb[i]
                doses = Doses(time=t, amount=np.full(t.shape, reg.dose_per_kg), target="X")
            r = simulate_arrays(exp.model, one.params, doses=doses, times=visits)
            np.testing.assert_allclose(c[i, a], r.observables["cpeptide"][0], rtol=1e-6)
    # the baseline visit reproduces each patient's noise-free baseline MMTT (cpep0 solved at
    # their own day), in the control arm
    ctl = arm_names.index(exp.control_arm)
    np.testing.assert_allclose(c[:, ctl, 0], pop.covariates["cpep_baseline_true"], rtol=1e-4)


def test_fixed_enrolment_day_keeps_one_grid(tmp_path):
    from tregsim.cohort import baseline_offsets, simulate_arms
    from tregsim.population.sampling import sample_population

    exp = _experiment(tmp_path, FIXED)
    pop = sample_population(exp, 8, 0)
    assert baseline_offsets(exp, pop) is None
    assert simulate_arms(exp, pop).times.ndim == 1


def test_virtual_trials_follow_each_patients_enrolment_day(tmp_path):
    """σ = 0 (lumped observation = noise-free value): every slot equals a direct solve of
    that patient at their own baseline and 12-month days, in the allocated arm."""
    from tregsim.population.sampling import sample_population
    from tregsim.solve import Doses, simulate_arrays
    from tregsim.trial.virtual import virtual_trials

    exp = _experiment(tmp_path, UNIFORM)
    R, nmax, seed = 2, 3, 4
    m = 2 * nmax
    theta = {"phi": 50.0, "sigma": 0.0}
    d = virtual_trials(
        exp, n_trials=R, n_max_per_arm=nmax, seed=seed, theta=theta, variability="lumped",
        allocation=None, progress=False,
    )  # fmt: skip
    pop = sample_population(exp, R * m, seed, theta=theta)
    tb = np.asarray(pop.covariates["t_baseline"], float)
    treat = exp.arms[exp.treatment_arms[0]].regimen
    arm = d.arm.ravel()
    for i in range(R * m):
        one = pop.subset(np.array([i]))
        days = tb[i] + np.array([0.0, 12 * DAYS_PER_MONTH])
        doses = None
        if arm[i]:
            t = treat.times_days - exp.baseline_day + tb[i]
            doses = Doses(time=t, amount=np.full(t.shape, treat.dose_per_kg), target="X")
        c = simulate_arrays(exp.model, one.params, doses=doses, times=days)
        want = np.maximum(c.observables["cpeptide"][0], 0.017)  # no value near the LLOQ here
        got = [d.baseline_auc_nmol_l.ravel()[i], d.endpoint_auc_nmol_l.ravel()[i]]
        np.testing.assert_allclose(got, want, rtol=1e-6)
