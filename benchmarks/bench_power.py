"""Benchmark: analyse 2,000 replicate trials × 12 sample sizes (ANCOVA + Welch t + rank-sum).

Target (issue 5): ≤ 60 s wall time on 2 cores. The alternative a user would pick — a Python
loop calling statsmodels OLS, scipy.stats.ttest_ind and scipy.stats.mannwhitneyu per trial —
is timed on a subset and extrapolated.

    python benchmarks/bench_power.py [--trials 2000] [--loop-trials 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tregsim.trial.allocation import first_n_per_arm
from tregsim.trial.design import synthetic_trials
from tregsim.trial.power import simulated_power


def _loop_reference(data, grid, n_trials):
    import statsmodels.api as sm
    from scipy import stats

    arm = np.asarray(data.arm)
    for n in grid:
        inc = first_n_per_arm(arm, int(n))
        for r in range(n_trials):
            m = inc[r] & np.isfinite(data.endpoint_auc_nmol_l[r])
            y = np.log1p(data.endpoint_auc_nmol_l[r, m])
            a = arm[r, m]
            X = sm.add_constant(
                np.column_stack(
                    [
                        a.astype(float),
                        np.log1p(data.baseline_auc_nmol_l[r, m]),
                        data.age_years[r, m],
                    ]
                )
            )
            sm.OLS(y, X).fit().pvalues[1]
            stats.ttest_ind(y[a], y[~a], equal_var=False)
            stats.mannwhitneyu(y[a], y[~a], method="asymptotic")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--loop-trials", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    grid = np.arange(5, 61, 5)  # 12 sample sizes per arm
    t0 = time.perf_counter()
    data = synthetic_trials(a.seed, a.trials, int(grid.max()), effect=0.1, dropout=0.1)
    t_gen = time.perf_counter() - t0
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        res = simulated_power(data, grid, tests=("ancova", "welch", "ranksum"))
        best = min(best, time.perf_counter() - t0)
    print(f"generate {a.trials} synthetic trials × {2 * grid.max()} slots: {t_gen:.2f} s")
    print(
        f"tregsim batched: {a.trials} trials × {grid.size} N × (ANCOVA + Welch + rank-sum): "
        f"{best:.2f} s (best of 3)"
    )
    print("power ANCOVA:", np.round(res.power("ancova"), 3))
    if a.loop_trials > 0:
        t0 = time.perf_counter()
        _loop_reference(data, grid, a.loop_trials)
        t_loop = time.perf_counter() - t0
        est = t_loop * a.trials / a.loop_trials
        print(
            f"statsmodels/scipy loop: {a.loop_trials} trials × {grid.size} N: {t_loop:.2f} s "
            f"→ {est:.0f} s extrapolated to {a.trials} trials ({est / best:.0f}× slower)"
        )


if __name__ == "__main__":
    main()
