"""The plan of ``tregsim run``: which sections run with which budgets.

Budgets come from the experiment file's ``[run]`` table (``[run.quick]`` with ``--quick``),
validated once by :func:`tregsim.experiment.load_experiment`; keys absent there take the
defaults below (:data:`DEFAULT_BUDGET`, :data:`QUICK_BUDGET`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tregsim.experiment import RUN_SECTIONS
from tregsim.results import SHIPPED, display_path, posterior_path

SECTION_ORDER = RUN_SECTIONS
"""Every section ``tregsim run`` knows, in report order (names as in ``[run].sections``)."""

DEFAULT_BUDGET: dict[str, Any] = {
    "sections": list(SECTION_ORDER),
    "n_patients": 2000,
    "n_trials": 200,
    "n_per_arm": [5, 10, 20, 40, 80],
    "sweep_doses": [1e6, 5e6, 10e6, 20e6, 50e6, 100e6],
    "sweep_days": [14.0, 30.0, 60.0, 90.0, 180.0],
    "sensitivity_n": 128,
    "effect_phi": None,
    "variability": None,
}
"""Budget of a full run when the experiment file's ``[run]`` table omits a key.
Units: n_patients (virtual patients per arm), n_trials (simulated trials per sample size),
n_per_arm (participants per arm), sweep_doses (cells/kg), sweep_days (days since diagnosis),
sensitivity_n (Sobol' base sample size, a power of two), effect_phi (the φ of the power section's
fixed-effect curve; None = the model file's value), variability (structure of individual
variability of the cohort, natural-history and power sections: "records" or "lumped"; None =
"records"; the command line's --variability wins)."""

QUICK_BUDGET: dict[str, Any] = {
    "sections": ["cohort", "natural_history", "power"],
    "n_patients": 300,
    "n_trials": 100,
    "n_per_arm": [10, 20],
    "sweep_doses": [1e6, 20e6],
    "sweep_days": [30.0, 90.0],
    "sensitivity_n": 16,
    "effect_phi": None,
    "variability": None,
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
    posterior: Path | None = None
    phi: str = "treatment_effect"  # the power section's assurance φ (PHI_SOURCES)
    variability: str | None = None  # structure of individual variability (None = records)
    # How the work runs, not what it computes (kept out of settings()):
    overwrite: bool = False
    workers: int | None = None

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
            "phi": self.phi,
            "posterior": None if self.posterior is None else display_path(self.posterior),
            "variability": self.variability or "records (default)",
        }


def plan_run(
    exp,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    posterior: str | os.PathLike | None = SHIPPED,
    phi: str = "treatment_effect",
    variability: str | None = None,
) -> RunPlan:
    """The budgets of ``exp``'s ``[run]`` / ``[run.quick]`` table over the defaults.

    ``--quick`` never falls back to the full budget: a key missing in ``[run.quick]`` takes
    the quick default; only the section list is inherited from ``[run]``.
    ``posterior``: :data:`~tregsim.results.SHIPPED` (default), a netCDF path or ``None``.
    ``variability``: structure of individual variability of the cohort, natural-history and
    power sections (:mod:`tregsim.population.structure`; ``None`` = ``"records"``).
    """
    from tregsim.errors import ArgumentError

    if seed < 0:
        raise ArgumentError(
            f"seed must be ≥ 0, got {seed}", field="seed", fix="give a whole number ≥ 0"
        )
    if workers is not None and workers < 1:
        raise ArgumentError(
            f"workers must be ≥ 1, got {workers}",
            field="workers",
            fix="give a whole number ≥ 1, or none to run in this process",
        )
    from tregsim.population.structure import check_variability

    check_variability(variability)
    table = {k: v for k, v in (exp.sections or {}).items() if k != "quick"}
    if quick:
        src = dict(QUICK_BUDGET)
        if "sections" in table:
            src["sections"] = table["sections"]
        src.update((exp.sections or {}).get("quick", {}))
    else:
        src = {**DEFAULT_BUDGET, **table}
    return RunPlan(
        experiment=Path(exp.path),
        out=Path(out),
        seed=int(seed),
        quick=bool(quick),
        sections=tuple(s for s in SECTION_ORDER if s in src["sections"]),
        n_patients=int(src["n_patients"]),
        n_trials=int(src["n_trials"]),
        n_per_arm=tuple(int(x) for x in src["n_per_arm"]),
        sweep_doses=tuple(float(x) for x in src["sweep_doses"]),
        sweep_days=tuple(float(x) for x in src["sweep_days"]),
        sensitivity_n=int(src["sensitivity_n"]),
        effect_phi=None if src.get("effect_phi") is None else float(src["effect_phi"]),
        posterior=posterior_path(posterior),
        phi=phi,
        variability=variability if variability is not None else src.get("variability"),
        overwrite=bool(overwrite),
        workers=workers,
    )
