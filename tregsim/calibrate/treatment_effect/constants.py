"""Design constants from virtual trials at one point: the correlation of a trial's estimates at
two endpoints, and the target trial's outcome SD and covariate correlation (for closed-form
power). Both depend on the patients' variability, not on φ, so one point (φ = the model
file's value) is enough."""

from __future__ import annotations

import dataclasses

import numpy as np

from tregsim.calibrate.treatment_effect.designs import DEFAULT_VARIABILITY, THETA_NAMES, _Prepared


def replicate_estimates(
    design,
    n_trials: int,
    seed: int,
    nh_draws,
    theta: np.ndarray,
    variability: str = DEFAULT_VARIABILITY,
) -> dict:
    """Replicate virtual trials of ``design`` at one point θ (5,): month → AnalysisResult
    (``variability`` as in :mod:`~tregsim.calibrate.treatment_effect.designs`)."""
    from tregsim.cohort import simulate_arms
    from tregsim.trial.endpoints import analyse_trials

    prep = _Prepared(design, n_trials * design.n_trial, seed, nh_draws, variability)
    exp = design.experiment
    pop = dataclasses.replace(
        prep.pop, params=prep.pop.params.replace(**dict(zip(THETA_NAMES, theta, strict=True)))
    )
    y = {}
    for a in design.treated:
        mu = simulate_arms(exp, pop, arms={a: exp.arms[a]}, rtol=1e-6, atol=1e-9)[a]
        y[a] = prep.observe(mu, pop)
    N, R = design.n_trial, prep.n_rep
    k = N * R
    lab = prep.alloc
    out = {}
    for m in design.months:
        j = design.visit_index(m)
        end = np.where(lab == design.control, prep.control_y[:k, j], np.nan)
        base = np.where(lab == design.control, prep.control_y[:k, 0], np.nan)
        for a in design.treated:
            sel = lab == a
            end[sel] = y[a][:k, j][sel]
            base[sel] = y[a][:k, 0][sel]
        age = np.asarray(pop.covariates["age"], float)[:k]
        out[m] = analyse_trials(
            end.reshape(R, N),
            base.reshape(R, N),
            age.reshape(R, N),
            (lab != design.control).reshape(R, N),
            tests=(design.analysis,),
        )[design.analysis]
    return out


def endpoint_correlation(
    design, months, n_trials: int, seed: int, nh_draws, theta, variability=DEFAULT_VARIABILITY
) -> float:
    """Correlation across replicate virtual trials of the estimates at two endpoint months."""
    res = replicate_estimates(design, n_trials, seed, nh_draws, theta, variability)
    a, b = res[months[0]].estimate, res[months[1]].estimate
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def outcome_sd_and_rho(
    design, month: float, n_patients: int, seed: int, nh_draws, variability=DEFAULT_VARIABILITY
) -> tuple:
    """SD of ln(AUC+1) at ``month`` in the control arm (observed, nmol/L) and its multiple
    correlation with ln(baseline AUC+1) and age (years): the ``sd`` and ``rho`` of
    :func:`tregsim.trial.closed_form.power_ancova`."""
    prep = _Prepared(design, n_patients, seed, nh_draws, variability)
    j = design.visit_index(month)
    y = np.log1p(prep.control_y[:, j])
    X = np.column_stack(
        [
            np.ones(prep.n),
            np.log1p(prep.control_y[:, 0]),
            np.asarray(prep.pop.covariates["age"], float),
        ]
    )
    ok = np.isfinite(y) & np.isfinite(X).all(1)
    beta, *_ = np.linalg.lstsq(X[ok], y[ok], rcond=None)
    r2 = 1 - np.var(y[ok] - X[ok] @ beta) / np.var(y[ok])
    return float(np.std(y[ok], ddof=1)), float(np.sqrt(max(r2, 0.0)))
