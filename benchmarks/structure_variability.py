"""Issue #14: which structure of individual variability reproduces the placebo records?

Reads ../shared/data/placebo_cpeptide_individual.csv (not shipped). For each candidate of
``tregsim.calibrate.variability.CANDIDATES`` given on the command line:

1. MAP on all records, log-likelihood and the conditional log score;
2. simulated OBSERVED trial statistics (400 virtual cohorts with the records' ages and visit
   pattern) beside the observed ones with participant-bootstrap 95 % intervals
   → ``OUT/trial_statistics_<candidate>.csv``;
3. with ``--loso``: leave-one-study-out (fit without the study, score its participants' later
   visits given their baseline) → ``OUT/loso_<candidate>.json``;
4. with ``--power``: N per arm for 80 % power at +20/30/50 % at 12 months, model-based
   (1,000 virtual trials per N) vs closed form with the records' residual SD 0.165
   → ``OUT/power_<candidate>.json``.

    OMP_NUM_THREADS=1 python benchmarks/structure_variability.py --out runs/structure \\
        lumped covariate covariate+power [--loso] [--power]

Numbers in docs/calibration.md, "Structure of individual variability".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import tregsim
from tregsim.calibrate import variability as V
from tregsim.calibrate.likelihood import CurveTable
from tregsim.trial.closed_form import n_per_arm_for_power
from tregsim.trial_statistics import (
    cohort_statistics,
    comparison_rows,
    to_wide,
    trial_statistics,
    write_comparison_csv,
)

RECORDS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "placebo_cpeptide_individual.csv"
)
MONTHS = (0, 6, 12, 18, 24)
TABLE_FIXED = {"s0": 0.41, "k_re": 0.02}  # shipped NPE posterior means (docs/calibration.md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("candidates", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--loso", action="store_true")
    ap.add_argument("--power", action="store_true")
    ap.add_argument("--seed", type=int, default=20261205)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = tregsim.load_model("treg_t1d")
    table = CurveTable(model, fixed=TABLE_FIXED, n_loglam=121, n_q=21, max_day=1250.0, day_step=5.0)
    rec = V.load_records(RECORDS)
    d = pd.read_csv(RECORDS)
    _, wide, age = to_wide(
        d.participant_id, d.month, d.auc_mean_cpeptide_nmol_l, d.age_years, months=MONTHS
    )
    obs = trial_statistics(
        d.participant_id, d.age_years, d.month, d.auc_mean_cpeptide_nmol_l, n_boot=2000, seed=a.seed
    )
    like = V.StructureLikelihood(table, rec)
    for c in a.candidates:
        t0 = time.time()
        fit = V.fit_structure(like, c)
        score = V.conditional_score(like, fit.theta)
        rng = np.random.default_rng(a.seed)
        y = V.simulate_observed(table, fit.theta, age, np.array(MONTHS), rng, n_rep=400)
        sim = cohort_statistics(y, age, months=MONTHS, present=np.isfinite(wide))
        write_comparison_csv(out / f"trial_statistics_{c}.csv", comparison_rows(obs, sim))
        res = {
            "candidate": c,
            "theta": fit.theta,
            "log_lik": fit.log_lik,
            "n_free": fit.n_params,
            "conditional_score": float(score.sum()),
            "seconds": time.time() - t0,
        }
        print(json.dumps(res), flush=True)
        (out / f"fit_{c}.json").write_text(json.dumps(res, indent=1))
        if a.loso:
            folds = {}
            for s in sorted(set(rec.study)):
                train = V.StructureLikelihood(table, rec.subset(rec.study != s))
                test = V.StructureLikelihood(table, rec.subset(rec.study == s))
                f = V.fit_structure(train, c, start=fit.theta)
                sc = V.conditional_score(test, f.theta)
                folds[s] = {
                    "score": float(sc.sum()),
                    "n_participants": len(sc),
                    "n_later_visits": int(np.sum(test.r.visit_month > 0)),
                }
                print(c, s, folds[s], flush=True)
            (out / f"loso_{c}.json").write_text(json.dumps(folds, indent=1))
        if a.power:
            y12 = d[d.month == 12].auc_mean_cpeptide_nmol_l.to_numpy()
            rows = []
            for X in (0.2, 0.3, 0.5):
                delta = float(np.mean(np.log1p((1 + X) * y12) - np.log1p(y12)))
                n_cf = n_per_arm_for_power(0.8, delta, 0.165, rho=0.0, n_covariates=2)
                grid = np.unique(
                    np.round(n_cf * np.array([0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.45, 1.7]))
                )
                pw = V.ancova_power_by_simulation(table, fit.theta, age, grid.astype(int), X, rng)
                k = np.flatnonzero(pw >= 0.8)
                if k.size == 0:
                    n_mb = float("nan")
                elif k[0] == 0:
                    n_mb = float(grid[0])
                else:
                    i = k[0]
                    n_mb = float(
                        grid[i - 1]
                        + (0.8 - pw[i - 1]) * (grid[i] - grid[i - 1]) / (pw[i] - pw[i - 1])
                    )
                rows.append(
                    {
                        "relative_effect": X,
                        "delta_ln_auc_plus_1": delta,
                        "n_closed_form": int(n_cf),
                        "n_model": n_mb,
                        "ratio": n_mb / n_cf,
                        "grid": grid.tolist(),
                        "power": pw.tolist(),
                    }
                )
                print(c, rows[-1], flush=True)
            (out / f"power_{c}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
