"""Cohort throughput and memory: streamed chunks (run_cohort) vs one batch (simulate_arms).

    python benchmarks/bench_cohort.py --n 2000 4000 --chunk-size 1024

Prints wall and CPU seconds, patients/s per CPU second (per patient, all arms) and the peak
traced memory (tracemalloc, MiB) of each approach; CPU time is the fair measure on a shared
machine. A warm-up call first pays the one-off imports. The streamed path keeps per-visit summaries only, so its peak memory follows
the chunk size, not N; one batch holds every patient's states at every output time.
Population sampling (covariates + eligibility + IIV) is timed separately.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

from tregsim.cohort import run_cohort, simulate_arms
from tregsim.experiment import load_experiment
from tregsim.population import sample_population

NCT = Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml"


def measure(fn):
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, cpu, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 4000])
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    exp = load_experiment(NCT)
    run_cohort(exp, 8, a.seed, progress=False, spaghetti_n=0, keep=0)  # warm-up
    print(
        f"{'N':>8} {'approach':<24} {'wall s':>7} {'cpu s':>7} {'patients/cpu-s':>14} "
        f"{'peak MiB':>9}"
    )

    def show(n, name, fn):
        _, dt, cpu, peak = measure(fn)
        print(f"{n:>8} {name:<24} {dt:7.2f} {cpu:7.2f} {n / cpu:14.0f} {peak:9.1f}")

    for n in a.n:
        show(n, "sample_population", lambda n=n: sample_population(exp, n, n))
        show(
            n,
            "run_cohort (streamed)",
            lambda n=n: run_cohort(
                exp, n, a.seed, chunk_size=a.chunk_size, progress=False, spaghetti_n=0, keep=0
            ),
        )
        show(
            n,
            "simulate_arms (1 batch)",
            lambda n=n: simulate_arms(exp, sample_population(exp, n, a.seed)),
        )


if __name__ == "__main__":
    main()
