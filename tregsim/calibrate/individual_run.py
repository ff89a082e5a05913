"""``tregsim calibrate`` with ``[method] kind = "likelihood"``: records → MAP + emcee → files.

Output folder (``tregsim calibrate CONFIG --out DIR``):

* ``posterior.nc``: kept emcee draws (chain = walker, draw = kept step) of the seven
  parameters with units, ArviZ-readable (:mod:`tregsim.posterior`); group attributes carry
  the data hash, the config text and the resolved sampler settings;
* ``map.csv``: per parameter its unit, MAP, posterior mean, SD, 5 / 50 / 95 % quantiles and
  the integrated autocorrelation time (in emcee steps, after burn-in);
* ``figures/trace.png``: every walker's trace per parameter, burn-in shaded, MAP marked;
* ``manifest.json``: command line, seed, hashes of config, model and records, versions.

Nothing is written before the config, the records and the sampler settings have been
checked, and every file is written atomically, the manifest last.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.calibrate.config import LikelihoodConfig
from tregsim.calibrate.likelihood import quiet_emcee_autocorr
from tregsim.errors import DataFileError, OutputFolderError
from tregsim.io import atomic_path, build_manifest, file_sha256, write_json

METHOD = "individual-level hierarchical likelihood (MAP multi-start + emcee)"


@dataclass
class IndividualRunResult:
    """What :func:`calibrate_individual` produced (also written to the output folder)."""

    out: Path
    names: tuple[str, ...]
    table: object  # pandas DataFrame, the content of map.csv
    acceptance: float
    map_logpost: float
    starts_logpost: np.ndarray
    n_participants: int
    n_visits: int
    n_censored: int
    kept_steps_per_tau: float
    timings_s: dict = field(default_factory=dict)
    n_steps_run: int = 0  # steps per walker run (> n_steps when the ESS floor extended them)
    ensemble_ess: float = float("nan")  # walkers × kept steps / max τ


def _z_from_theta(priors, theta: np.ndarray) -> np.ndarray:
    """Inverse of ``IndividualCalibration.theta_from_z`` (the sampler's coordinates)."""
    from scipy import special

    u = np.stack([p.frozen().cdf(theta[..., k]) for k, p in enumerate(priors)], axis=-1)
    return special.ndtri(np.clip(u, 1e-12, 1 - 1e-12))


def likelihood_priors(config: LikelihoodConfig, model) -> tuple:
    """The seven priors in ``POP_NAMES + BASELINE_NAMES`` order (config overrides applied)."""
    from tregsim.calibrate.likelihood import BASELINE_NAMES, BASELINE_PRIORS, POP_NAMES
    from tregsim.model.priors import parse_prior

    base = dict(zip(BASELINE_NAMES, BASELINE_PRIORS)) | {
        n: model.spec.parameters[n].prior for n in POP_NAMES
    }
    for name, table in config.prior_overrides.items():
        base[name] = parse_prior(table, file=config.path, key=f"parameters.priors.{name}")
    return tuple(base[n] for n in POP_NAMES + BASELINE_NAMES)


def calibrate_individual(
    config: LikelihoodConfig,
    out,
    *,
    seed: int | None = None,
    progress: bool = True,
    command_line: list[str] | None = None,
) -> IndividualRunResult:
    """Run the individual-level calibration of ``config`` into folder ``out``.

    The emcee chain is the one :meth:`IndividualCalibration.sample` draws (same seed, same
    walkers and steps); it is taken whole so the trace figure can show the burn-in, and the
    kept draws are the steps emcee's ``get_chain(discard=burn, thin=thin)`` returns.
    """
    import emcee
    import pandas as pd

    from tregsim.calibrate.data import load_patient_data
    from tregsim.calibrate.likelihood import (
        BASELINE_UNITS,
        CurveTable,
        IndividualCalibration,
    )
    from tregsim.model import load_model
    from tregsim.posterior import save_posterior

    out = Path(out)
    seed = config.seed if seed is None else int(seed)
    meth = config.method
    n_walkers, n_steps, burn, thin = (meth[k] for k in ("n_walkers", "n_steps", "burn", "thin"))
    timings: dict[str, float] = {}

    # ---- inputs (every check before anything is written) --------------------------------
    model = load_model(config.model)
    data = load_patient_data(config.records_path, columns=config.columns or None)
    if len(data.ids) < 2:
        raise DataFileError(
            f"{len(data.ids)} participant(s) with a C-peptide value",
            file=config.records_path,
            field=(config.columns or {}).get("id", "id"),
            fix="give records of at least two participants (a hierarchical model)",
        )
    inputs = {"config": config.path, "data": config.records_path}
    if getattr(model.spec, "path", None):
        inputs["model"] = model.spec.path
    manifest = build_manifest(
        command="calibrate",
        seed=seed,
        inputs=inputs,
        settings=config.settings(),
        argv=command_line,
    )
    old = out / "manifest.json"
    if old.is_file():
        prev = json.loads(old.read_text())
        prev_kind = (prev.get("settings") or {}).get("method", {}).get("kind", "npe")
        if prev.get("command") != "calibrate" or prev_kind != "likelihood":
            what = prev.get("command") if prev.get("command") != "calibrate" else "calibrate (NPE)"
            raise OutputFolderError(
                f"folder holds results of `{what}`",
                file=out,
                fix="choose another --out folder",
            )
    data_sha = file_sha256(config.records_path)
    priors = likelihood_priors(config, model)

    # ---- curve table, MAP, emcee -----------------------------------------------------------
    tab = meth["table"]
    step = float(tab["day_step"])
    last = config.baseline_day + float(data.visit_day.max())
    max_day = step * max(1.0, np.ceil(last / step))
    t0 = time.perf_counter()
    if progress:
        print(
            f"tabulating the C-peptide curve ({tab['n_loglam']} x {tab['n_q']} (log λ0, q) "
            f"nodes, days 0-{max_day:g} every {step:g})",
            file=sys.stderr,
        )
    table = CurveTable(
        model,
        fixed=config.fixed or None,
        n_loglam=tab["n_loglam"],
        n_q=tab["n_q"],
        max_day=max_day,
        day_step=step,
        rtol=config.rtol,
        atol=config.atol,
    )
    timings["table_s"] = time.perf_counter() - t0
    cal = IndividualCalibration(
        model,
        data,
        priors=priors,
        lloq_nmol_l=config.lloq_nmol_l,
        table=table,
        n_zeta=meth["n_zeta"],
        baseline_day=config.baseline_day,
    )
    if progress:
        print(
            f"MAP from {meth['n_starts']} prior draws, then emcee "
            f"({n_walkers} walkers x {n_steps} steps)",
            file=sys.stderr,
        )
    t0 = time.perf_counter()
    with quiet_emcee_autocorr():
        post = cal.sample(
            seed,
            n_walkers=n_walkers,
            n_steps=n_steps,
            burn=burn,
            thin=thin,
            n_starts=meth["n_starts"],
            progress=progress,
            min_ess=meth["min_ess"],
            max_steps=meth["max_steps"] or None,
            keep_burn=True,
        )
        full = post.chains  # (walkers, n_run, 7) θ, every step (n_run ≥ n_steps: ESS floor)
        n_run = full.shape[1]
        z_after = _z_from_theta(priors, full[:, burn:])  # (walkers, steps, 7)
        tau = emcee.autocorr.integrated_time(np.swapaxes(z_after, 0, 1), quiet=True)
    timings["sampling_s"] = time.perf_counter() - t0
    kept = full[:, burn + thin - 1 :: thin]  # == emcee get_chain(discard=burn, thin=thin)
    names = post.names
    units = {n: model.spec.parameters[n].unit for n in names if n in model.spec.parameters}
    units |= {n: BASELINE_UNITS[n] for n in names if n in BASELINE_UNITS}
    ratio = float((n_run - burn) / np.max(tau)) if np.all(np.isfinite(tau)) else float("nan")
    ess = n_walkers * ratio
    if meth["min_ess"] > 0 and not ess >= meth["min_ess"]:  # a warning, even with --quiet
        print(
            f"warning: the ensemble's effective sample size is {ess:.0f} after {n_run} steps, "
            f"below min_ess = {meth['min_ess']:g} (largest autocorrelation time "
            f"{post.names[int(np.nanargmax(tau))]}, {np.nanmax(tau):.0f} steps); "
            f"fix: raise max_steps or n_walkers in [method] of {config.path.name}",
            file=sys.stderr,
        )

    flat = kept.reshape(-1, len(names))
    q05, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
    summary = pd.DataFrame(
        {
            "parameter": list(names),
            "unit": [units[n] for n in names],
            "map": post.map_theta,
            "posterior_mean": flat.mean(axis=0),
            "posterior_sd": flat.std(axis=0, ddof=1),
            "q05": q05,
            "q50": q50,
            "q95": q95,
            "autocorr_time_steps": tau,
        }
    )

    # ---- files -----------------------------------------------------------------------------
    n_cens = int(np.sum(data.cpeptide_nmol_l < config.lloq_nmol_l))
    out.mkdir(parents=True, exist_ok=True)
    save_posterior(
        out / "posterior.nc",
        {n: kept[:, :, k] for k, n in enumerate(names)},
        units=units,
        attrs={
            "model": config.model,
            "method": METHOD,
            "config": config.path.read_text(encoding="utf-8"),
            "config_name": config.name,
            "settings": json.dumps(config.settings(), sort_keys=True, default=str),
            "data_sha256": data_sha,
            "data_file": config.records_path.name,
            "seed": seed,
            "n_walkers": n_walkers,
            "n_steps": n_steps,
            "n_steps_run": n_run,
            "burn": burn,
            "thin": thin,
            "n_starts": meth["n_starts"],
            "baseline_day": config.baseline_day,
            "lloq_nmol_l": config.lloq_nmol_l,
            "n_participants": len(data.ids),
            "n_visits": int(data.cpeptide_nmol_l.size),
            "acceptance": post.acceptance,
            "map_logpost": post.map_logpost,
        },
    )
    with atomic_path(out / "map.csv") as tmp:
        summary.to_csv(tmp, index=False)
    trace_plot(
        full,
        names,
        units,
        out / "figures" / "trace.png",
        burn=burn,
        map_theta=post.map_theta,
        title=f"{config.name}: emcee, {n_walkers} walkers x {n_run} steps, "
        f"acceptance {post.acceptance:.2f}",
    )
    manifest["results"] = {
        "timings_s": timings,
        "acceptance": post.acceptance,
        "map_logpost": post.map_logpost,
        "starts_logpost": post.starts_logpost.tolist(),
        "autocorr_time_steps": dict(zip(names, tau.tolist())),
        "kept_steps_per_max_autocorr_time": ratio,
        "n_steps_run": n_run,
        "ensemble_ess": ess,
        "min_ess": meth["min_ess"],
        "n_participants": len(data.ids),
        "n_visits": int(data.cpeptide_nmol_l.size),
        "n_below_lloq": n_cens,
    }
    write_json(out / "manifest.json", manifest)
    return IndividualRunResult(
        out=out,
        names=names,
        table=summary,
        acceptance=post.acceptance,
        map_logpost=post.map_logpost,
        starts_logpost=post.starts_logpost,
        n_participants=len(data.ids),
        n_visits=int(data.cpeptide_nmol_l.size),
        n_censored=n_cens,
        kept_steps_per_tau=ratio,
        timings_s=timings,
        n_steps_run=n_run,
        ensemble_ess=ess,
    )


def trace_plot(
    chains, names, units, path, *, burn: int, map_theta=None, title="", dpi: int = 110
) -> Path:
    """Walker traces (chains: (walkers, steps, parameters)) with the burn-in shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, n_s, d = chains.shape
    steps = np.arange(1, n_s + 1)
    fig, axes = plt.subplots(d, 1, figsize=(8, 1.5 * d + 0.6), sharex=True, layout="constrained")
    for k, (ax, name) in enumerate(zip(np.atleast_1d(axes), names)):
        ax.plot(steps, chains[:, :, k].T, lw=0.5, alpha=0.35, color="C0")
        ax.axvspan(0, burn, color="0.85", zorder=0, label=f"burn-in ({burn} steps)")
        if map_theta is not None:
            ax.axhline(map_theta[k], color="C3", ls="--", lw=1, label="MAP")
        if name == "lambda_ref":
            ax.set_yscale("log")
        ax.set_ylabel(f"{name}\n({units[name]})", fontsize=8)
        ax.tick_params(labelsize=7)
    axes = np.atleast_1d(axes)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("emcee step (steps)")
    axes[-1].set_xlim(0, n_s)
    if title:
        axes[0].set_title(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)
