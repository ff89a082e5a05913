"""From configuration and evidence to trial designs and the simulated design (cached)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tregsim.calibrate.treatment_effect.designs import (
    TrialDesign,
    cached_design_outputs,
    design_points,
)
from tregsim.calibrate.treatment_effect.evidence import KINETIC, load_evidence

TARGET_KEY = "target"


@dataclass
class Problem:
    """Everything the inference needs: config, evidence rows, designs, simulated design."""

    config: object
    model: object
    rows: list
    designs: dict  # trial key → TrialDesign (efficacy trials and the target)
    nonrandomized: dict  # trial key → bool
    train_thetas: np.ndarray
    train: dict
    holdout_thetas: np.ndarray
    holdout: dict
    input_files: dict


def build_designs(cfg, rows, experiments) -> tuple[dict, dict]:
    """One TrialDesign per efficacy trial (union of its rows' arms and months) + the target."""
    from tregsim.experiment import load_experiment

    designs, nonrand = {}, {}
    by_trial: dict[str, list] = {}
    for r in rows:
        if r.statistic not in KINETIC:
            by_trial.setdefault(r.trial, []).append(r)
    for trial, rs in by_trial.items():
        exp = experiments[rs[0].experiment_path]
        arms = []
        for r in rs:
            arms += [a for a in r.treated_arms if a not in arms]
        controls = {r.control_arm for r in rs if r.control_arm}
        control = controls.pop() if controls else None
        npa = exp.trial["n_per_arm"]
        months = tuple(sorted({float(r.month) for r in rs}))
        designs[trial] = TrialDesign(
            trial,
            exp,
            {a: int(npa[a]) for a in arms},
            control,
            int(npa[control]) if control else 0,
            months,
            cfg.analysis.get(trial, "ancova"),
        )
        nonrand[trial] = exp.trial["allocation"] == "non-randomized"
    target = load_experiment(cfg.target)
    arm = target.treatment_arms[0]
    npa = target.trial["n_per_arm"]
    designs[TARGET_KEY] = TrialDesign(
        TARGET_KEY,
        target,
        {arm: int(npa[arm])},
        target.control_arm,
        int(npa[target.control_arm]),
        tuple(cfg.target_months),
    )
    return designs, nonrand


def prepare(cfg, cache_dir, *, progress=None) -> Problem:
    """Load evidence, build designs and simulate the design points (through the cache)."""
    from tregsim.io import file_sha256
    from tregsim.model import load_model
    from tregsim.posterior import load_posterior

    experiments: dict = {}
    rows = load_evidence(cfg.evidence, experiments=experiments)
    designs, nonrand = build_designs(cfg, rows, experiments)
    model = load_model(cfg.model)
    nh = load_posterior(cfg.natural_history) if cfg.natural_history else None
    train_t = design_points(model, cfg.n_points, cfg.seed, cfg.log_phi, cfg.quantiles)
    hold_t = design_points(
        model, cfg.n_holdout, cfg.seed, cfg.log_phi, cfg.quantiles, skip=cfg.n_points
    )
    files = {"config": cfg.path, "evidence": cfg.evidence, "target": cfg.target}
    if cfg.natural_history:
        files["natural_history"] = cfg.natural_history
    if cfg.variability == "records":
        from tregsim.resources import shipped_path
        from tregsim.trial.virtual import STRUCTURE_FILE

        files["variability_structure"] = shipped_path(STRUCTURE_FILE)
    for d in designs.values():
        files[f"experiment_{d.key}"] = Path(d.experiment.path)
        files[f"model_{d.experiment.model.spec.name}"] = Path(d.experiment.model.spec.path)
    key = {
        "files": {k: file_sha256(p) for k, p in files.items() if k != "config"},
        "model": model.spec.name,
        "designs": {
            k: [d.treated, d.control, d.n_control, d.months, d.analysis] for k, d in designs.items()
        },
        "n_patients": cfg.n_patients,
        "variability": cfg.variability,
        "seed": cfg.seed,
    }
    kw = dict(
        n_patients=cfg.n_patients,
        seed=cfg.seed,
        nh_draws=nh,
        variability=cfg.variability,
        progress=progress,
    )
    dl = list(designs.values())
    cache_dir = Path(cache_dir)
    train = cached_design_outputs(cache_dir / "design_train.npz", key, dl, train_t, **kw)
    hold = cached_design_outputs(cache_dir / "design_holdout.npz", key, dl, hold_t, **kw)
    return Problem(cfg, model, rows, designs, nonrand, train_t, train, hold_t, hold, files)


def reference_outputs(cfg, theta, variability: str, *, n_patients: int | None = None) -> dict:
    """Every design's outputs at one point θ = (φ, FX, F_M, α_X, β_M) (natural scale) with
    the given variability — no cache; for comparing ``"records"`` with ``"lumped"``
    (docs/treatment_effect.md, "Standard errors")."""
    from tregsim.calibrate.treatment_effect.designs import design_outputs
    from tregsim.posterior import load_posterior

    experiments: dict = {}
    rows = load_evidence(cfg.evidence, experiments=experiments)
    designs, _ = build_designs(cfg, rows, experiments)
    nh = load_posterior(cfg.natural_history) if cfg.natural_history else None
    out = design_outputs(
        list(designs.values()),
        np.atleast_2d(np.asarray(theta, float)),
        n_patients=n_patients or cfg.n_patients,
        seed=cfg.seed,
        nh_draws=nh,
        variability=variability,
    )
    return {k: float(v[0]) for k, v in out.items()}
