"""Model-based virtual trials: replicate trials of virtual patients from an experiment.

Replicate ``r`` screens ``M`` eligible patients of the experiment's virtual population
(patients ``[r·M, (r+1)·M)`` of :func:`tregsim.population.sample_population`), allocates them
(randomized 1:1 or the non-randomized :class:`~tregsim.trial.allocation.LogisticAllocation`
on the screening covariates age and ``cpep_baseline``), enrols the first ``N_max`` of each arm
and simulates every enrolled patient in the allocated arm with
:func:`tregsim.cohort.simulate_arms`, so the two arms of a replicate hold *different* patients.
The first ``effect_patients`` enrolled patients (all if None) are also simulated in the other
arm; their paired difference gives the replicate's true effect (the mean of
ln(y_T+1) − ln(y_C+1), noise-free, at the endpoint). The solver steps each patient on its own,
so the analysed outcomes do not depend on which patients share a batch.

Observation: MMTT 2-h AUC mean C-peptide, nmol/L, at the baseline visit and the endpoint.
``variability="records"`` (the default) uses the structure of individual variability fitted
to the placebo records (docs/calibration.md, "Structure of individual variability";
:mod:`tregsim.population.structure`): a hazard covariate on the baseline-visit C-peptide
(β_c, β_lin; the sampler sets ``cpep_bl``) and the observation model of
:func:`tregsim.observe.observe_visits` (assay σ_meas, within-patient deviation σ_bio/τ_bio,
heteroscedastic factor κ), each patient with their own values, stream ``trial.observed`` by
patient. When ``theta``/``theta_draws`` carry ``sigma_meas`` and ``kappa`` (a records-structure
posterior) they are used as given, per draw; otherwise λ_ref, γ_a, ω_λ, q, β_c, β_lin and the
observation model take the point values of ``calibration/natural_history_structure.json``.
``variability="lumped"`` is the pre-#14 structure: :func:`tregsim.observe.observe` with the
model observable's log-normal noise ``y = μ·exp(ε)``, ε ~ N(0, σ²), σ = model parameter
``sigma`` (docs/model_spec.md). Either way a value below LLOQ (model parameter ``LLOQ``,
0.017 nmol/L) is censored and set to LLOQ/2 for the analysis (a common substitution; the
TrialNet ln(AUC+1) scale makes the choice nearly immaterial). An enrolled patient drops out
(no endpoint) with probability ``dropout``; a patient whose solve failed has no endpoint either.

Each patient is solved at their own visit and dose days (``[population.t_baseline]``;
:func:`tregsim.cohort.simulate_arms`).

Uncertainty in the population parameters: ``theta`` (name → scalar) fixes them for every
replicate (e.g. ``{"phi": 2.0}``); ``theta_draws`` (name → ``(n_draws,)``, a posterior or
prior sample) gives replicate ``r`` the draw ``r mod n_draws`` — the assurance setting.

``relative_effect`` X (opt-in) replaces the treatment model by a fixed relative effect on the
noise-free endpoint of each patient (the baseline is unchanged; no infusion is simulated), on
one of two scales (``effect_scale``, :data:`EFFECT_SCALES`):

* ``"auc"`` (default): treated AUC = (1 + X) × the same patient's routine-care AUC — a fraction
  of β-cell function kept. It stretches ln(AUC + 1) in the treated arm (a patient with more
  C-peptide gains more on that scale), so the treated arm's ANCOVA residual SD exceeds the
  control arm's (docs/calibration.md, "Sample size (item 4)");
* ``"auc_plus_1"``: treated (AUC + 1) = (1 + X) × (routine-care AUC + 1) — a constant shift
  ln(1 + X) on the TrialNet analysis scale ln(AUC + 1), the effect the closed-form ANCOVA
  sample size (:mod:`tregsim.trial.closed_form`) assumes (ratio of geometric means of AUC + 1).

Every random number is drawn by absolute trial / patient index through :func:`tregsim.rng.draw`,
so results do not depend on chunk size or worker count.
"""

from __future__ import annotations

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError
from tregsim.observe import draw_standard_normals, observe, observe_visits, visit_normals
from tregsim.trial import allocation as _alloc
from tregsim.trial.design import TrialData

EFFECT_SCALES = ("auc", "auc_plus_1")
"""Scales of a fixed ``relative_effect`` (module docstring)."""

POOL_FACTOR = 4
"""Screened patients per enrolled patient slot under non-randomized allocation (before any
doubling): 4·N_max screened leave each arm ≥ N_max with overwhelming probability for
|β| ≤ 1; the pool doubles deterministically until every replicate fills both arms."""


# one home for the structure of individual variability (re-exported for callers of this module)
from tregsim.population.structure import (  # noqa: E402
    STRUCTURE_FILE,
    STRUCTURE_OBSERVATION,
    STRUCTURE_POPULATION,
    VARIABILITY,
    check_variability,
    default_variability,
    is_records_posterior,
    observation_parameters,
    records_structure,
)

__all__ = [
    "STRUCTURE_FILE",
    "STRUCTURE_OBSERVATION",
    "STRUCTURE_POPULATION",
    "VARIABILITY",
    "check_variability",
    "pool_size",
    "records_structure",
    "trial_chunk",
    "virtual_trials",
]


def _theta_for(start: int, stop: int, m: int, theta: dict | None, theta_draws: dict | None):
    """Per-patient theta for trials [start, stop) with m screened slots each."""
    out = dict(theta or {})
    draw_index = None
    if theta_draws:
        n_draws = len(next(iter(theta_draws.values())))
        draw_index = np.arange(start, stop) % n_draws
        per_patient = np.repeat(draw_index, m)
        for k, v in theta_draws.items():
            out[k] = np.asarray(v, dtype=float)[per_patient]
    return (out or None), draw_index


def _allocate(seed, start, stop, pool, m, n_max, allocation):
    n = stop - start
    if allocation is None:
        return _alloc.randomized(seed, n, n_max, start=start)
    age = np.asarray(pool.covariates["age"], dtype=float).reshape(n, m)
    cb = np.asarray(pool.covariates["cpep_baseline"], dtype=float).reshape(n, m)
    return _alloc.logistic(seed, age, cb, allocation, start=start)


def pool_size(exp, seed: int, n_trials: int, n_max_per_arm: int, allocation, theta=None) -> int:
    """Screened patients per replicate so that every replicate fills both arms."""
    if allocation is None:
        return 2 * int(n_max_per_arm)
    from tregsim.population import sample_population

    _alloc.check_allocation(allocation)
    m = POOL_FACTOR * int(n_max_per_arm)
    while True:
        pool = sample_population(exp, n_trials * m, seed, start=0, baseline_cpep0=False)
        arm = _allocate(seed, 0, n_trials, pool, m, n_max_per_arm, allocation)
        if _alloc.arms_filled(arm, n_max_per_arm).all():
            return m
        m *= 2


def trial_chunk(
    start: int,
    stop: int,
    exp,
    seed: int,
    n_max_per_arm: int,
    pool_m: int,
    allocation,
    theta: dict | None,
    theta_draws: dict | None,
    dropout: float,
    endpoint_index: int,
    treatment_arm: str,
    effect_patients: int | None = None,
    twin=None,
    observed: bool = True,
    relative_effect: float | None = None,
    effect_scale: str = "auc",
) -> dict:
    """Chunk function for :func:`tregsim.parallel.run_chunks`: replicate trials [start, stop).

    Returns (n, 2·n_max_per_arm) arrays ``baseline``, ``endpoint`` (nmol/L, NaN = missing),
    ``age`` (years), ``arm`` (bool), and (n,) ``true_effect`` (ln(AUC+1) scale; mean paired
    difference over the first ``effect_patients`` enrolled slots, all if None),
    ``draw_index`` (posterior draw used, −1 if none), ``phi``, ``n_failed``; with ``twin``
    (a :class:`tregsim.twin.TwinGrid` at the endpoint month) also (n, 2·n_max_per_arm)
    ``prognostic``: each patient's twin-predicted control ln(AUC+1) at the endpoint from the
    observed baseline MMTT, age and baseline day only (pre-randomization data).

    ``observed`` : False = the model's lumped residual ``sigma``; True = the records
    structure's observation model (:func:`tregsim.observe.observe_visits`) with each patient's
    own ``sigma_meas``, ``sigma_bio``, ``tau_bio``, ``kappa`` (from ``theta``/``theta_draws`` or
    the model file). ``relative_effect`` : see the module docstring.
    """
    from tregsim.cohort import simulate_arms
    from tregsim.population import sample_population
    from tregsim.population.sampling import complete_baseline

    n = stop - start
    m = int(pool_m)
    e = 2 * int(n_max_per_arm)
    th, draw_index = _theta_for(start, stop, m, theta, theta_draws)
    # screening needs covariates only; the baseline solve is for the enrolled patients
    pool = sample_population(exp, n * m, seed, start=start * m, theta=th, baseline_cpep0=False)
    arm_pool = _allocate(seed, start, stop, pool, m, n_max_per_arm, allocation)
    enrolled = _alloc.first_n_per_arm(arm_pool, n_max_per_arm)
    # column indices of the enrolled slots, in screening order: exactly e per replicate
    cols = np.sort(np.argsort(~enrolled, axis=1, kind="stable")[:, :e], axis=1)
    flat = (np.arange(n)[:, None] * m + cols).ravel()
    pop = complete_baseline(exp, pool.subset(flat))
    arm = np.take_along_axis(arm_pool, cols, axis=1)
    times = exp.visits_days[[0, endpoint_index]]
    # Each slot needs its allocated arm; the first k slots of a replicate also need the other
    # arm, for the replicate's true (paired) effect. k < e roughly halves the solver work.
    k = e if effect_patients is None else min(e, int(effect_patients))
    paired = np.zeros((n, e), dtype=bool)
    paired[:, :k] = True
    mu_t = np.full((n * e, 2), np.nan)
    mu_c = np.full((n * e, 2), np.nan)
    if relative_effect is None:
        jobs = ((treatment_arm, mu_t, arm | paired), (exp.control_arm, mu_c, ~arm | paired))
    else:  # every slot in routine care; the treated value is a fixed multiple of it
        jobs = ((exp.control_arm, mu_c, np.ones_like(arm)),)
    for name, out_arr, need in jobs:
        idx_need = np.flatnonzero(need.ravel())
        if idx_need.size:
            r = simulate_arms(exp, pop.subset(idx_need), arms={name: exp.arms[name]}, times=times)
            out_arr[idx_need] = r[name]
    if relative_effect is not None:
        f = 1.0 + float(relative_effect)
        if effect_scale == "auc":
            mu_t = mu_c * np.array([1.0, f])
        else:  # "auc_plus_1": a constant shift ln(1 + X) of ln(AUC + 1)
            mu_t = np.stack([mu_c[:, 0], f * (mu_c[:, 1] + 1.0) - 1.0], axis=1)
    mu_t = mu_t.reshape(n, e, 2)
    mu_c = mu_c.reshape(n, e, 2)
    mu = np.where(arm[:, :, None], mu_t, mu_c)
    failed = ~np.isfinite(mu).all(axis=2)
    idx = (start * e, stop * e)
    u = _rng.draw(seed, "trial.dropout", *idx, lambda g, k: g.random(k))
    obs = exp.model.spec.observables["cpeptide"]
    lloq = np.asarray(pop.params[obs.lloq], dtype=float).reshape(n, e, 1)
    mu_ok = np.where(failed[:, :, None], 1.0, mu)
    if not observed:
        z = draw_standard_normals(seed, "trial.assay", *idx, (2,))  # baseline, endpoint
        sigma = np.asarray(pop.params[obs.sigma], dtype=float).reshape(n, e, 1)
        y, _ = observe(
            mu_ok, z.reshape(n, e, 2), sigma, lloq=lloq, noise=obs.noise, below="half_lloq"
        )
    else:
        zv = visit_normals(seed, "trial.observed", *idx, 2)
        y, cens = observe_visits(
            mu_ok.reshape(n * e, 2),
            times,
            zv,
            lloq=float(np.min(lloq)) if lloq.size else 0.0,
            **observation_parameters(pop.params),
        )
        # the same LLOQ/2 substitution as the lumped path
        y = np.where(cens.reshape(n, e, 2), lloq / 2, y.reshape(n, e, 2))
    y = np.where(failed[:, :, None], np.nan, y)
    endpoint = np.where(u.reshape(n, e) < dropout, np.nan, y[:, :, 1])
    with np.errstate(invalid="ignore"):
        d = np.log1p(mu_t[:, :k, 1]) - np.log1p(mu_c[:, :k, 1])
    ok = np.isfinite(d)
    n_ok = ok.sum(axis=1)
    true_effect = np.where(n_ok > 0, np.where(ok, d, 0.0).sum(axis=1) / np.maximum(n_ok, 1), np.nan)
    phi_all = pop.params.get("phi")
    phi = (
        np.asarray(phi_all, dtype=float).reshape(n, e)[:, 0]
        if n and phi_all is not None
        else np.full(n, np.nan)
    )
    out = {}
    if twin is not None:
        age = np.asarray(pop.covariates["age"], dtype=float).ravel()
        out["prognostic"] = twin.mean(y[:, :, 0].ravel(), age)[:, 0].reshape(n, e)
    return out | {
        "baseline": y[:, :, 0],
        "endpoint": endpoint,
        "age": np.asarray(pop.covariates["age"], dtype=float).reshape(n, e),
        "arm": arm,
        "true_effect": true_effect,
        "draw_index": (np.full(n, -1) if draw_index is None else draw_index).astype(np.int64),
        "phi": phi,
        "n_failed": failed.sum(axis=1).astype(np.int64),
    }


def virtual_trials(
    exp,
    *,
    n_trials: int,
    n_max_per_arm: int,
    seed: int,
    theta: dict | None = None,
    theta_draws: dict | None = None,
    allocation: _alloc.LogisticAllocation | None = None,
    dropout: float = 0.0,
    endpoint_month: float = 12.0,
    treatment_arm: str | None = None,
    effect_patients: int | None = None,
    twin=None,
    variability: str | None = None,
    relative_effect: float | None = None,
    effect_scale: str = "auc",
    label: str = "",
    chunk_size: int = 50,
    out_dir=None,
    stage: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> TrialData:
    """R replicate virtual trials of an experiment (see the module docstring).

    Parameters
    ----------
    exp : loaded :class:`~tregsim.experiment.Experiment`.
    n_trials : R replicates. n_max_per_arm : largest N per arm to be analysed.
    seed : master seed.
    theta : population parameters fixed for all replicates (name → scalar), e.g. {"phi": 2}.
    theta_draws : name → (n_draws,) draws; replicate r uses draw r mod n_draws (assurance).
    allocation : None = randomized 1:1; :class:`LogisticAllocation` = non-randomized.
    dropout : probability an enrolled patient has no endpoint.
    endpoint_month : the endpoint visit (months after baseline; must be a visit of ``exp``).
    treatment_arm : which treatment arm (default the first of ``exp.treatment_arms``).
    effect_patients : simulate the non-allocated arm only for the first k enrolled slots of
        each replicate and estimate its true effect from them (None = all 2·n_max_per_arm:
        exact but twice the solver work). Outcomes analysed are unaffected.
    twin : a :class:`tregsim.twin.TwinGrid` for ``endpoint_month``: adds every patient's
        prognostic score (``TrialData.prognostic_ln_auc_plus_1``) for ``ancova_prognostic``.
    variability : ``None`` (the default: ``"records"`` where the model has the structure's
        parameters, else ``"lumped"``), ``"records"`` (the structure fitted to the placebo records; when
        ``theta``/``theta_draws`` do not carry ``sigma_meas`` and ``kappa`` — a records-structure
        posterior, :func:`tregsim.population.structure.resolve_structure` — the JSON's point
        values replace theirs; see the module docstring) or ``"lumped"`` (the model's one
        residual ``sigma``, no hazard covariate).
    relative_effect : None (the treatment arm's model) or X > −1: treated endpoint = (1 + X) ×
        the patient's routine-care endpoint, noise-free, on the scale ``effect_scale``
        (``"auc"`` or ``"auc_plus_1"``; module docstring).
    chunk_size, out_dir, stage, workers, scheduler, progress : see
        :func:`tregsim.parallel.run_chunks` (items = replicate trials).

    Returns
    -------
    TrialData with (R, 2·n_max_per_arm) arrays and ``true_effect`` (R,);
    ``info`` holds ``draw_index`` (R,), ``phi`` (R,) and the number of failed solves.
    """
    from tregsim.parallel import run_chunks

    if not 0 <= dropout < 1:
        raise ArgumentError(
            f"dropout must be in [0, 1), got {dropout}", field="dropout", fix="use e.g. 0.1"
        )
    if effect_patients is not None and effect_patients < 1:
        raise ArgumentError(
            f"effect_patients must be ≥ 1 or None, got {effect_patients}",
            field="effect_patients",
            fix="use e.g. 16, or None for every enrolled patient",
        )
    months = np.asarray(exp.visit_months, dtype=float)
    hit = np.nonzero(np.isclose(months, endpoint_month))[0]
    if hit.size == 0 or hit[0] == 0:
        raise ArgumentError(
            f"endpoint month {endpoint_month:g} is not a post-baseline visit of {exp.path}",
            field="endpoint_month",
            fix=f"use one of {[float(x) for x in months[1:]]}",
        )
    check_variability(variability)
    if effect_scale not in EFFECT_SCALES:
        raise ArgumentError(
            f"unknown effect_scale {effect_scale!r}",
            field="effect_scale",
            fix=f"use one of {', '.join(EFFECT_SCALES)}",
        )
    if relative_effect is not None and not relative_effect > -1:
        raise ArgumentError(
            f"relative_effect must be > -1, got {relative_effect}",
            field="relative_effect",
            fix="use e.g. 0.3 for +30 %",
        )
    arm_name = exp.treatment_arm(treatment_arm, field="treatment_arm")
    if variability is None:
        variability = default_variability(exp.model)
    structure = None
    if variability == "records":
        given = {**(theta or {}), **(theta_draws or {})}
        if is_records_posterior(given):  # per-draw values of a records-structure posterior
            if "sigma_bio" not in given:
                theta = {**(theta or {}), "sigma_bio": 0.0}
        else:
            structure = records_structure()
            values = {**structure["population"], **structure["observation"]}
            theta = {**(theta or {}), **values}
            if theta_draws:
                theta_draws = {k: v for k, v in theta_draws.items() if k not in values} or None
    m = pool_size(exp, seed, n_trials, n_max_per_arm, allocation)
    res = run_chunks(
        trial_chunk,
        int(n_trials),
        chunk_size=int(chunk_size),
        args=(
            exp,
            int(seed),
            int(n_max_per_arm),
            m,
            allocation,
            theta,
            theta_draws,
            float(dropout),
            int(hit[0]),
            arm_name,
            effect_patients,
            twin,
            variability == "records",
            relative_effect,
            effect_scale,
        ),
        out_dir=out_dir,
        stage=stage,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc=f"virtual trials{' (' + label + ')' if label else ''}",
    )
    return TrialData(
        baseline_auc_nmol_l=res["baseline"],
        endpoint_auc_nmol_l=res["endpoint"],
        age_years=res["age"],
        arm=res["arm"].astype(bool),
        true_effect=res["true_effect"],
        effect_label=label,
        prognostic_ln_auc_plus_1=res.get("prognostic"),
        info={
            "generator": "model",
            "experiment": str(exp.path),
            "treatment_arm": arm_name,
            "endpoint_month": float(endpoint_month),
            "pool_per_trial": m,
            "effect_patients": effect_patients,
            "variability": variability,
            "structure": None
            if structure is None
            else {"file": structure["file"], "sha256": structure["sha256"]},
            "relative_effect": relative_effect,
            "effect_scale": None if relative_effect is None else effect_scale,
            "dropout": float(dropout),
            "draw_index": res["draw_index"],
            "phi": res["phi"],
            "n_failed_solves": int(res["n_failed"].sum()),
        },
    )
