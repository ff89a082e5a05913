"""Export an individual-level calibration problem in PEtab v1 format.

The folder holds ``model.xml`` (the SBML export, :mod:`tregsim.interop.sbml`),
``conditions.tsv`` (one simulation condition per individual: covariates ``age``, ``cpep0``,
optionally ``weight`` and the individual's dose schedule), ``measurements.tsv`` (one row per
uncensored C-peptide value), ``observables.tsv``, ``parameters.tsv``, ``problem.yaml`` and
tregsim's ``manifest.json``.

What PEtab v1 cannot express, and what this export does instead (``docs/interop.md``):

* **random effects** — PEtab has no hierarchical parameters. ``individual="per_individual"``
  (default) gives each individual its own estimated ``f_lambda_<id>`` (condition-specific
  override of ``f_lambda``) with a ``logNormal(0, omega_lambda)`` objective prior at the
  model's fixed ``omega_lambda``: a penalised (MAP) fit of the individual effects, not a
  marginal likelihood; ``omega_lambda`` itself is not estimated. ``individual="fixed"``
  drops the random effect (``f_lambda`` = 1 for everyone, fixed effects only).
* **censoring** — PEtab v1 has no censored likelihood: rows with ``censored = 1`` (below the
  LLOQ) are left out, and their number is recorded in ``manifest.json``.
* **beta / half-normal priors** — PEtab v1 has no beta prior: a beta prior becomes a normal
  prior with the same mean and SD, restricted by the bounds to the beta's support; a
  half-normal(s) becomes ``normal(0, s)`` with a small positive lower bound.
* the **trialnet** noise model (``log(y+1)`` normal) becomes observable ``cpeptide + 1`` with
  a log transformation, so measurements are written as ``y + 1`` nmol/L.

Requires the ``interop`` extra (``pip install tregsim[interop]``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.errors import ArgumentError, DataFileError
from tregsim.interop.nonmem import validate_long
from tregsim.interop.roadrunner import NO_DOSE_DAY
from tregsim.interop.sbml import dose_events, export_sbml

FILES = {
    "model": "model.xml",
    "conditions": "conditions.tsv",
    "measurements": "measurements.tsv",
    "observables": "observables.tsv",
    "parameters": "parameters.tsv",
    "yaml": "problem.yaml",
}
INDIVIDUAL_MODES = ("per_individual", "fixed")
CPEP0_MODES = ("auto", "column", "first")
_BOUND_Q = 1e-4  # prior quantiles used as estimation bounds


def _sid(text: str) -> str:
    """A PEtab/SBML identifier from an individual's id (letters, digits, _)."""
    s = re.sub(r"\W", "_", str(text))
    return s if re.match(r"^[A-Za-z]", s) else "i_" + s


def _prior_columns(prior, value: float) -> dict:
    """PEtab scale, bounds, objective prior for a tregsim prior (see module docstring)."""
    a = prior.args
    lo, hi = (float(x) for x in prior.frozen().ppf([_BOUND_Q, 1 - _BOUND_Q]))
    slo, shi = prior.bounds
    if prior.dist == "lognormal":
        return {
            "parameterScale": "log10",
            "lowerBound": lo,
            "upperBound": hi,
            "objectivePriorType": "logNormal",
            "objectivePriorParameters": f"{math.log(a['median'])!r};{a['sdlog']!r}",
        }
    if prior.dist == "loguniform":
        return {
            "parameterScale": "log10",
            "lowerBound": a["lower"],
            "upperBound": a["upper"],
            "objectivePriorType": "parameterScaleUniform",
            "objectivePriorParameters": f"{math.log10(a['lower'])!r};{math.log10(a['upper'])!r}",
        }
    if prior.dist == "uniform":
        return {
            "parameterScale": "lin",
            "lowerBound": a["lower"],
            "upperBound": a["upper"],
            "objectivePriorType": "uniform",
            "objectivePriorParameters": f"{a['lower']!r};{a['upper']!r}",
        }
    if prior.dist == "normal":
        return {
            "parameterScale": "lin",
            "lowerBound": max(lo, slo),
            "upperBound": min(hi, shi),
            "objectivePriorType": "normal",
            "objectivePriorParameters": f"{a['mean']!r};{a['sd']!r}",
        }
    if prior.dist == "halfnormal":
        return {
            "parameterScale": "lin",
            "lowerBound": lo,
            "upperBound": hi,
            "objectivePriorType": "normal",
            "objectivePriorParameters": f"0.0;{a['scale']!r}",
        }
    if prior.dist == "beta":
        mean, sd = (float(x) for x in prior.frozen().stats("mv"))
        return {
            "parameterScale": "lin",
            "lowerBound": max(lo, slo),
            "upperBound": min(hi, shi),
            "objectivePriorType": "normal",
            "objectivePriorParameters": f"{mean!r};{math.sqrt(sd)!r}",
        }
    raise ArgumentError(
        f"prior {prior.dist!r} has no PEtab equivalent",
        field="prior",
        fix="use lognormal, normal, halfnormal, beta, uniform or loguniform",
    )


def _tsv(df: pd.DataFrame) -> str:
    return df.to_csv(sep="\t", index=False, na_rep="")


def export_petab(
    model,
    data: pd.DataFrame | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    estimate: Iterable[str] | None = None,
    individual: str = "per_individual",
    cpep0: str = "auto",
    doses: Mapping[str, Iterable[tuple[float, float]]] | None = None,
    observable: str = "cpeptide",
    source: str | os.PathLike | None = None,
) -> Path:
    """Write a PEtab v1 problem for fitting ``model`` to individual C-peptide data.

    Parameters
    ----------
    model : a :class:`tregsim.CompiledModel`.
    data : long-format table or CSV path (``id, day, cpeptide_nmol_l, age[, censored,
        weight, cpep0]``; days since diagnosis, nmol/L, years).
    out_dir : output folder (created; files written atomically).
    estimate : parameter names to estimate (default: every ``population`` parameter with a
        prior, except the inter-individual SDs named by ``iiv_sd``).
    individual : ``"per_individual"`` (per-individual ``f_lambda_<id>`` with a log-normal
        penalty) or ``"fixed"`` (no random effect); see the module docstring.
    cpep0 : ``"column"`` (the table's ``cpep0``), ``"first"`` (each individual's first
        uncensored value, nmol/L) or ``"auto"`` (column if present, else first).
    doses : optional ``{id: [(day, cells/kg), ...]}``; each individual's schedule becomes
        condition-specific ``dose_<i>_day`` / ``dose_<i>_amount``.
    observable : the model observable that was measured.
    source : the file ``data`` came from, when passing a DataFrame (for messages and the
        manifest).

    Returns
    -------
    Path of ``problem.yaml``.
    """
    from tregsim.io import build_manifest, write_json, write_text

    spec = model.spec
    src = None if source is None else Path(source)
    if not isinstance(data, pd.DataFrame):
        from tregsim.interop.nonmem import read_long

        src = Path(data)
        data = read_long(src)
    else:
        data = validate_long(data, file=src)
    if individual not in INDIVIDUAL_MODES:
        raise ArgumentError(
            f"individual must be one of {INDIVIDUAL_MODES}, got {individual!r}",
            field="individual",
            fix="use per_individual or fixed",
        )
    if cpep0 not in CPEP0_MODES:
        raise ArgumentError(
            f"cpep0 must be one of {CPEP0_MODES}, got {cpep0!r}",
            field="cpep0",
            fix="use auto, column or first",
        )
    if observable not in spec.observables:
        raise ArgumentError(
            f"unknown observable {observable!r}",
            field="observable",
            fix=f"use one of {', '.join(spec.observables)}",
        )
    obs = spec.observables[observable]
    if obs.noise not in ("lognormal", "trialnet") or not obs.sigma:
        raise ArgumentError(
            f"observable {observable!r} has noise {obs.noise!r} without a log-scale SD parameter",
            field="observable",
            fix="calibrate an observable with lognormal or trialnet noise",
        )
    iiv_sds = {p.iiv_sd for p in spec.parameters.values() if p.iiv_sd}
    if estimate is None:
        estimate = [
            n
            for n, p in spec.parameters.items()
            if p.role == "population" and p.prior is not None and n not in iiv_sds
        ]
    estimate = list(estimate)
    for n in estimate:
        p = spec.parameters.get(n)
        if p is None or p.prior is None:
            raise ArgumentError(
                f"cannot estimate {n!r}: "
                + ("not a model parameter" if p is None else "it has no prior"),
                field="estimate",
                fix="name parameters that have a prior in the model file",
            )
        if p.role in ("covariate", "individual"):
            raise ArgumentError(
                f"{n!r} is a {p.role} parameter, set per individual",
                field="estimate",
                fix="estimate population parameters only",
            )

    # individual parameters with a log-normal IIV (f_lambda): per-individual, penalised
    random_effects = (
        [p for p in spec.parameters.values() if p.role == "individual" and p.iiv_sd and p.value > 0]
        if individual == "per_individual"
        else []
    )

    # --- per-individual rows ------------------------------------------------------------
    ids = list(pd.unique(data["id"]))
    cond = {i: "c_" + _sid(i) for i in ids}
    if len(set(cond.values())) != len(cond):
        raise DataFileError(
            "individual ids collide after conversion to PEtab identifiers",
            file=src,
            field="id",
            fix="use ids made of letters, digits and _",
        )
    use_col = cpep0 == "column" or (cpep0 == "auto" and "cpep0" in data.columns)
    if use_col and "cpep0" not in data.columns:
        raise DataFileError(
            "no cpep0 column",
            file=src,
            field="cpep0",
            fix="add cpep0 (nmol/L at diagnosis) or use cpep0='first'",
        )
    rows = []
    first = data[data["censored"] == 0].sort_values("day", kind="stable").groupby("id").first()
    for i in ids:
        g = data[data["id"] == i]
        if use_col:
            c0 = float(g["cpep0"].dropna().iloc[0]) if g["cpep0"].notna().any() else np.nan
        else:
            c0 = float(first.loc[i, "cpeptide_nmol_l"]) if i in first.index else np.nan
        if not (np.isfinite(c0) and c0 > 0):
            raise DataFileError(
                f"individual {i} has no positive cpep0",
                file=src,
                field="cpep0",
                fix="give cpep0 > 0 nmol/L for every id",
            )
        row = {
            "conditionId": cond[i],
            "conditionName": str(i),
            "age": float(g["age"].iloc[0]),
            "cpep0": c0,
        }
        if "weight" in g and "weight" in spec.parameters and g["weight"].notna().any():
            row["weight"] = float(g["weight"].dropna().iloc[0])
        for p in random_effects:
            row[p.name] = f"{p.name}_{_sid(i)}"
        rows.append(row)
    k = max((len(list(v)) for v in (doses or {}).values()), default=0)
    doses = {str(k_): sorted(v) for k_, v in (doses or {}).items()}
    unknown = sorted(set(doses) - set(ids))
    if unknown:
        raise ArgumentError(
            f"doses for ids not in the data: {unknown[:5]}",
            field="doses",
            fix="give doses only for individuals with measurements",
        )
    for row, i in zip(rows, ids):
        sched = doses.get(i, [])
        for j in range(k):
            day, amt = sched[j] if j < len(sched) else (NO_DOSE_DAY, 0.0)
            row[f"dose_{j + 1}_day"], row[f"dose_{j + 1}_amount"] = float(day), float(amt)
    conditions = pd.DataFrame(rows)

    meas = data[data["censored"] == 0]
    n_censored = int((data["censored"] == 1).sum())
    y = meas["cpeptide_nmol_l"].to_numpy(dtype=float)
    if obs.noise == "trialnet":
        y = y + 1.0
    elif (y <= 0).any():
        raise DataFileError(
            "a C-peptide value of 0 cannot enter a log-normal likelihood",
            file=src,
            field="cpeptide_nmol_l",
            fix="mark values below the LLOQ as censored (given as the LLOQ)",
        )
    measurements = pd.DataFrame(
        {
            "observableId": "obs_" + observable,
            "simulationConditionId": meas["id"].map(cond).to_numpy(),
            "time": meas["day"].to_numpy(dtype=float),
            "measurement": y,
        }
    )
    observables = pd.DataFrame(
        [
            {
                "observableId": "obs_" + observable,
                "observableName": f"{obs.description or observable} [{obs.unit}]",
                "observableFormula": observable
                if obs.noise == "lognormal"
                else f"{observable} + 1",
                "observableTransformation": "log",
                "noiseFormula": obs.sigma,
                "noiseDistribution": "normal",
            }
        ]
    )

    # --- parameter table ------------------------------------------------------------------
    prow = []
    for n in sorted(
        set(estimate) | ({obs.sigma} if obs.sigma else set()), key=list(spec.parameters).index
    ):
        p = spec.parameters[n]
        est = n in estimate
        r = {
            "parameterId": n,
            "parameterName": f"{p.description} [{p.unit}]",
            "nominalValue": p.value,
            "estimate": int(est),
        }
        if p.prior is not None:
            r.update(_prior_columns(p.prior, p.value))
        else:
            r.update({"parameterScale": "lin", "lowerBound": p.value, "upperBound": p.value})
        prow.append(r)
    for p in random_effects:
        omega = spec.parameters[p.iiv_sd].value
        for i in ids:
            prow.append(
                {
                    "parameterId": f"{p.name}_{_sid(i)}",
                    "parameterName": f"{p.description} of {i} [{p.unit}]",
                    "parameterScale": "log10",
                    "lowerBound": p.value * math.exp(-6 * omega),
                    "upperBound": p.value * math.exp(6 * omega),
                    "nominalValue": p.value,
                    "estimate": 1,
                    "objectivePriorType": "logNormal",
                    "objectivePriorParameters": f"{math.log(p.value)!r};{omega!r}",
                }
            )
    parameters = pd.DataFrame(prow)

    # --- write ------------------------------------------------------------------------------
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sched = [] if not k else dose_events(days=np.arange(1, k + 1) * 1.0, amounts=0.0)
    export_sbml(model, out / FILES["model"], doses=sched)
    write_text(out / FILES["conditions"], _tsv(conditions))
    write_text(out / FILES["measurements"], _tsv(measurements))
    write_text(out / FILES["observables"], _tsv(observables))
    write_text(out / FILES["parameters"], _tsv(parameters))
    yaml_text = (
        "format_version: 1\n"
        f"parameter_file: {FILES['parameters']}\n"
        "problems:\n"
        f"- sbml_files:\n  - {FILES['model']}\n"
        f"  condition_files:\n  - {FILES['conditions']}\n"
        f"  measurement_files:\n  - {FILES['measurements']}\n"
        f"  observable_files:\n  - {FILES['observables']}\n"
    )
    write_text(out / FILES["yaml"], yaml_text)
    inputs = {"model": spec.path} if spec.path else {}
    if src is not None:
        inputs["data"] = src
    write_json(
        out / "manifest.json",
        build_manifest(
            command="export petab",
            seed=None,
            inputs=inputs,
            settings={
                "estimate": estimate,
                "individual": individual,
                "cpep0": cpep0,
                "observable": observable,
                "n_individuals": len(ids),
                "n_measurements": len(measurements),
                "n_censored_dropped": n_censored,
                "n_dose_events": k,
                "noise": obs.noise,
            },
        ),
    )
    return out / FILES["yaml"]


def lint_petab(yaml_path: str | os.PathLike) -> bool:
    """Run PEtab's linter on a problem; ``True`` if it reports errors (petab's convention)."""
    import petab.v1 as petab

    petab.validate(str(yaml_path))  # the YAML schema
    problem = petab.Problem.from_yaml(str(yaml_path))
    return bool(petab.lint_problem(problem))


__all__ = ["FILES", "export_petab", "lint_petab"]
