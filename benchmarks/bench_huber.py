"""Benchmark: the Huber ANCOVA of many replicate trials, batched, against statsmodels' RLM in
a loop (what a user would write instead), same machine, same run.

R trials of 2·N patients (t(3) deviations on the ln(AUC + 1) scale, arm + baseline + age);
the batched IRLS (:func:`tregsim.trial.endpoints.ancova_huber`) on all of them, the loop on
``--loop-trials`` of them (extrapolated), and the largest difference of the arm coefficient
between the two on the looped trials.

    OMP_NUM_THREADS=1 python benchmarks/bench_huber.py [--trials 2000] [--n-per-arm 150]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--n-per-arm", type=int, default=150)
    ap.add_argument("--loop-trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    import statsmodels.api as sm

    from tregsim.trial.endpoints import ancova_huber

    rng = np.random.default_rng(a.seed)
    R, n = a.trials, 2 * a.n_per_arm
    arm = np.zeros((R, n), bool)
    arm[:, a.n_per_arm :] = True
    x0 = rng.normal(0.5, 0.3, (R, n))
    age = rng.uniform(8, 45, (R, n))
    y = 0.05 * arm + 0.9 * x0 - 0.002 * age + 0.15 * rng.standard_t(3.0, (R, n))
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        res = ancova_huber(y, arm, [x0, age])
        best = min(best, time.perf_counter() - t0)
    k = min(a.loop_trials, R)
    t0 = time.perf_counter()
    ref = np.empty(k)
    for r in range(k):
        X = sm.add_constant(np.column_stack([arm[r], x0[r], age[r]]).astype(float))
        ref[r] = sm.RLM(y[r], X, M=sm.robust.norms.HuberT()).fit().params[1]
    loop = (time.perf_counter() - t0) * R / k
    diff = float(np.max(np.abs(ref - res.estimate[:k])))
    print(
        f"{R} trials × {n} patients: batched {best:.2f} s, statsmodels RLM loop "
        f"{loop:.1f} s (extrapolated from {k}); ratio {loop / best:.0f}×; "
        f"max |arm coefficient difference| {diff:.1e} (statsmodels at its default tol)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
