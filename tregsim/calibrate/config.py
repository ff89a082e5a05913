"""Calibration configuration files (``calibration/*.toml``), validated on load.

A configuration names the model, the data, the calibrated parameters (priors come from the
model file unless overridden), the summary statistics, the method, the simulation budget and
the seed. Unknown keys are rejected with a :class:`~tregsim.errors.ConfigFileError` naming
the file, the dotted field and the fix. See ``docs/calibration.md`` for every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ConfigFileError

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
    },
    "observation": {
        "lloq_nmol_l": (float, False, 0.017),
        "below_lloq": (str, False, "half_lloq"),
        "threshold_nmol_l": (float, False, 0.2),
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

_BELOW_LLOQ = ("half_lloq", "lloq", "keep")
_METHODS = ("npe",)
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

    def settings(self) -> dict:
        """Everything that determines results (for manifests)."""
        return {k: v for k, v in self.raw.items() if k != "description"}


def _check_table(table: dict, section: str, file: Path) -> dict:
    schema = _SCHEMA[section]
    prefix = f"{section}." if section else ""
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ConfigFileError(
            f"unknown key {unknown[0]!r}",
            file=file,
            field=prefix + unknown[0],
            fix=f"use one of {sorted(schema)} (see docs/calibration.md)",
        )
    out = {}
    for key, (typ, required, default) in schema.items():
        if key not in table:
            if required:
                raise ConfigFileError(
                    "missing required key",
                    file=file,
                    field=prefix + key,
                    fix=f"add `{key} = ...` (see docs/calibration.md)",
                )
            out[key] = default
            continue
        value = table[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigFileError(
                f"expected {typ.__name__}, got {type(value).__name__} {value!r}",
                file=file,
                field=prefix + key,
                fix=f"give a {typ.__name__}",
            )
        out[key] = value
    return out


def load_config(path: str | Path) -> CalibrationConfig:
    """Read and validate a calibration TOML file.

    Raises
    ------
    ConfigFileError
        Unreadable TOML, unknown or missing keys, wrong types, parameters that are not
        population parameters of the model, unknown statistics or age groups.
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
    top = _check_table(raw, "", path)
    if top["schema_version"] != 1:
        raise ConfigFileError(
            f"schema_version {top['schema_version']} is not supported",
            file=path,
            field="schema_version",
            fix="use schema_version = 1",
        )
    sec = {name: _check_table(top[name], name, path) for name in _SCHEMA if name}

    # model and parameters
    from tregsim.model import load_model

    try:
        model = load_model(top["model"])
    except Exception as e:
        raise ConfigFileError(
            f"cannot load model {top['model']!r}: {e}",
            file=path,
            field="model",
            fix="name a model in models/ or a model file",
        ) from e
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
        if p.prior is None and name not in params["priors"]:
            raise ConfigFileError(
                f"{name!r} has no prior in the model file",
                file=path,
                field=f"parameters.priors.{name}",
                fix="add a prior table, e.g. {dist='lognormal', ...}",
            )
    for name, table in params["priors"].items():
        if name not in calibrate:
            raise ConfigFileError(
                f"prior for {name!r}, which is not calibrated",
                file=path,
                field=f"parameters.priors.{name}",
                fix="add it to parameters.calibrate or drop the prior",
            )
        from tregsim.model.priors import parse_prior

        try:
            parse_prior(table, file=path, key=f"parameters.priors.{name}")
        except Exception as e:
            raise ConfigFileError(
                str(e),
                file=path,
                field=f"parameters.priors.{name}",
                fix="see docs/calibration.md for prior tables",
            ) from e
    for name, value in params["fixed"].items():
        if name not in model.parameter_names or not isinstance(value, int | float):
            raise ConfigFileError(
                f"cannot fix {name!r} = {value!r}",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="give a model parameter name and a number",
            )
        if name in calibrate:
            raise ConfigFileError(
                f"{name!r} is both fixed and calibrated",
                file=path,
                field=f"parameters.fixed.{name}",
                fix="choose one",
            )
    for needed in ("omega_lambda", "sigma"):
        if needed not in calibrate and needed not in params["fixed"]:
            pass  # model default value is used

    data = sec["data"]
    groups = tuple(data["age_groups"])
    for g in groups:
        if g not in AGE_GROUPS:
            raise ConfigFileError(
                f"unknown age group {g!r}",
                file=path,
                field="data.age_groups",
                fix=f"use groups from {list(AGE_GROUPS)}",
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
            f"summary data {summary_path} not found",
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

    obs = sec["observation"]
    if obs["below_lloq"] not in _BELOW_LLOQ:
        raise ConfigFileError(
            f"below_lloq = {obs['below_lloq']!r}",
            file=path,
            field="observation.below_lloq",
            fix=f"use one of {_BELOW_LLOQ}",
        )
    stats = tuple(sec["summaries"]["statistics"])
    for s in stats:
        if s not in SUMMARY_STATISTICS:
            raise ConfigFileError(
                f"unknown statistic {s!r}",
                file=path,
                field="summaries.statistics",
                fix=f"use statistics from {list(SUMMARY_STATISTICS)}",
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
    for key in ("rtol", "atol"):
        v = sec["solver"][key]
        if not (np.isfinite(v) and 0 < v < 1):
            raise ConfigFileError(
                f"{key} must be in (0, 1), got {v}",
                file=path,
                field=f"solver.{key}",
                fix="give a positive tolerance, e.g. rtol = 1e-5, atol = 1e-8",
            )
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
