"""The population NPE calibration pipeline: bank → train → posterior → diagnostics → files.

Output folder (``tregsim calibrate CONFIG --out DIR``):

* ``bank.npz``: simulation bank (z, θ, summaries x) for training, extended in place when the
  budget grows (resume: rows already there are reused when seed and settings match);
* ``sbc_bank.npz``: held-out prior simulations for SBC;
* ``posterior.nc``: posterior draws (ArviZ-readable, :mod:`tregsim.posterior`);
* ``estimator.pt`` + ``estimator.pt.json``: trained weights (state_dict) and architecture;
* ``contraction.csv``, ``sbc_ranks.csv``, ``sbc_coverage.csv``, ``predictive_check.csv``;
* ``figures/``: VPC, pair plot, SBC rank histograms; ``manifest.json``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.calibrate import diagnostics as diag
from tregsim.calibrate.config import CalibrationConfig
from tregsim.calibrate.simulator import (
    Problem,
    build_problem,
    cell_means,
    simulate_cohorts,
    simulate_summaries,
    summarize,
)
from tregsim.errors import OutputFolderError
from tregsim.io import atomic_path, build_manifest, file_sha256, portable_path, write_json

SBC_START = 100_000_000
"""θ items of SBC datasets start here (disjoint from any training budget below it)."""
PPC_START = 200_000_000
"""Cohort items of posterior-predictive simulations start here."""


def bank_identity(problem: Problem, seed: int) -> dict:
    cfg = problem.config
    return {
        "seed": int(seed),
        "model_sha256": file_sha256(problem.model.spec.path)
        if getattr(problem.model.spec, "path", None)
        else problem.config.model,
        "data_sha256": file_sha256(cfg.summary_path),
        "names": list(problem.names),
        "features": list(problem.data.feature_names),
        "settings": {
            k: v for k, v in cfg.settings().items() if k not in ("method", "budget", "seed")
        },
    }


def simulate_bank(
    problem: Problem,
    n: int,
    seed: int,
    *,
    start: int = 0,
    path=None,
    chunk_size: int = 100,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Prior simulations for θ items ``[start, start+n)``: z, theta, x (n, ·).

    One ``simulate_arrays`` call per chunk (chunk_size θ draws × all cohort patients). With
    ``path`` the bank is saved after every chunk and an existing bank with the same identity
    is reused and extended (so training can resume or grow its budget).
    """
    from tqdm import tqdm

    ident = json.dumps(bank_identity(problem, seed), sort_keys=True, default=str)
    z_all = problem.prior_z(seed, start, start + n)
    th_all = problem.theta_from_z(z_all)
    x_all = np.full((n, len(problem.data.feature_names)), np.nan)
    done = 0
    if path is not None and Path(path).is_file():
        with np.load(path, allow_pickle=False) as f:
            if str(f["identity"]) != ident or int(f["start"]) != start:
                raise OutputFolderError(
                    "simulation bank was made with other settings, seed or data",
                    file=path,
                    fix="use a new --out folder or delete the old bank",
                )
            done = min(int(f["x"].shape[0]), n)
            x_all[:done] = f["x"][:done]
    bar = tqdm(
        total=n,
        initial=done,
        desc="simulating cohorts (θ draws)",
        unit="θ",
        file=sys.stderr,
        disable=not progress,
    )
    sim = getattr(problem, "simulate_summaries", None)  # npe_structure: its own simulator
    for lo in range(done, n, chunk_size):
        hi = min(lo + chunk_size, n)
        if sim is not None:
            x_all[lo:hi] = sim(th_all[lo:hi], seed, start + lo)
        else:
            x_all[lo:hi] = simulate_summaries(problem, th_all[lo:hi], seed, start + lo)
        if path is not None:
            _save_bank(path, z_all[:hi], th_all[:hi], x_all[:hi], ident, start, problem)
        bar.update(hi - lo)
    bar.close()
    return {"z": z_all, "theta": th_all, "x": x_all}


def _save_bank(path, z, theta, x, ident, start, problem):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            z=z,
            theta=theta,
            x=x,
            identity=np.array(ident),
            start=np.array(start),
            names=np.array(problem.names),
            features=np.array(problem.data.feature_names),
        )


@dataclass
class CalibrationResult:
    """What :func:`calibrate` produced (also written to the output folder)."""

    out: Path
    names: tuple[str, ...]
    posterior: dict[str, np.ndarray]
    contraction: object
    sbc_coverage: object = None
    predictive: object = None
    timings_s: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _training_key(bank: dict, method: dict, seed: int, names, feature_names) -> str:
    """SHA-256 of what training depends on: the bank's rows, the method's settings, the seed,
    the parameter and feature names."""
    import hashlib

    h = hashlib.sha256()
    for k in ("z", "x"):
        h.update(np.ascontiguousarray(bank[k], dtype=float).tobytes())
    spec = {
        "method": method,
        "seed": int(seed),
        "names": list(names),
        "features": list(feature_names),
    }
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _trained_before(path: Path, key: str):
    """``(estimator, training info)`` from ``path`` when it was trained on exactly this bank and
    these settings (its sidecar holds the same ``training_key``), else ``(None, None)``."""
    from tregsim.calibrate.npe import load_estimator

    side = path.with_suffix(path.suffix + ".json")
    if not (path.is_file() and side.is_file()):
        return None, None
    meta = json.loads(side.read_text())
    if meta.get("training_key") != key:
        return None, None
    return load_estimator(path), meta.get("training_info", {})


def calibrate(
    config: CalibrationConfig,
    out,
    *,
    budget: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    diagnostics: bool = True,
    command_line: list[str] | None = None,
) -> CalibrationResult:
    """Run the full NPE calibration of ``config`` into folder ``out``."""
    import time

    from tregsim.calibrate.npe import bank_size, save_estimator, train_npe
    from tregsim.posterior import save_posterior

    out = Path(out)
    seed = config.seed if seed is None else int(seed)
    n_sim = config.n_simulations if budget is None else int(budget)
    settings = {**config.settings(), "n_simulations": n_sim}
    manifest = build_manifest(
        command="calibrate",
        seed=seed,
        inputs={"config": config.path, "data": config.summary_path},
        settings=settings,
        argv=command_line,
    )
    old = out / "manifest.json"
    if old.is_file():
        prev = json.loads(old.read_text())
        if prev.get("command") != "calibrate":
            raise OutputFolderError(
                f"folder holds results of `{prev.get('command')}`",
                file=out,
                fix="choose another --out folder",
            )
    if config.kind == "npe_structure":  # every input check before anything is written
        from tregsim.calibrate.structure_simulator import build_problem as build_structure

        problem = build_structure(config)
    else:
        problem = build_problem(config)
    out.mkdir(parents=True, exist_ok=True)
    model_file = getattr(problem.model.spec, "path", None)
    if model_file:  # the stale-posterior check compares it (tregsim.calibration.stale_inputs)
        manifest["inputs"]["model"] = {
            "path": portable_path(model_file),
            "sha256": file_sha256(model_file),
        }
    meth = config.method
    timings = {}

    t0 = time.perf_counter()
    bank = simulate_bank(
        problem,
        bank_size(n_sim, config.method),
        seed,
        path=out / "bank.npz",
        chunk_size=config.chunk_size,
        progress=progress,
    )
    timings["simulation_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    key = _training_key(bank, meth, seed, problem.names, problem.data.feature_names)
    est, train_info = _trained_before(out / "estimator.pt", key)
    if est is None:
        est, train_info = train_npe(
            bank["z"],
            bank["x"],
            method=meth,
            seed=seed,
            names=problem.names,
            feature_names=problem.data.feature_names,
            progress=progress,
        )
        # a rerun after a crash in the steps below reuses these weights (same bank, settings)
        est.meta |= {"training_key": key, "training_info": train_info}
        save_estimator(est, out / "estimator.pt")
    timings["training_s"] = time.perf_counter() - t0

    z_post = est.sample_z(problem.data.observed, meth["n_posterior_draws"], seed)
    th_post = problem.theta_from_z(z_post)
    draws = {n: th_post[:, j] for j, n in enumerate(problem.names)}
    if hasattr(problem, "constant_draws"):  # npe_structure: s0, k_re of its curve table
        draws |= problem.constant_draws(len(th_post))
    units = problem.units
    save_posterior(
        out / "posterior.nc",
        draws,
        units=units,
        attrs={
            "model": config.model,
            "method": f"NPE (sbi, {meth['density_estimator']}"
            + (f", ensemble of {meth['n_ensemble']})" if meth["n_ensemble"] > 1 else ")"),
            "config": config.path.read_text(encoding="utf-8"),
            "config_name": config.name,
            "data_sha256": file_sha256(config.summary_path),
            "seed": seed,
            "n_simulations": n_sim,
            "data_file": config.summary_path.name,
        },
    )
    contraction = diag.contraction_table(problem.names, bank["theta"], th_post, units)
    with atomic_path(out / "contraction.csv") as tmp:
        contraction.to_csv(tmp, index=False)

    result = CalibrationResult(
        out=out,
        names=problem.names,
        posterior=draws,
        contraction=contraction,
        timings_s=timings,
        info={"training": train_info},
    )
    if diagnostics:
        t0 = time.perf_counter()
        _diagnostics(problem, est, bank, th_post, seed, out, result, progress)
        timings["diagnostics_s"] = time.perf_counter() - t0
    manifest["results"] = {"timings_s": timings, "training": train_info}
    write_json(out / "manifest.json", manifest)
    return result


def _diagnostics(problem, est, bank, th_post, seed, out, result, progress):
    import pandas as pd

    meth = problem.config.method
    names = problem.names
    # SBC on held-out prior simulations
    n_sbc = int(meth["n_sbc_datasets"])
    sbc = simulate_bank(
        problem,
        n_sbc,
        seed,
        start=SBC_START,
        path=out / "sbc_bank.npz",
        chunk_size=problem.config.chunk_size,
        progress=progress,
    )
    ok = np.all(np.isfinite(sbc["x"]), axis=1)
    n_draws = 200
    zs = est.sample_z_batched(sbc["x"][ok], n_draws, seed + 1)
    ranks = diag.sbc_ranks(sbc["z"][ok], zs)  # ranks are invariant under the monotone map
    z_mean, z_sd = diag.sbc_location_spread(ranks / n_draws, n_draws)
    cov = pd.DataFrame(
        {
            "parameter": names,
            "coverage_50": diag.central_coverage(sbc["z"][ok], zs, 0.5),
            "coverage_90": diag.central_coverage(sbc["z"][ok], zs, 0.9),
            "rank_uniformity_p": diag.sbc_uniformity_pvalue(ranks, n_draws),
            # effect size of a rank histogram that is not flat (diag.sbc_location_spread)
            "truth_z_mean": z_mean,
            "truth_z_sd": z_sd,
            "n_datasets": int(ok.sum()),
            "n_draws": n_draws,
        }
    )
    with atomic_path(out / "sbc_coverage.csv") as tmp:
        cov.to_csv(tmp, index=False)
    with atomic_path(out / "sbc_ranks.csv") as tmp:
        pd.DataFrame(ranks, columns=list(names)).to_csv(tmp, index=False)
    result.sbc_coverage = cov

    # posterior predictive check (summaries and mean nmol/L per cell)
    n_pred = int(meth["n_predictive_draws"])
    th = th_post[:n_pred]
    if hasattr(problem, "predictive_check"):  # npe_structure
        ppc = problem.predictive_check(th, seed, PPC_START)
    else:
        ppc = _cell_predictive_check(problem, th, seed)
    with atomic_path(out / "predictive_check.csv") as tmp:
        ppc.to_csv(tmp, index=False)
    result.predictive = ppc
    result.info["predictive_inside_95"] = {
        s: f"{int(g['inside'].sum())}/{len(g)}" for s, g in ppc.groupby("statistic")
    }
    _figures(problem, ppc, bank, th_post, ranks, n_draws, names, out)


def _cell_predictive_check(problem, th, seed):
    import pandas as pd

    n_pred = len(th)
    ys = []
    for lo in range(0, n_pred, problem.config.chunk_size):
        hi = min(lo + problem.config.chunk_size, n_pred)
        ys.append(simulate_cohorts(problem, th[lo:hi], seed, PPC_START + lo)["cpeptide_nmol_l"])
    y = np.concatenate(ys)
    xs = summarize(problem, y)
    means, mean_names = cell_means(problem, y)
    tab = problem.data.table
    obs_means = np.array(
        [
            float(
                tab[(tab.age_group == f.split("|")[1]) & (tab.month == int(f.split("|")[2]))][
                    "mean_nmol_l"
                ].iloc[0]
            )
            for f in mean_names
        ]
    )
    ppc = pd.concat(
        [
            diag.predictive_check(problem.data.feature_names, problem.data.observed, xs),
            diag.predictive_check(mean_names, obs_means, means),
        ],
        ignore_index=True,
    )
    return ppc


def _figures(problem, ppc, bank, th_post, ranks, n_draws, names, out):
    from tregsim.plots import calibration as cplot

    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    cplot.vpc(
        ppc,
        figs / "vpc_mean_cpeptide.png",
        statistic="mean_nmol_l",
        ylabel="mean MMTT C-peptide AUC (nmol/L)",
    )
    cplot.vpc(
        ppc,
        figs / "vpc_mean_ln_cpeptide.png",
        statistic="mean_ln_x_plus_1",
        ylabel="mean ln(C-peptide + 1) (ln nmol/L)",
    )
    cplot.pair_plot(
        bank["theta"][: len(th_post)], th_post, names, problem.units, figs / "pair_plot.png"
    )
    cplot.sbc_histograms(ranks, n_draws, names, figs / "sbc_ranks.png")
