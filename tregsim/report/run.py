"""``tregsim run``: every analysis an experiment file enables, then one ``report.html``.

The orchestrator owns no science. Each section is the project's own command (``tregsim
cohort``, ``check``, ``power``, ``sweep``, ``sensitivity``) called in-process through its CLI
entry point ``run(args)`` into a subfolder of the output folder; the report is then assembled
from the CSV and PNG files those commands wrote. A section whose command is missing or fails is
shown in the report as failed, is named on stderr, and makes the run exit with status 1: the
report never shows content that was not computed.

Budgets come from the experiment file's ``[run]`` table (``[run.quick]`` with ``--quick``); keys
absent there take the defaults below (:data:`DEFAULT_BUDGET`, :data:`QUICK_BUDGET`).

Output layout::

    OUT/report.html        the self-contained report
    OUT/manifest.json      command, seed, input hashes, budgets, section status
    OUT/sections.json      per section: status, seconds, error, folder
    OUT/<section>/         each command's own outputs (CSV, PNG, netCDF, manifest.json)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ExperimentFileError, TregsimError
from tregsim.report.html import (
    LedgerEntry,
    Section,
    SummaryItem,
    build_report,
)

SECTION_ORDER = ("cohort", "natural_history", "power", "sweep", "sensitivity")
"""Every section ``tregsim run`` knows, in report order (names as in ``[run].sections``)."""

DEFAULT_BUDGET: dict[str, object] = {
    "sections": list(SECTION_ORDER),
    "n_patients": 2000,
    "n_trials": 200,
    "n_per_arm": [5, 10, 20, 40, 80],
    "sweep_doses": [1e6, 5e6, 10e6, 20e6, 50e6, 100e6],
    "sweep_days": [14.0, 30.0, 60.0, 90.0, 180.0],
    "sensitivity_n": 128,
    "effect_phi": None,
}
"""Budget of a full run when the experiment file's ``[run]`` table omits a key.
Units: n_patients (virtual patients per arm), n_trials (simulated trials per sample size),
n_per_arm (participants per arm), sweep_doses (cells/kg), sweep_days (days since diagnosis),
sensitivity_n (Sobol' base sample size, a power of two), effect_phi (the φ of the power section's
fixed-effect curve; None = the model file's value)."""

QUICK_BUDGET: dict[str, object] = {
    "sections": ["cohort", "natural_history", "power"],
    "n_patients": 300,
    "n_trials": 100,
    "n_per_arm": [10, 20],
    "sweep_doses": [1e6, 20e6],
    "sweep_days": [30.0, 90.0],
    "sensitivity_n": 16,
    "effect_phi": None,
}
"""Budget of ``--quick`` when ``[run.quick]`` omits a key (finishes in < 2 min on 2 cores)."""

BUDGET_KEYS = tuple(DEFAULT_BUDGET)


# --------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    """What one ``tregsim run`` will do. Units as in :data:`DEFAULT_BUDGET`."""

    experiment: Path
    out: Path
    seed: int
    quick: bool
    sections: tuple[str, ...]
    n_patients: int
    n_trials: int
    n_per_arm: tuple[int, ...]
    sweep_doses: tuple[float, ...]
    sweep_days: tuple[float, ...]
    sensitivity_n: int
    effect_phi: float | None = None
    posterior: str | None = None
    # How the work runs, not what it computes (kept out of settings()):
    overwrite: bool = False
    workers: int | None = None

    def execution_args(self, parallel: bool) -> list[str]:
        """``--overwrite`` / ``--workers N`` for a section command (``parallel``: it takes
        ``--workers``)."""
        args = ["--overwrite"] if self.overwrite else []
        if parallel and self.workers is not None:
            args += ["--workers", str(self.workers)]
        return args

    def settings(self) -> dict:
        """Everything besides seed and input files that determines the results."""
        return {
            "quick": self.quick,
            "sections": list(self.sections),
            "n_patients": self.n_patients,
            "n_trials": self.n_trials,
            "n_per_arm": list(self.n_per_arm),
            "sweep_doses_cells_per_kg": list(self.sweep_doses),
            "sweep_days": list(self.sweep_days),
            "sensitivity_n": self.sensitivity_n,
            "effect_phi": self.effect_phi,
            "posterior": self.posterior,
        }


def _run_table(exp) -> dict:
    """The experiment's ``[run]`` table (may be empty)."""
    table = exp.sections if exp.sections is not None else {}
    if not isinstance(table, Mapping):
        raise ExperimentFileError(
            f"[run] must be a table, got {type(table).__name__}",
            file=exp.path,
            field="run",
            fix="write a [run] table with keys " + ", ".join(BUDGET_KEYS),
        )
    return dict(table)


def plan_run(
    exp,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    posterior: str | None = None,
) -> RunPlan:
    """Read the budgets of ``exp``'s ``[run]`` / ``[run.quick]`` table and validate them.

    Raises
    ------
    ExperimentFileError : an unknown section name or key, or a budget of the wrong type.
    """
    table = _run_table(exp)
    quick_table = table.pop("quick", {}) or {}
    where = "run.quick" if quick else "run"
    src = dict(QUICK_BUDGET if quick else DEFAULT_BUDGET)
    if quick:
        # [run.quick] inherits the sections of [run] unless it names its own.
        if "sections" in table:
            src["sections"] = table["sections"]
        chosen = quick_table
    else:
        chosen = table
    for key, tab_name in ((k, "run") for k in table):
        if key not in BUDGET_KEYS:
            raise ExperimentFileError(
                f"unknown key {key!r}",
                file=exp.path,
                field=f"{tab_name}.{key}",
                fix="use only " + ", ".join(BUDGET_KEYS) + " (and the [run.quick] table)",
            )
    for key in quick_table:
        if key not in BUDGET_KEYS:
            raise ExperimentFileError(
                f"unknown key {key!r}",
                file=exp.path,
                field=f"run.quick.{key}",
                fix="use only " + ", ".join(BUDGET_KEYS),
            )
    src.update(chosen)

    def _posint(key):
        v = src[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ExperimentFileError(
                f"must be a positive integer, got {v!r}",
                file=exp.path,
                field=f"{where}.{key}",
                fix="write a whole number ≥ 1",
            )
        return int(v)

    def _list(key, kind, positive=True):
        # participant counts must be ≥ 1; sweep doses and days may include 0 (no dose, day 0)
        v = src[key]
        if not isinstance(v, list | tuple) or not v:
            raise ExperimentFileError(
                f"must be a non-empty list, got {v!r}",
                file=exp.path,
                field=f"{where}.{key}",
                fix="write a list such as [10, 20]",
            )
        out = []
        for x in v:
            if (
                isinstance(x, bool)
                or not isinstance(x, int | float)
                or (positive and x <= 0)
                or x < 0
            ):
                raise ExperimentFileError(
                    f"every entry must be a {'positive' if positive else 'non-negative'} "
                    f"number, got {x!r}",
                    file=exp.path,
                    field=f"{where}.{key}",
                    fix="remove the entry or make it > 0",
                )
            if kind is int and x != int(x):
                raise ExperimentFileError(
                    f"every entry must be a whole number, got {x!r}",
                    file=exp.path,
                    field=f"{where}.{key}",
                    fix="write participant counts as integers",
                )
            out.append(kind(x))
        return tuple(out)

    def _phi(v):
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise ExperimentFileError(
                f"must be a number ≥ 0, got {v!r}",
                file=exp.path,
                field=f"{where}.effect_phi",
                fix="write e.g. effect_phi = 70",
            )
        return float(v)

    sections = src["sections"]
    if not isinstance(sections, list | tuple) or not sections:
        raise ExperimentFileError(
            f"must be a non-empty list of section names, got {sections!r}",
            file=exp.path,
            field=f"{where}.sections",
            fix="choose from " + ", ".join(SECTION_ORDER),
        )
    for s in sections:
        if s not in SECTION_ORDER:
            raise ExperimentFileError(
                f"unknown section {s!r}",
                file=exp.path,
                field=f"{where}.sections",
                fix="choose from " + ", ".join(SECTION_ORDER),
            )
    return RunPlan(
        experiment=Path(exp.path),
        out=Path(out),
        seed=int(seed),
        quick=bool(quick),
        sections=tuple(s for s in SECTION_ORDER if s in sections),
        n_patients=_posint("n_patients"),
        n_trials=_posint("n_trials"),
        n_per_arm=_list("n_per_arm", int),
        sweep_doses=_list("sweep_doses", float, positive=False),
        sweep_days=_list("sweep_days", float, positive=False),
        sensitivity_n=_posint("sensitivity_n"),
        effect_phi=_phi(src.get("effect_phi")),
        posterior=None if posterior is None else str(posterior),
        overwrite=bool(overwrite),
        workers=workers,
    )


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class SectionSpec:
    """How to run and read one section.

    ``argv(plan, folder, exp)`` gives the command-line arguments of ``tregsim <command>``;
    ``collect(plan, folder, exp)`` reads the files it wrote and returns the report section and
    summary lines.
    """

    name: str
    title: str
    command: str  # tregsim.cli.<command>
    argv: Callable[[RunPlan, Path, object], list[str]]
    collect: Callable[[RunPlan, Path, object], tuple[Section, list[SummaryItem]]]
    parallel: bool = True  # the command takes --workers


def _fmt_list(xs) -> str:
    return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in xs)


def run_command(command: str, argv: list[str]) -> int:
    """Run ``tregsim <command> argv…`` in this process; returns its exit status.

    Raises
    ------
    ModuleNotFoundError : ``tregsim.cli.<command>`` does not exist.
    TregsimError : raised by the command.
    """
    mod = importlib.import_module(f"tregsim.cli.{command}")
    parser = argparse.ArgumentParser(prog=f"tregsim {command}", exit_on_error=False)
    mod.add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as e:
        raise RuntimeError(
            f"tregsim run built arguments that `tregsim {command}` rejects: {argv} ({e})"
        ) from e
    args.command = command
    return int(mod.run(args) or 0)


SECTIONS: dict[str, SectionSpec] = {}
"""Registered sections (filled by :func:`register_section` in :mod:`tregsim.report.sections`)."""


def register_section(spec: SectionSpec) -> SectionSpec:
    SECTIONS[spec.name] = spec
    return spec


def run_section(spec: SectionSpec, plan: RunPlan, exp) -> SectionOutcome:
    """Run one section into ``plan.out / spec.name`` and read its outputs; never raises for
    a failure of the section itself (the outcome says ``failed`` with the reason)."""
    folder = plan.out / spec.name
    t0 = time.perf_counter()
    try:
        argv = spec.argv(plan, folder, exp) + plan.execution_args(spec.parallel)
        status = run_command(spec.command, argv)
        if status != 0:
            raise RuntimeError(f"`tregsim {spec.command}` exited with status {status}")
        section, summary = spec.collect(plan, folder, exp)
        return SectionOutcome(spec.name, folder, "ok", time.perf_counter() - t0, section, summary)
    except ModuleNotFoundError as e:
        if e.name is not None and not e.name.startswith("tregsim"):
            msg = f"{type(e).__name__}: {e}"
        else:
            msg = (
                f"module {e.name} is not available in this installation, so "
                f"`tregsim {spec.command}` cannot run"
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
def _sub_manifests(out: Path, names) -> dict[str, dict]:
    found = {}
    for n in names:
        p = out / n / "manifest.json"
        if p.is_file():
            found[n] = json.loads(p.read_text(encoding="utf-8"))
    return found


def assumption_ledger(exp, manifests: Mapping[str, dict]) -> list[LedgerEntry]:
    """The assumption ledger: model, φ, what is prior-driven, fixed, individual; input hashes.

    ``manifests`` maps a section name to its ``manifest.json`` dict (input hashes are read
    from them; equal files are listed once).
    """
    spec = exp.model.spec
    params = spec.parameters

    def unit(p):
        return "(dimensionless)" if p.unit in ("", "1", "-") else p.unit

    rows = [
        LedgerEntry(
            "model",
            f"{spec.name}: {spec.title}",
            f"variant of {spec.variant_of}" if spec.variant_of else "core model (docs/model_spec.md)",
        )
    ]
    if "phi" in params:
        p = params["phi"]
        prior = p.prior.describe() if p.prior is not None else "none"
        rows.append(
            LedgerEntry(
                "φ, potency × homing of infused vs endogenous Tregs",
                f"default {p.value:g} {unit(p)}; prior {prior}",
                "prior-driven: no treated-arm data calibrate it; the predicted treatment effect "
                "rests on this assumed number" + (f" ({p.source})" if p.source else ""),
            )
        )
    by_role: dict[str, list[str]] = {}
    for name, p in params.items():
        by_role.setdefault(p.role, []).append(name)
    post = manifests.get("run", {}).get("inputs", {}).get("posterior")
    draws: dict = {}
    if post:
        from tregsim.cohort import load_posterior_draws

        draws = load_posterior_draws(post["path"], exp.model)
        rows.append(
            LedgerEntry(
                "calibrated population parameters",
                ", ".join(
                    f"{k} {np.median(v):.3g} [{np.quantile(v, 0.05):.3g}, "
                    f"{np.quantile(v, 0.95):.3g}]"
                    for k, v in draws.items()
                ),
                f"posterior median [90 % interval] from {Path(post['path']).name} (sha256 "
                f"{post['sha256'][:12]}…), NPE on the placebo natural history: cohort, natural "
                "history, power and sweep draw these parameters from it; sensitivity varies "
                "parameters over their priors",
            )
        )
    else:
        rows.append(
            LedgerEntry(
                "calibrated population parameters",
                "none in this run",
                "no posterior was given: population parameters stay at the model file's "
                "default values; their priors are shown below",
            )
        )
    calibrated_fixed = [n for n in by_role.get("fixed", []) if n in draws]
    for name in by_role.get("population", []) + calibrated_fixed:
        p = params[name]
        if name == "phi":
            continue
        prior = p.prior.describe() if p.prior is not None else "no prior"
        rows.append(
            LedgerEntry(
                f"{name} ({p.description or 'population parameter'})",
                f"{p.value:g} {unit(p)}; prior {prior}",
                (
                    "calibrated: drawn from the posterior above in cohort, natural history, "
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
        names = [n for n in by_role.get(role, []) if n not in draws]
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


def run_experiment(
    experiment: str | os.PathLike,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    argv: list[str] | None = None,
    posterior: str | None = None,
) -> list[SectionOutcome]:
    """Run every section ``experiment`` enables into ``out`` and write ``out/report.html``.

    Parameters
    ----------
    experiment : path of the experiment file (``experiments/*.toml``).
    out : output folder.
    quick : use the ``[run.quick]`` budget.
    seed : master seed; each section gets the same seed (its streams are named apart).
    overwrite : accept an output folder that holds a different run (passed on to every
        section; without it a rerun of the same run resumes the sections' checkpoints).
    workers : run the sections' chunks on a local Dask cluster of this many processes
        (results do not depend on it).
    posterior : a population posterior (netCDF from ``tregsim calibrate``) for the cohort,
        natural-history, power and sweep sections, or ``None`` for the model file's values.

    Returns
    -------
    One :class:`SectionOutcome` per enabled section, in report order.
    """
    # Registers the sections.
    import tregsim.report.sections
    from tregsim import io
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.experiment import load_experiment

    exp = load_experiment(experiment)
    plan = plan_run(
        exp, out, quick=quick, seed=seed, overwrite=overwrite, workers=workers, posterior=posterior
    )
    inputs = exp.input_files()
    if posterior is not None:
        inputs = {**inputs, "posterior": posterior}
    manifest = io.build_manifest(
        command="run", seed=plan.seed, inputs=inputs, settings=plan.settings(), argv=argv
    )
    prepare_output_dir(plan.out, manifest, overwrite=overwrite)

    outcomes = []
    for name in plan.sections:
        spec = SECTIONS[name]
        print(f"tregsim run: section {name} …", file=sys.stderr, flush=True)
        oc = run_section(spec, plan, exp)
        outcomes.append(oc)
        print(
            f"tregsim run: section {name} {oc.status} in {oc.seconds:.1f} s"
            + (f": {oc.error}" if oc.error else ""),
            file=sys.stderr,
            flush=True,
        )

    ledger = assumption_ledger(exp, {"run": manifest, **_sub_manifests(plan.out, plan.sections)})
    ledger.append(
        LedgerEntry(
            "budget",
            "; ".join(
                f"{k} = {_fmt_list(v) if isinstance(v, list) else v}"
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
    order = {label: i for i, label in enumerate(tregsim.report.sections.SUMMARY_ORDER)}
    summary.sort(key=lambda item: order.get(item.label, len(order)))
    from tregsim import __version__

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
    manifest["settings"] = plan.settings()
    manifest["sections"] = status
    io.write_json(plan.out / io.MANIFEST, manifest)
    return outcomes
