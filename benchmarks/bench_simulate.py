"""tregsim's batched solver vs a scipy ``solve_ivp`` loop, same model, patients, doses, tolerance.

The loop is what a user would write instead: scipy LSODA per patient with the analytic
Jacobian, both lambdified from the same sympy expressions for scalar (``math``) evaluation,
integrated piecewise between doses. Prints patients/second for each tregsim method (steps,
right-hand-side and Jacobian evaluations per patient), the max relative difference to the
scipy loop, and last the speed ratio of the default method ``speedup_vs_scipy_loop=<x>``.

    python benchmarks/bench_simulate.py                 # 1,000 and 10,000 patients
    python benchmarks/bench_simulate.py --n 1000 --scipy-max 300

``--scipy-max`` times the scipy loop on the first K patients only and reports the rate from
those (the loop's cost is linear in patients); the default runs it on every patient.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

import tregsim
from tregsim.model.compile import _numeric_ready
from tregsim.solve import DEFAULT_ATOL, DEFAULT_RTOL, MONTH_DAYS

RTOL, ATOL = DEFAULT_RTOL, DEFAULT_ATOL  # the batched solver's defaults, for both
METHODS = ("auto", "explicit", "rosenbrock")  # tregsim's default method first


REPEATS = 5


def cohort(model, n, seed=1):
    rng = np.random.default_rng(seed)
    over = {
        k: p.prior.sample(rng, n)
        for k, p in model.spec.parameters.items()
        if p.prior is not None and p.role == "population"
    }
    over.update(
        age=rng.uniform(8, 45, n),
        cpep0=np.exp(rng.normal(np.log(0.6), 0.5, n)),
        f_lambda=np.exp(rng.normal(0, 0.6, n)),
    )
    P = model.parameters(n, **over)
    # half the patients get one infusion of 20e6 cells/kg on day 30–90
    treated = np.arange(n) % 2 == 1
    dt = np.where(treated, rng.uniform(30, 90, n), np.nan)
    doses = tregsim.Doses(time=dt[:, None], amount=np.where(treated, 2e7, 0.0)[:, None])
    return P, doses, dt


def scipy_loop(model, P, dt, times, idx):
    args = [model._t, *model._y, *model._p, *model._clock_last]
    f = sp.lambdify(
        args,
        [_numeric_ready(e) for e in model.rhs_exprs],
        modules=[
            {
                "Logistic": lambda x: 1 / (1 + np.exp(-x)) if x > -700 else 0.0,
                "tregsim_min": min,
                "tregsim_max": max,
            },
            "math",
        ],
        cse=True,
    )
    J = sp.lambdify(
        args,
        _numeric_ready(model.jacobian_exprs).tolist(),
        modules=[
            {
                "Logistic": lambda x: 1 / (1 + np.exp(-x)) if x > -700 else 0.0,
                "tregsim_min": min,
                "tregsim_max": max,
            },
            "math",
        ],
        cse=True,
    )
    pm = model.param_matrix(P)
    ix = model.state_names.index("X")
    out = np.full((len(idx), len(times)), np.nan)
    for r, i in enumerate(idx):
        p = list(pm[:, i])
        y = model.initial_state(pm[:, i : i + 1])[:, 0]
        segs = [(0.0, -1e12)]
        if np.isfinite(dt[i]):
            segs.append((dt[i], dt[i]))
        for k, (a, tl) in enumerate(segs):
            b = segs[k + 1][0] if k + 1 < len(segs) else times[-1]
            if k > 0:
                y = y.copy()
                y[ix] += 2e7
            sel = (times >= a) & ((times < b) if k + 1 < len(segs) else (times <= b))
            te = np.unique(np.r_[times[sel], b])
            sol = solve_ivp(
                lambda t, yy, p=p, tl=tl: f(t, *yy, *p, tl),
                (a, b),
                y,
                method="LSODA",
                jac=lambda t, yy, p=p, tl=tl: J(t, *yy, *p, tl),
                rtol=RTOL,
                atol=ATOL,
                t_eval=te,
            )
            c = model.spec.parameters
            cap, eta = p[model.parameter_names.index("C_cap")], c["eta_S"].value
            out[r, sel] = cap * (sol.y[0] + eta * sol.y[1])[np.searchsorted(te, times[sel])]
            y = sol.y[:, -1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n", type=int, action="append", help="patients (repeatable; default 1000, 10000)"
    )
    ap.add_argument(
        "--scipy-max",
        type=int,
        default=None,
        help="run the scipy loop on at most this many patients per size",
    )
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="tregsim methods to time, comma-separated (the first one gives the speedup)",
    )
    a = ap.parse_args()
    methods = a.methods.split(",")
    model = tregsim.load_model("treg_t1d")
    times = np.arange(25) * MONTH_DAYS
    model.kernels  # noqa: B018  compile outside the timing
    # load (or compile) every kernel the timed calls use, outside the timing: the same
    # cohort shape (treated and untreated patients), every method, a once-per-process cost
    Pw, dw, _ = cohort(model, 8, seed=2)
    for m in methods:
        tregsim.simulate_arrays(model, Pw, dw, times, rtol=RTOL, atol=ATOL, method=m)
    ratio = None
    for n in a.n or [1000, 10000]:
        P, doses, dt = cohort(model, n)
        k = n if a.scipy_max is None else min(n, a.scipy_max)
        idx = np.arange(k)
        t0 = time.perf_counter()
        ref = scipy_loop(model, P, dt, times, idx)
        ts = time.perf_counter() - t0
        rate_s = k / ts
        print(f"n={n:>6}: scipy LSODA loop {rate_s:7.1f} patients/s ({ts:.2f} s on {k} patients)")
        rates = {}
        for m in methods:
            # best of REPEATS: one call on 10,000 patients lasts ~0.2-0.4 s, where a scheduler
            # hiccup on a shared machine moves the rate by 2x (the scipy loop lasts seconds)
            tb = np.inf
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                r = tregsim.simulate_arrays(model, P, doses, times, rtol=RTOL, atol=ATOL, method=m)
                tb = min(tb, time.perf_counter() - t0)
            cb = r.observables["cpeptide"][idx]
            diff = np.nanmax(np.abs(cb - ref) / np.abs(ref))
            rates[m] = n / tb
            st = r.stats
            print(
                f"n={n:>6}: tregsim {m:<10} {rates[m]:9.0f} patients/s (best of {REPEATS}: "
                f"{tb:.2f} s, "
                f"{int((r.status != 0).sum())} failed)  per patient: "
                f"{st['steps'].mean():.1f} steps, {st['rejected'].mean():.1f} rejected, "
                f"{st['rhs'].mean():.0f} rhs, {st['jacobians'].mean():.1f} jacobians, "
                f"{st['switches'].mean():.3f} switches  |  max rel diff C-peptide vs scipy "
                f"{diff:.2e}  |  {rates[m] / rate_s:.1f}x"
            )
        ratio = rates[methods[0]] / rate_s
    print(f"speedup_vs_scipy_loop={ratio:.1f}")


if __name__ == "__main__":
    main()
