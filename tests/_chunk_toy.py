"""A small seeded chunk function for the executor tests, and a script that checkpoints it.

``toy_chunk`` draws through ``tregsim.rng.draw`` (absolute item indices) and pushes the draws
through scipy functions, so its results are real floating-point work whose bits must not
depend on chunking or workers. Run as a script it is a miniature long command (used by the
kill/resume test)::

    python tests/_chunk_toy.py OUT --n 1200 --chunk-size 100 --seed 3 --delay-s 0.2
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import special, stats

from tregsim import io, rng

STREAM = "tests.toy"


def toy_draws(generator: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One block of draws: ``z`` (n, 3) standard normal, ``u`` (n,) uniform."""
    return {"z": generator.standard_normal((n, 3)), "u": generator.random(n)}


def toy_transform(z: np.ndarray, u: np.ndarray, index: np.ndarray) -> dict[str, np.ndarray]:
    """Deterministic work on the draws (shared with the independent reference in the tests)."""
    return {
        "index": index.astype(np.int64),
        "p": special.ndtr(z),
        "g": stats.gamma.ppf(u, a=2.5),
        "label": np.where(u < 0.5, "low", "high"),
    }


def toy_chunk(
    start: int,
    stop: int,
    seed: int,
    delay_s: float = 0.0,
    fail_from: int | None = None,
    slow_first_s: float = 0.0,
) -> dict[str, np.ndarray]:
    """Items ``[start, stop)``: arrays with first axis ``stop - start``.

    ``delay_s`` sleeps in every chunk; ``slow_first_s`` only in the first one (so on a cluster
    chunks finish out of order); ``fail_from`` raises ``ValueError`` for a chunk containing that
    item or later.
    """
    if fail_from is not None and stop > fail_from:
        raise ValueError(f"deliberate failure at item {fail_from}")
    time.sleep(delay_s + (slow_first_s if start == 0 else 0.0))
    d = rng.draw(seed, STREAM, start, stop, toy_draws)
    return toy_transform(d["z"], d["u"], np.arange(start, stop))


def toy_summary(
    start: int, stop: int, seed: int, slow_first_s: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-chunk summaries for ``combine``: counts, a histogram, a float sum and the order."""
    d = toy_chunk(start, stop, seed, slow_first_s=slow_first_s)
    return {
        "n": np.array(stop - start),
        "hist": np.histogram(d["g"], bins=np.linspace(0.0, 10.0, 21))[0],
        "sum_g": d["g"].sum(),
        "starts": np.array([start]),
    }


def combine_in_order(acc: dict, part: dict) -> dict:
    """Counts and histogram add; ``starts`` concatenates, which exposes the fold order."""
    return {
        "n": acc["n"] + part["n"],
        "hist": acc["hist"] + part["hist"],
        "sum_g": acc["sum_g"] + part["sum_g"],
        "starts": np.concatenate([acc["starts"], part["starts"]]),
    }


def main(argv: list[str] | None = None) -> int:
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.parallel import add_parallel_arguments, parallel_options, run_chunks

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--n", type=int, default=1200)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--delay-s", type=float, default=0.0)
    add_parallel_arguments(p, chunk_size=100)
    args = p.parse_args(argv)
    manifest = io.build_manifest(
        command="toy", seed=args.seed, settings={"n": args.n}, argv=argv or sys.argv
    )
    out = prepare_output_dir(args.out, manifest, args.overwrite)
    res = run_chunks(
        toy_chunk,
        args.n,
        args=(args.seed, args.delay_s),
        out_dir=out,
        progress=False,
        **parallel_options(args),
    )
    with io.atomic_path(out / "result.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **res)
    io.write_json(out / io.MANIFEST, manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
