"""Calibration as one analysis: :func:`calibration_study` → :class:`Calibration`.

A thin result wrapper over the calibration package (:func:`tregsim.calibrate.pipeline.calibrate`
for NPE, :func:`tregsim.calibrate.individual_run.calibrate_individual` for the individual-level
likelihood, the treatment-effect synthesis; ``[method] kind`` of the config chooses).

Output layout (``tregsim calibrate CONFIG --out DIR``; the shipped layout of
``calibration/posteriors/``, so ``--out calibration/posteriors`` replaces a shipped posterior
with no hand copying)::

    DIR/NAME.nc        the posterior (ArviZ netCDF); NAME is the config's ``name``
    DIR/NAME/          manifest.json (config, model and data SHA-256, seed, versions, git
                       commit, the posterior's SHA-256 under "outputs"), tables, figures,
                       the trained estimator (NPE) and the working files (simulation banks,
                       caches: git-ignored, reused when a run resumes)

The method writes into ``DIR/NAME/`` while it runs; :func:`publish` moves the posterior to
``DIR/NAME.nc`` (atomic rename) and records its hash. :func:`stale_inputs` compares a
published manifest's input hashes with the files as they are now.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tregsim.errors import ArgumentError
from tregsim.results import display_path


@dataclass
class Calibration:
    """Result of :func:`calibration_study`.

    kind : ``"npe"`` or ``"likelihood"``; out : the folder the calibration wrote;
    result : the package's result (``CalibrationResult`` or ``IndividualRunResult``).
    """

    kind: str
    out: Path
    result: Any
    method: dict | None = None  # the config's [method] table

    posterior_file: Path | None = None  # DIR/NAME.nc once published

    @property
    def posterior_path(self) -> Path:
        if self.posterior_file is not None:
            return self.posterior_file
        if self.kind == "treatment_effect":
            from tregsim.calibrate.treatment_effect import POSTERIOR_FILE

            return self.out / POSTERIOR_FILE
        return self.out / "posterior.nc"

    def save(self, out_dir: str | os.PathLike) -> Path:
        """The calibration in the published layout under ``out_dir`` (``NAME.nc`` and
        ``NAME/``; a copy unless it was written there). Returns ``out_dir``."""
        target = Path(out_dir)
        if target.resolve() != self.out.parent.resolve():
            shutil.copytree(self.out, target / self.out.name, dirs_exist_ok=True)
            if self.posterior_file is not None:
                shutil.copy2(self.posterior_file, target / self.posterior_file.name)
        return target

    def report_lines(self) -> list[str]:
        """What ``tregsim calibrate`` prints: the posterior summary and diagnostics."""
        if self.kind == "npe":
            return _npe_lines(self.result)
        if self.kind == "treatment_effect":
            return _treatment_effect_lines(self.result, self.posterior_path)
        if self.kind == "structure_likelihood":
            from tregsim.calibrate.structure_run import report_lines

            return report_lines(self.result)
        return _likelihood_lines(self.result, self.method)


def calibration_study(
    config: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    budget: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    diagnostics: bool = True,
    argv: list[str] | None = None,
) -> Calibration:
    """Calibrate the config's parameters into ``out_dir`` in the shipped layout (module
    docstring): ``out_dir/NAME.nc`` and ``out_dir/NAME/``.

    budget : NPE simulations (≥ 50; default the config's); diagnostics : NPE SBC and
    posterior-predictive checks. Both are NPE options: a likelihood config refuses them.
    """
    name = config_name(config)
    # the treatment-effect synthesis writes DIR/treatment_effect.nc + DIR/treatment_effect/
    # itself (docs/treatment_effect.md); the others write into DIR/NAME/ and are published
    te = _method_kind(config) == "treatment_effect"
    cal = _run_method(
        config,
        Path(out_dir) if te else Path(out_dir) / name,
        budget=budget,
        seed=seed,
        progress=progress,
        diagnostics=diagnostics,
        argv=argv,
    )
    if te:
        from tregsim.calibrate.treatment_effect.run import POSTERIOR_FILE, TABLES_DIR

        posterior, cal.out = Path(out_dir) / POSTERIOR_FILE, Path(out_dir) / TABLES_DIR
        cal.posterior_file = publish(posterior, posterior, cal.out)
    else:
        cal.posterior_file = publish(cal.posterior_path, Path(out_dir) / f"{name}.nc", cal.out)
    return cal


def config_name(config: str | os.PathLike) -> str:
    """The ``name`` of a calibration config (the stem of the published posterior); the file's
    stem when it has none (the full validation comes later)."""
    import re
    import tomllib

    try:
        data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return Path(config).stem  # the config loader reports it with file and fix
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        if name is None:
            return Path(config).stem
        raise ArgumentError(
            f"name {name!r} cannot name a file",
            file=str(config),
            field="name",
            fix="use letters, digits, '_', '-' or '.' (it becomes NAME.nc and NAME/)",
        )
    return name


def publish(posterior: Path, target: Path, folder: Path) -> Path:
    """Move a finished run's ``posterior`` to ``target`` (atomic rename) and record its
    SHA-256 under ``outputs`` in ``folder/manifest.json``. Returns ``target``."""
    import json

    from tregsim.io import file_sha256, write_json

    posterior, target = Path(posterior), Path(target)
    if posterior.resolve() != target.resolve():
        os.replace(posterior, target)
    man_path = folder / "manifest.json"
    man = json.loads(man_path.read_text(encoding="utf-8"))
    outputs = {target.name: file_sha256(target)}
    for extra in ("estimator.pt", "estimator.pt.json"):
        if (folder / extra).is_file():
            outputs[f"{folder.name}/{extra}"] = file_sha256(folder / extra)
    man["outputs"] = outputs
    write_json(man_path, man)
    return target


def stale_inputs(
    posterior: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> list[str]:
    """Why a published posterior no longer matches what produced it: one line per input
    (config, model, data) whose SHA-256 differs from its manifest's, or whose file is gone,
    and one if the posterior itself changed. ``[]`` when current. Inputs are resolved like
    the manifest names them (relative to the project folder); data that is not on this
    machine (``../shared`` absent) is reported as missing. ``root``: the folder the manifest's
    paths are relative to (tried first; then the project folder, then the working folder)."""
    import json

    from tregsim.io import file_sha256
    from tregsim.resources import project_root

    posterior = Path(posterior)
    folder = posterior.with_suffix("")
    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    bases = [Path(b) for b in (root, project_root(), Path.cwd()) if b is not None]
    out = []
    for role, v in man.get("inputs", {}).items():
        p = next((b / v["path"] for b in bases if (b / v["path"]).is_file()), bases[0] / v["path"])
        if not p.is_file():
            out.append(f"{role}: {v['path']} is missing")
        elif file_sha256(p) != v["sha256"]:
            out.append(f"{role}: {v['path']} changed since the calibration")
    want = man.get("outputs", {}).get(posterior.name)
    if want is None:
        out.append(f"{folder.name}/manifest.json records no SHA-256 of {posterior.name}")
    elif file_sha256(posterior) != want:
        out.append(f"{posterior.name} differs from the file the calibration wrote")
    return out


def _run_method(
    config: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    budget: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    diagnostics: bool = True,
    argv: list[str] | None = None,
) -> Calibration:
    from tregsim.calibrate.config import load_config

    if _method_kind(config) == "treatment_effect":
        # docs/treatment_effect.md: evidence synthesis for φ; its own configuration schema
        from tregsim.calibrate.treatment_effect import calibrate_treatment_effect

        for name, given in (
            ("budget", budget is not None),
            ("seed", seed is not None),
            ("diagnostics", not diagnostics),
        ):
            if given:
                raise ArgumentError(
                    f"{name} is not an option of a treatment-effect calibration",
                    field=name,
                    fix="set budgets and the seed in the configuration file instead",
                )
        res = calibrate_treatment_effect(config, out_dir, argv=argv)
        return Calibration("treatment_effect", Path(out_dir), res)
    cfg = load_config(config)
    if cfg.kind == "structure_likelihood":
        # docs/calibration.md, "Hierarchical likelihood of the chosen structure"
        from tregsim.calibrate.structure_run import calibrate_structure

        for name, given in (("budget", budget is not None), ("diagnostics", not diagnostics)):
            if given:
                raise ArgumentError(
                    f"{name} is an NPE option; {cfg.path.name} has method.kind = "
                    "'structure_likelihood'",
                    field=name,
                    fix="set [method] n_steps in the config instead"
                    if name == "budget"
                    else "drop it",
                )
        res = calibrate_structure(cfg, out_dir, seed=seed, progress=progress, command_line=argv)
        return Calibration("structure_likelihood", Path(res.out), res, dict(cfg.method))
    if cfg.kind == "likelihood":
        from tregsim.calibrate.individual_run import calibrate_individual

        for name, given in (("budget", budget is not None), ("diagnostics", not diagnostics)):
            if given:
                raise ArgumentError(
                    f"{name} is an NPE option; {cfg.path.name} has method.kind = 'likelihood'",
                    field=name,
                    fix="set [method] n_steps in the config instead"
                    if name == "budget"
                    else "drop it",
                )
        res = calibrate_individual(cfg, out_dir, seed=seed, progress=progress, command_line=argv)
        return Calibration("likelihood", Path(res.out), res, dict(cfg.method))
    from tregsim.calibrate.pipeline import calibrate

    if budget is not None and budget < 50:
        raise ArgumentError(
            f"budget {budget} is too small",
            field="budget",
            fix="give at least 50 simulations (1,000+ for a usable posterior)",
        )
    res = calibrate(
        cfg,
        out_dir,
        budget=budget,
        seed=seed,
        progress=progress,
        diagnostics=diagnostics,
        command_line=argv,
    )
    return Calibration("npe", Path(res.out), res)


def _method_kind(config) -> str | None:
    """``[method] kind`` of a calibration TOML, or None (the full validation comes later)."""
    import tomllib

    try:
        data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None  # the config loader reports it with file and fix
    method = data.get("method")
    return method.get("kind") if isinstance(method, dict) else None


def _treatment_effect_lines(res: Any, posterior: Path) -> list[str]:
    lines = [f"posterior: {display_path(posterior)}"]
    for r in res.posterior_summary:
        lines.append(
            f"  {r['parameter']:>12s}: median {r['posterior_median']:.4g}, 90% "
            f"[{r['posterior_q05']:.4g}, {r['posterior_q95']:.4g}] (prior median "
            f"{r['prior_median']:.4g}, 90% [{r['prior_q05']:.4g}, {r['prior_q95']:.4g}]), "
            f"contraction {r['contraction']:.2f}"
        )
    for r in res.diagnostics.get("sbc", []):
        lines.append(
            f"  SBC {r['parameter']:>12s}: coverage50 {r['coverage_50']:.3f}, "
            f"coverage90 {r['coverage_90']:.3f} ({r['n_sets']} sets)"
        )
    for r in res.predictions:
        lines.append(
            f"  {res.target} {r['evidence']:>18s}: 12-month effect median "
            f"{r['effect_12m_pct_median']:+.2f} % (90% {r['effect_12m_pct_q05']:+.2f} to "
            f"{r['effect_12m_pct_q95']:+.2f}), P(>10%) {r['p_effect_12m_gt_10pct']:.3f}, "
            f"P(>20%) {r['p_effect_12m_gt_20pct']:.3f}"
        )
    t = res.diagnostics.get("timings_s", {})
    lines.append(
        f"  ESS {res.diagnostics.get('ess', float('nan')):.0f}; timings (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in t.items())
    )
    return lines


def load_calibration(out_dir: str | os.PathLike) -> dict:
    """A saved calibration: ``{"posterior": name → (n_draws,) draws, "manifest": {...}}``."""
    import numpy as np
    import xarray as xr

    from tregsim.results import read_manifest

    out = Path(out_dir)
    if out.suffix == ".nc":  # DIR/NAME.nc of the published layout
        post, folder = out, out.with_suffix("")
    else:  # a method's own folder (posterior.nc inside)
        post, folder = out / "posterior.nc", out
    with xr.open_dataset(post, group="posterior", engine="h5netcdf") as ds:
        draws = {k: np.asarray(v.values, dtype=float).reshape(-1) for k, v in ds.data_vars.items()}
    return {"posterior": draws, "manifest": read_manifest(folder)}


def _npe_lines(res: Any) -> list[str]:
    lines = [f"posterior: {display_path(res.out.with_suffix('.nc'))}"]
    for _, r in res.contraction.iterrows():
        lines.append(
            f"  {r['parameter']:>13s} [{r['unit']}]: mean {r['posterior_mean']:.4g}, "
            f"90% [{r['posterior_q05']:.4g}, {r['posterior_q95']:.4g}], "
            f"contraction {r['contraction']:.2f}"
        )
    if res.sbc_coverage is not None:
        for _, r in res.sbc_coverage.iterrows():
            lines.append(
                f"  SBC {r['parameter']:>13s}: coverage50 {r['coverage_50']:.2f}, "
                f"coverage90 {r['coverage_90']:.2f}"
            )
        lines.append(
            "  predictive 95% inside: "
            + ", ".join(f"{k} {v}" for k, v in res.info["predictive_inside_95"].items())
        )
    lines.append("  timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings_s.items()))
    return lines


def _likelihood_lines(res: Any, m: dict | None) -> list[str]:
    import math

    lines = [
        f"posterior: {display_path(res.out.with_suffix('.nc'))} ({res.n_participants} participants, "
        f"{res.n_visits} visits, {res.n_censored} below the LLOQ)"
    ]
    head = ("MAP", "mean", "SD", "q05", "q95", "τ (steps)")
    lines.append(f"  {'parameter':<13s} {'unit':<11s}" + "".join(f"{h:>11s}" for h in head))
    for _, r in res.table.iterrows():
        vals = [r[k] for k in ("map", "posterior_mean", "posterior_sd", "q05", "q95")]
        lines.append(
            f"  {r['parameter']:<13s} {r['unit']:<11s}"
            + "".join(f"{v:>11.4g}" for v in vals)
            + f"{r['autocorr_time_steps']:>11.0f}"
        )
    near = int((res.starts_logpost >= res.map_logpost - 0.1).sum())
    lines.append(
        f"  MAP log posterior {res.map_logpost:.2f}: {near}/{len(res.starts_logpost)} "
        "starts within 0.1 of it"
    )
    ratio = res.kept_steps_per_tau
    note = "" if math.isfinite(ratio) and ratio >= 50 else " (< 50: run more steps)"
    if m is not None:
        lines.append(
            f"  emcee: {m['n_walkers']} walkers x {res.n_steps_run or m['n_steps']} steps "
            f"(burn {m['burn']}, thin {m['thin']}), acceptance {res.acceptance:.2f}, "
            f"steps after burn-in / max τ = {ratio:.0f}{note}, ensemble ESS "
            f"{res.ensemble_ess:.0f}"
        )
    lines.append(
        "  timings (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in res.timings_s.items())
    )
    return lines
