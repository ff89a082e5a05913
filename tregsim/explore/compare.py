"""Compare model variants on the same virtual patients (MODEL.md, "Variants for the registry").

Every model runs the **same patients** (same covariates and the same standard-normal IIV draw
behind ``f_lambda``) under the same arms, one batched :func:`tregsim.simulate_arrays` call per
model per arm. The result is a table of monthly C-peptide quantiles per model and arm and the
mean paired difference Treg arm − control (nmol/L). Units: days, years, kg, nmol/L, cells/kg,
IU (IL-2).

Arms
----
``control`` (routine care), ``treg`` (one infusion of ``dose_per_kg`` cells/kg on
``infusion_day``) and, when an IL-2 course is requested, ``treg_il2`` (the same infusion plus
``il2_iu_per_dose`` IU subcutaneously once daily on ``il2_days``), simulated only for models
that accept doses into ``IL2``. With an experiment file the arms are the experiment's arms
instead (IL-2 adjuncts are given to models that accept ``IL2`` doses and ignored, with a note,
by the others).

φ (potency × homing of infused Tregs) is the least known number in every variant; the result
records each model's φ (value and prior) in its header (the assumption ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError

MONTH_DAYS = 365.25 / 12
CONTROL = "control"

# simple built-in population (used when no experiment file is given)
AGE_RANGE_YEARS = (8.0, 45.0)  # uniform
CPEP0_MEDIAN_NMOL_L = 0.7  # log-normal (Dufort 2019 month-0 mean 0.74 nmol/L)
CPEP0_SDLOG = 0.4  # assumed; gives a 90 % range of about 0.36-1.35 nmol/L
# body weight (kg) = median for age × exp(0.15 z); rounded CDC 2000 50th percentiles (sexes
# averaged) for children, 75 kg for adults (assumed)
_WEIGHT_AGES = np.array([8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 120.0])
_WEIGHT_KG = np.array([25.7, 32.2, 41.0, 50.1, 57.5, 62.0, 64.5, 75.0])
WEIGHT_SDLOG = 0.15


@dataclass
class Population:
    """Virtual patients shared by every model: covariates and the IIV draw ``z_lambda``."""

    age: np.ndarray  # years
    weight: np.ndarray  # kg
    cpep0: np.ndarray  # nmol/L at diagnosis
    z_lambda: np.ndarray  # standard normal behind f_lambda = exp(omega_lambda * z)
    source: str = "built-in"
    f_lambda: np.ndarray | None = None  # set when the population already fixed it

    @property
    def n(self) -> int:
        return int(self.age.shape[0])


def builtin_population(n: int, seed: int) -> Population:
    """``n`` patients: age U(8, 45) y, cpep0 log-normal (median 0.7 nmol/L, sd log 0.4),
    weight from age (kg), and a standard-normal draw for ``f_lambda``.

    Chunk-invariant: patient i gets the same numbers whatever ``n`` (tregsim.rng streams).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(
            f"n must be a positive integer, got {n!r}", field="n", fix="pass e.g. --n 200"
        )

    def cov(g, m):
        u = g.random((m, 2))
        z = g.standard_normal((m, 2))
        return np.column_stack([u, z])

    c = _rng.draw(seed, "compare.covariates", 0, n, cov)
    z = _rng.draw(seed, "compare.iiv", 0, n, lambda g, m: g.standard_normal(m))
    lo, hi = AGE_RANGE_YEARS
    age = lo + (hi - lo) * c[:, 0]
    weight = np.interp(age, _WEIGHT_AGES, _WEIGHT_KG) * np.exp(WEIGHT_SDLOG * c[:, 2])
    cpep0 = CPEP0_MEDIAN_NMOL_L * np.exp(CPEP0_SDLOG * c[:, 3])
    return Population(age, weight, cpep0, z)


@dataclass(frozen=True)
class ArmSpec:
    """An arm: Treg infusion (cells/kg, days after diagnosis) and an optional IL-2 course."""

    name: str
    label: str
    dose_per_kg: float = 0.0  # cells/kg; 0 = no infusion
    infusion_days: tuple[float, ...] = ()
    dose_total: float | None = None  # cells (divided by weight) instead of dose_per_kg
    il2_iu_per_dose: float = 0.0  # IU per injection (divided by weight → IU/kg)
    il2_days: tuple[float, ...] = ()  # days after diagnosis
    control: bool = False

    @property
    def uses_il2(self) -> bool:
        return self.il2_iu_per_dose > 0 and len(self.il2_days) > 0

    def describe(self) -> str:
        parts = []
        if self.infusion_days:
            d = (
                f"{self.dose_total:.3g} cells"
                if self.dose_total is not None
                else f"{self.dose_per_kg:.3g} cells/kg"
            )
            parts.append(f"Tregs {d} on day {', '.join(f'{x:g}' for x in self.infusion_days)}")
        if self.uses_il2:
            parts.append(
                f"IL-2 {self.il2_iu_per_dose:.3g} IU/dose on days "
                f"{self.il2_days[0]:g}-{self.il2_days[-1]:g} ({len(self.il2_days)} doses)"
            )
        return " + ".join(parts) or "routine care"


def default_arms(
    dose_per_kg: float,
    infusion_day: float,
    il2_iu_per_dose: float = 0.0,
    il2_days: int = 5,
    il2_start_day: float | None = None,
) -> list[ArmSpec]:
    """control, treg and (if ``il2_iu_per_dose`` > 0) treg_il2 with daily IL-2 for
    ``il2_days`` days from ``il2_start_day`` (default: the infusion day)."""
    if not (np.isfinite(dose_per_kg) and dose_per_kg > 0):
        raise ArgumentError(
            f"dose per kg must be > 0 cells/kg, got {dose_per_kg}",
            field="--dose-per-kg",
            fix="pass e.g. --dose-per-kg 2e7",
        )
    if not (np.isfinite(infusion_day) and infusion_day >= 0):
        raise ArgumentError(
            f"infusion day must be ≥ 0 days after diagnosis, got {infusion_day}",
            field="--infusion-day",
            fix="pass e.g. --infusion-day 60",
        )
    if not (np.isfinite(il2_iu_per_dose) and il2_iu_per_dose >= 0):
        raise ArgumentError(
            f"IL-2 dose must be ≥ 0 IU, got {il2_iu_per_dose}",
            field="--il2",
            fix="pass IU per injection, e.g. --il2 1e6 (TILT: 0.3e6-1e6 IU)",
        )
    if il2_days < 1:
        raise ArgumentError(
            f"IL-2 course needs ≥ 1 day, got {il2_days}",
            field="--il2-days",
            fix="pass e.g. --il2-days 5 (TILT: five-day courses)",
        )
    arms = [
        ArmSpec(CONTROL, "routine care", control=True),
        ArmSpec("treg", "Tregs + routine care", dose_per_kg, (float(infusion_day),)),
    ]
    if il2_iu_per_dose > 0:
        start = float(infusion_day if il2_start_day is None else il2_start_day)
        days = tuple(start + np.arange(il2_days, dtype=float))
        arms.append(
            ArmSpec(
                "treg_il2",
                "Tregs + low-dose IL-2 + routine care",
                dose_per_kg,
                (float(infusion_day),),
                il2_iu_per_dose=float(il2_iu_per_dose),
                il2_days=days,
            )
        )
    return arms


def _model_params(model, pop: Population):
    """ParameterBatch of ``model`` for ``pop``: shared covariates, f_lambda from the shared z."""
    names = set(model.parameter_names)
    ov = {k: getattr(pop, k) for k in ("age", "weight", "cpep0") if k in names}
    if "f_lambda" in names:
        if pop.f_lambda is not None:
            ov["f_lambda"] = pop.f_lambda
        else:
            omega = model.defaults().get("omega_lambda", 0.0)
            ov["f_lambda"] = np.exp(omega * pop.z_lambda)
    return model.parameters(pop.n, **ov)


def _arm_doses(model, arm: ArmSpec, pop: Population):
    """Doses for ``arm`` in ``model`` (None = nothing), and whether IL-2 was dropped."""
    from tregsim.solve import Doses

    out = []
    n = pop.n
    if arm.infusion_days:
        k = len(arm.infusion_days)
        t = np.broadcast_to(np.asarray(arm.infusion_days, float), (n, k)).copy()
        per_kg = (
            np.full(n, arm.dose_per_kg) if arm.dose_total is None else arm.dose_total / pop.weight
        )
        out.append(Doses(time=t, amount=np.repeat(per_kg[:, None], k, axis=1), target="X"))
    dropped = False
    if arm.uses_il2:
        if "IL2" in model.spec.doses:
            k = len(arm.il2_days)
            t = np.broadcast_to(np.asarray(arm.il2_days, float), (n, k)).copy()
            a = np.repeat((arm.il2_iu_per_dose / pop.weight)[:, None], k, axis=1)  # IU/kg
            out.append(Doses(time=t, amount=a, target="IL2"))
        else:
            dropped = True
    return (out or None), dropped


@dataclass
class ComparisonResult:
    """Monthly C-peptide (nmol/L) per model and arm on shared virtual patients.

    table : pandas DataFrame with columns model, arm, month, day, n_ok,
        median_cpeptide_nmol_L, p5_cpeptide_nmol_L, p95_cpeptide_nmol_L,
        mean_delta_vs_control_nmol_L (paired mean over patients, arm − control; 0 for control).
    cpeptide : (model, arm) → (n, n_times) noise-free C-peptide, nmol/L.
    models : name → dict(title, n_states, variant_of, phi, phi_prior).
    arms : list of ArmSpec; skipped : (model, arm) → reason (e.g. no IL-2 in the model).
    """

    table: object
    cpeptide: dict
    times_days: np.ndarray
    models: dict
    arms: list
    population: str
    n: int
    seed: int
    skipped: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def header_lines(self) -> list[str]:
        """``# key: value`` lines: the models, φ of each (assumption ledger), arms, notes."""
        lines = []
        for name, m in self.models.items():
            v = f"variant of {m['variant_of']}" if m["variant_of"] else "core model"
            lines.append(f"# model: {name} ({m['n_states']} states; {v}): {m['title']}")
        for name, m in self.models.items():
            lines.append(
                f"# phi: {name}: {m['phi']} ({m['phi_prior']}) -- potency x homing "
                "of infused Tregs, the least known number; differences rest on it"
            )
        for a in self.arms:
            lines.append(f"# arm: {a.name}: {a.describe()}")
        lines.append(f"# population: {self.population}; n = {self.n}; seed = {self.seed}")
        for (mname, aname), why in self.skipped.items():
            lines.append(f"# skipped: {mname} x {aname}: {why}")
        for note in self.notes:
            lines.append(f"# note: {note}")
        lines.append(
            "# units: month = months after diagnosis (30.4375 d); day = days after "
            "diagnosis; C-peptide = MMTT 2-h AUC mean, nmol/L (noise-free model mean)"
        )
        return lines

    def to_csv_text(self) -> str:
        body = self.table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
        return "\n".join(self.header_lines()) + "\n" + body


def _model_info(model) -> dict:
    spec = model.spec
    phi = spec.parameters.get("phi")
    return {
        "title": spec.title,
        "n_states": len(model.state_names),
        "variant_of": spec.variant_of,
        "phi": "not in model" if phi is None else f"{phi.value:g}",
        "phi_prior": ("fixed" if phi is None or phi.prior is None else phi.prior.describe()),
    }


def compare_models(
    models,
    arms: list[ArmSpec],
    population: Population,
    *,
    times_days=None,
    seed: int = 0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> ComparisonResult:
    """Simulate ``population`` on each model under each arm (one batched call per model per arm).

    Parameters
    ----------
    models : compiled models (:func:`tregsim.load_model`) or names.
    arms : list of :class:`ArmSpec`; exactly one must be the control.
    population : shared patients (:func:`builtin_population` or :func:`population_from_experiment`).
    times_days : output times, days after diagnosis (default monthly to 24 months).
    """
    import pandas as pd

    from tregsim.model import load_model
    from tregsim.solve import simulate_arrays

    models = [load_model(m) if isinstance(m, str) else m for m in models]
    if not models:
        raise ArgumentError(
            "no models to compare",
            field="--models",
            fix="pass e.g. --models treg_t1d,treg_t1d_v0_empirical",
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ArgumentError(
            f"a model is listed twice: {names}", field="--models", fix="list each model once"
        )
    controls = [a.name for a in arms if a.control]
    if len(controls) != 1:
        raise ArgumentError(
            f"need exactly one control arm, got {controls}",
            field="arms",
            fix="mark one arm as control",
        )
    for m in models:
        if "cpeptide" not in m.observable_names:
            raise ArgumentError(
                f"model {m.name!r} has no 'cpeptide' observable",
                field="--models",
                fix="compare models that observe C-peptide",
            )
    if times_days is None:
        times_days = np.arange(25) * MONTH_DAYS
    times = np.asarray(times_days, dtype=float)
    ctrl = controls[0]
    arms = [a for a in arms if a.control] + [a for a in arms if not a.control]

    cpep, rows, skipped, notes = {}, [], {}, []
    for m in models:
        P = _model_params(m, population)
        for arm in arms:
            doses, dropped = _arm_doses(m, arm, population)
            if dropped and not arm.infusion_days:
                skipped[(m.name, arm.name)] = "model takes no IL2 doses"
                continue
            if dropped:
                if arm.name == "treg_il2":
                    skipped[(m.name, arm.name)] = "model takes no IL2 doses"
                    continue
                notes.append(f"{m.name} x {arm.name}: IL-2 adjunct ignored (no IL2 doses)")
            r = simulate_arrays(m, P, doses=doses, times=times, rtol=rtol, atol=atol)
            c = np.where(r.status[:, None] == 0, r.observables["cpeptide"], np.nan)
            cpep[(m.name, arm.name)] = c
    for m in models:
        base = cpep[(m.name, ctrl)]
        for arm in arms:
            c = cpep.get((m.name, arm.name))
            if c is None:
                continue
            ok = np.isfinite(c).all(axis=1)
            both = ok & np.isfinite(base).all(axis=1)
            with np.errstate(all="ignore"):
                q5, q50, q95 = (
                    np.quantile(c[ok], [0.05, 0.5, 0.95], axis=0)
                    if ok.any()
                    else np.full((3, times.size), np.nan)
                )
                delta = (
                    np.mean(c[both] - base[both], axis=0)
                    if both.any()
                    else np.full(times.size, np.nan)
                )
            for j, t in enumerate(times):
                rows.append(
                    {
                        "model": m.name,
                        "arm": arm.name,
                        "month": round(t / MONTH_DAYS, 4),
                        "day": t,
                        "n_ok": int(ok.sum()),
                        "median_cpeptide_nmol_L": q50[j],
                        "p5_cpeptide_nmol_L": q5[j],
                        "p95_cpeptide_nmol_L": q95[j],
                        "mean_delta_vs_control_nmol_L": delta[j],
                    }
                )
    table = pd.DataFrame(rows)
    return ComparisonResult(
        table,
        cpep,
        times,
        {m.name: _model_info(m) for m in models},
        list(arms),
        population.source,
        population.n,
        int(seed),
        skipped,
        notes,
    )


def population_from_experiment(exp, n: int, seed: int) -> tuple[Population, list[ArmSpec]]:
    """Patients from ``tregsim.population.sample_population`` and arms from the experiment.

    The experiment's IL-2 adjunct days (``il2_days``) are read as days after diagnosis.
    """
    from tregsim.population import sample_population
    from tregsim.regimen import RoutineCare

    pop = sample_population(exp, n, seed)
    cov = pop.covariates
    f = pop.individual.get("f_lambda")
    p = Population(
        np.asarray(cov["age"], float),
        np.asarray(cov["weight"], float),
        np.asarray(cov["cpep0"], float),
        np.zeros(pop.n),
        source=f"experiment {exp.path}",
        f_lambda=f,
    )
    if f is None:
        p.f_lambda = np.ones(pop.n)
    arms = []
    for name, arm in exp.arms.items():
        reg = arm.regimen
        adj = reg.adjuncts
        il2 = dict(il2_iu_per_dose=float(adj.il2_dose_iu), il2_days=tuple(adj.il2_days))
        if isinstance(reg, RoutineCare):
            arms.append(ArmSpec(name, arm.label, control=arm.control, **il2))
        else:
            if reg.target != "X":
                raise ArgumentError(
                    f"arm {name!r} doses into {reg.target!r}; compare infuses into X",
                    field=f"arms.{name}.regimen.target",
                    fix='use target = "X" (shared by every variant)',
                )
            arms.append(
                ArmSpec(
                    name,
                    arm.label,
                    float(reg.dose_per_kg or 0.0),
                    tuple(float(x) for x in reg.times_days),
                    dose_total=reg.dose_total,
                    control=arm.control,
                    **il2,
                )
            )
    return p, arms


__all__ = [
    "ArmSpec",
    "ComparisonResult",
    "Population",
    "builtin_population",
    "compare_models",
    "default_arms",
    "population_from_experiment",
]
