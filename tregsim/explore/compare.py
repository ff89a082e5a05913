"""Compare model variants on the same virtual patients (docs/models.md, variants).

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

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.regimen import Adjuncts, RoutineCare, TregInfusion, regimen_doses, takes_il2
from tregsim.units import DAYS_PER_MONTH

MONTH_DAYS = DAYS_PER_MONTH  # kept for callers of tregsim.explore.compare.MONTH_DAYS
CONTROL = "control"

# Built-in population (used when no experiment file is given), sampled by
# tregsim.population.sample_population like every experiment: age U(8, 45) y; MMTT C-peptide
# at diagnosis log-normal with median 0.7 nmol/L (Dufort 2019 month-0 mean 0.74 nmol/L) and
# SD of the log 0.4 (assumed; 90 % range about 0.36-1.35 nmol/L), i.e. mean 0.7·exp(0.08) and
# SD mean·sqrt(exp(0.16) − 1); body weight (kg) = median for age × exp(0.15 z) with rounded
# CDC 2000 50th percentiles (sexes averaged) for children and 75 kg for adults (assumed).
AGE_RANGE_YEARS = (8.0, 45.0)
CPEP0_MEDIAN_NMOL_L = 0.7
CPEP0_SDLOG = 0.4
_WEIGHT_AGES = [0.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 120.0]
_WEIGHT_KG = [25.7, 25.7, 32.2, 41.0, 50.1, 57.5, 62.0, 64.5, 75.0]
WEIGHT_SDLOG = 0.15
_BUILTIN_MEAN = CPEP0_MEDIAN_NMOL_L * float(np.exp(CPEP0_SDLOG**2 / 2))
_BUILTIN_SD = _BUILTIN_MEAN * float(np.sqrt(np.expm1(CPEP0_SDLOG**2)))
BUILTIN_EXPERIMENT = {
    "schema_version": 1,
    "name": "compare_builtin",
    "description": "built-in population of tregsim compare",
    "model": "treg_t1d",
    "visits_months": [0],
    "population": {
        "age": {
            "distribution": "uniform",
            "low": AGE_RANGE_YEARS[0],
            "high": AGE_RANGE_YEARS[1],
        },
        "weight": {
            "ages_years": _WEIGHT_AGES,
            "median_male_kg": _WEIGHT_KG,
            "median_female_kg": _WEIGHT_KG,
            "sd_log_child": WEIGHT_SDLOG,
            "sd_log_adult": WEIGHT_SDLOG,
        },
        "cpep_baseline": {"mean_nmol_L": [_BUILTIN_MEAN], "sd_nmol_L": [_BUILTIN_SD]},
    },
    "arms": {"control": {"control": True, "regimen": {"type": "routine_care"}}},
}


@dataclass
class Population:
    """Virtual patients shared by every model: covariates and the individual ``f_lambda``."""

    age: np.ndarray  # years
    weight: np.ndarray  # kg
    cpep0: np.ndarray  # nmol/L at diagnosis
    z_lambda: np.ndarray  # standard normal behind f_lambda = exp(omega_lambda * z) (0 if unused)
    source: str = "built-in"
    f_lambda: np.ndarray | None = None  # set when the population already fixed it

    @property
    def n(self) -> int:
        return int(self.age.shape[0])


def builtin_population(n: int, seed: int) -> Population:
    """``n`` patients of :data:`BUILTIN_EXPERIMENT`'s population (age U(8, 45) y, cpep0
    log-normal with median 0.7 nmol/L and SD of the log 0.4, weight from age, kg), drawn by
    :func:`tregsim.population.sample_population` (chunk-invariant: patient i is the same
    whatever ``n``)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ArgumentError(f"n must be a positive integer, got {n!r}", field="n", fix="pass n ≥ 1")
    from pathlib import Path

    from tregsim.experiment import parse_experiment

    exp = parse_experiment(BUILTIN_EXPERIMENT, Path("<built-in compare population>"))
    pop, _ = population_from_experiment(exp, int(n), seed)
    pop.source = "built-in"
    return pop


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

    def regimen(self, il2: bool = True):
        """This arm as a :class:`tregsim.regimen` regimen (IL-2 adjunct dropped if not ``il2``)."""
        adj = Adjuncts(self.il2_iu_per_dose, tuple(self.il2_days)) if il2 else Adjuncts()
        days = np.asarray(self.infusion_days, dtype=float)
        if days.size == 0:
            return RoutineCare(adj)
        steps = np.diff(days)
        if steps.size and not np.allclose(steps, steps[0], rtol=0, atol=1e-9):
            raise ArgumentError(
                f"arm {self.name!r}: infusion days {list(days)} are not evenly spaced",
                field=f"arms.{self.name}.infusion_days",
                fix="give evenly spaced infusion days",
            )
        return TregInfusion(
            float(days[0]),
            None if self.dose_total is not None else float(self.dose_per_kg),
            self.dose_total,
            int(days.size),
            float(steps[0]) if steps.size else 0.0,
            adjuncts=adj,
        )

    def describe(self) -> str:
        return self.regimen().describe()


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


def _model_params(model, pop: Population, values: Mapping[str, float] | None = None):
    """ParameterBatch of ``model`` for ``pop``: shared covariates, f_lambda from the shared z,
    and ``values`` (name → number, validated by the caller) replacing the file values for
    every patient (an ``omega_lambda`` among them scales f_lambda)."""
    values = dict(values or {})
    names = set(model.parameter_names)
    ov = {k: getattr(pop, k) for k in ("age", "weight", "cpep0") if k in names}
    if "f_lambda" in names:
        if pop.f_lambda is not None:
            ov["f_lambda"] = pop.f_lambda
        else:
            omega = values.get("omega_lambda", model.defaults().get("omega_lambda", 0.0))
            ov["f_lambda"] = np.exp(omega * pop.z_lambda)
    return model.parameters(pop.n, **(values | ov))


def _arm_doses(model, arm: ArmSpec, pop: Population):
    """Doses for ``arm`` in ``model`` (None = nothing), and whether IL-2 was dropped
    (:func:`tregsim.regimen.regimen_doses`; models without ``[doses.IL2]`` get no IL-2)."""
    dropped = arm.uses_il2 and not takes_il2(model)
    return regimen_doses(arm.regimen(il2=not dropped), pop.weight), dropped


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
        for name, m in self.models.items():
            if m.get("set"):
                vals = ", ".join(f"{k} = {v:g}" for k, v in m["set"].items())
                lines.append(f"# set: {name}: {vals} (replacing the model file's values)")
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


def _model_info(model, values: Mapping[str, float] | None = None) -> dict:
    spec = model.spec
    phi = spec.parameters.get("phi")
    values = dict(values or {})
    if phi is None:
        phi_text = "not in model"
    elif "phi" in values:
        phi_text = f"{values['phi']:g} (set; file value {phi.value:g})"
    else:
        phi_text = f"{phi.value:g}"
    return {
        "title": spec.title,
        "n_states": len(model.state_names),
        "variant_of": spec.variant_of,
        "phi": phi_text,
        "phi_prior": ("fixed" if phi is None or phi.prior is None else phi.prior.describe()),
        "set": values,
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
    values: Mapping[str, Mapping[str, float]] | None = None,
) -> ComparisonResult:
    """Simulate ``population`` on each model under each arm (one batched call per model per arm).

    Parameters
    ----------
    models : compiled models (:func:`tregsim.load_model`) or names.
    arms : list of :class:`ArmSpec`; exactly one must be the control.
    population : shared patients (:func:`builtin_population` or :func:`population_from_experiment`).
    times_days : output times, days after diagnosis (default monthly to 24 months).
    values : model name → {parameter: value} replacing that model's file values for every
        patient (validated by :func:`tregsim.explore.compare_study.compare_study`).
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
        P = _model_params(m, population, (values or {}).get(m.name))
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
        {m.name: _model_info(m, (values or {}).get(m.name)) for m in models},
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

    pop = sample_population(exp, n, seed)
    cov = pop.covariates
    f = pop.individual.get("f_lambda")
    z = np.zeros(pop.n)
    if f is not None:  # the standard normal behind f = typical · exp(sd · z)
        sd = exp.variability.sd_log.get("f_lambda", 0.0)
        sd = np.asarray(pop.params[sd], float) if isinstance(sd, str) else np.full(pop.n, sd)
        typical = exp.parameter_overrides.get("f_lambda", exp.model.defaults()["f_lambda"])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(
                sd > 0, np.log(np.asarray(f, float) / typical) / np.where(sd > 0, sd, 1), 0
            )
    p = Population(
        np.asarray(cov["age"], float),
        np.asarray(cov["weight"], float),
        np.asarray(cov["cpep0"], float),
        z,
        source=f"experiment {exp.path}",
        f_lambda=np.ones(pop.n) if f is None else f,
    )
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
