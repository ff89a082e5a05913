"""Score test of the records likelihood against its own simulator, at one θ*.

If ``variability.simulate_records`` and the likelihood (:func:`structure_run.
independent_log_lik`, the config's quadrature) describe the same law, then over datasets
simulated at θ* the score s = ∇_u log L(θ*) (u the sampler's coordinates) has mean 0 and
covariance equal to the expected information E[−∇² log L] (the information identity). A
quadrature that misses part of a participant's integrand breaks both: the score's variance
exceeds the information and the posterior built on that likelihood is over-confident, which
is what the regional SBC of round 6 showed (docs/calibration.md, "Quadrature of the records
likelihood").

Prints per parameter: the z of the mean score (N(0, 1) under agreement), Var(score), the
information's diagonal (finite-difference Hessians of ``--hessians`` datasets, step 0.02),
their ratio and its standard error (round 14: round 13's ratios of 0.71–0.89 for κ and ω_λ
came from 200 datasets and 5 Hessians, an SE of ≈ 0.1, and did not hold at 400 and 40);
the eigenvalues of I⁻¹·Cov(score) (all ≈ 1 under agreement) and Hotelling's T²
of the mean score (≈ χ²_k, mean k = number of parameters).

    OMP_NUM_THREADS=1 python benchmarks/structure_score_test.py \\
        calibration/placebo_records_structure.toml --datasets 100 \\
        --theta-from runs/sbc_regional/sbc_sets.csv --row 32 --zeta-nodes fixed

Without ``--theta-from`` θ* is the shipped posterior's median. Cost: ≈ 0.3 s per dataset
(23 likelihood evaluations) plus ≈ 250 evaluations per Hessian. Reads the records' design
(ages, visit days) from ``../shared/data/``; writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.model import load_model
from tregsim.posterior import DEFAULT_POSTERIOR


def score_table(like_of, u0: np.ndarray, theta_of, datasets, n_hessians: int, h: float = 1e-3):
    """Scores (M, k) by central differences at ``u0`` and the observed informations
    (n_hessians, k, k), the negated finite-difference Hessians of the first ``n_hessians``
    datasets; ``like_of(y)`` builds the likelihood of one dataset, ``theta_of(u)`` the
    parameter dict."""
    k = u0.size
    scores = np.empty((len(datasets), k))
    hess = []
    for m, y in enumerate(datasets):
        like = like_of(y)

        def ll(u, like=like):
            return float(R.independent_log_lik(like, theta_of(u)).sum())

        for i in range(k):
            e = np.zeros(k)
            e[i] = h
            scores[m, i] = (ll(u0 + e) - ll(u0 - e)) / (2 * h)
        if m < n_hessians:
            hess.append(-R._fd_hessian(ll, u0, 0.02))
    return scores, np.array(hess)


def ratio_table(scores: np.ndarray, infos: np.ndarray, names) -> pd.DataFrame:
    """Per parameter: z of the mean score, Var(score), the mean observed information, their
    ratio and its standard error (delta method: the sampling SE of Var(score) from M datasets,
    √(2/(M−1)) relative for normal scores, and the SE of the mean information over its H
    Hessians, added in quadrature), and the largest |z| of one dataset's score."""
    M, H = len(scores), len(infos)
    var = scores.var(0, ddof=1)
    diag = np.array([np.diag(i) for i in infos])  # (H, k)
    info = diag.mean(0)
    rel_info = diag.std(0, ddof=1) / np.sqrt(H) / info if H > 1 else np.full(info.size, np.nan)
    ratio = var / info
    return pd.DataFrame(
        {
            "z_mean_score": scores.mean(0) / np.sqrt(var / M),
            "var_score": var,
            "information": info,
            "ratio": ratio,
            "ratio_se": ratio * np.sqrt(2.0 / (M - 1) + rel_info**2),
            # one dataset far out (a participant beyond the quadrature's range) inflates Var
            "max_abs_z_one_dataset": np.abs((scores - scores.mean(0)) / np.sqrt(var)).max(0),
        },
        index=list(names),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--datasets", type=int, default=100, help="simulated datasets (default 100)")
    ap.add_argument(
        "--hessians",
        type=int,
        default=20,
        help="datasets with a Hessian (default 20: with 5, the information's SE is ≈ 6 %%)",
    )
    ap.add_argument("--theta-from", default=None, help="sbc_sets.csv with true_<name> columns")
    ap.add_argument("--row", type=int, default=0, help="with --theta-from: the row (set)")
    ap.add_argument(
        "--zeta-nodes",
        choices=("config", "fixed", "adaptive"),
        default="config",
        help="ζ quadrature: the config's (default), the fixed grid or adaptive nodes",
    )
    ap.add_argument(
        "--nodes", default=None, help="quadrature nodes ZxE, e.g. 145x129 (default: the config's)"
    )
    ap.add_argument(
        "--score-step",
        type=float,
        default=1e-3,
        help="central-difference step of the score in the sampling coordinates (default 1e-3; "
        "the Hessians use 0.02)",
    )
    ap.add_argument("--seed", type=int, default=1000)
    a = ap.parse_args(argv)
    if a.datasets < 2 or not 2 <= a.hessians <= a.datasets:
        ap.error(
            f"--datasets {a.datasets} --hessians {a.hessians}: need 2 <= hessians <= datasets "
            "(a variance and the information's SE need two of each)"
        )
    if not a.score_step > 0:
        ap.error(f"--score-step {a.score_step}: must be > 0 (e.g. 1e-3)")
    cfg = load_config(a.config)
    rec = R.load_structure_records(cfg)
    table = R._curve_table(cfg, load_model(cfg.model), float(rec.visit_day.max()))
    names, fixed = V.CANDIDATES[cfg.candidate]
    if a.theta_from is None:
        import arviz as az

        post = az.from_netcdf(DEFAULT_POSTERIOR).posterior
        truth = {n: float(post[n].median()) for n in names}
        where = "the shipped posterior's median"
    else:
        row = pd.read_csv(a.theta_from).iloc[a.row]
        truth = {n: float(row[f"true_{n}"]) for n in names}
        where = f"{a.theta_from} row {a.row}"
    th = truth | fixed | dict(cfg.fixed)
    grid = {} if a.zeta_nodes == "config" else {"adaptive_zeta": a.zeta_nodes == "adaptive"}
    if a.nodes is not None:
        try:
            nz, ne = (int(v) for v in a.nodes.lower().split("x"))
        except ValueError:
            ap.error(f"--nodes {a.nodes}: give ZxE, two node counts (e.g. 73x65)")
        grid |= {"n_zeta": nz, "n_eta": ne}
    Y = V.simulate_records(
        table,
        th,
        rec,
        np.random.default_rng(a.seed),
        n_rep=a.datasets,
        baseline_day=cfg.baseline_day,
        lloq_nmol_l=cfg.lloq_nmol_l,
    )
    post = R.StructurePosterior(
        R.likelihood_for(cfg, table, rec, **grid), cfg.candidate, cfg.priors
    )
    u0 = post.u_of(truth)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        G, infos = score_table(
            lambda y: R.likelihood_for(cfg, table, dataclasses.replace(rec, y=y), **grid),
            u0,
            post.theta,
            list(Y),
            a.hessians,
            a.score_step,
        )
    M = len(G)
    C = np.cov(G.T)
    info = infos.mean(0)
    lk = post.like
    quad = f"{lk.zeta.size} x {lk.eta.size} nodes, ζ {'adaptive' if lk.adaptive_zeta else 'fixed'}"
    print(
        f"θ* = {where}; {M} datasets, {len(infos)} Hessians; {quad}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(ratio_table(G, infos, names).to_string(float_format=lambda v: f"{v:.3f}"))
    w = np.sort(np.linalg.eigvals(np.linalg.solve(info, C)).real)
    # sampling spread alone (a Wishart's eigenvalues, k parameters, M scores) already fans the
    # eigenvalues over ≈ (1 ± √(k/M))²
    lo, hi = (1 - np.sqrt(len(names) / M)) ** 2, (1 + np.sqrt(len(names) / M)) ** 2
    print(
        "eigenvalues of I^-1 Cov(score):",
        " ".join(f"{v:.2f}" for v in w),
        f"(sampling spread alone ≈ {lo:.2f}–{hi:.2f})",
    )
    t2 = M * G.mean(0) @ np.linalg.solve(C, G.mean(0))
    print(f"Hotelling T2 of the mean score: {t2:.1f} (chi2 with {len(names)} df under agreement)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
