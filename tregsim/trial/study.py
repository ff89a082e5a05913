"""A power study: power, assurance, minimal detectable effect and effect draws of virtual trials.

:func:`power_study` is the whole analysis behind ``tregsim power`` and the report's power
section: the effect assumption (posterior medians and a fixed φ for the power curve; posterior
draws and φ from its prior for the assurance curve), the replicate trials
(:func:`tregsim.trial.virtual.virtual_trials`, or :func:`tregsim.trial.design.synthetic_trials`
without an experiment), the power tables (:func:`tregsim.trial.power.simulated_power`) and the
closed-form minimal-detectable-effect table. :meth:`PowerStudy.save` writes ``power.csv``,
``mde.csv``, ``effect_draws.csv``, the two figures and ``manifest.json``;
:func:`load_power_study` reads a saved study back. Columns are documented in ``docs/trials.md``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.results import SHIPPED, PosteriorArg, display_path

TESTS = (
    "ancova",
    "ancova_huber",
    "ancova_prognostic",
    "welch",
    "pooled_t",
    "ranksum",
    "responder_0.2",
    "no_decline",
)
"""Analyses a power study can apply to every replicate trial."""

DEFAULT_TESTS = ("ancova", "welch", "ranksum", "responder_0.2")
ALLOCATIONS = ("experiment", "randomized", "logistic")


@dataclass
class EffectAssumption:
    """What the two curves assume: fixed parameters (power) and per-trial draws (assurance).

    theta : name → value of the power curve (posterior medians, φ), or ``None``.
    draws : name → ``(n_trials,)`` values of the assurance curve, or ``None``.
    fixed_text, assurance_text : one-line descriptions (printed in ``power.csv``).
    """

    theta: dict[str, float] | None
    fixed_text: str
    draws: dict[str, np.ndarray] | None
    assurance_text: str


def check_endpoint_month(exp: Any, endpoint_month: float) -> None:
    """Raise :class:`ArgumentError` unless ``endpoint_month`` is a post-baseline visit."""
    months = np.asarray(exp.visit_months, dtype=float)
    if not np.any(np.isclose(months[1:], endpoint_month)):
        raise ArgumentError(
            f"month {endpoint_month:g} is not a post-baseline visit of {display_path(exp.path)}",
            field="endpoint_month",
            fix=f"use one of {', '.join(f'{m:g}' for m in months[1:])}",
        )


def effect_assumption(
    exp: Any,
    *,
    n_trials: int,
    seed: int,
    effect_phi: float | None = None,
    posterior: dict | None = None,
    posterior_file: Path | None = None,
    assurance: bool = True,
    endpoint_month: float = 12.0,
    phi: str = "treatment_effect",
    from_structure: Sequence[str] = (),
) -> EffectAssumption:
    """The effect assumption of a model-based power study (validates ``endpoint_month``).

    ``phi`` : where the assurance curve's φ comes from: ``"treatment_effect"`` (default) — φ
    of a new trial and the infused-cell kinetics drawn jointly from the shipped treatment-effect
    posterior (``calibration/posteriors/treatment_effect.nc``, docs/treatment_effect.md; the
    prior if that file is absent); ``"prior"`` — φ from the model file's prior.

    The power curve uses every posterior parameter at its posterior median and φ =
    ``effect_phi`` (default: the posterior's φ, else the model file's value); the assurance
    curve gives replicate trial r posterior draw ``r mod n_draws`` and φ from its prior when the
    posterior does not hold φ. ``posterior``: name → ``(n_draws,)`` population-parameter draws
    (``None``: the model file's values), read from ``posterior_file``; ``from_structure``
    names those of them that hold the structure file's point values (not listed as posterior
    draws).
    """
    from tregsim.cohort import posterior_rows
    from tregsim.rng import block_generator

    check_endpoint_month(exp, endpoint_month)
    phi_spec = exp.model.spec.parameters.get("phi")
    theta: dict = {}
    draws: dict = {}
    post, post_path = posterior, posterior_file
    # names whose draws are the structure file's constants, not the posterior's
    post_names = sorted(k for k in post if k not in set(from_structure)) if post else []
    if post:
        theta.update({k: float(np.median(v)) for k, v in post.items()})
        draws.update(posterior_rows(post, 0, n_trials) or {})
    if effect_phi is not None:
        theta["phi"] = float(effect_phi)
    elif "phi" not in theta and phi_spec is not None:
        # the model file's φ, or its override (--set / [parameters])
        overrides = getattr(exp, "parameter_overrides", None) or {}
        theta["phi"] = float(overrides.get("phi", phi_spec.value))
    if post_names:
        fixed_text = (
            "posterior medians ("
            + ", ".join(f"{k} = {theta[k]:.3g}" for k in post_names)
            + ")"
            + (f"; φ = {theta['phi']:g}" if "phi" in theta and "phi" not in post_names else "")
        )
        if effect_phi is not None and "phi" in post_names:
            fixed_text += f"; φ = {effect_phi:g} (given)"
    else:
        fixed_text = f"φ = {theta['phi']:g}" if "phi" in theta else "model defaults"
    assurance_text = ""
    if assurance:
        parts = []
        te = _treatment_effect_rows(n_trials) if phi == "treatment_effect" else None
        if te is not None and "phi" not in draws:
            rows, te_path = te
            draws.update(rows)
            parts.append(
                "φ and the infused-cell kinetics ~ treatment-effect posterior "
                f"({display_path(te_path)}: a new trial's φ from the Treg trials' evidence)"
            )
        if "phi" not in draws and phi_spec is not None and phi_spec.prior is not None:
            g = block_generator(seed, "trial.prior.phi", 0)
            draws["phi"] = np.asarray(phi_spec.prior.sample(g, n_trials), dtype=float)
            parts.append(f"φ ~ prior {phi_spec.prior.describe()}")
        if post_names and post_path is not None:
            parts.append(f"{', '.join(post_names)} ~ posterior ({display_path(post_path)})")
        assurance_text = "; ".join(parts)
    return EffectAssumption(theta or None, fixed_text, draws or None, assurance_text)


PHI_SOURCES = ("treatment_effect", "prior")
"""Where a power study's assurance takes φ from (see :func:`effect_assumption`)."""


def _treatment_effect_rows(n_trials: int):
    """Rows r mod n_draws of the shipped treatment-effect posterior (φ, FX, F_M, α_X, β_M),
    and its path; None if it is not shipped."""
    from tregsim.calibrate.treatment_effect.check import DEFAULT_TREATMENT_EFFECT
    from tregsim.cohort import posterior_rows
    from tregsim.posterior import load_posterior

    path = Path(DEFAULT_TREATMENT_EFFECT)
    if not path.is_file():
        return None
    post = load_posterior(path)
    keep = {k: post[k] for k in ("phi", "FX", "F_M", "alpha_X", "beta_M")}
    return posterior_rows(keep, 0, n_trials), path


def allocation_model(kind: str, exp: Any, beta0: float, beta_age: float, beta_cpep: float):
    """(allocation model or ``None`` for randomized 1:1, description) of an ``allocation``
    argument: ``"experiment"`` (as the experiment file says), ``"randomized"``, ``"logistic"``."""
    from tregsim.trial.allocation import LogisticAllocation, check_allocation

    if kind not in ALLOCATIONS:
        raise ArgumentError(
            f"unknown allocation {kind!r}", field="allocation", fix=f"use one of {ALLOCATIONS}"
        )
    if kind == "experiment":
        kind = "randomized"
        if exp is not None and str(exp.trial.get("allocation", "")).startswith("non"):
            kind = "logistic"
    if kind == "randomized":
        return None, "randomized 1:1"
    model = LogisticAllocation(beta0, beta_age, beta_cpep)
    check_allocation(model)
    return model, (
        f"non-randomized logistic (β0 {model.beta0:g}, β_age {model.beta_age:g}, "
        f"β_c {model.beta_cpep:g})"
    )


def csv_text(tables: dict, meta: dict) -> str:
    """One row per (curve, N per arm); the curve's assumption columns repeated on every row.

    Floats are written with 6 significant digits (the format of ``power.csv``/``mde.csv``).
    """
    lines = []
    header: list[str] | None = None
    for curve, tab in tables.items():
        cols = {"curve": curve, **meta[curve], **tab}
        if header is None:
            header = list(cols)
            lines.append(",".join(header))
        for i in range(len(tab["n_per_arm"])):
            row = []
            for h in header:
                v = cols[h]
                v = v[i] if isinstance(v, np.ndarray) else v
                if isinstance(v, float | np.floating):
                    row.append(f"{v:.6g}")
                else:
                    s = str(v)
                    row.append(f'"{s}"' if "," in s else s)
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


@dataclass
class PowerStudy:
    """Result of :func:`power_study`.

    tables : curve (``"fixed"``, ``"assurance"``) → columns of :meth:`PowerResult.table`
        (``n_per_arm`` (K,), ``power_<test>`` …).
    meta : curve → assumption columns of ``power.csv`` (alpha, allocation, endpoint,
        effect_assumption, mean true effect on ln(AUC+1) and in % of (AUC+1)).
    mde : columns of ``mde.csv`` (closed-form minimal detectable effects per N per arm);
        ``mde_meta`` its assumption columns (control-arm SD and ρ of ln(AUC+1)).
    true_effect : curve → (R,) true effect of each replicate trial, ln(AUC+1);
        ``phi`` curve → (R,) φ of each replicate (or absent).
    summary : curve → N per arm for 80 % and 90 % power of the primary test (``None`` beyond
        the grid) and failed solves.
    """

    settings: dict
    manifest: dict
    tests: tuple[str, ...]
    n_per_arm: np.ndarray
    tables: dict[str, dict[str, np.ndarray]]
    meta: dict[str, dict[str, Any]]
    mde: dict[str, np.ndarray]
    mde_meta: dict[str, Any]
    true_effect: dict[str, np.ndarray]
    phi: dict[str, np.ndarray]
    summary: dict[str, dict]
    assumption: str
    results: dict = field(default_factory=dict)  # curve → PowerResult (not saved)

    @property
    def primary_test(self) -> str:
        return self.tests[0]

    def frame(self):
        """``power.csv`` as a ``pandas.DataFrame`` (full precision)."""
        import pandas as pd

        parts = []
        for curve, tab in self.tables.items():
            k = len(tab["n_per_arm"])
            parts.append(pd.DataFrame({"curve": [curve] * k, **self.meta[curve], **tab}))
        return pd.concat(parts, ignore_index=True)

    def effect_draws_csv(self) -> str:
        rows = ["curve,trial,true_effect_ln_auc_plus_1,true_effect_percent_auc_plus_1,phi"]
        for k, te_all in self.true_effect.items():
            phis = self.phi.get(k)
            for r, te in enumerate(np.asarray(te_all, dtype=float)):
                phi = f"{phis[r]:.10g}" if phis is not None else ""
                rows.append(f"{k},{r},{te:.10g},{100 * np.expm1(te):.8g},{phi}")
        return "\n".join(rows) + "\n"

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``power.csv``, ``mde.csv``, ``effect_draws.csv``, ``power_curve.png``,
        ``effect_distribution.png`` and ``manifest.json`` (last) into ``out_dir``."""
        from tregsim import io
        from tregsim.plots import trial as tplot
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        io.write_text(out / "power.csv", csv_text(self.tables, self.meta))
        io.write_text(
            out / "mde.csv", csv_text({"closed_form": self.mde}, {"closed_form": self.mde_meta})
        )
        io.write_text(out / "effect_draws.csv", self.effect_draws_csv())
        s = self.settings
        fixed = self.meta["fixed"]
        label = (
            f"{fixed['allocation']}; endpoint {fixed['endpoint']}; α = {s['alpha']:g}; "
            f"R = {s['trials']} trials/curve; dropout {s['dropout']:g}"
        )
        ax = tplot.plot_power_curve(
            self.tables,
            tests=self._curve_tests(),
            alpha=s["alpha"],
            assumption=f"{self.assumption}\n{label}",
            title="Virtual-trial power vs N per arm",
        )
        tplot.save(ax.figure, out / "power_curve.png")
        ref = "assurance" if "assurance" in self.true_effect else "fixed"
        fig = tplot.effect_figure(
            self.true_effect[ref],
            phi=self.phi.get(ref),
            fixed_effect_ln=fixed["mean_true_effect_ln_auc_plus_1"],
            assumption=self.assumption,
        )
        tplot.save(fig, out / "effect_distribution.png")
        write_manifest(out, self.manifest)
        return out

    def _curve_tests(self) -> list[str]:
        """Tests drawn in ``power_curve.png``: the primary, and ``ancova_prognostic`` or
        ``ancova_huber`` beside ``ancova`` when both were run (the twin's or the robust fit's
        gain at the same N)."""
        out = [self.primary_test]
        for other in ("ancova_prognostic", "ancova_huber"):
            if other in self.tests:
                out += [t for t in ("ancova", other) if t in self.tests and t not in out]
        return out

    def report_lines(self) -> list[str]:
        """What ``tregsim power`` prints: each curve at every N, N for 80/90 %, the MDE."""
        t0 = self.primary_test
        lines = []
        for k, tab in self.tables.items():
            what = "power" if k == "fixed" else "assurance"
            cells = ", ".join(
                f"N={n}: {p:.3f} [{a:.3f}, {b:.3f}]"
                for n, p, a, b in zip(
                    tab["n_per_arm"],
                    tab[f"power_{t0}"],
                    tab[f"power_{t0}_mc_low"],
                    tab[f"power_{t0}_mc_high"],
                    strict=True,
                )
            )
            lines.append(f"{what} ({t0}, {self.meta[k]['effect_assumption']}): {cells}")
            lines.append(
                f"  N per arm for 80%: {self.summary[k]['n_per_arm_for_80pct']}, "
                f"for 90%: {self.summary[k]['n_per_arm_for_90pct']} (None = beyond the grid)"
            )
            for t in self._curve_tests()[1:]:
                pw = np.asarray(tab[f"power_{t}"])
                n80 = [int(n) for n, p in zip(tab["n_per_arm"], pw, strict=True) if p >= 0.8]
                cells = ", ".join(
                    f"N={n}: {p:.3f}" for n, p in zip(tab["n_per_arm"], pw, strict=True)
                )
                lines.append(f"{what} ({t}): {cells}")
                lines.append(f"  N per arm for 80% ({t}): {n80[0] if n80 else None}")
        grid = self.n_per_arm
        n_ref = 10 if 10 in grid else int(grid[0])
        i = int(np.nonzero(grid == n_ref)[0][0])
        lines.append(
            f"minimal detectable effect at {n_ref} per arm (80% power, ANCOVA, SD "
            f"{self.mde_meta['sd_ln_auc_plus_1_control']:.3f}, ρ "
            f"{self.mde_meta['rho_covariates']:.2f} within the simulated trials' control "
            "arms): "
            f"{self.mde['mde80_ancova_ln_auc_plus_1'][i]:.3f} ln(AUC+1) = "
            f"{self.mde['mde80_ancova_percent_auc_plus_1'][i]:+.0f}% (AUC+1)"
        )
        return lines


def _check_arguments(
    *, seed, trials, alpha, dropout, tests, synthetic, effect_phi, effect_patients, effect_sd
) -> tuple[str, ...]:
    def bad(name: str, problem: str, fix: str):
        return ArgumentError(problem, field=name, fix=fix)

    if seed < 0:
        raise bad("seed", f"seed must be ≥ 0, got {seed}", "give a whole number ≥ 0")
    if trials < 10:
        raise bad("trials", f"trials must be ≥ 10, got {trials}", "use e.g. 2000 trials")
    if not 0 < alpha < 1:
        raise bad("alpha", f"alpha must be in (0, 1), got {alpha}", "use e.g. 0.05")
    if not 0 <= dropout < 1:
        raise bad("dropout", f"dropout must be in [0, 1), got {dropout}", "use e.g. 0.1")
    tests = tuple(t.strip() for t in tests if t.strip())
    unknown = [t for t in tests if t not in TESTS]
    if not tests or unknown:
        raise bad("tests", f"unknown analyses {unknown or tests}", f"use {', '.join(TESTS)}")
    if synthetic and effect_phi is not None:
        raise bad(
            "effect_phi", "effect_phi needs an experiment (model-based mode)", "use effect instead"
        )
    if synthetic and "ancova_prognostic" in tests:
        raise bad(
            "tests",
            "ancova_prognostic needs an experiment: its covariate is each participant's "
            "mechanistic twin",
            "drop ancova_prognostic, or give an experiment (model-based mode)",
        )
    if effect_phi is not None and not effect_phi >= 0:
        raise bad(
            "effect_phi",
            f"effect_phi must be ≥ 0, got {effect_phi}",
            "φ is a dimensionless potency × homing factor ≥ 0, e.g. 20",
        )
    if effect_patients < 0:
        raise bad(
            "effect_patients",
            f"effect_patients must be ≥ 0, got {effect_patients}",
            "use e.g. 16, or 0 for every enrolled patient",
        )
    if effect_sd < 0:
        raise bad("effect_sd", f"effect_sd must be ≥ 0, got {effect_sd}", "use 0 for no assurance")
    return tests


def _relabel(
    ea: EffectAssumption, relative_effect, structure, *, from_posterior: bool, effect_scale="auc"
) -> None:
    """Effect-assumption texts under ``relative_effect`` / the records structure: name only
    the values that still come from the posterior or model file (the structure file's values,
    the observation model and a fixed relative effect replace the rest), then say which
    structure (:meth:`~tregsim.population.structure.VariabilityStructure.describe`)."""
    from tregsim.population.structure import STRUCTURE_OBSERVATION

    drop = set()
    if relative_effect is not None:
        drop.add("phi")
        ea.theta = {k: v for k, v in (ea.theta or {}).items() if k != "phi"} or None
    records = structure is not None and structure.variability == "records"
    if records:
        drop |= {*structure.from_file, *STRUCTURE_OBSERVATION, "sigma"}
    theta = ea.theta or {}
    kept = ", ".join(f"{k} = {theta[k]:.3g}" for k in sorted(theta) if k not in drop)
    source = "posterior medians" if from_posterior else "model file values"
    text = f"{source} ({kept})" if kept else source
    if relative_effect is not None:
        if effect_scale == "auc":
            what = (
                f"relative effect {100 * relative_effect:+g}% on the noise-free endpoint AUC "
                f"(treated = {1 + relative_effect:g} × routine care; no treatment model); "
            )
        else:
            what = (
                f"relative effect {100 * relative_effect:+g}% on the noise-free endpoint AUC + 1 "
                f"(treated AUC + 1 = {1 + relative_effect:g} × routine care's: a shift of "
                f"{np.log1p(relative_effect):.4g} in ln(AUC + 1); no treatment model); "
            )
        text = what + text
    if records:
        text += "; " + structure.describe()
        if ea.draws is not None and structure.from_file:
            ea.assurance_text += (
                "; variability: records (the structure file's "
                + ", ".join(structure.from_file)
                + " replace the posterior's)"
            )
        elif ea.draws is not None:
            ea.assurance_text += "; variability: records (per posterior draw)"
    ea.fixed_text = text


def power_study(
    exp: Any,
    *,
    n_per_arm: str | Sequence[int] = "5:60:5",
    trials: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    tests: Sequence[str] = DEFAULT_TESTS,
    effect_phi: float | None = None,
    posterior: PosteriorArg = SHIPPED,
    assurance: bool = True,
    endpoint_month: float = 12.0,
    phi: str = "treatment_effect",
    effect: float = 0.1,
    effect_sd: float = 0.05,
    allocation: str = "experiment",
    beta0: float = 0.0,
    beta_age: float = 0.5,
    beta_cpep: float = 0.5,
    dropout: float = 0.0,
    effect_patients: int = 16,
    twin_draws: int = 256,
    variability: str | None = None,
    relative_effect: float | None = None,
    effect_scale: str = "auc",
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 50,
    argv: list[str] | None = None,
    progress: bool = True,
) -> PowerStudy:
    """Power, assurance and minimal detectable effect of virtual trials.

    Parameters
    ----------
    exp : a loaded :class:`~tregsim.experiment.Experiment` (model-based), or ``None`` for the
        synthetic normal model on ln(AUC+1) with TrialNet placebo defaults.
    n_per_arm : participants per arm: ``"start:stop:step"`` (inclusive), ``"10,20"`` or a list.
    trials : replicate trials per curve (≥ 10).
    seed : master seed.
    alpha : two-sided level.
    tests : analyses (from :data:`TESTS`); the first is primary.
    effect_phi : fixed φ (dimensionless) of the power curve; default the posterior's median
        φ, else the model file's value.
    posterior : population posterior: :data:`~tregsim.results.SHIPPED` (default), a netCDF
        path, or ``None`` for the model file's values.
    assurance : also compute the assurance curve.
    endpoint_month : endpoint visit, months after baseline.
    phi : the assurance curve's φ: ``"treatment_effect"`` (the shipped treatment-effect
        posterior, default) or ``"prior"`` (the model file's prior of φ).
    effect, effect_sd : synthetic mode: true effect (ln(AUC+1)) and its SD across replicates.
    allocation, beta0, beta_age, beta_cpep : ``"experiment"``/``"randomized"``/``"logistic"``
        and the logistic allocation's coefficients (log-odds per SD).
    dropout : probability of no endpoint.
    effect_patients : model-based: true effect from the paired simulation of the first K
        enrolled patients (0 = all).
    twin_draws : with ``ancova_prognostic``: posterior × individual draws of each
        participant's twin (its prognostic score; docs/twin.md).
    variability : model-based structure of individual variability
        (:mod:`tregsim.population.structure`): ``None`` = the default ``"records"`` (hazard
        covariate and within-patient observation model fitted to the placebo records — per
        draw of a records-structure posterior, else the point values of
        ``calibration/natural_history_structure.json``, whose SHA-256 then goes into the
        manifest and ``power.csv``'s ``variability`` column) or ``"lumped"`` (the model's one
        residual ``sigma``, no hazard covariate).
    relative_effect : model-based: a fixed relative effect X on the noise-free endpoint
        (treated = (1 + X) × routine care) instead of the treatment model; no assurance curve.
    effect_scale : the scale of ``relative_effect``: ``"auc"`` (AUC × (1 + X)) or
        ``"auc_plus_1"`` ((AUC + 1) × (1 + X): a constant shift ln(1 + X) of ln(AUC + 1), the
        closed form's assumption); :mod:`tregsim.trial.virtual`.
    out_dir, overwrite : checkpoint folder (prepared here) and whether to replace another run.
    workers, scheduler, chunk_size : where and in what pieces the trials run (results do not
        depend on them).
    argv : the command line that asked for this study (``None``: the call is recorded).
    """
    from tregsim.cohort import start_analysis
    from tregsim.trial.power import parse_grid

    synthetic = exp is None
    tests = _check_arguments(
        seed=seed,
        trials=trials,
        alpha=alpha,
        dropout=dropout,
        tests=tests,
        synthetic=synthetic,
        effect_phi=effect_phi,
        effect_patients=effect_patients,
        effect_sd=effect_sd,
    )
    from tregsim.population.structure import check_variability

    check_variability(variability)
    if synthetic and (variability not in (None, "lumped") or relative_effect is not None):
        name = "variability" if variability not in (None, "lumped") else "relative_effect"
        raise ArgumentError(
            f"{name} needs an experiment (model-based mode)",
            field=name,
            fix="pass an experiment, or use effect in synthetic mode",
        )
    if relative_effect is not None and effect_phi is not None:
        raise ArgumentError(
            "relative_effect and effect_phi both given",
            field="relative_effect",
            fix="give one of them: a fixed relative effect or the treatment model's φ",
        )
    if relative_effect is not None and not relative_effect > -1:
        raise ArgumentError(
            f"relative_effect must be > -1, got {relative_effect}",
            field="relative_effect",
            fix="use e.g. 0.3 for +30 %",
        )
    if effect_scale != "auc" and relative_effect is None:
        raise ArgumentError(
            f"effect_scale {effect_scale!r} without relative_effect",
            field="effect_scale",
            fix="give relative_effect (the scale applies to a fixed relative effect only)",
        )
    if relative_effect is not None:
        assurance = False  # a fixed effect has no effect distribution
    if phi not in PHI_SOURCES:
        raise ArgumentError(
            f"unknown phi source {phi!r}", field="phi", fix=f"use one of {', '.join(PHI_SOURCES)}"
        )
    if isinstance(n_per_arm, str):
        grid = parse_grid(n_per_arm)
    else:
        grid = parse_grid(",".join(str(int(n)) for n in n_per_arm))
    n_max = int(grid.max())
    if not synthetic:
        check_endpoint_month(exp, endpoint_month)  # before the output folder is touched
    alloc, alloc_text = allocation_model(allocation, exp, beta0, beta_age, beta_cpep)
    settings = {
        "mode": "synthetic" if synthetic else "model",
        "n_per_arm": [int(x) for x in grid],
        "trials": trials,
        "alpha": alpha,
        "tests": list(tests),
        "allocation": alloc_text,
        "dropout": dropout,
        "endpoint_month": endpoint_month,
        "effect_phi": effect_phi,
        "effect": effect if synthetic else None,
        "effect_sd": effect_sd if synthetic else None,
        "no_assurance": not assurance,
        "effect_patients": None if synthetic else effect_patients,
        "phi": None if synthetic else phi,
    }
    if "ancova_prognostic" in tests:
        if twin_draws < 2:
            raise ArgumentError(
                f"twin_draws must be ≥ 2, got {twin_draws}", field="twin_draws", fix="use e.g. 256"
            )
        settings["twin_draws"] = int(twin_draws)
    if relative_effect is not None:
        settings["relative_effect"] = relative_effect
        settings["effect_scale"] = effect_scale
    st = start_analysis(
        exp,
        command="power",
        function="tregsim.trial.study.power_study",
        seed=seed,
        arguments={**settings, "allocation": allocation},
        settings=settings,
        posterior=posterior,
        variability=variability,
        structure=not synthetic,
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    manifest, out = st.manifest, st.out
    structure = st.structure
    if not synthetic:
        ea = effect_assumption(
            exp,
            n_trials=trials,
            seed=seed,
            effect_phi=effect_phi,
            posterior=st.draws,
            posterior_file=st.posterior,
            assurance=assurance,
            endpoint_month=endpoint_month,
            phi=phi,
            from_structure=structure.from_file,
        )
        if relative_effect is not None or structure.variability == "records":
            _relabel(
                ea,
                relative_effect,
                structure,
                from_posterior=st.posterior is not None,
                effect_scale=effect_scale,
            )
    common: dict[str, Any] = {"alpha": alpha, "allocation": alloc_text, "dropout_fraction": dropout}
    if not synthetic:
        common["variability"] = structure.describe()
    if synthetic:
        common["endpoint"] = "synthetic ln(AUC+1) model, TrialNet placebo month-12 defaults"
        curves = _synthetic_curves(
            seed, trials, n_max, effect, effect_sd if assurance else 0.0, alloc, dropout
        )
    else:
        common["endpoint"] = f"MMTT 2-h AUC mean C-peptide at month {endpoint_month:g}, {exp.name}"
        twin = (
            _twin_grid(exp, st.draws, twin_draws, seed, endpoint_month, structure)
            if "ancova_prognostic" in tests
            else None
        )
        curves = _model_curves(
            exp,
            ea,
            assurance,
            twin=twin,
            n_trials=trials,
            n_max_per_arm=n_max,
            seed=seed,
            allocation=alloc,
            dropout=dropout,
            endpoint_month=endpoint_month,
            effect_patients=effect_patients or None,
            variability=structure.variability,
            relative_effect=relative_effect,
            effect_scale=effect_scale,
            out_dir=out,
            workers=workers,
            scheduler=scheduler,
            chunk_size=chunk_size,
            progress=progress,
        )
    return _study(curves, common, grid, tests, alpha, settings, manifest, progress)


def _twin_grid(
    exp: Any,
    draws: dict | None,
    n_draws: int,
    seed: int,
    endpoint_month: float,
    structure: Any = None,
):
    """The twin behind ``ancova_prognostic``: the analyst's posterior (the study's population
    draws, or the model file's values), the experiment's baseline distribution, curves on an
    age grid over the population's age range at the experiment's baseline day. Under the
    records structure: :class:`tregsim.twin.StructureTwinGrid` at the draws' medians (hazard
    covariate and heteroscedastic observation model); otherwise the lumped
    :class:`tregsim.twin.Twin` with ``n_draws`` posterior × individual draws."""
    from tregsim.population.distributions import AGE_LIMITS_YEARS
    from tregsim.twin import BaselinePrior, StructureTwinGrid, Twin, TwinGrid

    model = exp.model
    lo, hi = exp.population.age.support
    lo, hi = max(float(lo), 0.5), min(float(hi), AGE_LIMITS_YEARS[1])
    ages = np.geomspace(lo, hi, 41)
    if structure is not None and structure.observed:
        return StructureTwinGrid(
            model,
            {k: v for k, v in (draws or {}).items() if k != "phi"},
            BaselinePrior.from_experiment(exp),
            ages,
            exp.baseline_day,
            [endpoint_month],
        )
    if not draws:
        d = model.defaults()
        draws = {
            k: np.array([d[k]]) for k, p in model.spec.parameters.items() if p.role == "population"
        }
    twin = Twin(
        model, draws, n_draws=n_draws, seed=seed, baseline_prior=BaselinePrior.from_experiment(exp)
    )
    return TwinGrid(twin, ages, exp.baseline_day, [endpoint_month])


@dataclass
class _Curves:
    """Replicate trials per curve, each curve's assumption text, and the combined text."""

    datasets: dict
    labels: dict[str, str]
    assumption: str


def _synthetic_curves(seed, trials, n_max, effect, effect_sd, alloc, dropout) -> _Curves:
    from tregsim.trial import design

    datasets = {
        "fixed": design.synthetic_trials(
            seed, trials, n_max, effect=effect, allocation=alloc, dropout=dropout
        )
    }
    assumption = f"effect ln-ratio {effect:g} ({100 * np.expm1(effect):+.1f}% (AUC+1))"
    if effect_sd > 0:
        eff = design.draw_effects(seed, trials, effect, effect_sd)
        datasets["assurance"] = design.synthetic_trials(
            seed, trials, n_max, effect=eff, allocation=alloc, dropout=dropout
        )
        assumption += f"; assurance: effect ~ N({effect:g}, {effect_sd:g}²)"
    return _Curves(datasets, {k: d.effect_label for k, d in datasets.items()}, assumption)


def _model_curves(exp, ea: EffectAssumption, assurance: bool, **kw) -> _Curves:
    from tregsim.trial.virtual import virtual_trials

    datasets = {
        "fixed": virtual_trials(exp, theta=ea.theta, label=ea.fixed_text, stage="fixed", **kw)
    }
    labels = {"fixed": ea.fixed_text}
    assumption = ea.fixed_text
    if ea.draws is not None and assurance:
        datasets["assurance"] = virtual_trials(
            exp, theta_draws=ea.draws, label=ea.assurance_text, stage="assurance", **kw
        )
        labels["assurance"] = ea.assurance_text
        assumption += f"; assurance: {ea.assurance_text}"
    return _Curves(datasets, labels, assumption)


def _study(curves: _Curves, common, grid, tests, alpha, settings, manifest, progress) -> PowerStudy:
    """Power tables, effect summaries, the closed-form MDE table and N for 80/90 % power."""
    from tregsim.trial.power import closed_form_mde_table, simulated_power, variance_components

    datasets = curves.datasets
    results = {
        k: simulated_power(d, grid, tests=tests, alpha=alpha, progress=progress)
        for k, d in datasets.items()
    }
    meta, true_effect, phi, summary = {}, {}, {}, {}
    for k, d in datasets.items():
        te = np.asarray(d.true_effect, dtype=float)
        te_mean = float(te[np.isfinite(te)].mean()) if np.isfinite(te).any() else float("nan")
        meta[k] = {
            **common,
            "effect_assumption": curves.labels[k],
            "mean_true_effect_ln_auc_plus_1": te_mean,
            "mean_true_effect_percent_auc_plus_1": float(100 * np.expm1(te_mean)),
        }
        true_effect[k] = te
        if d.info.get("phi") is not None:
            phi[k] = np.asarray(d.info["phi"], dtype=float)
        summary[k] = {
            "n_per_arm_for_80pct": results[k].n_for_power(0.8, tests[0]),
            "n_per_arm_for_90pct": results[k].n_for_power(0.9, tests[0]),
        }
        if "n_failed_solves" in d.info:
            summary[k]["n_failed_solves"] = d.info["n_failed_solves"]
    vc = variance_components(datasets["fixed"])
    manifest["summary"] = summary
    return PowerStudy(
        settings=settings,
        manifest=manifest,
        tests=tests,
        n_per_arm=grid,
        tables={k: r.table() for k, r in results.items()},
        meta=meta,
        mde=closed_form_mde_table(vc["sd"], vc["rho"], grid, alpha=alpha),
        mde_meta={
            "sd_ln_auc_plus_1_control": vc["sd"],
            "rho_covariates": vc["rho"],
            "source": "closed-form noncentral t; SD and rho estimated within each simulated "
            "trial's control arm, variances averaged over the trials",
        },
        true_effect=true_effect,
        phi=phi,
        summary=summary,
        assumption=curves.assumption,
        results=results,
    )


def load_power_study(out_dir: str | os.PathLike) -> PowerStudy:
    """A :class:`PowerStudy` saved by :meth:`PowerStudy.save` (``results`` stays empty; the
    tables hold the 6-digit values of the CSV files)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    man = read_manifest(out)
    s = man["settings"]
    tests = tuple(s["tests"])
    df = pd.read_csv(out / "power.csv")
    meta_cols = ["alpha", "allocation", "dropout_fraction", "endpoint", "variability",
                 "effect_assumption", "mean_true_effect_ln_auc_plus_1",
                 "mean_true_effect_percent_auc_plus_1"]  # fmt: skip
    tables, meta = {}, {}
    for curve, sub in df.groupby("curve", sort=False):
        meta[str(curve)] = {c: sub[c].iloc[0] for c in meta_cols if c in sub.columns}
        tables[str(curve)] = {
            c: sub[c].to_numpy() for c in sub.columns if c not in meta_cols and c != "curve"
        }
    mdf = pd.read_csv(out / "mde.csv")
    mde_meta_cols = ["sd_ln_auc_plus_1_control", "rho_covariates", "source"]
    mde_meta = {c: mdf[c].iloc[0] for c in mde_meta_cols}
    mde = {c: mdf[c].to_numpy() for c in mdf.columns if c not in [*mde_meta_cols, "curve"]}
    edf = pd.read_csv(out / "effect_draws.csv")
    true_effect, phi = {}, {}
    for curve, sub in edf.groupby("curve", sort=False):
        true_effect[str(curve)] = sub["true_effect_ln_auc_plus_1"].to_numpy()
        if sub["phi"].notna().any():
            phi[str(curve)] = sub["phi"].to_numpy()
    return PowerStudy(
        settings=s,
        manifest=man,
        tests=tests,
        n_per_arm=np.asarray(s["n_per_arm"], dtype=int),
        tables=tables,
        meta=meta,
        mde=mde,
        mde_meta=mde_meta,
        true_effect=true_effect,
        phi=phi,
        summary=man.get("summary", {}),
        assumption=str(meta["fixed"]["effect_assumption"]),
    )
