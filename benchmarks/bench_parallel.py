"""In-process vs ``--workers N`` wall time of run_chunks on a CPU-bound numpy chunk function.

    python benchmarks/bench_parallel.py [--items 4000] [--chunk-size 250] [--workers 2]

The chunk function is single-threaded numpy (elementwise ufuncs, no BLAS), seeded through
``tregsim.rng.draw``; each item iterates a stiff-ish logistic map 400 times on 256 values,
roughly the cost profile of a batched solver step. Results are checked bitwise equal between
modes. Reported: cluster start-up, compute time per mode, and the speed-up ratio (in-process
time / cluster time) with and without start-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from tregsim import rng
from tregsim.parallel import Executor, chunk_bounds, run_chunks


def busy_chunk(start: int, stop: int, seed: int, n_iter: int) -> dict[str, np.ndarray]:
    """Items ``[start, stop)``: ``x`` (n, 256) after ``n_iter`` damped logistic-map steps.

    ``cpu_s`` (n,) spreads the chunk's CPU seconds over its items (sum = CPU time of the work),
    a measure that other processes on a busy machine disturb far less than wall time.
    """
    t0 = time.thread_time()
    x = rng.draw(seed, "bench.x0", start, stop, lambda g, n: g.random((n, 256)))
    r = 3.7 + 0.2 * x
    for _ in range(n_iter):
        x = r * x * (1.0 - x)
        x = 0.999 * x + 0.0005 * np.exp(-x)
    cpu = np.full(stop - start, (time.thread_time() - t0) / max(stop - start, 1))
    return {"x_mean": x.mean(axis=1), "x_max": x.max(axis=1), "cpu_s": cpu}


def _pool_call(a: tuple) -> dict[str, np.ndarray]:
    return busy_chunk(*a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--chunk-size", type=int, default=250)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    args = (7, a.iterations)
    kw = {"chunk_size": a.chunk_size, "args": args, "progress": False}

    run_chunks(busy_chunk, a.chunk_size, **kw)  # warm caches
    t_in = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        ref = run_chunks(busy_chunk, a.items, **kw)
        t_in.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with Executor(workers=a.workers) as ex:
        t_start = time.perf_counter() - t0
        run_chunks(busy_chunk, a.chunk_size, executor=ex, **kw)  # import fn on the workers
        t_cl = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            got = run_chunks(busy_chunk, a.items, executor=ex, **kw)
            t_cl.append(time.perf_counter() - t0)
    keys = ("x_mean", "x_max")
    same = all(ref[k].tobytes() == got[k].tobytes() for k in keys)

    # The alternative a user would pick by hand: a stdlib process pool over the same chunks.
    bounds = chunk_bounds(a.items, a.chunk_size)
    with ProcessPoolExecutor(a.workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_pool_call, [(0, a.chunk_size, *args)] * a.workers))  # start workers
        t_pool = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            parts = list(pool.map(_pool_call, [(s, e, *args) for s, e in bounds]))
            t_pool.append(time.perf_counter() - t0)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in ref}
    same = same and all(ref[k].tobytes() == pooled[k].tobytes() for k in keys)

    best_in, best_cl = min(t_in), min(t_cl)
    # Other processes on the machine take cores from the workers; print the load with the
    # numbers so a ratio measured on a busy machine is not mistaken for the executor's cost.
    load1 = os.getloadavg()[0]
    print(
        f"items {a.items}, chunk size {a.chunk_size}, iterations {a.iterations}, "
        f"best of {a.repeats}; {os.cpu_count()} CPUs, load average (1 min) {load1:.2f}",
        file=sys.stderr,
    )
    print(f"in-process                : {best_in:7.3f} s")
    print(f"LocalCluster start-up     : {t_start:7.3f} s ({a.workers} worker processes)")
    print(f"workers={a.workers} compute          : {best_cl:7.3f} s")
    print(f"speed-up (compute only)   : {best_in / best_cl:7.2f}x")
    print(f"speed-up (incl. start-up) : {best_in / (best_cl + t_start):7.2f}x")
    print(
        f"stdlib ProcessPool({a.workers})     : {min(t_pool):7.3f} s "
        f"(speed-up {best_in / min(t_pool):.2f}x)"
    )
    cpu_in, cpu_cl = ref["cpu_s"].sum(), got["cpu_s"].sum()
    print(
        f"CPU s inside chunks       : {cpu_in:7.3f} in-process, {cpu_cl:7.3f} on workers "
        f"(ratio {cpu_cl / cpu_in:.2f}; 1.00 = no per-chunk overhead in the workers)"
    )
    print(f"bitwise identical         : {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
