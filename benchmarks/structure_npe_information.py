"""How well can a summary set pin each structure parameter, whatever the flow? (issue #14)

A Gaussian approximation of the summaries' distribution at θ* (the likelihood posterior's
medians): Fisher information F = Jᵀ Σ⁻¹ J, with J = ∂ E[summaries] / ∂θ by central
differences (step = half the likelihood posterior SD of each parameter, the same random
numbers at every θ, so the difference carries no Monte Carlo noise of the cohorts) and Σ the
summaries' covariance over replicate cohorts at θ*. sqrt(diag(F⁻¹)) is the smallest posterior
SD the summary set allows (no prior; every other parameter free), to compare with the
likelihood posterior's SD, which sees every visit. Done for three summary sets: the ln(x+1)
set (the previous round's 94), + log-scale statistics, + log-scale statistics without
``corr_log_slopes`` and ``log_resid_rms_high_baseline``.

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_information.py \\
        calibration/natural_history_structure_npe.toml \\
        --likelihood calibration/posteriors/natural_history.nc --out runs/information.csv

Reads the records from ../shared/data (never copied). Numbers in docs/calibration.md,
"NPE on within-patient statistics".
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.calibrate.config import load_config
from tregsim.calibrate.structure_simulator import build_problem, simulate_summaries
from tregsim.posterior import load_posterior

SETS = {
    "ln(x+1) set": lambda f: not _log(f),
    "+ log-scale": lambda f: True,
    "+ log-scale, no change quantiles": lambda f: "_log_change|" not in f,
    "+ log-scale, 2 left out": lambda f: (
        f.split("|")[0] not in ("corr_log_slopes", "log_resid_rms_high_baseline")
    ),
}


def _log(feature: str) -> bool:
    s = feature.split("|")[0]
    return s.endswith("_ln_x") or "log_" in s


def precision(cov: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a summary covariance: some summaries are exact linear combinations of
    others (an overall mean is the n-weighted mean of its age groups), so Σ is singular; the
    pseudo-inverse of the correlation matrix (eigenvalues below 1e-9 of the largest dropped)
    counts each direction once."""
    s = np.sqrt(np.diag(cov))
    return np.linalg.pinv(cov / np.outer(s, s), rcond=1e-9, hermitian=True) / np.outer(s, s)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument(
        "--likelihood", type=Path, default=Path("calibration/posteriors/natural_history.nc")
    )
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    cfg = load_config(a.config)
    summ = dict(cfg.summaries) | {
        "structure_statistics": True,
        "log_scale_statistics": True,
        "exclude": [],
    }
    problem = build_problem(dataclasses.replace(cfg, summaries=summ))
    names = list(problem.names)
    feats = list(problem.data.feature_names)
    post = load_posterior(a.likelihood)
    draws = {n: np.asarray(post[n], float).ravel() for n in names}
    base = np.array([np.median(draws[n]) for n in names])
    lik_sd = np.array([draws[n].std() for n in names])

    def mean_summaries(theta: np.ndarray) -> np.ndarray:
        th = np.repeat(theta[None, :], a.replicates, axis=0)
        return simulate_summaries(problem, th, a.seed, 0)

    x0 = mean_summaries(base)
    cov = np.cov(x0, rowvar=False)
    J = np.empty((len(feats), len(names)))
    for j in range(len(names)):
        h = np.zeros(len(names))
        h[j] = 0.5 * lik_sd[j]
        J[:, j] = (mean_summaries(base + h).mean(0) - mean_summaries(base - h).mean(0)) / (2 * h[j])
    rows = []
    for label, keep in SETS.items():
        k = np.array([keep(f) for f in feats])
        # drop summaries without spread at θ* (constant columns carry nothing here)
        k &= np.diag(cov) > 1e-14
        C = cov[np.ix_(k, k)]
        F = J[k].T @ precision(C) @ J[k]
        crb = np.sqrt(np.diag(np.linalg.inv(F)))
        for n, c, s in zip(names, crb, lik_sd):
            rows.append(
                {
                    "summary_set": label,
                    "n_summaries": int(k.sum()),
                    "parameter": n,
                    "min_posterior_sd": c,
                    "likelihood_sd": s,
                    "ratio": c / s,
                }
            )
    df = pd.DataFrame(rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False, float_format="%.6g")
    wide = df.pivot(index="parameter", columns="summary_set", values="ratio").loc[names]
    print("sqrt(diag F^-1) / likelihood posterior SD (1 = as informative as every visit):")
    print(wide[list(SETS)].round(2).to_string())
    print(df.groupby("summary_set").n_summaries.first().to_string())
    print(f"{a.replicates} replicates, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
