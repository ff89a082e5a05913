"""Virtual placebo cohorts for population calibration, batched over θ draws × patients.

For each θ draw a cohort with the data's age mix is simulated (per age group the month-0 n,
ages with the month-0 mean age), assay noise (log-normal, SD ``sigma`` on the log scale) and
LLOQ handling are added, and the cohort is reduced to the data table's summaries (per age
group × month after month 0: mean and SD of ln(x+1), fraction ≥ threshold), using at month m the first
``n[g, m]`` patients of group g, so the summaries carry the data's sampling noise.

Frame: data month m is model day ``baseline_day + 30.4375·m`` (``[cohort] baseline_day``, days
from diagnosis to the month-0 visit, as ``baseline_day`` in experiment files), so the posterior
applies unchanged to the experiments' cohorts.

Baseline: each patient's noise-free month-0 MMTT (``cpep0`` at diagnosis when
``baseline_day = 0``; otherwise the value at the baseline visit) is log-normal per age group
with the log-mean of the observed month-0 distribution and log-SD
``sqrt(sdlog_obs² − sigma²)`` (floor 0.05), so that with assay noise the simulated month-0
distribution matches the observed one: calibration is about the decline.

All θ draws of a chunk and all their patients go into ONE ``simulate_arrays`` call. Random
numbers come from :mod:`tregsim.rng` streams indexed by the θ item, so item i is identical
whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from tregsim import rng as trng
from tregsim.calibrate.config import CalibrationConfig
from tregsim.calibrate.data import SummaryData, load_summary
from tregsim.model.priors import Prior, parse_prior
from tregsim.observe import observe
from tregsim.units import DAYS_PER_MONTH

THETA_STREAM = "calibrate.theta"
COHORT_STREAM = "calibrate.cohort"
_U_CLIP = 1e-12


@dataclass(frozen=True)
class Problem:
    """Everything the simulator needs: model, priors, data design, options."""

    config: CalibrationConfig
    model: object
    names: tuple[str, ...]
    priors: tuple[Prior, ...]
    data: SummaryData
    age_lo: np.ndarray
    age_hi: np.ndarray
    age_beta_b: np.ndarray
    n_group: np.ndarray  # patients per group (month-0 n)

    @property
    def n_patients(self) -> int:
        return int(self.n_group.sum())

    @property
    def units(self) -> dict[str, str]:
        return {n: self.model.spec.parameters[n].unit for n in self.names}

    # --- prior transforms: z (standard normal) <-> θ ---------------------------------
    def theta_from_z(self, z: np.ndarray) -> np.ndarray:
        """θ (…, d) from standard-normal coordinates z = Φ⁻¹(F(θ))."""
        u = np.clip(special.ndtr(np.asarray(z, float)), _U_CLIP, 1 - _U_CLIP)
        return np.stack([p.ppf(u[..., j]) for j, p in enumerate(self.priors)], axis=-1)

    def z_from_theta(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, float)
        u = np.stack([p.frozen().cdf(theta[..., j]) for j, p in enumerate(self.priors)], -1)
        return special.ndtri(np.clip(u, _U_CLIP, 1 - _U_CLIP))

    def prior_z(self, seed: int, start: int, stop: int) -> np.ndarray:
        """Prior draws ``[start, stop)`` in z space (item i identical whatever the chunks)."""
        d = len(self.names)
        return trng.draw(seed, THETA_STREAM, start, stop, lambda g, n: g.standard_normal((n, d)))


def build_problem(config: CalibrationConfig) -> Problem:
    """Load model and data and derive the virtual-cohort design from the config."""
    from tregsim.model import load_model

    model = load_model(config.model)
    priors = []
    for name in config.calibrate:
        if name in config.prior_overrides:
            priors.append(
                parse_prior(
                    config.prior_overrides[name], file=config.path, key=f"parameters.priors.{name}"
                )
            )
        else:
            priors.append(model.spec.parameters[name].prior)
    data = load_summary(
        config.summary_path,
        config.age_groups,
        config.months,
        config.statistics,
        config.threshold_nmol_l,
    )
    lo = np.array([config.age_range_years[g][0] for g in data.groups])
    hi = np.array([config.age_range_years[g][1] for g in data.groups])
    frac = np.clip((data.mean_age_years - lo) / (hi - lo), 0.05, 0.95)
    b = 2.0 * (1.0 - frac) / frac  # Beta(2, b) has mean 2 / (2 + b) = frac
    return Problem(
        config=config,
        model=model,
        names=tuple(config.calibrate),
        priors=tuple(priors),
        data=data,
        age_lo=lo,
        age_hi=hi,
        age_beta_b=b,
        n_group=data.n_visit[:, 0].copy(),
    )


def _cohort_draws(problem: Problem, seed: int, start: int, stop: int) -> dict:
    P, T = problem.n_patients, len(problem.data.months)
    return trng.draw(
        seed,
        COHORT_STREAM,
        start,
        stop,
        lambda g, n: {
            "u_age": g.random((n, P)),
            "z_lambda": g.standard_normal((n, P)),
            "z_cpep0": g.standard_normal((n, P)),
            "eps": g.standard_normal((n, P, T)),
        },
    )


def _full_theta(problem: Problem, theta: np.ndarray) -> dict[str, np.ndarray]:
    """θ columns plus model defaults / config-fixed values for omega_lambda and sigma."""
    out = {n: theta[:, j] for j, n in enumerate(problem.names)}
    defaults = problem.model.defaults()
    for name in ("omega_lambda", "sigma"):
        if name not in out:
            v = problem.config.fixed.get(name, defaults[name])
            out[name] = np.full(theta.shape[0], v)
    return out


def simulate_cohorts(problem: Problem, theta: np.ndarray, seed: int, start: int) -> dict:
    """Noise-free and observed C-peptide of the virtual cohorts of θ items [start, start+n).

    Returns dict with ``cpeptide_nmol_l`` (n, P, T) observed (noise, LLOQ handling),
    ``cpeptide_mean_nmol_l`` (n, P, T) noise-free, ``age_years`` (n, P), ``status`` (n, P).
    """
    theta = np.atleast_2d(np.asarray(theta, float))
    n, P = theta.shape[0], problem.n_patients
    d = problem.data
    cfg = problem.config
    rnd = _cohort_draws(problem, seed, start, start + n)
    full = _full_theta(problem, theta)
    group = np.repeat(np.arange(len(d.groups)), problem.n_group)  # (P,)
    age = problem.age_lo[group] + (problem.age_hi - problem.age_lo)[group] * stats.beta.ppf(
        rnd["u_age"], 2.0, problem.age_beta_b[group]
    )
    sigma = full["sigma"][:, None]
    sdlog_obs = np.sqrt(np.log1p((d.baseline_sd_nmol_l / d.baseline_mean_nmol_l) ** 2))
    mulog = np.log(d.baseline_mean_nmol_l) - 0.5 * sdlog_obs**2
    sdlog0 = np.sqrt(np.maximum(sdlog_obs[group][None, :] ** 2 - sigma**2, 0.05**2))
    cpep0 = np.exp(mulog[group][None, :] + sdlog0 * rnd["z_cpep0"])
    f_lambda = np.exp(full["omega_lambda"][:, None] * rnd["z_lambda"])

    over = {
        k: np.repeat(v, P)
        for k, v in full.items()
        if k in problem.model.parameter_names and k not in ("omega_lambda", "sigma")
    }
    over |= {k: v for k, v in cfg.fixed.items()}
    over |= {"age": age.ravel(), "cpep0": cpep0.ravel(), "f_lambda": f_lambda.ravel()}
    params = problem.model.parameters(n * P, **over)
    from tregsim.solve import simulate_arrays

    times = cfg.baseline_day + np.asarray(d.months, float) * DAYS_PER_MONTH
    res = simulate_arrays(
        problem.model, params, doses=None, times=times, rtol=cfg.rtol, atol=cfg.atol
    )
    mean = res.observables["cpeptide"].reshape(n, P, len(times))
    if cfg.baseline_day > 0:
        # The drawn value is the month-0 (baseline-visit) MMTT, as in the experiments' cohorts
        # (tregsim.population): the trajectory is homogeneous of degree 1 in cpep0, so scaling
        # it to hit the draw at baseline is the same as solving for cpep0 at diagnosis.
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = mean * (cpep0 / mean[:, :, 0])[:, :, None]
    y, _ = observe(mean, rnd["eps"], sigma[:, :, None], lloq=cfg.lloq_nmol_l, below=cfg.below_lloq)
    return {
        "cpeptide_nmol_l": y,
        "cpeptide_mean_nmol_l": mean,
        "age_years": age,
        "status": np.asarray(res.status).reshape(n, P),
    }


def summarize(problem: Problem, y: np.ndarray) -> np.ndarray:
    """Reduce observed cohorts (n, P, T) to summaries (n, n_features) in data order."""
    d = problem.data
    offs = np.concatenate([[0], np.cumsum(problem.n_group)])
    ly = np.log1p(y)
    out = []
    for s in d.statistics:
        for gi in range(len(d.groups)):
            for mi in range(1, len(d.months)):
                k = int(min(d.n_visit[gi, mi], problem.n_group[gi]))
                block = slice(offs[gi], offs[gi] + k)
                if s == "mean_ln_x_plus_1":
                    v = ly[:, block, mi].mean(axis=1)
                elif s == "sd_ln_x_plus_1":
                    v = ly[:, block, mi].std(axis=1, ddof=1)
                else:
                    v = (y[:, block, mi] >= problem.config.threshold_nmol_l).mean(axis=1)
                    v = np.where(np.isnan(y[:, block, mi]).any(axis=1), np.nan, v)
                out.append(v)
    return np.stack(out, axis=1)


def simulate_summaries(problem: Problem, theta: np.ndarray, seed: int, start: int) -> np.ndarray:
    """Summaries (n, n_features) for θ items [start, start+n); NaN rows for failed solves."""
    return summarize(problem, simulate_cohorts(problem, theta, seed, start)["cpeptide_nmol_l"])


def cell_means(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Mean C-peptide (nmol/L) per age group × month after 0 (same patients as summaries)."""
    d = problem.data
    offs = np.concatenate([[0], np.cumsum(problem.n_group)])
    out, names = [], []
    for gi, g in enumerate(d.groups):
        for mi in range(1, len(d.months)):
            k = int(min(d.n_visit[gi, mi], problem.n_group[gi]))
            out.append(y[:, offs[gi] : offs[gi] + k, mi].mean(axis=1))
            names.append(f"mean_nmol_l|{g}|{d.months[mi]}")
    return np.stack(out, axis=1), tuple(names)
