"""Observed MMTT C-peptide at each patient's own visits, with the structure of issue #14.

One measurement per patient and visit from the noise-free model value μ (nmol/L):

    log y = log μ + h(μ)·b(t) + σ_meas_eff·e,   h(μ) = (μ / 0.6 nmol/L)^(−κ)

* b: within-patient biological deviation, a stationary Ornstein–Uhlenbeck process on the log
  scale (SD ``sigma_bio``, correlation time ``tau_bio`` days), evaluated at the patient's
  visit days (exact AR(1) transitions between them);
* e ~ N(0, 1) independent: the MMTT test–retest error ``sigma_meas`` (Greenbaum 2008, see
  ``models/treg_t1d.toml``). When ``sigma_bio = 0`` the one residual carries the
  heteroscedastic factor: σ_meas_eff = σ_meas·h(μ); otherwise σ_meas_eff = σ_meas;
* values below the LLOQ are censored (returned as ``lloq`` with a flag).

The candidate structures and why this one: ``docs/calibration.md``, "Structure of individual
variability". Random numbers come from :mod:`tregsim.rng` stream ``stream`` indexed by
patient, so patient i gets the same measurements whatever the chunking. This module is the
structure's observation model until ``tregsim/observe.py`` takes it over (issue #14 phase 2).

:func:`solve_at_patient_times` gives noise-free values at per-patient visit days (each
patient's own baseline), the one place that knows whether the solver takes a
``(n_patients, n_times)`` ``times`` array.
"""

from __future__ import annotations

import numpy as np

from tregsim import rng as trng
from tregsim.errors import ArgumentError
from tregsim.units import LLOQ_NMOL_L

C_REF_NMOL_L = 0.6
"""Reference C-peptide of the heteroscedastic factor and the hazard covariate, nmol/L."""


def visit_normals(seed: int, stream: str, start: int, stop: int, n_visits: int) -> np.ndarray:
    """Standard normals (stop − start, 2, n_visits) for patients [start, stop): [:, 0] drives
    the OU path, [:, 1] the assay error. Patient i's numbers do not depend on chunking."""
    return trng.draw(seed, stream, start, stop, lambda g, n: g.standard_normal((n, 2, n_visits)))


def observe_visits(
    mean_nmol_l: np.ndarray,
    days: np.ndarray,
    normals: np.ndarray,
    *,
    sigma_meas: float | np.ndarray,
    sigma_bio: float | np.ndarray = 0.0,
    tau_bio: float | np.ndarray = 90.0,
    kappa: float | np.ndarray = 0.0,
    lloq: float = LLOQ_NMOL_L,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed C-peptide from noise-free values.

    Parameters
    ----------
    mean_nmol_l : (P, T) noise-free C-peptide, nmol/L (NaN for failed solves stays NaN).
    days : (T,) or (P, T) visit days (any origin; only differences matter), increasing per row.
    normals : (P, 2, T) standard normals (:func:`visit_normals`).
    sigma_meas, sigma_bio, tau_bio (days), kappa : scalars or (P,) per patient (e.g. posterior
        draws).

    Returns
    -------
    y : (P, T) observed nmol/L (censored values set to ``lloq``); censored : (P, T) bool.
    """
    mu = np.asarray(mean_nmol_l, float)
    P, T = mu.shape
    z = np.asarray(normals, float)
    if z.shape != (P, 2, T):
        raise ArgumentError(
            f"normals must have shape {(P, 2, T)}, got {z.shape}",
            field="normals",
            fix="draw them with visit_normals(seed, stream, start, stop, n_visits)",
        )
    d = np.broadcast_to(np.asarray(days, float), (P, T))
    if T > 1 and np.any(np.diff(d, axis=1) < 0):
        raise ArgumentError("visit days must increase per patient", field="days", fix="sort visits")

    def col(v):
        return np.broadcast_to(np.asarray(v, float), (P,))[:, None]

    sm, sb, tau, kap = col(sigma_meas), col(sigma_bio), col(tau_bio), col(kappa)
    if np.any(sm < 0) or np.any(sb < 0) or np.any(tau <= 0):
        raise ArgumentError(
            "sigma_meas, sigma_bio must be ≥ 0 and tau_bio > 0",
            field="sigma_meas/sigma_bio/tau_bio",
            fix="pass SDs on the log scale and a correlation time in days",
        )
    b = np.empty((P, T))
    b[:, 0] = z[:, 0, 0]
    for k in range(1, T):
        rho = np.exp(-(d[:, k] - d[:, k - 1]) / tau[:, 0])
        b[:, k] = rho * b[:, k - 1] + np.sqrt(1 - rho**2) * z[:, 0, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.exp(-kap * (np.log(mu) - np.log(C_REF_NMOL_L)))
        h = np.where(np.isfinite(h), h, 1.0)
        bio = sb > 0
        log_y = np.log(mu) + np.where(bio, h * sb * b, 0.0) + np.where(bio, sm, sm * h) * z[:, 1]
        y = np.exp(log_y)
    censored = y < lloq
    return np.where(censored, lloq, y), censored


def solve_at_patient_times(model, params, times: np.ndarray, doses=None, **solver_kw) -> np.ndarray:
    """Noise-free observable ``cpeptide`` (P, T) at per-patient ``times`` (P, T) days after
    diagnosis (each patient's own baseline + the visit schedule).

    Uses the solver's per-patient ``times`` when it takes them; otherwise solves on the sorted
    union of all times and picks each patient's columns (exact: the same solution evaluated
    at more output points).
    """
    from tregsim.solve import simulate_arrays

    times = np.asarray(times, float)
    if times.ndim == 1:
        times = np.broadcast_to(times, (params.n if hasattr(params, "n") else 1, times.size))
    try:
        res = simulate_arrays(model, params, doses, times=times, **solver_kw)
        out = res.observables["cpeptide"]
        if out.shape == times.shape:
            return out
    except ArgumentError:
        pass  # this solver takes one common time grid
    grid, inv = np.unique(times, return_inverse=True)
    res = simulate_arrays(model, params, doses, times=grid, **solver_kw)
    full = res.observables["cpeptide"]
    return np.take_along_axis(full, inv.reshape(times.shape), axis=1)
