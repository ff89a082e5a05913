"""Allocation of screened patients to arms: randomized 1:1 or a non-randomized logistic model.

Patients of a replicate trial sit in *slots* (columns) in the order they are screened. The
trial enrols the first ``N`` patients allocated to each arm, so the trial of size ``N`` per arm
is nested inside the trial of size ``N + 5``: power curves over ``N`` use common random
numbers (:func:`first_n_per_arm`).

NCT06708780 is open label and non-randomized: who receives Tregs is decided by participants
and clinicians. :class:`LogisticAllocation` makes that selection explicit,

    P(Treg arm) = logit⁻¹(β0 + β_age·z_age + β_c·z_c),
    z_age = (age − mean)/sd,  z_c = (ln(c0+1) − mean)/sd,

with mean and SD taken over the screened patients of each replicate trial. The defaults
β0 = 0, β_age = 0.5, β_c = 0.5 are an *assumption*, not data: older participants and those with
more residual C-peptide (c0 = MMTT AUC mean at baseline, nmol/L) are somewhat more likely to be
offered cell therapy (an odds ratio of e^0.5 ≈ 1.65 per SD). Vary them to see how much bias a
given selection produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from tregsim import rng as _rng
from tregsim.errors import ArgumentError


@dataclass(frozen=True)
class LogisticAllocation:
    """Non-randomized allocation: P(Treg) = logit⁻¹(β0 + β_age·z_age + β_c·z_c).

    beta0 : intercept on the logit scale (0 → about half of the screened get Tregs).
    beta_age : log-odds per SD of age (years).
    beta_cpep : log-odds per SD of ln(baseline MMTT AUC mean + 1) (nmol/L).
    """

    beta0: float = 0.0
    beta_age: float = 0.5
    beta_cpep: float = 0.5

    def probability(self, age_years: np.ndarray, baseline_auc_nmol_l: np.ndarray) -> np.ndarray:
        """(R, M) probability of the Treg arm for screened patients (standardized per row)."""
        za = _zscore(np.asarray(age_years, dtype=float))
        zc = _zscore(np.log1p(np.asarray(baseline_auc_nmol_l, dtype=float)))
        return special.expit(self.beta0 + self.beta_age * za + self.beta_cpep * zc)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    sd = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def randomized(seed: int, n_trials: int, n_max_per_arm: int, *, start: int = 0) -> np.ndarray:
    """1:1 randomization of 2·n_max_per_arm slots per trial (exactly n_max_per_arm per arm).

    Returns (n_trials, 2·n_max_per_arm) bool, True = treatment; trial ``start + r`` always
    receives the same allocation (stream ``"trial.allocation"``).
    """
    m = 2 * int(n_max_per_arm)

    def fn(g, n):
        return g.random((n, m)).argsort(axis=1) < n_max_per_arm

    return _rng.draw(seed, f"trial.allocation.randomized.{m}", start, start + n_trials, fn)


def logistic(
    seed: int,
    age_years: np.ndarray,
    baseline_auc_nmol_l: np.ndarray,
    model: LogisticAllocation,
    *,
    start: int = 0,
) -> np.ndarray:
    """Non-randomized allocation of screened patients: (R, M) bool, True = Treg arm.

    age_years, baseline_auc_nmol_l : (R, M) covariates of the screened patients, in order.
    """
    p = model.probability(age_years, baseline_auc_nmol_l)
    R, M = p.shape
    u = _rng.draw(
        seed, f"trial.allocation.logistic.{M}", start, start + R, lambda g, n: g.random((n, M))
    )
    return u < p


def first_n_per_arm(arm: np.ndarray, n_per_arm: int) -> np.ndarray:
    """(R, M) bool: the first ``n_per_arm`` slots of each arm of each trial (enrolled)."""
    arm = np.asarray(arm, dtype=bool)
    ct = np.cumsum(arm, axis=1)
    cc = np.cumsum(~arm, axis=1)
    return np.where(arm, ct <= n_per_arm, cc <= n_per_arm)


def arms_filled(arm: np.ndarray, n_per_arm: int) -> np.ndarray:
    """(R,) bool: each arm of the trial has at least ``n_per_arm`` screened patients."""
    arm = np.asarray(arm, dtype=bool)
    return (arm.sum(axis=1) >= n_per_arm) & ((~arm).sum(axis=1) >= n_per_arm)


def check_allocation(model: LogisticAllocation) -> None:
    """Reject coefficients that would leave one arm almost empty."""
    for name in ("beta0", "beta_age", "beta_cpep"):
        v = getattr(model, name)
        if not np.isfinite(v) or abs(v) > 5:
            raise ArgumentError(
                f"{name} = {v} is outside [-5, 5] on the logit scale",
                field=f"allocation.{name}",
                fix="use a log-odds between -5 and 5",
            )
