"""Experiment files (``experiments/*.toml``): a validated, runnable scenario.

An experiment names a model, a virtual population (covariates, inter-individual variability,
eligibility), arms with regimens, the MMTT visit schedule, the trial design and the run budgets.
:func:`load_experiment` validates everything before anything runs: unknown keys are rejected
with the valid ones listed, numbers are range-checked, and every error is an
:class:`~tregsim.errors.ExperimentFileError` naming the file, the dotted field and the fix.
The key-by-key reference is ``docs/experiments.md``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ArgumentError, ExperimentFileError, TregsimError
from tregsim.population.distributions import CovariateModel, parse_population
from tregsim.population.eligibility import Eligibility, parse_eligibility
from tregsim.regimen import RoutineCare, TregInfusion, parse_adjuncts, parse_regimen
from tregsim.schema import Table
from tregsim.units import DAYS_PER_MONTH

SCHEMA_VERSION = 1
RUN_SECTIONS = (
    "cohort",
    "natural_history",
    "power",
    "treatment_effect",
    "sweep",
    "sensitivity",
)
_RUN_KEYS = (
    "sections",
    "n_patients",
    "n_trials",
    "n_per_arm",
    "sweep_doses",
    "sweep_days",
    "sensitivity_n",
    "effect_phi",
    "variability",
)


@dataclass(frozen=True)
class Arm:
    """One arm: ``regimen.doses(pop)`` gives its :class:`tregsim.Doses` (``None`` = no cells)."""

    name: str
    label: str
    regimen: RoutineCare | TregInfusion
    control: bool = False


@dataclass(frozen=True)
class Variability:
    """Log-normal IIV: ``p_i = typical_i · exp(sd_i · (L z_i))`` with ``L L' = correlation``.

    ``sd_log[name]`` is a number, or the name of the model parameter that holds it
    (``"omega_lambda"`` for ``f_lambda`` when the file says ``sd_log = "model"``).
    """

    names: tuple[str, ...]
    sd_log: dict
    correlation: np.ndarray
    cholesky: np.ndarray


@dataclass
class Experiment:
    """A loaded experiment; see the module docstring and ``docs/experiments.md``.

    Attributes
    ----------
    path : the experiment file.
    model : the compiled model (``tregsim.load_model``); ``model_ref`` as written in the file.
    population : covariate distributions (:class:`~tregsim.population.CovariateModel`).
    variability : log-normal IIV of individual parameters (:class:`Variability`).
    eligibility : rules over covariates (:class:`~tregsim.population.Eligibility`).
    arms : name → :class:`Arm`; ``control_arm`` (str) and ``treatment_arms`` (list of str).
    visit_months : ``(n_visits,)`` months after the baseline visit (first = 0);
        ``visits_days`` : ``(n_visits,)`` days since diagnosis; ``baseline_day``,
        ``horizon_days`` : days since diagnosis.
    trial : ``{"n_total", "allocation", "n_per_arm": {arm: n}}``.
    parameter_overrides : model parameter name → value (model units) replacing the model
        file's value for every patient (``[parameters]`` of the file, then
        :func:`with_parameters`); they also win over a posterior's draws.
    sections : the ``[run]`` table (``sections``, ``n_patients``, ``n_trials``, ``n_per_arm``,
        ``sweep_doses``, ``sweep_days``, ``sensitivity_n``) with ``[run.quick]`` under
        ``"quick"``; ``run_quick`` merges the quick budget over it.
    """

    path: Path
    name: str
    description: str
    model: object
    model_ref: str
    population: CovariateModel
    variability: Variability
    eligibility: Eligibility
    arms: dict[str, Arm]
    control_arm: str
    treatment_arms: list[str]
    visit_months: np.ndarray
    baseline_day: float
    horizon_days: float
    trial: dict
    sections: dict = field(default_factory=dict)
    parameter_overrides: dict[str, float] = field(default_factory=dict)

    @property
    def visits_days(self) -> np.ndarray:
        """MMTT visit times, days since diagnosis, ``(n_visits,)``; the first is the baseline."""
        return self.baseline_day + DAYS_PER_MONTH * self.visit_months

    @property
    def run_quick(self) -> dict:
        """Budgets of ``[run.quick]`` (falls back to ``[run]``)."""
        return {
            **{k: v for k, v in self.sections.items() if k != "quick"},
            **self.sections.get("quick", {}),
        }

    def treatment_arm(self, name: str | None = None, *, field: str = "--arm") -> str:
        """``name`` checked to be a treatment arm (default: the first treatment arm).

        Raises ArgumentError naming ``field`` and the valid arms otherwise.
        """
        from tregsim.errors import ArgumentError

        arm = name or (self.treatment_arms[0] if self.treatment_arms else None)
        if arm not in self.arms or arm == self.control_arm:
            raise ArgumentError(
                f"arm {arm!r} is not a treatment arm of {self.name}",
                file=self.path,
                field=field,
                fix=f"use one of: {', '.join(self.treatment_arms)}",
            )
        return arm

    def input_files(self) -> dict[str, Path]:
        """role → path of every input file, for :func:`tregsim.io.build_manifest`."""
        out = {"experiment": self.path}
        mp = getattr(getattr(self.model, "spec", None), "path", None)
        if mp is not None and Path(mp).exists():
            out["model"] = Path(mp)
        return out


def parameter_override_errors(model, overrides: Mapping[str, object]):
    """Yield ``(name, problem, fix)`` for each bad entry of ``overrides`` and ``(name, value,
    None)`` for each good one (value parsed to float). Shared by ``[parameters]`` and
    :func:`with_parameters` so both give the same messages."""
    spec = model.spec.parameters
    settable = [n for n, p in spec.items() if p.role != "covariate"]
    for name, raw in overrides.items():
        if name not in spec:
            yield (
                name,
                f"unknown parameter {name!r} of model {model.spec.name!r}",
                (f"use one of: {', '.join(settable)}"),
            )
            continue
        p = spec[name]
        if p.role == "covariate":
            yield (
                name,
                f"{name!r} is a covariate (drawn per patient from [population])",
                ("change the covariate's distribution in [population] instead"),
            )
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            v = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            yield name, f"value {raw!r} is not a number", f"give {name} a number in {p.unit}"
            continue
        if not math.isfinite(v):
            yield name, f"value {raw!r} is not finite", f"give {name} a finite number in {p.unit}"
            continue
        if p.prior is not None:
            lo, hi = p.prior.bounds
            if not lo <= v <= hi:
                yield (
                    name,
                    (
                        f"value {v:g} lies outside the support [{lo:g}, {hi:g}] of its prior "
                        f"{p.prior.describe()}"
                    ),
                    f"give {name} a value in [{lo:g}, {hi:g}] {p.unit}",
                )
                continue
        yield name, v, None


def _parsed_overrides(model, overrides: Mapping[str, object], error) -> dict[str, float]:
    out = {}
    for name, v, fix in parameter_override_errors(model, overrides):
        if fix is not None:
            raise error(v, field=f"parameters.{name}", fix=fix)
        out[name] = v
    return out


def with_parameters(
    exp: Experiment, overrides: Mapping[str, float | str], *, origin: str = "--set"
) -> Experiment:
    """A copy of ``exp`` whose model parameters ``overrides`` (name → number or numeric
    string, model units) replace the model file's values for every patient.

    They are recorded in ``parameter_overrides`` (merged over the ones already there) and
    applied where population parameters are built (:func:`tregsim.population.sample_population`),
    so cohorts, power and sweeps see them. With a posterior in use an override of a
    posterior-covered parameter wins over the draws (the parameter is then fixed). For the
    typical value of an individual parameter (e.g. ``f_lambda``) the IIV still applies.

    Raises
    ------
    ArgumentError : one line naming ``parameters.NAME`` and a fix for an unknown name, a
        covariate, a non-number, NaN/inf, or a value outside the prior's support.
        ``origin`` (e.g. ``"--set"``) is recorded as the error's file slot, so the message
        says where the value came from.
    """
    if not isinstance(overrides, Mapping):
        raise ArgumentError(
            f"overrides must be a mapping name → value, got {type(overrides).__name__}",
            field="overrides",
            fix='pass e.g. {"phi": 20}',
        )

    def error(problem, *, field, fix):
        return ArgumentError(problem, file=origin, field=field, fix=fix)

    new = _parsed_overrides(exp.model, overrides, error)
    return dataclasses.replace(exp, parameter_overrides={**exp.parameter_overrides, **new})


def _load_model(ref: str, exp_path: Path, t: Table):
    from tregsim.model import load_model

    candidate = (exp_path.parent / ref) if ref.endswith(".toml") else None
    target = str(candidate) if candidate is not None and candidate.exists() else ref
    try:
        return load_model(target)
    except TregsimError as e:
        try:
            from tregsim.model import list_models

            known = ", ".join(list_models())
        except Exception:  # listing is only a hint for the message
            known = "the names in models/"
        raise ExperimentFileError(
            f"cannot load model {ref!r}: {e.problem}",
            file=exp_path,
            field="model",
            fix=f"use one of: {known}, or a path to a model .toml",
        ) from e
    except (FileNotFoundError, KeyError) as e:
        raise ExperimentFileError(
            f"unknown model {ref!r}",
            file=exp_path,
            field="model",
            fix="use a model name from `tregsim models` or a path to a model .toml",
        ) from e


def _parse_variability(t: Table, model) -> Variability:
    spec = model.spec.parameters
    individual = [n for n, p in spec.items() if p.role == "individual"]
    names, sds = [], {}
    corr_rows = t.data.get("correlations", [])
    for name in t.data:
        if name == "correlations":
            continue
        if name not in individual:
            raise t.error(
                f"{name!r} is not an individual parameter of model {model.spec.name!r}",
                key=name,
                fix=f"use one of: {', '.join(individual) or '(none)'}; or `correlations`",
            )
        pt = t.table(name)
        pt.check_keys(("sd_log",))
        raw = pt.data.get("sd_log", "model")
        if raw == "model":
            omega = getattr(spec[name], "iiv_sd", None) or "omega_" + name.removeprefix("f_")
            if omega not in spec:
                raise pt.error(
                    f"model declares no SD parameter ({omega!r}) for {name!r}",
                    key="sd_log",
                    fix="give sd_log as a number (SD of the log)",
                )
            sds[name] = omega
        else:
            sds[name] = pt.number("sd_log", lo=0.0, hi=5.0)
        names.append(name)
    if not t.data:  # default: every individual parameter with a declared iiv_sd
        for name in individual:
            omega = getattr(spec[name], "iiv_sd", None)
            if omega in spec:
                names.append(name)
                sds[name] = omega
    k = len(names)
    corr = np.eye(k)
    if not isinstance(corr_rows, list):
        raise t.error(
            "expected a list of [name, name, rho] triples",
            key="correlations",
            fix='write correlations = [["f_lambda", "f_x", 0.3]]',
        )
    for i, row in enumerate(corr_rows):
        key = f"correlations[{i}]"
        if (
            not isinstance(row, list)
            or len(row) != 3
            or row[0] not in names
            or row[1] not in names
            or row[0] == row[1]
            or isinstance(row[2], bool)
            or not isinstance(row[2], int | float)
            or not -1 < row[2] < 1
        ):
            raise t.error(
                f"bad correlation entry {row!r}",
                key=key,
                fix=f"write [name, other_name, rho] with names from {names} and -1 < rho < 1",
            )
        a, b = names.index(row[0]), names.index(row[1])
        corr[a, b] = corr[b, a] = float(row[2])
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError as e:
        raise t.error(
            "the correlation matrix is not positive definite",
            key="correlations",
            fix="reduce the magnitude of the correlations",
        ) from e
    return Variability(tuple(names), sds, corr, chol)


def _parse_run(t: Table, arms: list[str], nested: bool) -> dict:
    t.check_keys((*_RUN_KEYS, "quick") if nested else _RUN_KEYS)
    out: dict = {}
    if t.has("sections"):
        out["sections"] = t.strings("sections", choices=RUN_SECTIONS)
    for k in ("n_patients", "n_trials", "sensitivity_n"):
        if t.has(k):
            out[k] = t.integer(k, lo=1, hi=10**9)
    if t.has("effect_phi"):
        out["effect_phi"] = t.number("effect_phi", lo=0.0, hi=1e6)
    if t.has("variability"):  # docs/report.md; tregsim.population.structure
        out["variability"] = t.string("variability", choices=("records", "lumped"))
    if t.has("n_per_arm"):
        v = t.data["n_per_arm"]
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)
        ):
            raise t.error(
                f"expected a list of positive integers, got {v!r}",
                key="n_per_arm",
                fix="write n_per_arm = [10, 20, 40]",
            )
        out["n_per_arm"] = list(v)
    if t.has("sweep_doses"):
        out["sweep_doses"] = t.numbers("sweep_doses", lo=0.0, unit="cells/kg")
    if t.has("sweep_days"):
        out["sweep_days"] = t.numbers("sweep_days", lo=0.0, unit="days")
    if nested and t.has("quick"):
        out["quick"] = _parse_run(t.table("quick"), arms, nested=False)
    return out


def load_experiment(path: str | Path) -> Experiment:
    """Load and validate an experiment file.

    Parameters
    ----------
    path : path to an experiment file, or the name of a shipped one (``"nct06708780"`` is
        ``experiments/nct06708780.toml``; works from any folder and in a wheel install).

    Raises
    ------
    ExperimentFileError : naming the file, the dotted field and the fix.
    """
    from tregsim.resources import shipped_path

    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        path = shipped_path(f"experiments/{path.name}.toml")
    if not path.exists():
        names = sorted(p.stem for p in shipped_path("experiments").glob("*.toml"))
        raise ExperimentFileError(
            "file not found",
            file=path,
            fix=f"check the path, or name a shipped experiment: {', '.join(names)}",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ExperimentFileError(
            f"not valid TOML: {e}", file=path, fix="fix the TOML syntax at the reported line"
        ) from e
    return parse_experiment(data, path)


def parse_experiment(data: dict, path: Path) -> Experiment:
    """Validate the parsed TOML ``data`` of an experiment; ``path`` names it in errors and
    anchors relative model paths (see :func:`load_experiment`)."""
    path = Path(path)
    top = Table(data, path, "")
    top.check_keys(
        (
            "schema_version",
            "name",
            "description",
            "model",
            "visits_months",
            "baseline_day",
            "horizon_days",
            "population",
            "variability",
            "eligibility",
            "arms",
            "trial",
            "run",
            "parameters",
        ),
        required=("schema_version", "model", "visits_months", "population", "arms"),
    )
    sv = top.integer("schema_version")
    if sv != SCHEMA_VERSION:
        raise top.error(
            f"unsupported schema_version {sv}",
            key="schema_version",
            fix=f"set schema_version = {SCHEMA_VERSION}",
        )
    months = np.asarray(
        top.numbers("visits_months", lo=0.0, hi=600.0, increasing=True, unit="months")
    )
    if months[0] != 0.0:
        raise top.error(
            f"the first visit must be the baseline (month 0), got {months[0]:g}",
            key="visits_months",
            fix="start the list with 0",
        )
    baseline_day = top.number("baseline_day", default=0.0, lo=0.0, hi=3650.0, unit="days")
    last_visit = baseline_day + DAYS_PER_MONTH * months[-1]
    horizon = top.number(
        "horizon_days", default=float(np.ceil(last_visit)), lo=0.0, hi=36525.0, unit="days"
    )
    if horizon < last_visit:
        raise top.error(
            f"{horizon:g} days ends before the last visit on day {last_visit:.1f}",
            key="horizon_days",
            fix=f"set horizon_days ≥ {np.ceil(last_visit):g}",
        )

    model_ref = top.string("model")
    model = _load_model(model_ref, path, top)

    par_t = top.table("parameters", default={})
    overrides = _parsed_overrides(
        model,
        par_t.data,
        lambda p, *, field, fix: ExperimentFileError(p, file=path, field=field, fix=fix),
    )
    population = parse_population(top.table("population"))
    variability = _parse_variability(top.table("variability", default={}), model)
    eligibility = parse_eligibility(top.table("eligibility", default={}))

    arms_t = top.table("arms")
    if len(arms_t.data) < 1:
        raise arms_t.error("no arms", fix="add [arms.<name>] sections")
    arms: dict[str, Arm] = {}
    for name in arms_t.data:
        at = arms_t.table(name)
        at.check_keys(("label", "control", "regimen", "adjuncts"), required=("regimen",))
        adj = parse_adjuncts(at.table("adjuncts", default={}), model, horizon_days=horizon)
        regimen = parse_regimen(at.table("regimen"), adj, horizon_days=horizon)
        arms[name] = Arm(
            name, at.string("label", default=name), regimen, at.boolean("control", default=False)
        )
    controls = [a for a in arms.values() if a.control]
    if len(controls) != 1:
        raise arms_t.error(
            f"{len(controls)} arms are marked control = true; exactly one must be",
            fix="add `control = true` to the routine-care arm only",
        )
    control = controls[0].name
    treatment = [n for n in arms if n != control]

    trial_t = top.table("trial", default={})
    trial_t.check_keys(("n_total", "allocation", "n_per_arm"))
    n_total = trial_t.integer("n_total", default=20, lo=1, hi=10**7)
    allocation = trial_t.string(
        "allocation", default="randomized", choices=("randomized", "non-randomized")
    )
    npa_t = trial_t.table("n_per_arm", default={a: n_total // len(arms) for a in arms})
    npa_t.check_keys(list(arms), required=list(arms))
    n_per_arm = {a: npa_t.integer(a, lo=1, hi=10**7) for a in arms}
    if sum(n_per_arm.values()) != n_total:
        raise npa_t.error(
            f"arm sizes sum to {sum(n_per_arm.values())}, n_total is {n_total}",
            fix="make the arm sizes add up to n_total",
        )
    trial = {"n_total": n_total, "allocation": allocation, "n_per_arm": n_per_arm}

    run = _parse_run(top.table("run", default={}), list(arms), nested=True)

    exp = Experiment(
        path=path,
        name=top.string("name", default=path.stem),
        description=top.string("description", default=""),
        model=model,
        model_ref=model_ref,
        population=population,
        variability=variability,
        eligibility=eligibility,
        arms=arms,
        control_arm=control,
        treatment_arms=treatment,
        visit_months=months,
        baseline_day=baseline_day,
        horizon_days=horizon,
        trial=trial,
        sections=run,
        parameter_overrides=overrides,
    )
    from tregsim.population.sampling import check_feasible

    check_feasible(exp)
    return exp
