"""Calibration configuration files (``calibration/*.toml``), validated on load.

A configuration names the model, the data, the calibrated parameters (priors come from the
model file unless overridden), the summary statistics, the method, the simulation budget and
the seed. Unknown keys are rejected with a :class:`~tregsim.errors.ConfigFileError` naming
the file, the dotted field and the fix. See ``docs/calibration.md`` for every key.

Kinds of configuration, chosen by ``[method] kind``:

* ``"npe"`` (default): population NPE on per-age-group × month summaries
  (:class:`CalibrationConfig`, ``[data] summary``, ``[cohort] age_range_years``, ``[budget]``);
* ``"likelihood"``: the individual-level hierarchical likelihood (MAP + emcee) on long-format
  patient records (:class:`LikelihoodConfig`, ``[data] records`` and ``[data.columns]``,
  ``[method] n_walkers, n_steps, burn, thin, n_starts, n_zeta, table``);
* ``"structure_likelihood"``: the posterior of a structure of individual variability
  (:mod:`tregsim.calibrate.variability`) on long-format records by emcee
  (:class:`StructureConfig`, ``[parameters] candidate``, every free parameter's prior in
  ``[parameters.priors]``).
* ``"npe_structure"``: NPE of the records' structure of individual variability on per-visit
  and within-patient summaries of records-like simulated cohorts
  (:mod:`tregsim.calibrate.structure_config`, which validates it).

A key of the other kind is rejected with a message saying which kind it belongs to.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.calibrate.sections import config_sections as _sections
from tregsim.errors import ConfigFileError
from tregsim.schema import Field, Table
from tregsim.units import LLOQ_NMOL_L, RESPONDER_THRESHOLD_NMOL_L

SUMMARY_STATISTICS = ("mean_ln_x_plus_1", "sd_ln_x_plus_1", "frac_above_threshold")
"""Statistics per age group × month that the placebo-cohort simulator can produce."""

AGE_GROUPS = ("<13", "13-17", ">=18")

# schema: key -> (type or tuple of types, required, default)
_SCHEMA: dict[str, dict] = {
    "": {
        "schema_version": (int, True, None),
        "name": (str, True, None),
        "description": (str, False, ""),
        "model": (str, True, None),
        "seed": (int, True, None),
        "data": (dict, True, None),
        "cohort": (dict, True, None),
        "observation": (dict, False, {}),
        "parameters": (dict, True, None),
        "summaries": (dict, False, {}),
        "method": (dict, False, {}),
        "budget": (dict, False, {}),
        "solver": (dict, False, {}),
    },
    "data": {
        "summary": (str, True, None),
        "age_groups": (list, False, list(AGE_GROUPS)),
        "months": (list, True, None),
    },
    "cohort": {
        "age_range_years": (dict, True, None),
        "baseline_day": (float, False, 0.0),
    },
    "observation": {
        "lloq_nmol_l": (float, False, LLOQ_NMOL_L),
        "below_lloq": (str, False, "half_lloq"),
        "threshold_nmol_l": (float, False, RESPONDER_THRESHOLD_NMOL_L),
    },
    "parameters": {
        "calibrate": (list, True, None),
        "priors": (dict, False, {}),
        "fixed": (dict, False, {}),
    },
    "summaries": {
        "statistics": (list, False, list(SUMMARY_STATISTICS)),
    },
    "method": {
        "kind": (str, False, "npe"),
        "density_estimator": (str, False, "maf"),
        "hidden_features": (int, False, 50),
        "num_transforms": (int, False, 5),
        "training_batch_size": (int, False, 200),
        "learning_rate": (float, False, 5e-4),
        "stop_after_epochs": (int, False, 20),
        "max_num_epochs": (int, False, 500),
        "n_posterior_draws": (int, False, 2000),
        "n_sbc_datasets": (int, False, 200),
        "n_ensemble": (int, False, 1),
        "n_predictive_draws": (int, False, 200),
    },
    "budget": {
        "n_simulations": (int, False, 3000),
        "chunk_size": (int, False, 100),
    },
    "solver": {
        "rtol": (float, False, 1e-5),
        "atol": (float, False, 1e-8),
    },
}

# kind = "likelihood": individual-level hierarchical likelihood on long-format records
_LIK_SCHEMA: dict[str, dict] = {
    "": {
        "schema_version": (int, True, None),
        "name": (str, True, None),
        "description": (str, False, ""),
        "model": (str, True, None),
        "seed": (int, True, None),
        "data": (dict, True, None),
        "cohort": (dict, False, {}),
        "observation": (dict, False, {}),
        "parameters": (dict, True, None),
        "method": (dict, True, None),
        "solver": (dict, False, {}),
    },
    "data": {
        "records": (str, True, None),
        "columns": (dict, False, {}),
    },
    "cohort": {
        "baseline_day": (float, False, 0.0),
    },
    "observation": {
        "lloq_nmol_l": (float, False, LLOQ_NMOL_L),
    },
    "parameters": _SCHEMA["parameters"],
    "method": {
        "kind": (str, True, None),
        "n_walkers": (int, False, 32),
        "n_steps": (int, False, 1500),
        "burn": (int, False, 500),
        "thin": (int, False, 5),
        "n_starts": (int, False, 8),
        "n_zeta": (int, False, 16),
        "table": (dict, False, {}),
        "min_ess": (float, False, 400.0),
        "max_steps": (int, False, 0),
    },
    "solver": {
        "rtol": (float, False, 1e-6),
        "atol": (float, False, 1e-9),
    },
}
_LIK_TABLE = {  # [method] table = {...}: resolution of the tabulated C-peptide curve
    "n_loglam": Field(int, default=321, lo=11),
    "n_q": Field(int, default=41, lo=3),
    "day_step": Field(float, default=5.0, lo=1e-9, hi=60.0, unit="days"),
}
_LIK_POSITIVE = ("lambda_ref", "omega_lambda", "sigma", "sd_log_cpep0")
"""Likelihood parameters whose prior must have support in [0, inf)."""
_LIK_NOT_FIXABLE = ("age", "f_lambda", "cpep0")
"""Set per participant by the likelihood (covariate, random effect, baseline)."""

_BELOW_LLOQ = ("half_lloq", "lloq", "keep")
_METHODS = ("npe", "likelihood", "npe_structure", "structure_likelihood")
_ESTIMATORS = ("maf", "nsf", "mdn")


@dataclass(frozen=True)
class CalibrationConfig:
    """A validated calibration configuration (paths resolved against the file's folder)."""

    path: Path
    name: str
    description: str
    model: str
    seed: int
    summary_path: Path
    age_groups: tuple[str, ...]
    months: tuple[int, ...]
    age_range_years: dict[str, tuple[float, float]]
    baseline_day: float
    lloq_nmol_l: float
    below_lloq: str
    threshold_nmol_l: float
    calibrate: tuple[str, ...]
    prior_overrides: dict[str, dict]
    fixed: dict[str, float]
    statistics: tuple[str, ...]
    method: dict = field(default_factory=dict)
    n_simulations: int = 3000
    chunk_size: int = 100
    rtol: float = 1e-5
    atol: float = 1e-8
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.method.get("kind", "npe")

    def settings(self) -> dict:
        """Everything that determines results (for manifests)."""
        return {k: v for k, v in self.raw.items() if k != "description"}


@dataclass(frozen=True)
class LikelihoodConfig:
    """A validated ``[method] kind = "likelihood"`` configuration (individual-level records).

    ``method`` holds every sampler setting with its default filled in (``kind``,
    ``n_walkers``, ``n_steps``, ``burn``, ``thin``, ``n_starts``, ``n_zeta`` and ``table``
    = {``n_loglam``, ``n_q``, ``day_step``}); ``columns`` maps the long-format names
    (``id``, ``day``, ``cpeptide_nmol_l``, ``age``) to the records' own column names.
    """

    path: Path
    name: str
    description: str
    model: str
    seed: int
    records_path: Path
    columns: dict[str, str]
    baseline_day: float
    lloq_nmol_l: float
    calibrate: tuple[str, ...]
    prior_overrides: dict[str, dict]
    fixed: dict[str, float]
    method: dict = field(default_factory=dict)
    rtol: float = 1e-6
    atol: float = 1e-9
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return "likelihood"

    def settings(self) -> dict:
        """Everything that determines results (for manifests), defaults filled in."""
        out = {k: v for k, v in self.raw.items() if k != "description"}
        out["method"] = dict(self.method)
        out["solver"] = {"rtol": self.rtol, "atol": self.atol}
        out["cohort"] = {"baseline_day": self.baseline_day}
        out["observation"] = {"lloq_nmol_l": self.lloq_nmol_l}
        return out


def _check_table(
    table: dict, section: str, file: Path, schema: dict | None = None, kind: str = "npe"
) -> dict:
    """Validate ``[section]`` with :meth:`tregsim.schema.Table.fields`; a key of the other
    kind of configuration gets a fix saying which kind it belongs to."""
    schema = (_SCHEMA if schema is None else schema)[section]
    other, other_schema = ("likelihood", _LIK_SCHEMA) if kind == "npe" else ("npe", _SCHEMA)
    elsewhere = {
        k: f"it is used only with method.kind = {other!r}, this file has method.kind = "
        f"{kind!r}: remove it, or set [method] kind = {other!r} (see docs/calibration.md)"
        for k in other_schema.get(section, {})
        if k not in schema
    }
    fields = {k: Field(typ, required, default) for k, (typ, required, default) in schema.items()}
    return Table(table, file, section, ConfigFileError).fields(fields, elsewhere=elsewhere)


def _config_priors(params, model, path, need, *, allowed, why: str, fix: str) -> dict:
    """``[parameters.priors]`` parsed (name → Prior) for names in ``allowed``; every name of
    ``need`` must have a prior, in the model file or in that table."""
    from tregsim.model.priors import parse_prior

    for name in need:
        if model.spec.parameters[name].prior is None and name not in params["priors"]:
            raise ConfigFileError(
                f"{name!r} has no prior in the model file",
                file=path,
                field=f"parameters.priors.{name}",
                fix="add a prior table, e.g. {dist='lognormal', ...}",
            )
    out = {}
    for name, table in params["priors"].items():
        key = f"parameters.priors.{name}"
        if name not in allowed:
            raise ConfigFileError(f"prior for {name!r}, {why}", file=path, field=key, fix=fix)
        try:
            out[name] = parse_prior(table, file=path, key=key)
        except Exception as e:
            raise ConfigFileError(
                str(e), file=path, field=key, fix="see docs/calibration.md for prior tables"
            ) from e
    return out


def _check_fixed_values(fixed: dict, model, path: Path) -> None:
    for name, value in fixed.items():
        if (
            name not in model.parameter_names
            or not isinstance(value, int | float)
            or isinstance(value, bool)
        ):
            raise ConfigFileError(
                f"cannot fix {name!r} = {value!r}",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="give a model parameter name and a number",
            )


def _baseline_day(sec: dict, path: Path, visit: str) -> float:
    value = sec["cohort"]["baseline_day"]
    if not (np.isfinite(value) and 0.0 <= value <= 365.0):
        raise ConfigFileError(
            f"baseline_day = {value}",
            file=path,
            field="cohort.baseline_day",
            fix=f"give the days from diagnosis to {visit}, in [0, 365] (e.g. 60)",
        )
    return float(value)


def _check_tolerances(sec: dict, path: Path, example: str) -> None:
    for key in ("rtol", "atol"):
        v = sec["solver"][key]
        if not (np.isfinite(v) and 0 < v < 1):
            raise ConfigFileError(
                f"{key} must be in (0, 1), got {v}",
                file=path,
                field=f"solver.{key}",
                fix=f"give a positive tolerance, e.g. {example}",
            )


def load_config(path: str | Path) -> CalibrationConfig | LikelihoodConfig:
    """Read and validate a calibration TOML file.

    Returns a :class:`CalibrationConfig` for ``[method] kind = "npe"`` (the default) and a
    :class:`LikelihoodConfig` for ``kind = "likelihood"``; both have ``.kind``.

    Raises
    ------
    ConfigFileError
        Unreadable TOML, unknown or missing keys, wrong types, parameters that are not
        population parameters of the model, unknown statistics or age groups; for the
        likelihood also missing records files, unknown column mappings, parameters the
        likelihood cannot calibrate and inconsistent sampler settings.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(
            "file not found",
            file=path,
            fix="give the path of a calibration TOML file, e.g. "
            "calibration/natural_history_npe.toml",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"not valid TOML ({e})", file=path, fix="fix the TOML syntax") from e
    meth_raw = raw.get("method")
    if isinstance(meth_raw, dict) and meth_raw.get("kind") == "likelihood":
        return _load_likelihood(raw, path)
    if isinstance(meth_raw, dict) and meth_raw.get("kind") == STRUCTURE_KIND:
        return _load_structure(raw, path)
    if isinstance(meth_raw, dict) and meth_raw.get("kind") == "npe_structure":
        # NPE on the records' structure (docs/calibration.md, "NPE on within-patient statistics")
        from tregsim.calibrate.structure_config import load_structure_config

        return load_structure_config(raw, path)
    top, sec, model = _sections(
        raw, path, _SCHEMA, lambda table, name: _check_table(table, name, path)
    )
    params = sec["parameters"]
    calibrate = tuple(params["calibrate"])
    if not calibrate or len(set(calibrate)) != len(calibrate):
        raise ConfigFileError(
            "empty or repeated parameter names",
            file=path,
            field="parameters.calibrate",
            fix="list each parameter once",
        )
    for name in calibrate:
        p = model.spec.parameters.get(name)
        if p is None:
            raise ConfigFileError(
                f"{name!r} is not a parameter of model {top['model']!r}",
                file=path,
                field="parameters.calibrate",
                fix=f"use names from {list(model.parameter_names)}",
            )
        if p.role not in ("population", "fixed"):
            raise ConfigFileError(
                f"{name!r} has role {p.role!r}; only population/fixed "
                "parameters can be calibrated here",
                file=path,
                field="parameters.calibrate",
                fix="remove it",
            )
    _config_priors(
        params,
        model,
        path,
        calibrate,
        allowed=calibrate,
        why="which is not calibrated",
        fix="add it to parameters.calibrate or drop the prior",
    )
    _check_fixed_values(params["fixed"], model, path)
    for name in params["fixed"]:
        if name in calibrate:
            raise ConfigFileError(
                f"{name!r} is both fixed and calibrated",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="choose one",
            )

    data = sec["data"]
    groups = tuple(
        Table(data, path, "data", ConfigFileError).strings("age_groups", choices=AGE_GROUPS)
    )
    months = data["months"]
    if (
        not months
        or any(not isinstance(m, int) or m < 0 for m in months)
        or 0 not in months
        or sorted(months) != months
    ):
        raise ConfigFileError(
            f"months {months!r} must be increasing non-negative integers starting with 0",
            file=path,
            field="data.months",
            fix="e.g. months = [0, 3, 6, 12, 18, 24]",
        )
    summary_path = (path.parent / data["summary"]).resolve()
    if not summary_path.is_file():
        raise ConfigFileError(
            f"summary data {data['summary']!r} not found (resolved against this file's folder)",
            file=path,
            field="data.summary",
            fix="give a path relative to this file",
        )

    ranges = {}
    for g in groups:
        r = sec["cohort"]["age_range_years"].get(g)
        if (
            not isinstance(r, list)
            or len(r) != 2
            or not all(isinstance(v, int | float) for v in r)
            or not 0 < r[0] < r[1]
        ):
            raise ConfigFileError(
                f"age range for {g!r} is {r!r}",
                file=path,
                field=f"cohort.age_range_years.{g}",
                fix="give [lower, upper] in years, lower < upper",
            )
        ranges[g] = (float(r[0]), float(r[1]))

    baseline_day = _baseline_day(sec, path, "the month-0 visit")
    obs = sec["observation"]
    if obs["below_lloq"] not in _BELOW_LLOQ:
        raise ConfigFileError(
            f"below_lloq = {obs['below_lloq']!r}",
            file=path,
            field="observation.below_lloq",
            fix=f"use one of {_BELOW_LLOQ}",
        )
    stats = tuple(
        Table(sec["summaries"], path, "summaries", ConfigFileError).strings(
            "statistics", choices=SUMMARY_STATISTICS
        )
    )
    meth = sec["method"]
    if meth["kind"] not in _METHODS:
        raise ConfigFileError(
            f"method {meth['kind']!r}", file=path, field="method.kind", fix=f"use one of {_METHODS}"
        )
    if meth["density_estimator"] not in _ESTIMATORS:
        raise ConfigFileError(
            f"density estimator {meth['density_estimator']!r}",
            file=path,
            field="method.density_estimator",
            fix=f"use one of {_ESTIMATORS}",
        )
    if meth["n_ensemble"] < 1 or meth["n_ensemble"] > 20:
        raise ConfigFileError(
            f"n_ensemble = {meth['n_ensemble']}",
            file=path,
            field="method.n_ensemble",
            fix="give the number of flows to train and mix, 1-20 (e.g. 4)",
        )
    _check_tolerances(sec, path, "rtol = 1e-5, atol = 1e-8")
    bud = sec["budget"]
    for key in ("n_simulations", "chunk_size"):
        if bud[key] < 1:
            raise ConfigFileError(
                f"{key} = {bud[key]}",
                file=path,
                field=f"budget.{key}",
                fix="give a positive integer",
            )
    return CalibrationConfig(
        path=path.resolve(),
        name=top["name"],
        description=top["description"],
        model=top["model"],
        seed=top["seed"],
        summary_path=summary_path,
        age_groups=groups,
        months=tuple(months),
        age_range_years=ranges,
        baseline_day=baseline_day,
        lloq_nmol_l=obs["lloq_nmol_l"],
        below_lloq=obs["below_lloq"],
        threshold_nmol_l=obs["threshold_nmol_l"],
        calibrate=calibrate,
        prior_overrides=dict(params["priors"]),
        fixed={k: float(v) for k, v in params["fixed"].items()},
        statistics=stats,
        method=meth,
        n_simulations=bud["n_simulations"],
        chunk_size=bud["chunk_size"],
        rtol=sec["solver"]["rtol"],
        atol=sec["solver"]["atol"],
        raw=raw,
    )


def _check_ess_floor(meth: dict, path: Path) -> None:
    """``[method] min_ess`` ≥ 0 and ``max_steps`` 0 (4 × ``n_steps``) or ≥ ``n_steps``: the
    ESS floor of both record likelihoods."""
    if not meth["min_ess"] >= 0:
        raise ConfigFileError(
            f"min_ess = {meth['min_ess']} is negative",
            file=path,
            field="method.min_ess",
            fix="give the effective sample size to run until (e.g. 400), or 0 to turn it off",
        )
    if meth["max_steps"] < 0 or 0 < meth["max_steps"] < meth["n_steps"]:
        raise ConfigFileError(
            f"max_steps = {meth['max_steps']} is below n_steps = {meth['n_steps']}",
            file=path,
            field="method.max_steps",
            fix="give max_steps ≥ n_steps, or 0 for 4 × n_steps",
        )


def _load_likelihood(raw: dict, path: Path) -> LikelihoodConfig:
    """Validate a ``[method] kind = "likelihood"`` configuration (see :func:`load_config`)."""
    from tregsim.calibrate.data import LONG_FORMAT
    from tregsim.calibrate.likelihood import BASELINE_NAMES, BASELINE_PRIORS, POP_NAMES

    def check(table, section):
        return _check_table(table, section, path, _LIK_SCHEMA, kind="likelihood")

    top, sec, model = _sections(raw, path, _LIK_SCHEMA, check)

    # parameters: the likelihood always calibrates the same five (+ two baseline ones)
    params = sec["parameters"]
    calibrate = tuple(params["calibrate"])
    pop = ", ".join(POP_NAMES)
    for name in calibrate:
        if name not in POP_NAMES:
            raise ConfigFileError(
                f"{name!r} cannot be calibrated by the individual-level likelihood, which "
                f"calibrates exactly {pop} (plus {', '.join(BASELINE_NAMES)}, always)",
                file=path,
                field="parameters.calibrate",
                fix=f"use calibrate = {list(POP_NAMES)}, or method.kind = 'npe'",
            )
    missing = [n for n in POP_NAMES if n not in calibrate]
    if missing or len(set(calibrate)) != len(calibrate):
        raise ConfigFileError(
            f"the likelihood calibrates all of {pop}; missing or repeated: "
            f"{missing or sorted({n for n in calibrate if calibrate.count(n) > 1})}",
            file=path,
            field="parameters.calibrate",
            fix=f"use calibrate = {list(POP_NAMES)} (each once)",
        )
    for name in POP_NAMES:
        p = model.spec.parameters.get(name)
        if p is None:
            raise ConfigFileError(
                f"{name!r} is not a parameter of model {top['model']!r}",
                file=path,
                field="model",
                fix="use a model with the natural-history parameters (e.g. treg_t1d)",
            )
    priors = (
        dict(zip(BASELINE_NAMES, BASELINE_PRIORS))
        | {n: model.spec.parameters[n].prior for n in POP_NAMES}
        | _config_priors(
            params,
            model,
            path,
            POP_NAMES,
            allowed=POP_NAMES + BASELINE_NAMES,
            why="which the likelihood does not calibrate",
            fix=f"give priors only for {list(POP_NAMES + BASELINE_NAMES)}",
        )
    )
    for name, prior in priors.items():
        lo, hi = prior.bounds
        if (name in _LIK_POSITIVE and lo < 0) or (name == "q" and (lo < 0 or hi > 1)):
            where = "[0, 1]" if name == "q" else "[0, inf)"
            raise ConfigFileError(
                f"the prior of {name!r} has support [{lo:g}, {hi:g}], outside {where}",
                file=path,
                field=f"parameters.priors.{name}",
                fix=f"give a prior on {where} (e.g. lognormal, halfnormal"
                + (", beta" if name == "q" else "")
                + ")",
            )
    _check_fixed_values(params["fixed"], model, path)
    for name in params["fixed"]:
        if name in POP_NAMES:
            raise ConfigFileError(
                f"{name!r} is both fixed and calibrated (the likelihood calibrates {pop})",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="remove it from parameters.fixed, or use method.kind = 'npe'",
            )
        if name in _LIK_NOT_FIXABLE:
            raise ConfigFileError(
                f"{name!r} is set per participant by the likelihood (age from the records, "
                "f_lambda and cpep0 are random effects)",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="remove it",
            )

    # data: the long-format records and the column mapping
    records, columns = _records_and_columns(sec["data"], path, LONG_FORMAT)
    for key, col in columns.items():
        if not col:
            raise ConfigFileError(
                "empty column name",
                file=path,
                field=f"data.columns.{key}",
                fix=f'give the CSV column that holds {key}, e.g. {key} = "{key}"',
            )

    baseline_day = _baseline_day(sec, path, "the visit at data day 0")
    lloq = sec["observation"]["lloq_nmol_l"]
    if not (np.isfinite(lloq) and lloq > 0):
        raise ConfigFileError(
            f"lloq_nmol_l = {lloq}",
            file=path,
            field="observation.lloq_nmol_l",
            fix="give the assay's lower limit of quantification in nmol/L (e.g. 0.017)",
        )

    # sampler settings
    meth = dict(sec["method"])
    d = len(POP_NAMES) + len(BASELINE_NAMES)
    limits = {  # key: (lowest, fix)
        "n_walkers": (2 * d, f"give at least {2 * d} walkers (twice the {d} parameters)"),
        "n_steps": (2, "give a positive number of steps, e.g. 1500"),
        "burn": (0, "give a number of burn-in steps >= 0, e.g. 500"),
        "thin": (1, "give a thinning interval >= 1, e.g. 5"),
        "n_starts": (1, "give at least one MAP start, e.g. 8"),
        "n_zeta": (2, "give the Gauss-Hermite nodes for censored visits, e.g. 16"),
    }
    for key, (lowest, fix) in limits.items():
        if meth[key] < lowest:
            raise ConfigFileError(
                f"{key} = {meth[key]} (at least {lowest})",
                file=path,
                field=f"method.{key}",
                fix=fix,
            )
    if meth["n_steps"] <= meth["burn"]:
        raise ConfigFileError(
            f"n_steps = {meth['n_steps']} is not larger than burn = {meth['burn']}",
            file=path,
            field="method.n_steps",
            fix="make n_steps larger than burn (e.g. n_steps = 1500, burn = 500)",
        )
    if meth["n_steps"] - meth["burn"] < meth["thin"]:
        raise ConfigFileError(
            f"thin = {meth['thin']} keeps no step after burn-in "
            f"({meth['n_steps'] - meth['burn']} steps)",
            file=path,
            field="method.thin",
            fix="make thin smaller or n_steps larger",
        )
    _check_ess_floor(meth, path)
    table = Table(meth["table"], path, "method.table", ConfigFileError).fields(_LIK_TABLE)
    meth["table"] = table
    _check_tolerances(sec, path, "rtol = 1e-6, atol = 1e-9")
    return LikelihoodConfig(
        path=path.resolve(),
        name=top["name"],
        description=top["description"],
        model=top["model"],
        seed=top["seed"],
        records_path=records,
        columns=columns,
        baseline_day=baseline_day,
        lloq_nmol_l=float(lloq),
        calibrate=tuple(POP_NAMES),
        prior_overrides=dict(params["priors"]),
        fixed={k: float(v) for k, v in params["fixed"].items()},
        method=meth,
        rtol=sec["solver"]["rtol"],
        atol=sec["solver"]["atol"],
        raw=raw,
    )


# ---------------------------------------------------------------- kind = "structure_likelihood"
STRUCTURE_KIND = "structure_likelihood"
_STRUCT_COLUMNS = ("study", "id", "age", "day", "month", "cpeptide_nmol_l")
_STRUCT_SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "schema_version": Field(int, required=True),
        "name": Field(str, required=True),
        "description": Field(str, default=""),
        "model": Field(str, required=True),
        "seed": Field(int, required=True),
        "data": Field(dict, required=True),
        "cohort": Field(dict, default={}),
        "observation": Field(dict, default={}),
        "parameters": Field(dict, required=True),
        "method": Field(dict, required=True),
    },
    "data": {"records": Field(str, required=True), "columns": Field(dict, default={})},
    "cohort": {"baseline_day": Field(float, default=60.0)},
    "observation": {"lloq_nmol_l": Field(float, default=LLOQ_NMOL_L)},
    "parameters": {
        "candidate": Field(str, required=True),
        "calibrate": Field(list, required=True),
        "priors": Field(dict, required=True),
        "fixed": Field(dict, default={}),
    },
    "method": {
        "kind": Field(str, required=True),
        "n_walkers": Field(int, default=24, lo=2),
        "n_steps": Field(int, default=600, lo=2),
        "burn": Field(int, default=150, lo=0),
        "thin": Field(int, default=3, lo=1),
        "n_zeta": Field(int, default=37, lo=5),
        "n_eta": Field(int, default=33, lo=5),
        "zeta_nodes": Field(str, default="adaptive", choices=("adaptive", "fixed")),
        "eta_nodes": Field(str, default="fixed", choices=("fixed", "adaptive")),
        "n_xi": Field(int, default=1, lo=1, hi=15),
        "move": Field(
            str, default="independence", choices=("independence", "stretch", "slice", "auto")
        ),
        "min_ess": Field(float, default=400.0, lo=0.0),
        "max_steps": Field(int, default=0, lo=0),
        "n_predictive_draws": Field(int, default=400, lo=20),
        "n_bootstrap": Field(int, default=2000, lo=100),
        "table": Field(dict, default={}),
    },
}
_STRUCT_TABLE = {
    "n_loglam": Field(int, default=121, lo=11),
    "n_q": Field(int, default=21, lo=3),
    "day_step": Field(float, default=5.0, lo=1e-9, hi=60.0, unit="days"),
}


@dataclass(frozen=True)
class StructureConfig:
    """A validated ``[method] kind = "structure_likelihood"`` configuration.

    ``priors``: free parameter → :class:`~tregsim.model.priors.Prior` (every free parameter of
    ``candidate`` has one, given in the file); ``fixed``: model parameters of the curve table
    (e.g. s0, k_re), written into the posterior as constant draws; ``columns``: long-format
    name (``study``, ``id``, ``age``, ``day``, ``month``, ``cpeptide_nmol_l``) → CSV column;
    ``method``: sampler settings with defaults filled in.
    """

    path: Path
    name: str
    description: str
    model: str
    seed: int
    records_path: Path
    columns: dict[str, str]
    baseline_day: float
    lloq_nmol_l: float
    candidate: str
    calibrate: tuple[str, ...]
    priors: dict = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    method: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return STRUCTURE_KIND

    def settings(self) -> dict:
        """Everything that determines results (for manifests), defaults filled in."""
        out = {k: v for k, v in self.raw.items() if k != "description"}
        out["method"] = dict(self.method)
        out["cohort"] = {"baseline_day": self.baseline_day}
        out["observation"] = {"lloq_nmol_l": self.lloq_nmol_l}
        return out


def _load_structure(raw: dict, path: Path) -> StructureConfig:
    """Validate a ``[method] kind = "structure_likelihood"`` configuration."""
    from tregsim.calibrate.variability import CANDIDATES, PARAMS
    from tregsim.errors import TregsimError
    from tregsim.model.priors import parse_prior

    def check(table, section):
        return Table(table, path, section, ConfigFileError).fields(_STRUCT_SCHEMA[section])

    top, sec, model = _sections(raw, path, _STRUCT_SCHEMA, check)
    params = sec["parameters"]
    cand = params["candidate"]
    if cand not in CANDIDATES:
        raise ConfigFileError(
            f"unknown structure {cand!r}",
            file=path,
            field="parameters.candidate",
            fix=f"use one of {sorted(CANDIDATES)}",
        )
    free = CANDIDATES[cand][0]
    calibrate = params["calibrate"]
    if sorted(map(str, calibrate)) != sorted(free) or len(set(calibrate)) != len(calibrate):
        raise ConfigFileError(
            f"calibrate = {calibrate!r} is not the free parameters of {cand!r}",
            file=path,
            field="parameters.calibrate",
            fix=f"list each of {list(free)} once",
        )
    priors = {}
    for name, table in params["priors"].items():
        key = f"parameters.priors.{name}"
        if name not in free:
            raise ConfigFileError(
                f"prior for {name!r}, which is not a free parameter of {cand!r}",
                file=path,
                field=key,
                fix=f"give priors only for {list(free)}",
            )
        try:
            prior = parse_prior(table, file=path, key=key)
        except TregsimError as e:
            raise ConfigFileError(e.problem, file=path, field=e.field, fix=e.fix) from e
        lo, hi = prior.bounds
        tr = PARAMS[name][0]
        need = {"log": (0.0, np.inf), "logit": (0.0, 1.0)}.get(tr)
        if need is not None and (lo < need[0] or hi > need[1]):
            where = f"[{need[0]:g}, {need[1]:g}]"
            raise ConfigFileError(
                f"the prior of {name!r} has support [{lo:g}, {hi:g}], outside {where}",
                file=path,
                field=key,
                fix=f"give a prior on {where} (e.g. "
                + ("beta)" if tr == "logit" else "lognormal or halfnormal)"),
            )
        priors[name] = prior
    missing = [n for n in free if n not in priors]
    if missing:
        raise ConfigFileError(
            f"no prior for {missing}",
            file=path,
            field=f"parameters.priors.{missing[0]}",
            fix='add a prior table, e.g. { dist = "normal", mean = 0.0, sd = 1.0 }',
        )
    _check_fixed_values(params["fixed"], model, path)
    for name in params["fixed"]:
        if name not in ("s0", "k_re"):
            raise ConfigFileError(
                f"{name!r} cannot be fixed here (the curve table is a function of the hazard "
                "and q; the structure sets the rest)",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="fix only s0 and k_re (the stunning parameters of the curve table)",
            )

    records, columns = _records_and_columns(sec["data"], path, _STRUCT_COLUMNS, hint="")
    baseline_day = _baseline_day(sec, path, "the month-0 visit")
    lloq = sec["observation"]["lloq_nmol_l"]
    if not (np.isfinite(lloq) and lloq > 0):
        raise ConfigFileError(
            f"lloq_nmol_l = {lloq}",
            file=path,
            field="observation.lloq_nmol_l",
            fix="give the assay's lower limit of quantification in nmol/L (e.g. 0.017)",
        )
    meth = dict(sec["method"])
    ensemble = meth["move"] in ("stretch", "slice")
    least = 2 * len(free) if ensemble else 4
    if meth["n_walkers"] < least or (meth["move"] == "slice" and meth["n_walkers"] % 2):
        raise ConfigFileError(
            f"n_walkers = {meth['n_walkers']} (at least {least}"
            + (", even" if meth["move"] == "slice" else "")
            + f" with move = {meth['move']!r})",
            file=path,
            field="method.n_walkers",
            fix=f"give at least {least} walkers"
            + (f" (twice the {len(free)} parameters)" if ensemble else ""),
        )
    if ("omega_q" in free) != (meth["n_xi"] > 1):
        raise ConfigFileError(
            f"n_xi = {meth['n_xi']} with structure {cand!r}",
            file=path,
            field="method.n_xi",
            fix="give n_xi = 5 (Gauss-Hermite nodes of the q random effect) with a structure "
            "that frees omega_q, and leave n_xi out otherwise",
        )
    if meth["eta_nodes"] == "adaptive" and ({"omega_q", "sigma_bio"} & set(free)):
        raise ConfigFileError(
            f'eta_nodes = "adaptive" with structure {cand!r}',
            file=path,
            field="method.eta_nodes",
            fix="adaptive eta nodes need independent visits without a random effect on q: use "
            'eta_nodes = "fixed" with a structure that frees omega_q or sigma_bio',
        )
    if meth["n_steps"] - meth["burn"] < meth["thin"]:
        raise ConfigFileError(
            f"n_steps = {meth['n_steps']}, burn = {meth['burn']}, thin = {meth['thin']} keep "
            "no step after burn-in",
            file=path,
            field="method.n_steps",
            fix="make n_steps larger than burn + thin (e.g. n_steps = 600, burn = 150)",
        )
    _check_ess_floor(meth, path)
    meth["table"] = Table(meth["table"], path, "method.table", ConfigFileError).fields(
        _STRUCT_TABLE
    )
    return StructureConfig(
        path=path.resolve(),
        name=top["name"],
        description=top["description"],
        model=top["model"],
        seed=top["seed"],
        records_path=records,
        columns=columns,
        baseline_day=baseline_day,
        lloq_nmol_l=float(lloq),
        candidate=cand,
        calibrate=tuple(free),
        priors=priors,
        fixed={k: float(v) for k, v in params["fixed"].items()},
        method=meth,
        raw=raw,
    )


def _records_and_columns(
    data: dict,
    path: Path,
    names,
    *,
    hint: str = (
        ": the project's default points at ../shared/data/, the data folder beside the repository"
    ),
) -> tuple[Path, dict[str, str]]:
    """``[data] records`` resolved against the config's folder (it must exist) and the given
    ``[data.columns]`` among ``names`` (long-format name → the CSV's column)."""
    records = (path.parent / data["records"]).resolve()
    if not records.is_file():
        raise ConfigFileError(
            f"records file {data['records']!r} not found (resolved against the folder of this "
            f"file; individual records are not shipped with tregsim{hint})",
            file=path,
            field="data.records",
            fix="put the long-format CSV there, or give its path relative to this file",
        )
    columns = Table(data["columns"], path, "data.columns", ConfigFileError).fields(
        {k: Field(str) for k in names}
    )
    return records, {k: v for k, v in columns.items() if v is not None}
