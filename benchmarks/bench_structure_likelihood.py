"""The records likelihood, compiled kernel vs the numpy array path, side by side in one run.

Evaluates the shipped structure's marginal log-likelihood on the placebo records at the shipped
posterior's medians (115 participants, 584 visits, 37 × 33 quadrature nodes) ``--reps`` times
by each path on one core, checks that they agree, and prints the times and their ratio. The
numpy path (``structure_run.array_log_lik``: one (visits × nodes) array per quantity, summed
per participant with ``np.add.reduceat``) is what ``independent_log_lik`` did up to round 5 and
what a user would write with numpy; the kernel is ``tregsim.calibrate.structure_kernel``. Both
use the config's ζ nodes (adaptive from round 7); the last line times the kernel on the fixed
grid too, the adaptive nodes' overhead.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_structure_likelihood.py \\
        calibration/placebo_records_structure.toml

Reads the records from ``../shared/data/`` (never copied); prints timings only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.model import load_model
from tregsim.posterior import DEFAULT_POSTERIOR


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args(argv)
    import arviz as az

    config = load_config(a.config)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(rec.visit_day.max()))
    like = R.likelihood_for(config, table, rec)
    names, fixed = V.CANDIDATES[config.candidate]
    post = az.from_netcdf(DEFAULT_POSTERIOR).posterior
    th = {n: float(post[n].median()) for n in names} | fixed | dict(config.fixed)
    k = R.independent_log_lik(like, th)  # compiles the kernel (cached on disk)
    n = R.array_log_lik(like, th)
    print(f"total log-likelihood: kernel {k.sum():.6f}, numpy {n.sum():.6f}")
    print(f"max |difference| per participant: {np.abs(k - n).max():.2e}")
    times = {}
    for name, f in (("numpy", R.array_log_lik), ("kernel", R.independent_log_lik)):
        t0 = time.perf_counter()
        for _ in range(a.reps):
            f(like, th)
        times[name] = (time.perf_counter() - t0) / a.reps
    print(
        f"one evaluation ({len(rec.ids)} participants, {rec.y.size} visits, "
        f"{like.zeta.size * like.eta.size} nodes): numpy {times['numpy'] * 1e3:.1f} ms, "
        f"kernel {times['kernel'] * 1e3:.1f} ms, ratio {times['numpy'] / times['kernel']:.1f}x"
    )
    # what the adaptive ζ nodes (the config's default) cost over the fixed grid, same kernel
    fixed_like = R.likelihood_for(config, table, rec, adaptive_zeta=False)
    R.independent_log_lik(fixed_like, th)
    t0 = time.perf_counter()
    for _ in range(a.reps):
        R.independent_log_lik(fixed_like, th)
    t_fixed = (time.perf_counter() - t0) / a.reps
    print(
        f"ζ nodes: the config's ({'adaptive' if like.adaptive_zeta else 'fixed'}) "
        f"{times['kernel'] * 1e3:.1f} ms, fixed grid {t_fixed * 1e3:.1f} ms "
        f"(total {R.independent_log_lik(fixed_like, th).sum():.6f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
