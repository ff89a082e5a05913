"""Each Treg trial's design, simulated over a design of (φ, kinetics) points.

A :class:`TrialDesign` is one trial's experiment file plus the comparison it reported: which
arms were pooled as "treated" (with their sizes), the control arm and its size, the endpoint
months and the analysis. :func:`design_outputs` simulates, for every point θ = (φ, FX, F_M,
α_X, β_M) of a design, the same virtual patients (common random numbers: one population, one
set of assay-noise draws per trial) in every arm and returns per trial and endpoint month:

* ``d`` — the true effect, mean paired difference of ln(AUC+1) (treated arms pooled in the
  trial's proportions − control; MMTT AUC mean C-peptide, nmol/L), the quantity the trial's
  estimator targets;
* ``pct`` — 100·(mean treated / mean control − 1), % higher mean C-peptide;
* ``se`` — the standard error of the trial's estimator: the cohort is cut into replicate
  virtual trials of the trial's own size and allocation, observed (LLOQ/2 substitution as in
  :mod:`tregsim.trial.virtual`) and analysed with :func:`tregsim.trial.endpoints.analyse_trials`
  (ANCOVA of ln(AUC+1) on arm, ln(baseline+1) and age, or Welch's t on ln(AUC+1));
  ``se = sqrt(mean(se_r²))`` over the replicates;
* ``nodecline`` — P(observed AUC at the endpoint ≥ observed AUC at baseline) for a treated
  patient, averaged over the cohort: Φ(ln(μ_end/μ_0) / s), s the SD of the difference of the
  two visits' log observation errors (lumped: σ√2);
* ``r_dose`` — Pearson correlation of the infused dose (cells/kg) with the change in observed
  AUC from baseline among treated patients (trials with more than one dose).

Population parameters of the natural history come from a posterior (patient i takes draw
i mod n_draws, as cohorts do); φ and the kinetics are set per design point.

Variability (``variability``, the same two settings as :func:`tregsim.trial.virtual.virtual_trials`):
``"records"`` (default) uses the structure of individual variability fitted to the placebo
records, resolved as every analysis resolves it
(:func:`tregsim.population.structure.resolve_structure`): with a records-structure posterior
(the shipped one) each patient's hazard and hazard covariate (λ_ref, γ_a, ω_λ, q, β_c, β_lin)
and observation model (:func:`tregsim.observe.observe_visits`: assay σ_meas, within-patient
deviation σ_bio/τ_bio, heteroscedastic factor κ) are its posterior draw's, otherwise the
structure file's values; per-patient stream ``treatment_effect.<key>.observed``.
``"lumped"`` is the model's one residual ``sigma`` (:func:`tregsim.observe.observe`, stream
``treatment_effect.<key>.assay``). See docs/treatment_effect.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from tregsim import rng as trng
from tregsim.errors import ArgumentError
from tregsim.io import package_source_sha256
from tregsim.observe import (
    deviation_scale,
    observe,
    observe_visits,
    student_t_from_normal,
    visit_normals,
)
from tregsim.population.structure import STRUCTURE_OBSERVATION, STRUCTURE_POPULATION

THETA_NAMES = ("phi", "FX", "F_M", "alpha_X", "beta_M")
"""Design coordinates, natural scale: φ (1), FX (1), F_M (1), α_X (1/day), β_M (1/day)."""

DEFAULT_VARIABILITY = "records"
"""Variability of the designs' virtual patients unless the configuration says otherwise."""


@dataclass(frozen=True)
class TrialDesign:
    """One trial's reported comparison on its experiment file.

    treated : arm name → patients in the analysed comparison (the pooled treated group).
    control : control arm name (None: no comparison, e.g. a single-arm trial).
    n_control : control patients analysed. months : endpoint months after baseline.
    analysis : ``"ancova"`` or ``"welch"`` (see :func:`tregsim.trial.endpoints.analyse_trials`).
    """

    key: str
    experiment: object
    treated: dict
    control: str | None
    n_control: int
    months: tuple
    analysis: str = "ancova"

    @property
    def n_trial(self) -> int:
        return int(sum(self.treated.values()) + (self.n_control if self.control else 0))

    def visit_index(self, month: float) -> int:
        hit = np.nonzero(np.isclose(np.asarray(self.experiment.visit_months, float), month))[0]
        return int(hit[0])


def _observe(exp, pop, mu, z):
    obs = exp.model.spec.observables["cpeptide"]
    sigma = np.asarray(pop.params[obs.sigma], float)[:, None]
    lloq = np.asarray(pop.params[obs.lloq], float)[:, None]
    bad = ~np.isfinite(mu)
    y, _ = observe(np.where(bad, 1.0, mu), z, sigma, lloq=lloq, noise=obs.noise, below="half_lloq")
    return np.where(bad, np.nan, y)


def _structure_draws(exp, nh_draws: dict | None):
    """The records structure resolved from the natural-history draws
    (:func:`tregsim.population.structure.resolve_structure`) for ``exp``'s model, which must
    carry the structure's hazard; the observation model need not be among its parameters
    (the IL-2 variant's is not): the designs observe with it directly."""
    from tregsim.population.structure import resolve_structure

    missing = [k for k in STRUCTURE_POPULATION if k not in exp.model.parameter_names]
    if missing:
        raise ArgumentError(
            f"model {exp.model.spec.name} lacks {', '.join(missing)} of the records structure",
            file=str(exp.path),
            field="variability",
            fix='use a model with the hazard covariate, or variability = "lumped"',
        )
    return resolve_structure("records", nh_draws or None, None)


class _Prepared:
    """A trial's fixed virtual patients, noise draws, allocation and control-arm outcomes."""

    def __init__(
        self,
        design: TrialDesign,
        n_patients: int,
        seed: int,
        nh_draws: dict | None,
        variability: str = DEFAULT_VARIABILITY,
    ):
        from tregsim.cohort import simulate_arms
        from tregsim.population import sample_population
        from tregsim.trial.virtual import check_variability, records_structure

        check_variability(variability)
        self.design = design
        self.variability = variability
        exp = design.experiment
        self.structure = None
        draws = nh_draws
        if variability == "records":
            self.structure = _structure_draws(exp, nh_draws)
            draws = self.structure.draws
        stream = f"treatment_effect.{design.key}"
        n_rep = max(1, n_patients // design.n_trial) if design.control else 0
        n = max(n_patients, n_rep * design.n_trial)
        rows = {}
        if draws:
            k = len(next(iter(draws.values())))
            rows = {name: np.asarray(v, float)[np.arange(n) % k] for name, v in draws.items()}
        # a records-structure posterior also carries the records' baseline distribution
        # (mu_c, mu_a, s_c): not model parameters, so not patients' parameters
        theta = {name: v for name, v in rows.items() if name in exp.model.parameter_names}
        self.pop = sample_population(exp, n, seed, theta=theta or None)
        nv = len(exp.visits_days)
        if self.structure is not None:
            # each patient's observation model: its posterior draw's, or the structure file's
            # (τ_bio, which a posterior without a biological deviation does not sample)
            fixed = records_structure()["observation"]
            self.obs = {k: rows.get(k, np.full(n, fixed[k])) for k in STRUCTURE_OBSERVATION}
            self.z = visit_normals(seed, stream + ".observed", 0, n, nv)
        else:
            self.z = trng.draw(
                seed, stream + ".assay", 0, n, lambda g, m: g.standard_normal((m, nv))
            )
        self.n, self.n_rep = n, n_rep
        # replicate trial r holds patients [r·N, (r+1)·N); within it the arms are a random
        # permutation of the trial's own arm sizes (randomized or not, the allocation is the
        # reported one: the comparison is between these groups)
        labels = [a for a, k in design.treated.items() for _ in range(int(k))]
        if design.control:
            labels += [design.control] * int(design.n_control)
        labels = np.array(labels)
        perm = trng.draw(
            seed,
            stream + ".allocation",
            0,
            max(n_rep, 1),
            lambda g, m: np.argsort(g.random((m, len(labels))), axis=1),
        )
        self.alloc = labels[perm][:n_rep].reshape(-1) if n_rep else np.array([], dtype=str)
        self.control_mu = None
        if design.control:
            self.control_mu = simulate_arms(
                exp, self.pop, arms={design.control: exp.arms[design.control]}, **_SOLVER
            )[design.control]
            self.control_y = self.observe(self.control_mu)

    def observe(self, mu: np.ndarray, pop=None) -> np.ndarray:
        """Observed nmol/L for noise-free ``mu`` (B·n, n_visits): B copies of the patients
        (rows b·n + i = patient i), each with patient i's noise draws; NaN stays NaN."""
        exp = self.design.experiment
        reps = len(mu) // self.n
        if self.structure is None:
            pop = pop if pop is not None else self.pop
            return _observe(exp, pop, mu, np.tile(self.z, (reps, 1)))
        obs = exp.model.spec.observables["cpeptide"]
        lloq = float(np.min(np.asarray(self.pop.params[obs.lloq], float)))
        bad = ~np.isfinite(mu)
        y, cens = observe_visits(
            np.where(bad, 1.0, mu),
            exp.visits_days,
            np.tile(self.z, (reps, 1, 1)),
            lloq=lloq,
            **{k: np.tile(v, reps) for k, v in self.obs.items()},
        )
        # the LLOQ/2 substitution of virtual trials
        return np.where(bad, np.nan, np.where(cens, lloq / 2, y))

    def _levels_scale(self, mu: np.ndarray) -> np.ndarray:
        """The heteroscedastic factor h(μ) of the patients' κ (1 where μ is not positive)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            h = deviation_scale(np.log(mu), self.obs["kappa"])
        return np.where(np.isfinite(h), h, 1.0)

    def change_sd(self, mu0: np.ndarray, mu1: np.ndarray, days: float) -> np.ndarray:
        """SD of ln y₁ − ln y₀ for two visits ``days`` apart given the noise-free values
        (the observation error only; arrays broadcast, the last axis over the patients)."""
        if self.structure is None:
            obs = self.design.experiment.model.spec.observables["cpeptide"]
            sigma = np.asarray(self.pop.params[obs.sigma], float)
            return sigma * np.sqrt(2.0)
        o = self.obs
        h0, h1 = self._levels_scale(mu0), self._levels_scale(mu1)
        sm, sb = o["sigma_meas"], o["sigma_bio"]
        # observe_visits: with an OU deviation it is scaled by h and the assay error is not
        rho = np.exp(-days / o["tau_bio"])
        ou = np.sqrt(sb**2 * (h0**2 + h1**2 - 2 * rho * h0 * h1) + 2 * sm**2)
        return np.where(sb > 0, ou, sm * np.sqrt(h0**2 + h1**2))

    def no_decline_probability(self, mu0: np.ndarray, mu1: np.ndarray, days: float) -> np.ndarray:
        """P(observed y₁ ≥ y₀) for two visits ``days`` apart given the noise-free values (arrays
        broadcast, the last axis over the patients): Φ(ln(μ₁/μ₀) / :meth:`change_sd`) for normal
        deviations; with a Student-t deviation (``inv_nu`` > 0, σ_bio = 0) the difference of
        two t's is not t, so E over e₀ of T_ν((ln(μ₁/μ₀) − s₀e₀)/s₁), s = σ_meas·h(μ), by
        Gauss–Hermite quadrature on the normal that :func:`student_t_from_normal` maps to e₀."""
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.log(mu1 / mu0)
        inv_nu = None if self.structure is None else self.obs.get("inv_nu")
        if inv_nu is None or not np.any(np.asarray(inv_nu) > 0):
            return special.ndtr(delta / self.change_sd(mu0, mu1, days))
        s0 = self.obs["sigma_meas"] * self._levels_scale(mu0)
        s1 = self.obs["sigma_meas"] * self._levels_scale(mu1)
        z, w = np.polynomial.hermite_e.hermegauss(_N_NODECLINE)
        w = w / w.sum()
        nu = 1.0 / np.asarray(inv_nu, float)
        out = np.zeros(np.broadcast(delta, s0, s1).shape)
        for zk, wk in zip(z, w):
            e0 = student_t_from_normal(zk, inv_nu)
            out += wk * special.stdtr(nu, (delta - s0 * e0) / s1)
        return out


_SOLVER = {"rtol": 1e-6, "atol": 1e-9}
_N_NODECLINE = 40  # Gauss–Hermite nodes of the t-deviation no-decline probability


def _outputs_batch(prep: _Prepared, thetas: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs for a batch of B design points (B, 5) → name → (B,)."""
    from tregsim.cohort import simulate_arms
    from tregsim.trial.endpoints import analyse_trials

    d = prep.design
    exp = d.experiment
    B, n = len(thetas), prep.n
    pop = prep.pop.subset(np.tile(np.arange(prep.pop.n), B))
    over = {k: np.repeat(thetas[:, j], n) for j, k in enumerate(THETA_NAMES)}
    pop = dataclasses.replace(pop, params=pop.params.replace(**over))
    mu = {}
    for a in d.treated:
        mu[a] = simulate_arms(exp, pop, arms={a: exp.arms[a]}, **_SOLVER)[a].reshape(B, n, -1)
    y = {a: prep.observe(mu[a].reshape(B * n, -1), pop).reshape(B, n, -1) for a in d.treated}
    n_tr = sum(d.treated.values())
    w = {a: k / n_tr for a, k in d.treated.items()}
    days = np.asarray(exp.visits_days, float)
    out = {}
    for m in d.months:
        j = d.visit_index(m)
        key = f"{d.key}.m{m:g}"
        # no decline: treated patients, pooled in the trial's proportions
        nd = sum(
            w[a]
            * np.nanmean(
                prep.no_decline_probability(mu[a][:, :, 0], mu[a][:, :, j], days[j] - days[0]),
                axis=1,
            )
            for a in d.treated
        )
        out[f"{key}.nodecline"] = nd
        doses = {a: _dose_per_kg(exp.arms[a], prep.pop) for a in d.treated}
        if len({tuple(np.round(v, 6)) for v in doses.values()}) > 1:  # cell doses differ
            out[f"{key}.r_dose"] = _weighted_corr(
                {a: (doses[a], y[a][:, :, j] - y[a][:, :, 0]) for a in d.treated}, w
            )
        if not d.control:
            continue
        c_mu = prep.control_mu[:, j]
        with np.errstate(invalid="ignore"):
            dd = sum(w[a] * (np.log1p(mu[a][:, :, j]) - np.log1p(c_mu)) for a in d.treated)
            out[f"{key}.d"] = np.nanmean(dd, axis=1)
            mt = sum(w[a] * np.nanmean(mu[a][:, :, j], axis=1) for a in d.treated)
            out[f"{key}.pct"] = 100.0 * (mt / np.nanmean(c_mu) - 1.0)
        # replicate virtual trials of the trial's own size, one per block of N patients
        N, R = d.n_trial, prep.n_rep
        k = N * R
        lab = prep.alloc
        end = np.where(lab == d.control, prep.control_y[:k, j], np.nan)[None, :].repeat(B, 0)
        base = np.where(lab == d.control, prep.control_y[:k, 0], np.nan)[None, :].repeat(B, 0)
        for a in d.treated:
            sel = lab == a
            end[:, sel] = y[a][:, :k, j][:, sel]
            base[:, sel] = y[a][:, :k, 0][:, sel]
        age = np.tile(np.asarray(prep.pop.covariates["age"], float)[:k], B)
        arm = np.tile(lab != d.control, B)
        res = analyse_trials(
            end.reshape(B * R, N),
            base.reshape(B * R, N),
            age.reshape(B * R, N),
            arm.reshape(B * R, N),
            tests=(d.analysis,),
        )[d.analysis]
        out[f"{key}.se"] = np.sqrt(np.nanmean(res.se.reshape(B, R) ** 2, axis=1))
    return out


def _dose_per_kg(arm, pop) -> np.ndarray:
    _, amount = arm.regimen.dose_arrays(pop.covariates["weight"])
    return amount.sum(axis=1)


def _weighted_corr(parts: dict, w: dict) -> np.ndarray:
    """Pearson correlation over a mixture of arms: parts arm → (dose (n,), change (B, n))."""
    ws, xs, ys = [], [], []
    for a, (x, yv) in parts.items():
        ok = np.isfinite(yv)
        ws.append(np.where(ok, w[a], 0.0))
        xs.append(np.broadcast_to(x, yv.shape))
        ys.append(np.where(ok, yv, 0.0))
    W, X, Y = (np.concatenate(v, axis=1) for v in (ws, xs, ys))
    sw = W.sum(axis=1, keepdims=True)
    mx = (W * X).sum(axis=1, keepdims=True) / sw
    my = (W * Y).sum(axis=1, keepdims=True) / sw
    cxy = (W * (X - mx) * (Y - my)).sum(axis=1)
    cxx = (W * (X - mx) ** 2).sum(axis=1)
    cyy = (W * (Y - my) ** 2).sum(axis=1)
    return cxy / np.sqrt(cxx * cyy)


def design_outputs(
    designs: list[TrialDesign],
    thetas: np.ndarray,
    *,
    n_patients: int,
    seed: int,
    nh_draws: dict | None = None,
    variability: str = DEFAULT_VARIABILITY,
    batch: int = 8,
    progress=None,
) -> dict[str, np.ndarray]:
    """Simulate every trial design at every design point.

    Parameters
    ----------
    designs : the trials. thetas : (P, 5) points, columns :data:`THETA_NAMES` (natural scale).
    n_patients : virtual patients per trial (rounded up to whole replicate trials).
    seed : master seed (streams ``treatment_effect.<key>.*`` and the population's own).
    nh_draws : natural-history population parameters, name → (n_draws,) (patient i takes
        draw i mod n_draws); None = the model file's values.
    variability : ``"records"`` (default) or ``"lumped"`` (see the module docstring).

    Returns
    -------
    name → (P,) arrays, names ``<trial>.m<month>.<d|pct|se|nodecline|r_dose>``.
    """
    thetas = np.atleast_2d(np.asarray(thetas, float))
    out: dict[str, list] = {}
    for d in designs:
        prep = _Prepared(d, n_patients, seed, nh_draws, variability)
        for s in range(0, len(thetas), batch):
            for k, v in _outputs_batch(prep, thetas[s : s + batch]).items():
                out.setdefault(k, []).append(v)
            if progress:
                progress(d.key, min(s + batch, len(thetas)), len(thetas))
    return {k: np.concatenate(v) for k, v in out.items()}


def design_points(model, n: int, seed: int, log_phi_range, quantiles, *, skip: int = 0):
    """n quasi-random design points (scrambled Sobol), (n, 5) natural scale.

    log φ is uniform on ``log_phi_range``; each kinetic parameter is its model-file prior's
    quantile at a level uniform on ``quantiles`` (e.g. (0.005, 0.995)). ``skip`` points are
    dropped first (held-out points come from the same sequence after the training points).
    """
    from scipy.stats import qmc

    u = qmc.Sobol(d=5, scramble=True, seed=seed).random(skip + n)[skip:]
    lo, hi = log_phi_range
    out = np.empty((n, 5))
    out[:, 0] = np.exp(lo + (hi - lo) * u[:, 0])
    q0, q1 = quantiles
    for j, name in enumerate(THETA_NAMES[1:], start=1):
        out[:, j] = model.spec.parameters[name].prior.ppf(q0 + (q1 - q0) * u[:, j])
    return out


def cached_design_outputs(cache_path, key: dict, designs, thetas, **kw) -> dict[str, np.ndarray]:
    """:func:`design_outputs` through an ``.npz`` cache: reused when ``key`` (settings, input
    hashes) and the source of the whole ``tregsim`` package match, recomputed and written
    atomically otherwise. The package, not this module alone: the design outputs run through
    the population, structure and solver code, and a cache keyed on one module served stale
    outputs after a change elsewhere (round 7 had to delete it by hand)."""
    import hashlib
    import json
    from pathlib import Path

    from tregsim.io import atomic_path

    key = {**key, "package_source_sha256": package_source_sha256()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    cache_path = Path(cache_path)
    if cache_path.is_file():
        with np.load(cache_path, allow_pickle=False) as f:
            if str(f["__key__"]) == digest and np.array_equal(f["__thetas__"], thetas):
                return {k: f[k] for k in f.files if not k.startswith("__")}
    out = design_outputs(designs, thetas, **kw)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, __key__=np.array(digest), __thetas__=thetas, **out)
    return out
