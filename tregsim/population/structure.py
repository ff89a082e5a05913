"""Which structure of individual variability a run's virtual patients follow: the one resolver.

Two structures (docs/calibration.md, "Structure of individual variability"):

* ``"records"`` (the default): the structure fitted to the placebo records — a hazard covariate
  on the baseline-visit C-peptide (``beta_c``, ``beta_lin``; the population sampler sets
  ``cpep_bl``) and the within-patient observation model of :func:`tregsim.observe.observe_visits`
  (``sigma_meas``, ``kappa``, ``sigma_bio``, ``tau_bio``, and ``inv_nu`` = 1/ν of the Student-t
  deviation since round 19);
* ``"lumped"``: the old structure — no hazard covariate, one residual ``sigma`` on the log
  scale (virtual trials, natural-history check); ``cohort.nc``'s ``cpeptide_observed`` keeps
  the model file's observation parameters.

Under ``"records"`` the values come from, in this order:

1. a **records-structure posterior** (one that carries ``sigma_meas`` and ``kappa``; the
   round-4 contract): every draw's own λ_ref, γ_a, ω_λ, q, β_c, β_lin, s₀, k_re *and*
   σ_meas, κ (σ_bio / τ_bio / inv_nu from the draw when present, else 0 / the model file's
   value / 0, the normal deviation), so
   item i (patient or replicate) uses draw i mod n_draws for its hazard and its observation;
2. otherwise the point values of ``calibration/natural_history_structure.json``: λ_ref, γ_a,
   ω_λ, q, β_c, β_lin and the observation model replace a lumped posterior's values (that
   posterior's ω_λ ≈ 1.2 and σ were fitted without the covariate and would be incoherent with
   it); the posterior's other parameters (s₀, k_re) are kept, per draw.

The result is a :class:`VariabilityStructure` whose ``draws`` (name → ``(n_draws,)``) every
consumer uses as its population-parameter draws (:func:`tregsim.posterior.posterior_rows`):
the observation parameters travel with the patient's parameters, so the observation model
reads them from the patient's ``params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tregsim.errors import ArgumentError

VARIABILITY = ("records", "lumped")
"""The structures a run can use (see the module docstring)."""

DEFAULT_VARIABILITY = "records"

STRUCTURE_FILE = "calibration/natural_history_structure.json"
"""The records-fitted structure's point values, relative to the project root."""

STRUCTURE_POPULATION = ("lambda_ref", "gamma_a", "omega_lambda", "q", "beta_c", "beta_lin")
"""Population parameters of the structure (its hazard and hazard covariate)."""

STRUCTURE_OBSERVATION = ("sigma_meas", "sigma_bio", "tau_bio", "kappa", "inv_nu")
"""Observation-model parameters of the structure (:func:`tregsim.observe.observe_visits`)."""

RECORDS_POSTERIOR_MARKERS = ("sigma_meas", "kappa")
"""A posterior carrying these is a records-structure posterior (round-4 contract)."""


def check_variability(variability: str | None) -> None:
    """Raise :class:`ArgumentError` unless ``variability`` is one of :data:`VARIABILITY` (or
    ``None``, the default)."""
    if variability is not None and variability not in VARIABILITY:
        raise ArgumentError(
            f"unknown variability {variability!r}",
            field="variability",
            fix=f"use one of {', '.join(VARIABILITY)}",
        )


def records_structure() -> dict:
    """The structure fitted to the placebo records: ``{"population": name → value,
    "observation": name → value, "file": path relative to the project, "sha256": …}``."""
    import hashlib
    import json

    from tregsim.resources import shipped_path

    path = shipped_path(STRUCTURE_FILE)
    if not path.is_file():
        raise ArgumentError(
            f"{STRUCTURE_FILE} is missing",
            file=str(STRUCTURE_FILE),
            fix="restore it from the repository (benchmarks/structure_variability.py writes it)",
        )
    raw = path.read_bytes()
    theta = json.loads(raw)["theta"]
    missing = [k for k in (*STRUCTURE_POPULATION, *STRUCTURE_OBSERVATION) if k not in theta]
    if missing:
        raise ArgumentError(
            f"theta lacks {', '.join(missing)}",
            file=STRUCTURE_FILE,
            field="theta",
            fix="rewrite the file with benchmarks/structure_variability.py",
        )
    return {
        "population": {k: float(theta[k]) for k in STRUCTURE_POPULATION},
        "observation": {k: float(theta[k]) for k in STRUCTURE_OBSERVATION},
        "file": STRUCTURE_FILE,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def default_variability(model) -> str:
    """``"records"`` when ``model`` has the structure's parameters, else ``"lumped"``."""
    names = model.parameter_names
    need = (*STRUCTURE_POPULATION, *STRUCTURE_OBSERVATION, "cpep_bl")
    return DEFAULT_VARIABILITY if all(k in names for k in need) else "lumped"


def is_records_posterior(draws: dict | None) -> bool:
    """True when ``draws`` (name → values) carry the records structure's observation model."""
    return bool(draws) and all(k in draws for k in RECORDS_POSTERIOR_MARKERS)


@dataclass
class VariabilityStructure:
    """The resolved structure of a run.

    variability : ``"records"`` or ``"lumped"``.
    source : ``"posterior"`` (per-draw values of a records-structure posterior),
        ``"structure_file"`` (the JSON's point values) or ``"lumped"``.
    draws : name → ``(n_draws,)`` population (and, under records, observation) parameters
        for :func:`tregsim.posterior.posterior_rows`; ``None``: the model file's values.
    posterior : the posterior file (``None``: none).
    structure : ``{"file", "sha256"}`` of the JSON when its values are used, else ``None``.
    from_file : the parameter names whose values come from the JSON.
    """

    variability: str
    source: str
    draws: dict | None
    posterior: Path | None = None
    structure: dict | None = None
    from_file: tuple[str, ...] = ()

    @property
    def observed(self) -> bool:
        """Draw observations with :func:`tregsim.observe.observe_visits` from the patients'
        ``sigma_meas``, ``sigma_bio``, ``tau_bio``, ``kappa``, ``inv_nu`` (else the one residual
        ``sigma``)."""
        return self.variability == "records"

    def describe(self) -> str:
        """One line for the ledger, ``power.csv`` and printed output."""
        from tregsim.results import display_path

        if self.variability == "lumped":
            return (
                "variability: lumped (one residual sigma on the log scale, no hazard covariate; "
                "the pre-issue-#14 structure"
                + (
                    "; a records-structure posterior's beta_c, beta_lin and observation model "
                    "are not used, sigma is the posterior's or the model file's)"
                    if self.posterior is not None
                    and self.draws is not None
                    and "sigma" not in self.draws
                    else ")"
                )
            )
        post = "none" if self.posterior is None else display_path(self.posterior)
        if self.source == "posterior":
            return (
                "variability: records (hazard covariate beta_c, beta_lin and observation model "
                "sigma_meas, kappa, sigma_bio, tau_bio, inv_nu per posterior draw from "
                f"{post}; patient/replicate i uses draw i mod n_draws)"
            )
        s = self.structure or {}
        kept = (
            f"; {', '.join(sorted(k for k in self.draws or {} if k not in self.from_file and k != 'sigma'))} "
            f"from the posterior {post}"
            if self.posterior is not None
            else "; other parameters from the model file"
        )
        why = (
            " (the posterior is lumped: its hazard and sigma were fitted without the covariate)"
            if self.posterior is not None
            else ""
        )
        return (
            f"variability: records (point values of {s.get('file')}, sha256 "
            f"{str(s.get('sha256', ''))[:12]}: {', '.join(self.from_file)}{why}{kept})"
        )

    def manifest(self) -> dict:
        """The manifest's ``variability_structure`` record."""
        from tregsim.results import display_path

        return {
            "variability": self.variability,
            "source": self.source,
            "posterior": None if self.posterior is None else display_path(self.posterior),
            "structure_file": None if self.structure is None else self.structure["file"],
            "structure_sha256": None if self.structure is None else self.structure["sha256"],
            "from_structure_file": list(self.from_file),
            "description": self.describe(),
        }


def resolve_structure(
    variability: str | None,
    draws: dict | None,
    posterior: Path | None = None,
    model=None,
) -> VariabilityStructure:
    """The structure of a run from its ``variability`` setting and population posterior
    ``draws`` (name → ``(n_draws,)``, ``None`` for the model file's values) read from
    ``posterior``; see the module docstring. ``model`` (optional) limits the returned names
    to the model's parameters. ``variability`` ``None`` is the default: ``"records"``, or
    ``"lumped"`` for a model without the structure's parameters (e.g. the model variants);
    an explicit ``"records"`` on such a model raises :class:`ArgumentError`."""
    missing = (
        []
        if model is None
        else [
            k
            for k in (*STRUCTURE_POPULATION, *STRUCTURE_OBSERVATION, "cpep_bl")
            if k not in model.parameter_names
        ]
    )
    if variability is None:  # the default: records where the model can take it
        variability = "lumped" if missing else DEFAULT_VARIABILITY
    check_variability(variability)
    if variability == "lumped":
        if is_records_posterior(draws):
            # the old path has no covariate and one residual sigma: drop the structure's
            # covariate and observation model (the hazard draws stay; see describe())
            drop = {"beta_c", "beta_lin", *STRUCTURE_OBSERVATION}
            kept = {k: v for k, v in draws.items() if k not in drop}
            return VariabilityStructure("lumped", "lumped", kept, posterior, from_file=())
        return VariabilityStructure("lumped", "lumped", draws, posterior)
    if model is not None:
        if missing:
            raise ArgumentError(
                f"model {model.name!r} has no {', '.join(missing)}: it cannot take the "
                "records-fitted structure of individual variability",
                field="variability",
                fix="use variability 'lumped' with this model",
            )
    if is_records_posterior(draws):
        out = {k: np.asarray(v, dtype=float) for k, v in draws.items()}
        n = len(next(iter(out.values())))
        if "sigma_bio" not in out:  # not sampled by the chosen structure (contract)
            out["sigma_bio"] = np.zeros(n)
        if "inv_nu" not in out:  # a posterior of the normal structure (before round 19)
            out["inv_nu"] = np.zeros(n)
        return VariabilityStructure("records", "posterior", out, posterior)
    st = records_structure()
    values = {**st["population"], **st["observation"]}
    n = len(next(iter(draws.values()))) if draws else 1
    out = {k: np.asarray(v, dtype=float) for k, v in (draws or {}).items()}
    out.update({k: np.full(n, v) for k, v in values.items()})
    return VariabilityStructure(
        "records",
        "structure_file",
        out,
        posterior,
        {"file": st["file"], "sha256": st["sha256"]},
        tuple(values),
    )


def observation_parameters(params, names=STRUCTURE_OBSERVATION) -> dict:
    """The observation model's per-patient arguments of :func:`tregsim.observe.observe_visits`
    from a ``ParameterBatch`` (``(n,)`` arrays; the model file's value where not drawn)."""
    return {k: np.asarray(params[k], dtype=float) for k in names}
