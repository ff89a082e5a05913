"""``calibrate_treatment_effect(config, out)``: the whole synthesis, one call.

Steps (docs/treatment_effect.md): validate config and evidence → simulate each trial's design
over the (φ, kinetics) design points (cached in ``out/cache``) → fit and check the emulators on
held-out points → design constants from virtual trials → importance sampling on a prior bank →
SBC → what the evidence says → ``treatment_effect.nc`` (ArviZ) + tables, figures, manifest.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from tregsim.calibrate.treatment_effect.constants import endpoint_correlation, outcome_sd_and_rho
from tregsim.calibrate.treatment_effect.emulator import fit_emulators, holdout_errors
from tregsim.calibrate.treatment_effect.hierarchy import KINETICS, Likelihood, Prior
from tregsim.calibrate.treatment_effect.inference import (
    coverage,
    ess,
    make_bank,
    resample,
    sbc,
)
from tregsim.calibrate.treatment_effect.settings import load_config
from tregsim.calibrate.treatment_effect.setup import TARGET_KEY, prepare
from tregsim.calibrate.treatment_effect.summary import summarise, target_effects

POSTERIOR_FILE = "treatment_effect.nc"


def calibrate_treatment_effect(
    config, out, *, progress=None, n_sbc: int | None = None, argv: list[str] | None = None
):
    """Run the treatment-effect calibration of ``config`` (a path) into folder ``out``.

    Writes ``treatment_effect.nc`` (posterior draws of mu, tau, the kinetics, each trial's φ and
    a new trial's φ; ArviZ InferenceData), ``emulator_check.csv``,
    ``sbc.csv``, the :class:`TreatmentEffectResult` files (``treatment_effect.csv``,
    ``summary.json``, ``phi_prior_posterior.png``, ``assurance.png``) and ``manifest.json``.
    Returns the result; its ``diagnostics`` hold ESS, SBC coverage, emulator errors, timings.
    """
    from tregsim.io import atomic_path, build_manifest, file_sha256, write_json
    from tregsim.posterior import save_posterior

    t0 = time.perf_counter()
    from tregsim.io import git_commit

    commit = git_commit()  # the code that runs, not the tree at the end
    cfg = load_config(config)
    out = Path(out)
    timings = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        prob = prepare(cfg, out / "cache", progress=progress)
    timings["design_s"] = time.perf_counter() - t0
    from tregsim.posterior import load_posterior

    nh = load_posterior(cfg.natural_history) if cfg.natural_history else None
    d = prob.designs
    efficacy = {k: v for k, v in d.items() if k != TARGET_KEY}
    # design constants from virtual trials (one point: φ and kinetics at the model file values)
    theta0 = np.array([prob.model.defaults()[k] for k in ("phi", *KINETICS)])
    rho = {}
    for k, des in efficacy.items():
        if len(des.months) == 2 and des.control:
            rho[k] = endpoint_correlation(des, des.months, 400, cfg.seed, nh, theta0)
    sd_rho = {
        m: outcome_sd_and_rho(d[TARGET_KEY], m, 20000, cfg.seed, nh) for m in cfg.target_months
    }
    lik0 = Likelihood(
        prob.rows,
        efficacy,
        {},
        prob.nonrandomized,
        rho,
        bias_sd=cfg.bias_sd,
        persistence_sd=cfg.persistence_sd_log,
    )
    names = lik0.output_names() + [
        f"{TARGET_KEY}.m{m:g}.{kind}" for m in cfg.target_months for kind in ("d", "pct")
    ]
    t1 = time.perf_counter()
    emus = fit_emulators(prob.train_thetas, prob.train, names, seed=cfg.seed)
    errs = holdout_errors(emus, prob.holdout_thetas, prob.holdout)
    timings["emulator_s"] = time.perf_counter() - t1
    lik = Likelihood(
        prob.rows,
        efficacy,
        emus,
        prob.nonrandomized,
        rho,
        bias_sd=cfg.bias_sd,
        persistence_sd=cfg.persistence_sd_log,
    )
    spec = prob.model.spec.parameters
    prior = Prior(cfg.mu_mean, cfg.mu_sd, cfg.tau_scale, {k: spec[k].prior for k in KINETICS})
    t2 = time.perf_counter()
    bank = make_bank(lik, prior, cfg.n_prior_draws, cfg.seed, "treatment_effect.prior")
    w = bank.weights()
    idx = resample(w, cfg.n_posterior_draws, cfg.seed, "treatment_effect.resample")
    timings["inference_s"] = time.perf_counter() - t2
    terms_of = {u[0].term: u[0].trial for u in lik.units}
    # posterior draws: hyperparameters, kinetics, each trial's φ, a new trial's φ
    from tregsim import rng as trng

    eta_new = trng.block_generator(cfg.seed, "treatment_effect.eta_new.draws", 0).standard_normal(
        len(idx)
    )
    sel = {k: v[idx] for k, v in bank.params.items()}
    eff = target_effects(emus, sel, eta_new, cfg.target_months)
    draws = {k: sel[k] for k in ("mu", "tau", *KINETICS)}
    units = {"mu": "ln(1)", "tau": "ln(1)", **{k: spec[k].unit for k in KINETICS}}
    for t in lik.trials:
        draws[f"phi_{t}"] = np.exp(sel["mu"] + sel["tau"] * sel[f"eta_{t}"])
        units[f"phi_{t}"] = "1"
    draws["phi"] = eff["phi_new"]
    units["phi"] = "1"
    ppd = {f"effect_{m:g}m_pct": eff[f"pct{m:g}"][None, :] for m in cfg.target_months}
    save_posterior(
        out / POSTERIOR_FILE,
        draws,
        units=units,
        attrs={
            "method": "importance sampling on a prior bank (GP emulators of each trial design)",
            "model": prob.model.spec.name,
            "data_sha256": file_sha256(cfg.evidence),
            "config": cfg.text,
            "seed": cfg.seed,
            "n_prior_draws": cfg.n_prior_draws,
            "ess": ess(w),
            "note": "phi = a new trial's phi from the predictive LN(mu, tau); phi_<trial> per trial",
        },
        posterior_predictive=ppd,
        predictive_units={k: "% higher mean C-peptide than control" for k in ppd},
    )
    # SBC
    t3 = time.perf_counter()
    n_sets = cfg.n_sbc if n_sbc is None else n_sbc
    sbc_res = (
        sbc(lik, prior, n_sets=n_sets, n_bank=cfg.n_sbc_prior_draws, seed=cfg.seed + 1)
        if n_sets
        else None
    )
    timings["sbc_s"] = time.perf_counter() - t3
    res = summarise(
        target_name=d[TARGET_KEY].experiment.name,
        lik=lik,
        bank=bank,
        emus=emus,
        months=cfg.target_months,
        sd_rho=sd_rho,
        n_per_arm=cfg.n_per_arm,
        alpha=cfg.alpha,
        power=cfg.power,
        seed=cfg.seed,
        terms_of=terms_of,
        phi_prior=(spec["phi"].prior.args["median"], spec["phi"].prior.args["sdlog"]),
    )
    sbc_rows = []
    if sbc_res:
        for k, r in sbc_res["ranks"].items():
            sbc_rows.append(
                {
                    "parameter": k,
                    "coverage_50": coverage(r, 0.5),
                    "coverage_90": coverage(r, 0.9),
                    "n_sets": len(r),
                }
            )
    res.diagnostics = {
        "ess": ess(w),
        "n_prior_draws": cfg.n_prior_draws,
        "rho_endpoints": rho,
        "target_sd_rho": {f"{m:g}": v for m, v in sd_rho.items()},
        "emulator_holdout": errs,
        "sbc": sbc_rows,
        "sbc_min_ess": float(np.min(sbc_res["ess"])) if sbc_res else None,
        "timings_s": timings,
    }
    res.save(out)
    with atomic_path(out / "sbc.csv") as tmp:
        Path(tmp).write_text(
            "parameter,coverage_50,coverage_90,n_sets\n"
            + "".join(
                f"{r['parameter']},{r['coverage_50']:.4f},{r['coverage_90']:.4f},{r['n_sets']}\n"
                for r in sbc_rows
            ),
            encoding="utf-8",
        )
    with atomic_path(out / "emulator_check.csv") as tmp:
        Path(tmp).write_text(
            "output,holdout_rmse,holdout_max_abs_error,sd_of_output\n"
            + "".join(
                f"{k},{v['rmse']:.6g},{v['max_abs']:.6g},{v['sd_of_output']:.6g}\n"
                for k, v in errs.items()
            ),
            encoding="utf-8",
        )
    timings["total_s"] = time.perf_counter() - t0
    man = build_manifest(
        command="calibrate.treatment_effect",
        seed=cfg.seed,
        inputs=prob.input_files,
        settings={"config": cfg.path.name, "timings_s": timings, "ess": ess(w)},
        argv=argv,
    )
    man["git_commit"] = commit
    write_json(out / "manifest.json", man)
    return res
