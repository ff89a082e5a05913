"""Dose × timing sweep: stacked batched rows vs the loops a user would write.

Compares, on the same grid and the same virtual patients (treg_t1d, NCT06708780 experiment):

* ``tregsim``      — :func:`tregsim.explore.sweep.sweep`: every (grid point, patient) row and
  one shared control cohort stacked along the patient axis, in chunks of ``--chunk-size``;
* ``cohort loop``  — one ``simulate_arrays`` call per grid point (plus one control call),
  the natural loop over cohorts;
* ``scipy loop``   — ``scipy.integrate.solve_ivp`` (LSODA, analytic Jacobian from the
  compiled model) per patient and grid point, on a small subset, extrapolated per row.

Reports wall time, rows per second and the largest difference in 12-month ΔC-peptide
(nmol/L) between methods. Run: ``python benchmarks/bench_sweep.py [--n 200] [--doses 3]
[--days 4] [--scipy-rows 6]``. Timings depend on machine load; run on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _scipy_patient(model, p_col, dose_day, dose, t_out):
    """One patient with LSODA: integrate to the dose, add it, integrate on (gate clock reset)."""
    from scipy.integrate import solve_ivp

    p = p_col[:, None]
    y0 = model.initial_state(p)[:, 0]
    nclk = len(model.clock_names)

    def f(tlast):
        tl = np.full((nclk, 1), tlast)
        return (
            lambda t, y: model.rhs(t, y[:, None], p, tl)[:, 0],
            lambda t, y: model.jacobian(t, y[:, None], p, tl)[:, :, 0],
        )

    xi = model.state_names.index("X")
    rhs, jac = f(-np.inf)
    s1 = solve_ivp(rhs, (0.0, dose_day), y0, method="LSODA", jac=jac, rtol=1e-8, atol=1e-10)
    y1 = s1.y[:, -1].copy()
    y1[xi] += dose
    rhs, jac = f(dose_day)
    s2 = solve_ivp(
        rhs,
        (dose_day, t_out[-1]),
        y1,
        method="LSODA",
        jac=jac,
        rtol=1e-8,
        atol=1e-10,
        t_eval=t_out,
        dense_output=False,
    )
    tl = np.full((nclk, 1, len(t_out)), np.nan)  # the observable needs no clock
    return model.observable("cpeptide", t_out[None, :], s2.y[:, None, :], p[:, :, None], tl)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="virtual patients")
    ap.add_argument("--doses", type=int, default=3, help="log-spaced doses 1e6..1e8 cells/kg")
    ap.add_argument("--days", type=int, default=4, help="infusion days 14..179")
    ap.add_argument("--chunk-size", type=int, default=16384)
    ap.add_argument("--scipy-rows", type=int, default=6, help="rows timed with solve_ivp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="auto", help="simulate_arrays backend: auto|numba|numpy")
    a = ap.parse_args(argv)

    from tregsim.experiment import load_experiment
    from tregsim.explore.sweep import DAYS_PER_MONTH, parse_grid, sweep
    from tregsim.population.sampling import sample_population
    from tregsim.solve import Doses, simulate_arrays

    exp = load_experiment(ROOT / "experiments" / "nct06708780.toml")
    axes = [
        parse_grid(f"dose_per_kg=1e6..1e8:log:{a.doses}"),
        parse_grid(f"infusion_day=14..179:lin:{a.days}"),
    ]
    G = a.doses * a.days
    rows = (G + 1) * a.n
    t12 = exp.baseline_day + DAYS_PER_MONTH * np.array([12.0])
    print(
        f"backend {a.backend}; grid {a.doses} doses × {a.days} days × {a.n} patients = {rows} rows (incl. control)"
    )

    # compile (sympy kernels, numba JIT if installed, symbolic control check) outside timings
    import pandas  # noqa: F401  (one-time import, not part of the sweep's cost)

    from tregsim.explore.sweep import control_free_parameters

    control_free_parameters(exp.model)
    warm = sample_population(exp, 2, a.seed)
    simulate_arrays(
        exp.model, warm.params, Doses(time=[60.0], amount=[1e7]), t12, backend=a.backend
    )
    t0 = time.perf_counter()
    res = sweep(
        exp,
        axes,
        n=a.n,
        seed=a.seed,
        months=[12.0],
        chunk_size=a.chunk_size,
        progress=False,
        backend=a.backend,
    )
    t_stack = time.perf_counter() - t0
    d_stack = res.outcomes.delta[:, :, 0]

    pop = sample_population(exp, a.n, a.seed)
    t0 = time.perf_counter()
    sim = lambda d: simulate_arrays(exp.model, pop.params, d, t12, backend=a.backend)  # noqa: E731
    ctrl = sim(None).observables["cpeptide"][:, 0]
    d_loop = np.empty((G, a.n))
    for g, (dose, day) in enumerate(res.points):
        d = Doses(time=np.full((a.n, 1), day), amount=np.full((a.n, 1), dose))
        d_loop[g] = sim(d).observables["cpeptide"][:, 0]
        d_loop[g] -= ctrl
    t_loop = time.perf_counter() - t0

    k = min(a.scipy_rows, a.n)
    t0 = time.perf_counter()
    p = exp.model.param_matrix(pop.params)
    d_sp = []
    for i in range(k):
        dose, day = res.points[-1]
        c_t = _scipy_patient(exp.model, p[:, i], day, dose, t12)[0]
        c_c = _scipy_patient(exp.model, p[:, i], day, 0.0, t12)[0]
        d_sp.append(c_t - c_c)
    t_sp = (time.perf_counter() - t0) / (2 * k) * rows

    print(f"{'method':<14}{'seconds':>10}{'rows/s':>10}  max |Δ12 diff| vs tregsim (nmol/L)")
    print(f"{'tregsim':<14}{t_stack:>10.2f}{rows / t_stack:>10.0f}  —")
    print(
        f"{'cohort loop':<14}{t_loop:>10.2f}{rows / t_loop:>10.0f}  "
        f"{np.max(np.abs(d_loop - d_stack)):.2e}"
    )
    print(
        f"{'scipy LSODA':<14}{t_sp:>10.2f}{rows / t_sp:>10.0f}  "
        f"{np.max(np.abs(np.array(d_sp) - d_stack[-1, :k])):.2e}  (extrapolated from "
        f"{2 * k} solves)"
    )


if __name__ == "__main__":
    main()
