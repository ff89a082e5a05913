"""tregsim's batched ``simulate_arrays`` beside libRoadRunner (CVODE) on the same patients.

    python benchmarks/bench_roadrunner.py [--n 1000,10000] [--rr-max 10000] [--seed 0]

Patients: every ``treg_t1d`` parameter with a prior drawn from it, the individual factor
``f_lambda`` log-normal with SD ``omega_lambda``, covariates age U(7, 40) years, weight
U(25, 90) kg, cpep0 U(0.25, 1.3) nmol/L. Half of them (even indices) get one Treg dose of
2e7 cells/kg on day 60. Outputs monthly for 730.5 days (25 times).

tregsim: one batched call (its default method, threads over patients on every core), rtol
1e-8, atol 1e-10 × the state's scale. libRoadRunner: the model exported by ``tregsim export
sbml`` (the dose as an event), loaded once per worker process; as many worker processes as
cores (``--procs``, default ``os.cpu_count()``), each simulating a contiguous share of the
same patients: per patient set parameters, reset, simulate with CVODE (BDF) at rtol 1e-8,
atol 1e-10 (absolute, all states: stricter than tregsim's for the cells/kg states).
If ``--rr-max`` < N, libRoadRunner runs the first ``--rr-max`` patients and its time for N is
extrapolated linearly (said so in the output).

Wall-clock and CPU time (tregsim's process; the sum over roadrunner's workers) are both
reported. Reported: set-up (tregsim compile, roadrunner load/JIT) separately, patients/s of each, the
max relative difference between the two (C-peptide and every state; floor 1e-7 × the state's
scale, i.e. 1 cell/kg for X, M), and last ``speedup_vs_roadrunner=<x>`` (tregsim patients/s ÷
roadrunner patients/s at the largest N).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

import tregsim
from tregsim.interop.roadrunner import load_roadrunner, simulate_roadrunner
from tregsim.interop.sbml import dose_events, export_sbml

MONTH = 365.25 / 12
TIMES = np.arange(25) * MONTH
DOSE_DAY, DOSE = 60.0, 2e7


def patients(model, n: int, seed: int):
    rng = np.random.default_rng(seed)
    over = {
        k: p.prior.sample(rng, size=n)
        for k, p in model.spec.parameters.items()
        if p.prior is not None
    }
    over["f_lambda"] = np.exp(over["omega_lambda"] * rng.standard_normal(n))
    over["age"] = rng.uniform(7.0, 40.0, n)
    over["weight"] = rng.uniform(25.0, 90.0, n)
    over["cpep0"] = rng.uniform(0.25, 1.3, n)
    P = model.parameters(n, **over)
    t = np.where(np.arange(n) % 2 == 0, DOSE_DAY, np.nan)[:, None]
    doses = tregsim.Doses(time=t, amount=np.where(np.isnan(t), 0.0, DOSE), target="X")
    return P, doses


_RR = {}


def _rr_init(xml: str, rtol: float) -> None:
    """Worker set-up: load the model into this process's roadrunner (once per worker)."""
    import roadrunner

    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
    _RR["model"] = tregsim.load_model("treg_t1d")
    _RR["r"] = load_roadrunner(xml, rtol=rtol, atol=1e-10)


def _rr_ready(_):
    time.sleep(0.2)  # spread the probes over the workers
    return os.getpid()


def _rr_chunk(args):
    P, dose_t, dose_a, sel = args
    c0 = time.process_time()
    d = tregsim.Doses(time=dose_t, amount=dose_a, target="X")
    out = simulate_roadrunner(_RR["r"], _RR["model"], P, TIMES, doses=d, selections=sel)
    return out, time.process_time() - c0


def max_rel(a: np.ndarray, b: np.ndarray, floors: np.ndarray) -> float:
    ok = np.isfinite(a).all(axis=(0, 2)) & np.isfinite(b).all(axis=(0, 2))
    d = np.abs(a - b)[:, ok] / np.maximum(np.abs(b[:, ok]), floors[:, None, None])
    return float(d.max()) if d.size else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1000,10000", help="patient counts, comma-separated")
    p.add_argument(
        "--rr-max",
        type=int,
        default=10_000,
        help="at most this many patients in roadrunner (extrapolate beyond)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procs", type=int, default=os.cpu_count(), help="roadrunner worker processes")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument(
        "--ref-n",
        type=int,
        default=500,
        help="patients re-solved at rtol 1e-12 as the accuracy reference",
    )
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.n.split(",")]

    import roadrunner

    # CVODE notes "t + h = t" right after each dose event (harmless restarts); keep the
    # output readable
    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
    model = tregsim.load_model("treg_t1d")
    t0 = time.perf_counter()
    P0, d0 = patients(model, 4, a.seed)
    # compile/load the kernels the timed calls use (the same tolerance, doses, method)
    tregsim.simulate_arrays(model, P0, doses=d0, times=TIMES, rtol=a.rtol)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    xml = export_sbml(model, doses=dose_events(days=[DOSE_DAY], amounts=[DOSE]))
    pool = mp.get_context("spawn").Pool(a.procs, initializer=_rr_init, initargs=(xml, a.rtol))
    # every worker started and loaded its model before the timing (spawned workers start
    # one after another; a probe answered by one worker says nothing about the others)
    pids: set[int] = set()
    for _ in range(50):
        pids |= set(pool.map(_rr_ready, range(2 * a.procs), chunksize=1))
        if len(pids) >= a.procs:
            break
    t_load = time.perf_counter() - t0
    print(
        f"set-up: tregsim compile/load {t_compile:.1f} s; roadrunner export + {a.procs} worker "
        f"processes ({len(pids)} seen) load {t_load:.2f} s; numba threads "
        f"{__import__('numba').get_num_threads()}"
    )
    floors = np.array([model.spec.states[s].scale * 1e-7 for s in model.state_names] + [1e-7])
    sel = (*model.state_names, "cpeptide")

    speed = None
    for n in sizes:
        P, doses = patients(model, n, a.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        ts = tregsim.simulate_arrays(model, P, doses=doses, times=TIMES, rtol=a.rtol)
        t_ts, c_ts = time.perf_counter() - t0, time.process_time() - c0
        n_rr = min(n, a.rr_max)
        idx = np.arange(n_rr)
        parts = np.array_split(idx, a.procs)
        jobs = [(P.subset(ix), doses.time[ix], doses.amount[ix], sel) for ix in parts if ix.size]
        t0 = time.perf_counter()
        res = pool.map(_rr_chunk, jobs, chunksize=1)
        t_rr = (time.perf_counter() - t0) * n / n_rr
        rr = np.concatenate([o for o, _ in res], axis=1)
        c_rr = sum(c for _, c in res) * n / n_rr
        ts_all = np.concatenate([ts.states[:, idx], ts.observables["cpeptide"][None, idx]])
        note = "" if n_rr == n else f" (extrapolated from {n_rr} patients)"
        print(
            f"N={n}: tregsim {n / t_ts:,.0f} patients/s ({t_ts:.2f} s, "
            f"{int((ts.status != 0).sum())} failed); roadrunner {n / t_rr:,.0f} patients/s "
            f"({t_rr:.2f} s{note}, {int((~np.isfinite(rr).all(axis=(0, 2))).sum())} failed)"
        )
        diffs = {
            s: max_rel(rr[i : i + 1], ts_all[i : i + 1], floors[i : i + 1])
            for i, s in enumerate(sel)
        }
        print(
            f"N={n}: max relative difference tregsim vs roadrunner: "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        )
        # accuracy of each against a tight tregsim reference (rtol 1e-12) on a subset, solved
        # with the other method (Rosenbrock), not the explicit pair the timed call used
        k = np.arange(min(n_rr, a.ref_n))
        ref = tregsim.simulate_arrays(
            model,
            P.subset(k),
            times=TIMES,
            rtol=1e-12,
            atol=1e-15,
            method="rosenbrock",
            doses=tregsim.Doses(time=doses.time[k], amount=doses.amount[k], target="X"),
        )
        ref_all = np.concatenate([ref.states, ref.observables["cpeptide"][None]])
        for name, arr in (("tregsim", ts_all[:, k]), ("roadrunner", rr[:, k])):
            print(
                f"N={n}: {name} error vs reference (rtol 1e-12, {k.size} patients): "
                f"C-peptide {max_rel(arr[-1:], ref_all[-1:], floors[-1:]):.1e}, "
                f"all states {max_rel(arr, ref_all, floors):.1e}"
            )
        print(
            f"N={n}: per CPU-second (tregsim's process, roadrunner's workers summed): tregsim "
            f"{n / c_ts:,.0f}, roadrunner {n / c_rr:,.0f} patients/s; "
            f"speedup_cpu={c_rr / c_ts:.2f}"
        )
        speed = t_rr / t_ts
    pool.close()
    pool.join()
    print(f"speedup_vs_roadrunner={speed:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
