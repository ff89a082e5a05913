"""Is the NPE's miss on the records the summaries' information or the records' misfit? (#14)

Two checks of a trained structure NPE (``tregsim calibrate`` output folder):

1. **Synthetic records at θ*** (the likelihood posterior's medians): K cohorts simulated by the
   NPE's own simulator at θ*, each with its own NPE posterior. Per parameter: the mean of the K
   posterior medians, its offset from θ* in units of the mean posterior SD, and how often the
   90 % interval covers θ*. If the NPE lands near θ* on data the structure could have made but
   not on the records, the miss comes from what the records show that the structure does not
   reproduce, not from the summaries' information.
2. **Misfit of the observed summaries at θ***: Gaussian synthetic-likelihood χ² =
   (s_obs − E s)ᵀ Σ⁻¹ (s_obs − E s) with E s, Σ over replicate cohorts at θ*, against the χ²
   of the synthetic cohorts (same Σ) — and the summaries with the largest |z| = (s_obs − E s)/sd.
3. **Attribution** (``--replace F ...``): the NPE posterior of the records' summaries with the
   named features (``statistic|group|month``) replaced by their mean at θ* — which of the
   records' misfit summaries move a parameter (the trained estimator is only evaluated).

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_synthetic.py \\
        calibration/natural_history_structure_npe.toml --run DIR/natural_history_structure_npe \\
        --likelihood calibration/posteriors/natural_history.nc --out DIR/synthetic.csv

Reads the records from ../shared/data (never copied). Numbers in docs/calibration.md,
"NPE on within-patient statistics".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.calibrate.config import load_config
from tregsim.calibrate.npe import load_estimator
from tregsim.calibrate.structure_simulator import build_problem, simulate_summaries
from tregsim.posterior import load_posterior


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
    ap.add_argument("--run", type=Path, required=True, help="DIR/NAME of tregsim calibrate")
    ap.add_argument(
        "--likelihood", type=Path, default=Path("calibration/posteriors/natural_history.nc")
    )
    ap.add_argument("--datasets", type=int, default=50)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--replicates", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--replace", nargs="*", default=[], help="features for check 3")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    problem = build_problem(load_config(a.config))
    est = load_estimator(a.run / "estimator.pt")
    names = list(problem.names)
    feats = list(problem.data.feature_names)
    if list(est.meta.get("feature_names", feats)) != feats:
        raise SystemExit("the run's summaries are not the config's: give the run of this config")
    lik = load_posterior(a.likelihood)
    star = np.array([np.median(np.asarray(lik[n], float)) for n in names])

    # 1. synthetic records at θ*, and the records themselves
    xs = simulate_summaries(problem, np.repeat(star[None], a.datasets, 0), a.seed, 0)
    xs = np.vstack([xs, problem.data.observed[None]])
    z = est.sample_z_batched(xs, a.draws, a.seed)
    th = np.stack([problem.theta_from_z(zi) for zi in z])  # (K+1, n, d)
    med = np.median(th, axis=1)
    sd = th.std(axis=1)
    lo, hi = np.quantile(th, [0.05, 0.95], axis=1)
    rows = []
    for j, n in enumerate(names):
        s = slice(0, a.datasets)
        rows.append(
            {
                "parameter": n,
                "theta_star": star[j],
                "synthetic_mean_median": med[s, j].mean(),
                "synthetic_offset_over_sd": (med[s, j].mean() - star[j]) / sd[s, j].mean(),
                "synthetic_mean_sd": sd[s, j].mean(),
                "synthetic_cover90": np.mean((lo[s, j] <= star[j]) & (star[j] <= hi[s, j])),
                "records_median": med[-1, j],
                "records_offset_over_sd": (med[-1, j] - star[j]) / sd[-1, j],
                "records_sd": sd[-1, j],
            }
        )
    df = pd.DataFrame(rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False, float_format="%.6g")
    with pd.option_context("display.width", 200):
        print(f"NPE posteriors of {a.datasets} synthetic cohorts at theta* and of the records:")
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    # 2. misfit of the observed summaries at θ*
    x0 = simulate_summaries(problem, np.repeat(star[None], a.replicates, 0), a.seed + 1, 0)
    k = np.diag(np.cov(x0, rowvar=False)) > 1e-14
    mu, C = x0[:, k].mean(0), np.cov(x0[:, k], rowvar=False)
    Ci = precision(C)
    obs = problem.data.observed[k]
    chi_obs = float((obs - mu) @ Ci @ (obs - mu))
    chi_syn = np.array([(x - mu) @ Ci @ (x - mu) for x in xs[:-1, k]])
    print(
        f"\nchi2 at theta* ({k.sum()} summaries): records {chi_obs:.0f}; synthetic cohorts "
        f"median {np.median(chi_syn):.0f} (5-95 %: {np.quantile(chi_syn, 0.05):.0f}-"
        f"{np.quantile(chi_syn, 0.95):.0f})"
    )
    zf = (obs - mu) / np.sqrt(np.diag(C))
    order = np.argsort(-np.abs(zf))[:12]
    kf = np.array(feats)[k]
    print("largest |z| of the observed summaries at theta*:")
    for i in order:
        print(f"  {kf[i]:40s} observed {obs[i]:8.4g}  simulated {mu[i]:8.4g}  z {zf[i]:+.2f}")
    if a.replace:
        x = problem.data.observed.copy()
        full_mu = x0.mean(0)
        for f in a.replace:
            x[feats.index(f)] = full_mu[feats.index(f)]
        tr = problem.theta_from_z(est.sample_z(x, a.draws, a.seed))
        print(f"records with {len(a.replace)} summaries at their theta* mean: median (offset / SD)")
        for j, n in enumerate(names):
            m = np.median(tr[:, j])
            print(
                f"  {n:13s} {m:.4g} ({(m - star[j]) / tr[:, j].std():+.2f}); records {med[-1, j]:.4g}"
            )
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
