"""``tregsim run``: every analysis an experiment file enables, then one ``report.html``.

The orchestrator owns no science. Each section calls a library analysis (see
:mod:`tregsim.report.sections`) into a subfolder of the output folder, saves its result object
there (with a manifest recording that analysis's own call) and builds its part of the report
from the result object. A section that fails is shown in the report as failed, is named on
stderr, and makes the run exit with status 1: the report never shows content that was not
computed.

Budgets: :mod:`tregsim.report.plan` (the experiment file's ``[run]`` / ``[run.quick]`` tables).

Output layout::

    OUT/report.html        the self-contained report
    OUT/manifest.json      command, seed, input hashes, budgets, section status
    OUT/sections.json      per section: status, seconds, error, folder
    OUT/<section>/         each command's own outputs (CSV, PNG, netCDF, manifest.json)
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tregsim.errors import TregsimError
from tregsim.report.html import LedgerEntry, Section, SummaryItem, build_report
from tregsim.report.plan import (
    DEFAULT_BUDGET,
    QUICK_BUDGET,
    SECTION_ORDER,
    RunPlan,
    plan_run,
)
from tregsim.report.sections import SECTIONS, SUMMARY_ORDER, SectionSpec, fmt_list
from tregsim.results import SHIPPED, display_path, posterior_note

__all__ = [
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "SECTION_ORDER",
    "RunPlan",
    "SectionOutcome",
    "SectionSpec",
    "assumption_ledger",
    "plan_run",
    "run_experiment",
    "run_section",
]


@dataclass
class SectionOutcome:
    """What one section produced: the report section and lines for the summary box."""

    name: str
    folder: Path
    status: str  # "ok" | "failed"
    seconds: float
    section: Section
    summary: list[SummaryItem] = field(default_factory=list)
    error: str | None = None
    result: Any = None


def run_section(spec: SectionSpec, plan: RunPlan, exp) -> SectionOutcome:
    """Compute one section into ``plan.out / spec.name`` and present its result; never raises
    for a failure of the section itself (the outcome says ``failed`` with the reason)."""
    folder = plan.out / spec.name
    t0 = time.perf_counter()
    try:
        result = spec.compute(plan, folder, exp)
        section, summary = spec.present(plan, folder, exp, result)
        return SectionOutcome(
            spec.name, folder, "ok", time.perf_counter() - t0, section, summary, result=result
        )
    except TregsimError as e:
        msg = str(e)
    except Exception as e:
        print("".join(traceback.format_exception(e)), file=sys.stderr)
        msg = f"{type(e).__name__}: {e}"
    return SectionOutcome(
        spec.name,
        folder,
        "failed",
        time.perf_counter() - t0,
        Section(spec.title, error=msg),
        [SummaryItem(spec.title, f"not available: this section failed ({msg})")],
        error=msg,
    )


# --------------------------------------------------------------------------------------------
# ledger and the whole run
# --------------------------------------------------------------------------------------------
def _treatment_effect_ledger(phi: str = "treatment_effect") -> tuple[str, str] | None:
    """(value, note) of the ledger's φ row when the treatment-effect posterior is shipped."""
    from tregsim.calibrate.treatment_effect.check import DEFAULT_TREATMENT_EFFECT
    from tregsim.io import file_sha256
    from tregsim.posterior import load_posterior

    path = Path(DEFAULT_TREATMENT_EFFECT)
    if not path.is_file():
        return None
    draws = load_posterior(path)["phi"]
    value = (
        f"a new trial's φ: median {np.median(draws):.3g} [90 % {np.quantile(draws, 0.05):.3g} "
        f"– {np.quantile(draws, 0.95):.3g}] from the treatment-effect posterior"
    )
    note = (
        f"calibrated on the Treg trials' treated-arm results (T-Rex, Gdansk 2012, PolTREG, TILT, "
        f"Bluestone 2015; docs/treatment_effect.md) — {display_path(path)}, sha256 "
        f"{file_sha256(path)[:12]}…. "
        + (
            "Used by the power section's assurance curve (with the infused-cell kinetics; "
            "--phi prior returns to φ's prior) and the treatment-effect section. "
            if phi == "treatment_effect"
            else "This run used φ's PRIOR for the assurance curve (--phi prior); the "
            "treatment-effect section still shows the posterior. "
        )
        + "Still assumptions: the fixed-effect power curve's effect_phi, and the model "
        "file's φ in cohort, sweep and sensitivity"
    )
    return value, note


def assumption_ledger(
    exp,
    manifests: Mapping[str, dict],
    posterior: Path | None = None,
    *,
    phi: str = "treatment_effect",
    variability: str | None = None,
) -> list[LedgerEntry]:
    """The assumption ledger: model, φ, overrides, the structure of individual variability,
    what is prior-driven, fixed, individual; input hashes.

    ``manifests`` maps a section name to its manifest dict (input hashes are read from them;
    equal files are listed once); ``posterior`` the population posterior of the run (``None``:
    the model file's values); ``variability`` the run's structure setting (``None`` = the
    default, :func:`tregsim.population.structure.resolve_structure`).
    """
    spec = exp.model.spec
    params = spec.parameters

    def unit(p):
        return "(dimensionless)" if p.unit in ("", "1", "-") else p.unit

    rows = [
        LedgerEntry(
            "model",
            f"{spec.name}: {spec.title}",
            f"variant of {spec.variant_of}"
            if spec.variant_of
            else "core model (docs/model_spec.md)",
        )
    ]
    if "phi" in params:
        p = params["phi"]
        prior = p.prior.describe() if p.prior is not None else "none"
        te = _treatment_effect_ledger(phi)
        if te is None:
            rows.append(
                LedgerEntry(
                    "φ, potency × homing of infused vs endogenous Tregs",
                    f"default {p.value:g} {unit(p)}; prior {prior}",
                    "prior-driven: no treated-arm posterior is shipped; the predicted treatment "
                    "effect rests on this assumed number" + (f" ({p.source})" if p.source else ""),
                )
            )
        else:
            rows.append(
                LedgerEntry(
                    "φ, potency × homing of infused vs endogenous Tregs",
                    te[0],
                    te[1] + f"; model file: default {p.value:g}, prior {prior}",
                )
            )
    by_role: dict[str, list[str]] = {}
    for name, p in params.items():
        by_role.setdefault(p.role, []).append(name)
    overrides = dict(getattr(exp, "parameter_overrides", {}) or {})
    if overrides:
        rows.append(
            LedgerEntry(
                "parameter overrides",
                ", ".join(f"{k} = {v:g}" for k, v in overrides.items()),
                "set by --set or the experiment file's [parameters] table; they replace the "
                "model file's values in every section",
            )
        )
    draws: dict = {}
    if posterior is not None:
        from tregsim.cohort import load_posterior_draws
        from tregsim.io import file_sha256

        draws = load_posterior_draws(posterior, exp.model)
        sha = file_sha256(posterior)
        rows.append(
            LedgerEntry(
                "calibrated population parameters",
                ", ".join(
                    f"{k} {np.median(v):.3g} [{np.quantile(v, 0.05):.3g}, "
                    f"{np.quantile(v, 0.95):.3g}]"
                    for k, v in draws.items()
                ),
                f"posterior median [90 % interval] from {display_path(posterior)} (sha256 "
                f"{sha[:12]}…; the default of every command, --posterior none opts out), NPE "
                "on the placebo natural history: cohort, natural history, power and sweep draw "
                "these parameters from it; sensitivity varies parameters over their priors",
            )
        )
    else:
        rows.append(
            LedgerEntry(
                "calibrated population parameters",
                "none in this run",
                "--posterior none (or no shipped posterior): population parameters stay at the "
                "model file's default values; their priors are shown below",
            )
        )
    from tregsim.population.structure import resolve_structure

    structure = resolve_structure(variability, dict(draws) or None, posterior, exp.model)
    rows.append(_structure_ledger(structure))
    from_file = set(structure.from_file)
    calibrated_fixed = [n for n in by_role.get("fixed", []) if n in draws or n in from_file]
    for name in by_role.get("population", []) + calibrated_fixed:
        p = params[name]
        if name == "phi":
            continue
        prior = p.prior.describe() if p.prior is not None else "no prior"
        value = f"{p.value:g} {unit(p)}; prior {prior}"
        if name in from_file:
            value = (
                f"{float(structure.draws[name][0]):.4g} {unit(p)} (structure file); model file "
                + value
            )
        rows.append(
            LedgerEntry(
                f"{name} ({p.description or 'population parameter'})",
                value,
                (
                    f"records structure: {_STRUCTURE_VALUE} in cohort, natural history and "
                    "power (the posterior's value is used by the sweep; sensitivity varies it "
                    "over its prior)"
                    if name in from_file
                    else "calibrated: drawn from the posterior above in cohort, natural history, "
                    "power and sweep (file value and prior shown for reference; sensitivity "
                    "varies it over its prior)"
                    if name in draws
                    else "prior-driven"
                )
                + (f"; {p.source}" if p.source else ""),
            )
        )
    for role, label in (
        ("individual", "individual parameters (inter-individual variability)"),
        ("covariate", "covariates, sampled from the experiment's population"),
        ("fixed", "fixed parameters"),
    ):
        names = [n for n in by_role.get(role, []) if n not in draws and n not in from_file]
        if names:
            rows.append(LedgerEntry(label, ", ".join(names), role))
    seen: set[str] = set()
    for section, man in manifests.items():
        for role, rec in sorted(man.get("inputs", {}).items()):
            sha = rec.get("sha256", "")
            if sha in seen:
                continue
            seen.add(sha)
            rows.append(
                LedgerEntry(
                    f"input {role} ({section})",
                    f"{Path(rec.get('path', '')).name} sha256 {sha[:16]}…",
                    "file hash from manifest.json",
                )
            )
    return rows


_STRUCTURE_VALUE = "point value of calibration/natural_history_structure.json"


def _structure_ledger(structure) -> LedgerEntry:
    """The ledger row of the structure of individual variability (issue #14)."""
    what = {
        "lumped": "lumped (--variability lumped): one residual sigma on the log scale, no "
        "hazard covariate",
        "posterior": "records, per posterior draw",
        "structure_file": "records, point values of the structure file",
    }[structure.source]
    note = structure.describe()
    if structure.source == "structure_file" and structure.posterior is not None:
        note += (
            ". The population posterior in use is lumped (no sigma_meas/kappa): combining its "
            "hazard (omega_lambda ≈ 1.2, fitted without the covariate) with the structure's "
            "covariate would be incoherent, so lambda_ref, gamma_a, omega_lambda, q, beta_c, "
            "beta_lin and the observation model come from the structure file, s0 and k_re "
            "from the posterior"
        )
    if structure.variability == "records":
        note += (
            ". Applies to the cohort (hazard covariate and cpeptide_observed), natural-history "
            "(observed visits and trial statistics) and power sections; the sweep and "
            "sensitivity sections keep the lumped structure (noise-free, no hazard covariate)"
        )
    return LedgerEntry("structure of individual variability", what, note)


def _preflight(exp, plan) -> None:
    """An input every section would refuse (e.g. a measured baseline SD no wider than the
    observation error) stops the run before its folder exists, in one line, instead of
    failing each section in turn."""
    from tregsim.cohort import preflight_population, resolve_posterior
    from tregsim.population.structure import resolve_structure

    draws, path = resolve_posterior(plan.posterior, exp.model)
    structure = resolve_structure(plan.variability, draws, path, exp.model)
    preflight_population(exp, structure.draws, plan.seed)


def run_experiment(
    experiment: Any,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    argv: list[str] | None = None,
    posterior: str | os.PathLike | None = SHIPPED,
    phi: str = "treatment_effect",
    variability: str | None = None,
) -> list[SectionOutcome]:
    """Run every section ``experiment`` enables into ``out`` and write ``out/report.html``.

    Parameters
    ----------
    experiment : an experiment file (``experiments/*.toml``) or a loaded
        :class:`~tregsim.experiment.Experiment` (e.g. with parameter overrides).
    out : output folder.
    quick : use the ``[run.quick]`` budget.
    seed : master seed; each section gets the same seed (its streams are named apart).
    overwrite : accept an output folder that holds a different run (passed on to every
        section; without it a rerun of the same run resumes the sections' checkpoints).
    workers : run the sections' chunks on a local Dask cluster of this many processes
        (results do not depend on it).
    argv : the command line, for the run's manifest (``None``: the call is recorded).
    posterior : population posterior of the cohort, natural-history, power and sweep
        sections: :data:`~tregsim.results.SHIPPED` (default), a netCDF path, or ``None`` for
        the model file's values.
    phi : the power section's assurance φ: ``"treatment_effect"`` (the shipped
        treatment-effect posterior, default) or ``"prior"`` (φ's prior in the model file).
    variability : structure of individual variability of the cohort, natural-history and
        power sections (:mod:`tregsim.population.structure`): ``None`` = the default
        ``"records"``, or ``"lumped"`` (the pre-#14 structure). The ledger says which.

    Returns
    -------
    One :class:`SectionOutcome` per enabled section, in report order (``.result`` holds each
    section's result object).
    """
    from tregsim import __version__, io
    from tregsim.experiment import load_experiment
    from tregsim.results import open_output, result_manifest

    exp = experiment if hasattr(experiment, "model") else load_experiment(experiment)
    plan = plan_run(
        exp,
        out,
        quick=quick,
        seed=seed,
        overwrite=overwrite,
        workers=workers,
        posterior=posterior,
        phi=phi,
        variability=variability,
    )
    inputs = dict(exp.input_files())
    if plan.posterior is not None:
        inputs["posterior"] = plan.posterior
    settings = {
        **plan.settings(),
        "population_parameters": posterior_note(plan.posterior),
        "parameter_overrides": dict(getattr(exp, "parameter_overrides", {}) or {}),
    }
    manifest = result_manifest(
        command="run",
        function="tregsim.report.run.run_experiment",
        arguments={
            "experiment": display_path(exp.path),
            "quick": quick,
            "seed": plan.seed,
            "posterior": settings["posterior"],
        },
        seed=plan.seed,
        inputs=inputs,
        settings=settings,
        argv=argv,
    )
    _preflight(exp, plan)
    open_output(plan.out, manifest, overwrite)

    outcomes = []
    for name in plan.sections:
        print(f"tregsim run: section {name} …", file=sys.stderr, flush=True)
        oc = run_section(SECTIONS[name], plan, exp)
        outcomes.append(oc)
        print(
            f"tregsim run: section {name} {oc.status} in {oc.seconds:.1f} s"
            + (f": {oc.error}" if oc.error else ""),
            file=sys.stderr,
            flush=True,
        )

    sub = {oc.name: oc.result.manifest for oc in outcomes if oc.result is not None}
    ledger = assumption_ledger(
        exp, {"run": manifest, **sub}, plan.posterior, phi=plan.phi, variability=plan.variability
    )
    ledger.append(
        LedgerEntry(
            "budget",
            "; ".join(
                f"{k} = {fmt_list(v) if isinstance(v, list) else v}"
                for k, v in plan.settings().items()
            ),
            "from [run.quick]" if quick else "from [run]",
        )
    )
    summary = [item for oc in outcomes for item in oc.summary]
    if "sensitivity" not in plan.sections:
        summary.append(
            SummaryItem(
                "What drives the result",
                "Not analysed in this run (the sensitivity section is not enabled). By "
                "construction the predicted treatment effect rests on φ, the potency × homing "
                "of the infused cells, which is prior-driven (see the assumption ledger).",
            )
        )
    order = {label: i for i, label in enumerate(SUMMARY_ORDER)}
    summary.sort(key=lambda item: order.get(item.label, len(order)))
    build_report(
        plan.out / "report.html",
        title=f"{exp.name}: {exp.description}" if getattr(exp, "description", "") else exp.name,
        sections=[oc.section for oc in outcomes],
        summary=summary,
        ledger=ledger,
        subtitle=f"tregsim run {plan.experiment.name} (seed {plan.seed}"
        + (", quick budget)" if quick else ")"),
        footer=f"tregsim {__version__}; manifest.json beside this file holds the command "
        "line, input hashes and package versions.",
    )
    # a list, not a dict: write_json sorts keys and the report order matters
    status = [
        {
            "name": oc.name,
            "status": oc.status,
            "seconds": round(oc.seconds, 2),
            "error": oc.error,
            "folder": oc.folder.name,
        }
        for oc in outcomes
    ]
    io.write_json(plan.out / "sections.json", {"schema_version": 1, "sections": status})
    manifest["sections"] = status
    io.write_json(plan.out / io.MANIFEST, manifest)
    return outcomes
