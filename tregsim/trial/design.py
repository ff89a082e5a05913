"""Replicate-trial data and a synthetic (statistical, not mechanistic) trial generator.

:class:`TrialData` holds R replicate trials of M screened patients each, in screening order.
Any generator — the synthetic one below or the model-based one in
:mod:`tregsim.trial.virtual` — fills the same container, and :mod:`tregsim.trial.power`
analyses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError
from tregsim.trial import allocation as _alloc


@dataclass(frozen=True)
class TrialData:
    """R replicate trials × M screened patients (slots in screening order).

    baseline_auc_nmol_l : (R, M) MMTT 2-h AUC mean C-peptide at the baseline visit, nmol/L.
    endpoint_auc_nmol_l : (R, M) the same at the endpoint visit; NaN = dropout / missing.
    age_years : (R, M) age at baseline, years.
    arm : (R, M) bool, True = treatment (Treg) arm.
    true_effect : (R,) true treatment effect of each replicate on the ln(AUC+1) scale
        (treatment − control), or None if unknown. For assurance it varies across replicates.
    effect_label : how the effect was specified (printed on figures, written to CSV).
    prognostic_ln_auc_plus_1 : (R, M) each participant's twin-predicted ln(AUC+1) under
        control at the endpoint, from pre-randomization data only (``ancova_prognostic``),
        or None.
    """

    baseline_auc_nmol_l: np.ndarray
    endpoint_auc_nmol_l: np.ndarray
    age_years: np.ndarray
    arm: np.ndarray
    true_effect: np.ndarray | None = None
    effect_label: str = ""
    info: dict = field(default_factory=dict)
    prognostic_ln_auc_plus_1: np.ndarray | None = None

    def __post_init__(self):
        shape = np.shape(self.endpoint_auc_nmol_l)
        names = ["baseline_auc_nmol_l", "age_years", "arm"]
        if self.prognostic_ln_auc_plus_1 is not None:
            names.append("prognostic_ln_auc_plus_1")
        for name in names:
            if np.shape(getattr(self, name)) != shape:
                raise ArgumentError(
                    f"{name} has shape {np.shape(getattr(self, name))}, expected {shape}",
                    field=name,
                    fix="give every array the shape (n_trials, n_slots)",
                )
        if len(shape) != 2:
            raise ArgumentError(
                f"arrays must be 2-D (n_trials, n_slots), got shape {shape}",
                field="endpoint_auc_nmol_l",
                fix="stack replicate trials on the first axis",
            )

    @property
    def n_trials(self) -> int:
        return int(np.shape(self.arm)[0])

    def max_per_arm(self) -> int:
        """Largest N per arm that every replicate can enrol."""
        a = np.asarray(self.arm, dtype=bool)
        return int(min(a.sum(axis=1).min(), (~a).sum(axis=1).min()))


# Defaults derived from the placebo arms of five TrialNet/ITN new-onset trials (AbATE, START,
# T1DAL, TN02, TN05; Dufort et al., JCI Insight 2019;4:e125556) in ../shared/data:
# baseline ln(AUC+1) mean 0.536, SD 0.193 (n = 115, placebo_cpeptide_by_age_month.csv, month 0);
# month-12 OLS ln(y12+1) = −0.239 + 0.964·ln(y0+1) + 0.00463·age, residual SD 0.165, R² 0.59
# (n = 100 participants with both visits, derived from placebo_cpeptide_individual.csv).
SYNTHETIC_DEFAULTS = {
    "baseline_log_mean": 0.536,
    "baseline_log_sd": 0.193,
    "intercept": -0.239,
    "slope_baseline": 0.964,
    "slope_age_per_year": 0.00463,
    "residual_sd": 0.165,
    "age_min_years": 8.0,
    "age_max_years": 65.0,
}


def synthetic_trials(
    seed: int,
    n_trials: int,
    n_max_per_arm: int,
    *,
    effect: float | np.ndarray = 0.0,
    effect_label: str | None = None,
    allocation: _alloc.LogisticAllocation | None = None,
    dropout: float = 0.0,
    floor_nmol_l: float | None = 0.0,
    start: int = 0,
    **overrides: float,
) -> TrialData:
    """Synthetic trials from a normal linear model on ln(AUC+1) (TrialNet placebo defaults).

    ln(y+1) = intercept + slope_baseline·ln(c0+1) + slope_age·age + effect·arm + ε,
    ε ~ N(0, residual_sd²); ln(c0+1) ~ N(baseline_log_mean, baseline_log_sd²) clipped at 0;
    age ~ U(age_min_years, age_max_years) (NCT06708780 enrols ages 8–65).

    Parameters
    ----------
    seed, start : replicate ``start + r`` always gets the same patients.
    n_trials : R. n_max_per_arm : the largest N per arm that will be analysed.
    effect : true treatment effect on the ln(AUC+1) scale; scalar or (R,) per-replicate draws
        (assurance). ``exp(effect)`` is the ratio of geometric means of (AUC+1).
    allocation : None = randomized 1:1; a :class:`LogisticAllocation` = non-randomized.
    dropout : probability that an enrolled patient has no endpoint (NaN).
    floor_nmol_l : AUC values below it are set to it (C-peptide cannot be negative); None
        keeps the pure normal model (for exact tests).
    overrides : any key of :data:`SYNTHETIC_DEFAULTS`.

    Returns
    -------
    TrialData with M = 2·n_max_per_arm slots (randomized) or enough screened slots that every
    replicate fills both arms (non-randomized).
    """
    bad = set(overrides) - set(SYNTHETIC_DEFAULTS)
    if bad:
        raise ArgumentError(
            f"unknown synthetic parameter(s) {sorted(bad)}",
            field="overrides",
            fix=f"use any of {sorted(SYNTHETIC_DEFAULTS)}",
        )
    if not 0 <= dropout < 1:
        raise ArgumentError(
            f"dropout must be in [0, 1), got {dropout}", field="dropout", fix="use e.g. 0.1"
        )
    p = {**SYNTHETIC_DEFAULTS, **overrides}
    R = int(n_trials)
    eff = np.broadcast_to(np.asarray(effect, dtype=float), (R,)).copy()
    m = 2 * int(n_max_per_arm)
    while True:
        cov = _rng.draw(
            seed, f"trial.synthetic.covariates.{m}", start, start + R, _patient_draws(m)
        )
        lb = np.maximum(p["baseline_log_mean"] + p["baseline_log_sd"] * cov["z"], 0.0)
        age = p["age_min_years"] + (p["age_max_years"] - p["age_min_years"]) * cov["u"]
        base = np.expm1(lb)
        if allocation is None:
            arm = _alloc.randomized(seed, R, n_max_per_arm, start=start)
            break
        _alloc.check_allocation(allocation)
        arm = _alloc.logistic(seed, age, base, allocation, start=start)
        if _alloc.arms_filled(arm, n_max_per_arm).all():
            break
        m *= 2  # deterministic: the pool size depends only on the inputs and the seed
    ly = (
        p["intercept"]
        + p["slope_baseline"] * lb
        + p["slope_age_per_year"] * age
        + eff[:, None] * arm
        + p["residual_sd"] * cov["e"]
    )
    y = np.expm1(ly)
    if floor_nmol_l is not None:
        y = np.maximum(y, floor_nmol_l)
    y = np.where(cov["d"] < dropout, np.nan, y)
    if effect_label is None:
        effect_label = _describe_effect(eff)
    return TrialData(
        base, y, age, arm, eff, effect_label, {"generator": "synthetic", **p, "dropout": dropout}
    )


def _patient_draws(m: int):
    """Block draw function: (n, m) normal/uniform variates per replicate trial."""

    def fn(g, n):
        return {
            "z": g.standard_normal((n, m)),
            "u": g.random((n, m)),
            "e": g.standard_normal((n, m)),
            "d": g.random((n, m)),
        }

    return fn


def _describe_effect(eff: np.ndarray) -> str:
    if np.all(eff == eff[0]):
        return f"effect ln-ratio {eff[0]:.3g} ({100 * np.expm1(eff[0]):+.0f}% (AUC+1))"
    return (
        f"effect ln-ratio mean {eff.mean():.3g}, SD {eff.std():.3g} "
        f"({100 * np.expm1(eff.mean()):+.0f}% (AUC+1) at the mean)"
    )


def draw_effects(seed: int, n_trials: int, mean: float, sd: float, *, start: int = 0):
    """(R,) true effects on the ln(AUC+1) scale for assurance: N(mean, sd²) per replicate."""
    if sd < 0:
        raise ArgumentError(f"sd must be ≥ 0, got {sd}", field="effect_sd", fix="use sd ≥ 0")
    z = _rng.draw(seed, "trial.effect", start, start + n_trials, lambda g, n: g.standard_normal(n))
    return mean + sd * z
