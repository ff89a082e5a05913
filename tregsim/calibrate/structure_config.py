"""``[method] kind = "npe_structure"``: NPE of the records' structure of individual variability.

The configuration of :mod:`tregsim.calibrate.structure_simulator` (docs/calibration.md, "NPE
on within-patient statistics"). Sections:

* ``[data] records`` (long-format CSV, relative to the file; read when calibration runs, never
  copied) and ``[data.columns]`` (``study``, ``id``, ``age``, ``day``, ``month``, ``y`` → the
  CSV's column names; defaults are those of ``placebo_cpeptide_individual.csv``);
* ``[cohort] baseline_day`` (days from diagnosis to the month-0 visit);
* ``[structure] candidate`` (``"lincovariate+power"``, ``"lincovariate+power+t"`` (adds the
  Student-t deviation's ``inv_nu``) or ``"lincovariate+age+power"``, which adds
  ``gamma_beta``: β_c·(age/10)^(−γ_β)) and ``[structure.curve_table]``
  (``s0``, ``k_re`` held fixed; grid resolution ``n_loglam``, ``n_q``, ``day_step``);
* ``[observation] lloq_nmol_l``, ``below_lloq`` (as the records code values below the LLOQ);
* ``[parameters] calibrate`` (names of the candidate's :func:`structure_names`), ``priors`` (a
  prior table for every calibrated name, or the model file's), ``fixed`` (every other name of
  the candidate);
* ``[summaries] mean_months``, ``targets``, ``by_age_group``, ``min_group_n``,
  ``structure_statistics`` (the level-dependence summaries of
  :class:`~tregsim.calibrate.structure_statistics.StatisticsPlan`), ``log_scale_statistics``
  (its summaries on ln(max(x, LLOQ)): quantiles, early/late individual slopes, curvature),
  ``exclude`` (statistic names to leave out);
* ``[method]`` and ``[budget]`` as the summary NPE (``tregsim.calibrate.config``), plus
  ``member_banks``: ``"shared"`` (every ensemble member trains on the same
  ``n_simulations``) or ``"disjoint"`` (member m trains on its own ``n_simulations``, rows
  m·n … (m+1)·n of one bank of ``n_ensemble`` × ``n_simulations``: the bank's noise averages
  out of the mixture as the initialisations' does).

Every error names the file, the dotted field and the fix (:class:`~tregsim.errors.ConfigFileError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.calibrate.npe import MEMBER_BANKS
from tregsim.calibrate.sections import config_sections
from tregsim.calibrate.structure_statistics import STATISTIC_NAMES
from tregsim.calibrate.variability import CANDIDATES as VARIABILITY_CANDIDATES
from tregsim.errors import ConfigFileError
from tregsim.schema import Field, Table
from tregsim.units import LLOQ_NMOL_L

KIND = "npe_structure"
CANDIDATES = ("lincovariate+power", "lincovariate+age+power", "lincovariate+power+t")
"""Structures of tregsim.calibrate.variability that the NPE simulator implements."""


def structure_names(candidate: str) -> tuple[str, ...]:
    """Parameters of a candidate of :data:`CANDIDATES` (as tregsim.calibrate.variability)."""
    return tuple(VARIABILITY_CANDIDATES[candidate][0])


_COLUMNS = ("study", "id", "age", "day", "month", "y")
_BELOW_LLOQ = ("half_lloq", "lloq", "keep")
_ESTIMATORS = ("maf", "nsf", "mdn")

_SCHEMA: dict[str, dict[str, Field]] = {
    "": {
        "schema_version": Field(int, True),
        "name": Field(str, True),
        "description": Field(str, default=""),
        "model": Field(str, True),
        "seed": Field(int, True),
        "data": Field(dict, True),
        "cohort": Field(dict, default={}),
        "structure": Field(dict, default={}),
        "observation": Field(dict, default={}),
        "parameters": Field(dict, True),
        "summaries": Field(dict, default={}),
        "method": Field(dict, True),
        "budget": Field(dict, default={}),
    },
    "data": {"records": Field(str, True), "columns": Field(dict, default={})},
    "cohort": {"baseline_day": Field(float, default=60.0, lo=0.0, hi=365.0, unit="days")},
    "structure": {
        "candidate": Field(str, default="lincovariate+power", choices=CANDIDATES),
        "curve_table": Field(dict, default={}),
    },
    "observation": {
        "lloq_nmol_l": Field(float, default=LLOQ_NMOL_L, lo=1e-9, unit="nmol/L"),
        "below_lloq": Field(str, default="half_lloq", choices=_BELOW_LLOQ),
    },
    "parameters": {
        "calibrate": Field(list, True),
        "priors": Field(dict, default={}),
        "fixed": Field(dict, default={}),
    },
    "summaries": {
        "mean_months": Field(list, default=[0, 3, 6, 12, 18, 24]),
        "targets": Field(list, default=[6, 12, 24]),
        "by_age_group": Field(bool, default=True),
        "min_group_n": Field(int, default=20, lo=5),
        "structure_statistics": Field(bool, default=False),
        "log_scale_statistics": Field(bool, default=False),
        "exclude": Field(list, default=[]),
    },
    "method": {
        "kind": Field(str, True, choices=(KIND,)),
        "density_estimator": Field(str, default="maf", choices=_ESTIMATORS),
        "hidden_features": Field(int, default=50, lo=1),
        "num_transforms": Field(int, default=5, lo=1),
        "training_batch_size": Field(int, default=200, lo=1),
        "learning_rate": Field(float, default=5e-4, lo=1e-9),
        "stop_after_epochs": Field(int, default=20, lo=1),
        "max_num_epochs": Field(int, default=500, lo=1),
        "n_posterior_draws": Field(int, default=2000, lo=10),
        "n_sbc_datasets": Field(int, default=500, lo=10),
        "n_ensemble": Field(int, default=1, lo=1, hi=20),
        "member_banks": Field(str, default="shared", choices=MEMBER_BANKS),
        "n_predictive_draws": Field(int, default=200, lo=10),
        "n_boot": Field(int, default=1000, lo=10),
    },
    "budget": {
        "n_simulations": Field(int, default=30000, lo=50),
        "chunk_size": Field(int, default=1000, lo=1),
    },
}
_TABLE = {
    "s0": Field(float, default=0.41, lo=0.0, hi=1.0),
    "k_re": Field(float, default=0.02, lo=0.0, unit="1/day"),
    "n_loglam": Field(int, default=121, lo=11),
    "n_q": Field(int, default=21, lo=3),
    "day_step": Field(float, default=5.0, lo=0.5, hi=30.0, unit="days"),
}
_VISIT_GRID = (0, 3, 6, 12, 18, 24, 30, 36)


@dataclass(frozen=True)
class StructureConfig:
    """A validated ``kind = "npe_structure"`` configuration (paths resolved)."""

    path: Path
    name: str
    description: str
    model: str
    seed: int
    records_path: Path
    columns: dict[str, str]
    baseline_day: float
    candidate: str
    curve_table: dict
    lloq_nmol_l: float
    below_lloq: str
    calibrate: tuple[str, ...]
    prior_overrides: dict[str, dict]
    fixed: dict[str, float]
    summaries: dict
    method: dict = field(default_factory=dict)
    n_simulations: int = 30000
    chunk_size: int = 1000
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return KIND

    @property
    def structure_names(self) -> tuple[str, ...]:
        """Every parameter of the chosen candidate (calibrated or fixed)."""
        return structure_names(self.candidate)

    @property
    def summary_path(self) -> Path:
        """The data file (the name the NPE pipeline uses for its data hash)."""
        return self.records_path

    def settings(self) -> dict:
        """Everything that determines results (for manifests), defaults filled in."""
        out = {k: v for k, v in self.raw.items() if k != "description"}
        out |= {
            "method": dict(self.method),
            "budget": {"n_simulations": self.n_simulations, "chunk_size": self.chunk_size},
            "structure": {"candidate": self.candidate, "curve_table": dict(self.curve_table)},
            "summaries": dict(self.summaries),
            "cohort": {"baseline_day": self.baseline_day},
            "observation": {"lloq_nmol_l": self.lloq_nmol_l, "below_lloq": self.below_lloq},
        }
        return out


def load_structure_config(raw: dict, path: Path) -> StructureConfig:
    """Validate a parsed ``kind = "npe_structure"`` TOML (see the module docstring)."""
    from tregsim.model.priors import parse_prior

    path = Path(path)

    def table(data, section, schema):
        return Table(data, path, section, ConfigFileError).fields(schema)

    top, sec, model = config_sections(
        raw, path, _SCHEMA, lambda data, section: table(data, section, _SCHEMA[section])
    )

    # data
    records = (path.parent / sec["data"]["records"]).resolve()
    if not records.is_file():
        raise ConfigFileError(
            f"records file {sec['data']['records']!r} not found (resolved against the folder "
            "of this file; individual records are not shipped with tregsim)",
            file=path,
            field="data.records",
            fix="put the long-format CSV there, or give its path relative to this file",
        )
    cols = table(sec["data"]["columns"], "data.columns", {k: Field(str) for k in _COLUMNS})
    cols = {k: v for k, v in cols.items() if v is not None}

    # parameters
    params = sec["parameters"]
    names = structure_names(sec["structure"]["candidate"])
    calibrate = tuple(params["calibrate"])
    for name in calibrate:
        if name not in names:
            raise ConfigFileError(
                f"{name!r} is not a parameter of the structure {sec['structure']['candidate']!r}",
                file=path,
                field="parameters.calibrate",
                fix=f"use names from {list(names)}",
            )
    if not calibrate or len(set(calibrate)) != len(calibrate):
        raise ConfigFileError(
            "empty or repeated parameter names",
            file=path,
            field="parameters.calibrate",
            fix="list each parameter once",
        )
    fixed = {}
    for name, value in params["fixed"].items():
        if (
            name not in names
            or name in calibrate
            or not isinstance(value, int | float)
            or isinstance(value, bool)
        ):
            raise ConfigFileError(
                f"cannot fix {name!r} = {value!r}"
                + (" (it is also calibrated)" if name in calibrate else ""),
                file=path,
                field=f"parameters.fixed.{name}",
                fix=f"give a number for a name of {list(names)} that is not calibrated",
            )
        fixed[name] = float(value)
    missing = [n for n in names if n not in calibrate and n not in fixed]
    if missing:
        raise ConfigFileError(
            f"{missing} neither calibrated nor fixed",
            file=path,
            field="parameters.fixed",
            fix="add them to parameters.calibrate or give values in [parameters.fixed]",
        )
    for name, tab in params["priors"].items():
        key = f"parameters.priors.{name}"
        if name not in calibrate:
            raise ConfigFileError(
                f"prior for {name!r}, which is not calibrated",
                file=path,
                field=key,
                fix="add it to parameters.calibrate or drop the prior",
            )
        try:
            parse_prior(tab, file=path, key=key)
        except Exception as e:
            raise ConfigFileError(
                str(e), file=path, field=key, fix="see docs/calibration.md for prior tables"
            ) from e
    for name in calibrate:
        p = model.spec.parameters.get(name)
        if name not in params["priors"] and (p is None or p.prior is None):
            raise ConfigFileError(
                f"{name!r} has no prior in the model file",
                file=path,
                field=f"parameters.priors.{name}",
                fix="add a prior table, e.g. {dist='normal', mean=0.0, sd=1.0}",
            )

    # summaries
    summ = dict(sec["summaries"])
    for key in ("mean_months", "targets"):
        v = summ[key]
        if (
            not v
            or any(not isinstance(m, int) or m not in _VISIT_GRID for m in v)
            or sorted(set(v)) != v
            or (key == "targets" and 0 in v)
        ):
            raise ConfigFileError(
                f"{key} = {v!r}",
                file=path,
                field=f"summaries.{key}",
                fix=f"give increasing nominal months from {list(_VISIT_GRID)}"
                + (" after 0" if key == "targets" else "")
                + ", e.g. [6, 12, 24]",
            )

    bad = [n for n in summ["exclude"] if n not in STATISTIC_NAMES]
    if bad:
        raise ConfigFileError(
            f"unknown statistic {bad[0]!r}",
            file=path,
            field="summaries.exclude",
            fix="give statistic names of docs/calibration.md, e.g. ['corr_log_slopes']",
        )

    meth = dict(sec["method"])
    tab = table(sec["structure"]["curve_table"], "structure.curve_table", _TABLE)
    if not np.isfinite(sec["cohort"]["baseline_day"]):
        raise ConfigFileError(
            "baseline_day is not finite",
            file=path,
            field="cohort.baseline_day",
            fix="give the days from diagnosis to the month-0 visit, e.g. 60",
        )
    return StructureConfig(
        path=path.resolve(),
        name=top["name"],
        description=top["description"],
        model=top["model"],
        seed=top["seed"],
        records_path=records,
        columns=cols,
        baseline_day=float(sec["cohort"]["baseline_day"]),
        candidate=sec["structure"]["candidate"],
        curve_table=tab,
        lloq_nmol_l=float(sec["observation"]["lloq_nmol_l"]),
        below_lloq=sec["observation"]["below_lloq"],
        calibrate=calibrate,
        prior_overrides=dict(params["priors"]),
        fixed=fixed,
        summaries=summ,
        method=meth,
        n_simulations=sec["budget"]["n_simulations"],
        chunk_size=sec["budget"]["chunk_size"],
        raw=raw,
    )
