"""Which NPE summaries move with one structure parameter beyond their replicate SD?

Issue #14 item 3: the NPE on within-patient statistics leaves q (deceleration of the decline)
and κ (level dependence of the deviation) much wider than the records likelihood. This script
simulates records-like cohorts (`tregsim.calibrate.structure_simulator`, the NPE's own
simulator and summaries, here with the log-scale statistics switched on) at a few values of
one parameter, the others at the likelihood posterior's medians; with ``--match-month 12``
λ_ref is re-solved at each value so that the replicate mean of ln(x+1) at month 12 equals
the records' (so a summary that moves only because the mean level moves does not count).

Per summary: the replicate mean at every value, the replicate SD (at the first value; the
same random numbers at every value), and the sensitivity (mean at the last value − mean at
the first) / replicate SD. A summary carries the parameter where |sensitivity| is large.

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_sensitivity.py \\
        calibration/natural_history_structure_npe.toml --param q --values 0.05 0.15 0.3 0.5 \\
        --match-month 12 --likelihood calibration/posteriors/natural_history.nc \\
        --out runs/sensitivity_q.csv

Reads the records from ../shared/data (never copied); writes only replicate summaries of
simulated cohorts. Numbers in docs/calibration.md, "NPE on within-patient statistics".
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--param", default="q")
    ap.add_argument("--values", type=float, nargs="+", default=[0.05, 0.15, 0.3, 0.5])
    ap.add_argument(
        "--likelihood", type=Path, default=Path("calibration/posteriors/natural_history.nc")
    )
    ap.add_argument("--match-month", type=int, default=None, help="re-solve lambda_ref (month)")
    ap.add_argument("--replicates", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    t0 = time.perf_counter()
    cfg = load_config(a.config)
    summ = dict(cfg.summaries) | {"structure_statistics": True, "log_scale_statistics": True}
    problem = build_problem(dataclasses.replace(cfg, summaries=summ))
    names = list(problem.names)
    feats = list(problem.data.feature_names)
    post = load_posterior(a.likelihood)
    base = {n: float(np.median(np.asarray(post[n]))) for n in names}
    print(f"likelihood medians ({a.likelihood}):", {k: round(v, 4) for k, v in base.items()})

    def summaries(theta: dict) -> np.ndarray:
        row = np.array([[theta[n] for n in names]])
        th = np.repeat(row, a.replicates, axis=0)
        return simulate_summaries(problem, th, a.seed, 0)  # same numbers at every θ

    target_feature = f"mean_ln_x_plus_1|all|{a.match_month}"
    target = problem.data.observed[feats.index(target_feature)] if a.match_month else None
    rows, lam = [], {}
    for v in a.values:
        th = base | {a.param: v}
        if a.match_month is not None:
            lo, hi = np.log(th["lambda_ref"]) - 3, np.log(th["lambda_ref"]) + 3
            for _ in range(30):  # bisection: the month-m mean falls with lambda_ref
                mid = 0.5 * (lo + hi)
                m = summaries(th | {"lambda_ref": np.exp(mid)})[:, feats.index(target_feature)]
                lo, hi = (mid, hi) if m.mean() > target else (lo, mid)
            th["lambda_ref"] = float(np.exp(0.5 * (lo + hi)))
        lam[v] = th["lambda_ref"]
        rows.append(summaries(th))
    mean = np.stack([r.mean(0) for r in rows])
    sd = rows[0].std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = (mean[-1] - mean[0]) / sd
    df = pd.DataFrame({"feature": feats, "replicate_sd": sd, "sensitivity": sens})
    for k, v in enumerate(a.values):
        df[f"mean_at_{a.param}={v:g}"] = mean[k]
    df["observed_records"] = problem.data.observed
    df = df.reindex(df.sensitivity.abs().sort_values(ascending=False).index)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False, float_format="%.6g")
    print("lambda_ref per value:", {k: f"{v:.3e}" for k, v in lam.items()})
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(df.head(40).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"{len(feats)} summaries, {a.replicates} replicates, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
