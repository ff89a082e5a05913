"""Sample eligible virtual patients, chunk-invariantly.

Chunk-invariance with rejection sampling
---------------------------------------
Candidates are numbered 0, 1, 2, … Everything random about candidate ``c`` (covariates and
IIV draws) comes from :func:`tregsim.rng.draw` streams at index ``c``, so it never depends on
chunking. **Patient i is the i-th eligible candidate of this global sequence.** To start a
chunk at patient ``start`` we need the number of eligible candidates in each earlier block of
:data:`tregsim.rng.BLOCK` candidates; those counts are computed once per process (covariates
only, ~1 µs per candidate) and cached, keyed by (covariate model, eligibility rules, seed).
Hence ``sample_population(exp, n, seed, start)`` returns the same patients whatever the chunk
sizes, the order of chunks or the worker that computes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError, ExperimentFileError

PROBE_CANDIDATES = 16 * _rng.BLOCK
_COUNTS_CACHE: dict = {}
_COUNT_BATCH_BLOCKS = 64


@dataclass
class Population:
    """Eligible virtual patients ``[start, start + n)``.

    Attributes
    ----------
    covariates : dict name → ``(n,)`` array; see :mod:`tregsim.population.distributions`
        for names and units.
    params : ``ParameterBatch`` ``(n,)`` for :func:`tregsim.simulate` (covariates, IIV draws,
        population parameters or ``theta``).
    individual : dict name → ``(n,)`` individual parameter values (e.g. ``f_lambda``).
    candidate_index : ``(n,)`` int64, index of each patient in the global candidate sequence.
    acceptance_rate : fraction of candidates eligible among all candidates examined so far
        (``[0, last candidate of this chunk]``).
    """

    covariates: dict
    params: object
    individual: dict
    candidate_index: np.ndarray
    acceptance_rate: float
    start: int
    seed: int

    @property
    def n(self) -> int:
        return int(self.candidate_index.shape[0])

    @property
    def patient_index(self) -> np.ndarray:
        """Absolute patient numbers ``start … start + n − 1``, ``(n,)``."""
        return np.arange(self.start, self.start + self.n)

    def subset(self, idx: np.ndarray) -> Population:
        """The patients at positions ``idx`` (any integer index array, repeats allowed)."""
        return dataclasses.replace(
            self,
            covariates={k: np.asarray(v)[idx] for k, v in self.covariates.items()},
            params=self.params.subset(idx),
            individual={k: np.asarray(v)[idx] for k, v in self.individual.items()},
            candidate_index=self.candidate_index[idx],
        )


def _eligible(exp, seed: int, lo: int, hi: int) -> tuple[dict, np.ndarray]:
    cov = exp.population.sample(seed, lo, hi)
    return cov, exp.eligibility(cov)


def _block_counts(exp, seed: int, need: int) -> np.ndarray:
    """Eligible counts per candidate block until their sum reaches ``need``."""
    key = (exp.population, exp.eligibility, int(seed))
    counts = _COUNTS_CACHE.setdefault(key, [])
    total = int(sum(counts))
    while total < need:
        b0 = len(counts)
        b1 = b0 + _COUNT_BATCH_BLOCKS
        _, ok = _eligible(exp, seed, b0 * _rng.BLOCK, b1 * _rng.BLOCK)
        new = ok.reshape(-1, _rng.BLOCK).sum(axis=1)
        counts.extend(int(c) for c in new)
        total += int(new.sum())
        if total == 0 and len(counts) * _rng.BLOCK >= 100 * PROBE_CANDIDATES:
            raise ExperimentFileError(
                f"no eligible patient among {len(counts) * _rng.BLOCK} candidates",
                file=exp.path,
                field="eligibility",
                fix="widen the eligibility rules",
            )
    return np.asarray(counts, dtype=np.int64)


def check_feasible(exp) -> float:
    """Acceptance rate on a probe of candidates; raise if (nearly) nobody is eligible."""
    _, ok = _eligible(exp, 0, 0, PROBE_CANDIDATES)
    rate = float(ok.mean())
    if rate < exp.eligibility.min_acceptance:
        raise ExperimentFileError(
            f"only {ok.sum()} of {ok.size} sampled candidates meet the rules "
            f"({exp.eligibility.describe()}); acceptance {rate:.2g} < min_acceptance "
            f"{exp.eligibility.min_acceptance:g}",
            file=exp.path,
            field="eligibility",
            fix="widen the eligibility rules or change [population] so patients can qualify",
        )
    return rate


def _theta_overrides(exp, theta: dict | None, n: int) -> dict:
    if not theta:
        return {}
    spec = exp.model.spec.parameters
    out = {}
    for name, v in theta.items():
        if name not in spec:
            raise ArgumentError(
                f"theta has unknown parameter {name!r}",
                field="theta",
                fix="use population parameter names of the model",
            )
        if spec[name].role in ("covariate", "individual"):
            raise ArgumentError(
                f"theta sets {spec[name].role} parameter {name!r}",
                field="theta",
                fix="theta holds population parameters; covariates and "
                "individual parameters come from the experiment",
            )
        a = np.asarray(v, dtype=float)
        if a.ndim == 0:
            a = np.full(n, float(a))
        if a.shape != (n,):
            raise ArgumentError(
                f"theta[{name!r}] has shape {a.shape}, expected () or ({n},)",
                field="theta",
                fix="pass a scalar or one value per patient",
            )
        out[name] = a
    return out


def sample_population(
    exp,
    n: int,
    seed: int,
    start: int = 0,
    theta: dict | None = None,
    *,
    baseline_cpep0: bool = True,
) -> Population:
    """Eligible patients ``[start, start + n)`` of the experiment's virtual population.

    Parameters
    ----------
    exp : a loaded :class:`~tregsim.experiment.Experiment`.
    n : number of patients.
    seed : master seed; the same seed gives the same patients.
    start : absolute index of the first patient (for chunks).
    theta : population parameters, name → scalar or ``(n,)`` (e.g. posterior draws);
        defaults to the model's values. ``exp.parameter_overrides`` (``[parameters]``,
        :func:`tregsim.experiment.with_parameters`) replace both.
    baseline_cpep0 : derive each patient's C-peptide at diagnosis from the sampled baseline
        MMTT (one short solve per patient). ``False`` leaves it for
        :func:`complete_baseline` — for screening pools of which only some patients enrol;
        the enrolled patients then get exactly the values a full draw gives them.

    Returns
    -------
    :class:`Population` with covariates and ``params`` of shape ``(n,)``.
    """
    if n < 0 or start < 0:
        raise ArgumentError(
            f"n={n}, start={start} must be ≥ 0", field="n", fix="pass non-negative n and start"
        )
    counts = _block_counts(exp, seed, start + n)
    cum = np.concatenate([[0], np.cumsum(counts)])
    # blocks [b_lo, b_hi) contain patients start … start+n-1
    b_lo = int(np.searchsorted(cum, start, side="right") - 1)
    b_hi = int(np.searchsorted(cum, start + n, side="left")) if n else b_lo
    b_hi = max(b_hi, b_lo + 1)
    lo, hi = b_lo * _rng.BLOCK, b_hi * _rng.BLOCK
    cov_all, ok = _eligible(exp, seed, lo, hi)
    cand = np.flatnonzero(ok)
    offset = start - int(cum[b_lo])
    sel = cand[offset : offset + n]
    cov = {k: v[sel] for k, v in cov_all.items()}
    cand_index = (lo + sel).astype(np.int64)

    ov = _theta_overrides(exp, theta, n)
    # experiment overrides ([parameters], with_parameters) win over theta / posterior draws
    for name, v in getattr(exp, "parameter_overrides", {}).items():
        ov[name] = np.full(n, float(v))
    model = exp.model
    defaults = model.defaults()
    var = exp.variability
    individual = {}
    if var.names:
        k = len(var.names)
        z = _rng.draw(seed, "population.iiv", lo, hi, lambda g, m: g.standard_normal((m, k)))[sel]
        eta = z @ var.cholesky.T
        for j, name in enumerate(var.names):
            sd = var.sd_log[name]
            if isinstance(sd, str):
                sd = ov.get(sd, np.full(n, defaults[sd]))
            typical = ov.get(name, np.full(n, defaults[name]))
            individual[name] = typical * np.exp(sd * eta[:, j])
    cov_over = {k: v.astype(float) for k, v in cov.items() if k in model.parameter_names}
    params = model.parameters(n, **{**ov, **cov_over, **individual})
    if n and "cpep_baseline" in cov:
        cov["cpep_baseline_true"] = _noise_free_baseline(exp, cov, params, theta)
        if "cpep0" in cov and "cpep0" in params and "cpep0" not in individual:
            # until complete_baseline: the noise-free baseline (exact when the baseline visit
            # is at diagnosis)
            cov["cpep0"] = cov["cpep_baseline_true"].copy()
            params["cpep0"] = cov["cpep0"].copy()
    if n and "cpep_bl" in params and "cpep_bl" not in {**ov, **cov_over}:
        # the hazard covariate of issue #14: the noise-free MMTT at the patient's baseline
        # visit (docs/calibration.md, "Structure of individual variability")
        src = cov.get("cpep_baseline_true", cov.get("cpep0"))
        if src is not None:
            params["cpep_bl"] = np.asarray(src, float)
    rate = float(cum[b_hi] / hi) if hi else float("nan")
    pop = Population(cov, params, individual, cand_index, rate, int(start), int(seed))
    return complete_baseline(exp, pop) if baseline_cpep0 else pop


def baseline_noise_var(params, log_level, theta: dict | None = None) -> tuple:
    """(v, inv_nu): the variance of ln(measured / noise-free) of a baseline MMTT at
    ``log_level`` (ln nmol/L, ``(n,)``) under the observation model the patients' ``params``
    carry, or its squared scale for a Student-t deviation of ``inv_nu`` = 1/ν > 0 (what
    :meth:`~tregsim.population.distributions.LogNormalByAge.noise_free` takes): the records
    structure's (:func:`tregsim.observe.visit_variance_log` with each patient's ``sigma_meas``,
    ``sigma_bio``, ``kappa``; σ_bio = 0 when ``theta`` carries ``sigma_meas`` without
    ``sigma_bio``, the records-posterior contract of :mod:`tregsim.population.structure`).
    0 (no deconvolution: the path before round 16) when ``theta`` is a lumped posterior's
    draws (``sigma`` without ``sigma_meas``; ``--variability lumped``, whose σ ≈ 0.29–0.4 is
    as wide as the children's whole measured spread), or for a model without that model."""
    from tregsim.observe import visit_variance_log
    from tregsim.units import LLOQ_NMOL_L

    theta = theta or {}
    lumped = "sigma" in theta and "sigma_meas" not in theta
    if lumped or "sigma_meas" not in params or "kappa" not in params:
        return np.zeros_like(np.asarray(log_level, float)), 0.0
    no_bio = "sigma_bio" not in params or ("sigma_meas" in theta and "sigma_bio" not in theta)
    sb = 0.0 if no_bio else params["sigma_bio"]
    lloq = float(params["LLOQ"][0]) if "LLOQ" in params else LLOQ_NMOL_L
    inv_nu = params["inv_nu"] if "inv_nu" in params else 0.0
    return visit_variance_log(log_level, params["sigma_meas"], sb, params["kappa"], lloq), inv_nu


def _noise_free_baseline(exp, cov: dict, params, theta: dict | None) -> np.ndarray:
    """Noise-free baseline MMTT (nmol/L) of each patient from its drawn (measured) one:
    :meth:`~tregsim.population.distributions.LogNormalByAge.noise_free` with the observation
    error at the patient's age-group median (docs/experiments.md, "Baseline C-peptide")."""
    spec = exp.population.cpep_baseline
    y = np.asarray(cov["cpep_baseline"], float)
    age = np.asarray(cov["age"], float)
    mu, _ = spec.log_params()
    try:
        return spec.noise_free(age, y, *baseline_noise_var(params, mu[spec.group(age)], theta))
    except ArgumentError as e:  # name the experiment file the SD comes from
        raise ExperimentFileError(
            e.problem, file=getattr(exp, "path", None), field=e.field, fix=e.fix
        ) from None


def complete_baseline(exp, pop: Population) -> Population:
    """Set ``cpep0`` (C-peptide at diagnosis, nmol/L) of ``pop`` from its sampled baseline
    MMTT, in place (see ``baseline_cpep0`` of :func:`sample_population`); returns ``pop``.
    Each patient's value depends on that patient alone, so completing a subset gives the same
    numbers as completing the whole pool."""
    params, cov = pop.params, pop.covariates
    if not (pop.n and "cpep0" in params and "cpep_baseline" in cov):
        return pop
    tb = cov.get("t_baseline")
    if tb is not None and np.any(np.asarray(tb, float) != exp.baseline_day):
        # each patient's own enrolment day (docs/experiments.md, t_baseline)
        day = np.asarray(tb, dtype=float)
    elif exp.baseline_day > 0:
        day = float(exp.baseline_day)
    else:
        return pop
    base = cov.get("cpep_baseline_true", cov["cpep_baseline"])
    params["cpep0"] = _cpep0_for_baseline(exp.model, params, base, day)
    cov["cpep0"] = params["cpep0"].copy()
    return pop


def _cpep0_for_baseline(model, params, cpep_baseline: np.ndarray, baseline_day):
    """C-peptide at diagnosis (nmol/L) that makes the untreated model reproduce the sampled
    baseline MMTT at ``baseline_day`` (days after diagnosis: a scalar, or ``(n,)`` per patient).

    The trajectory is homogeneous of degree one in ``cpep0`` (β-cell states scale with M₀;
    effectors see only (B+S)/M₀), so one batched simulation with ``cpep0 = 1`` gives the ratio
    C(baseline_day)/cpep0 for every patient; stunning recovery in the first weeks (the
    honeymoon) would otherwise put the simulated baseline above the sampled one.
    """
    from tregsim.solve import simulate_arrays

    unit = params.replace(cpep0=1.0)
    day = np.asarray(baseline_day, dtype=float)
    if day.ndim == 0:
        times = np.array([0.0, float(day)])
    else:  # (n,) per-patient baseline days: the solver's per-patient output times
        times = np.stack([np.zeros_like(day), day], axis=1)
    r = simulate_arrays(model, unit, None, times)
    ratio = r.observables["cpeptide"][:, -1]
    ok = np.isfinite(ratio) & (ratio > 0)
    # a patient whose short solve fails keeps cpep0 = baseline; the cohort flags it later
    return np.where(ok, cpep_baseline / np.where(ok, ratio, 1.0), cpep_baseline)


def acceptance_rate(exp, seed: int, n: int) -> float:
    """Eligible fraction of the candidates examined to find patients ``[0, n)``."""
    counts = _block_counts(exp, seed, n)
    cum = np.cumsum(counts)
    b_hi = int(np.searchsorted(cum, n, side="left")) + 1
    return float(cum[b_hi - 1] / (b_hi * _rng.BLOCK))
