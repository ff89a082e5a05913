"""How often θ* should lie beyond all kept draws in the likelihood SBC, with the chains' own
autocorrelation.

``structure_likelihood_sbc.py`` counts cells where θ* is beyond every one of a set's 4,000 kept
draws and compares them with 2/(L+1) per cell, the rate for L *independent* draws. The
independence sampler's walkers repeat draws after rejections, so their range is narrower than
that of independent draws, and a calibrated posterior puts θ* outside it more often.

This script measures the rate directly. On ``--sets`` datasets drawn exactly as the SBC draws
them (same priors, sampler and steps; seed ``--seed``, not one of the verdict's), each walker is
left out in turn. Each of its kept draws stands in for θ*: marginally it is a posterior draw,
and it is independent of the other walkers. The script counts how often such a draw lies beyond
every kept draw of the other 15 walkers. Scaled by 15/16 to the 16 walkers' range, times the
SBC's cells, this is the expected count with a bootstrap interval over datasets.

    OMP_NUM_THREADS=1 python benchmarks/sbc_tail_expectation.py calibration/placebo_records_structure.toml \\
        --prior-from ROUND5.nc --widen 3 --sets 10 --cells 6600

(``ROUND5.nc``: ``git show 1ea194a:calibration/posteriors/natural_history.nc``, the priors of
``benchmarks/results/sbc_likelihood_600/``.) Reads the records from ``../shared/data/``; prints
rates only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
from structure_likelihood_sbc import (
    add_regional_arguments,
    prior_dataset,
    regional_priors_from_arguments,
)

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.model import load_model


def leave_one_walker_out(kept: np.ndarray) -> np.ndarray:
    """Per parameter, the fraction of draws that lie beyond every draw of the other walkers:
    ``kept`` (steps, walkers, d) → (d,)."""
    steps, walkers, d = kept.shape
    beyond = np.zeros(d)
    for w in range(walkers):
        others = np.delete(kept, w, axis=1).reshape(-1, d)
        x = kept[:, w, :]
        beyond += ((x < others.min(0)) | (x > others.max(0))).sum(0)
    return beyond / (steps * walkers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--sets", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261399)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--burn", type=int, default=50)
    ap.add_argument(
        "--cells", type=int, default=6600, help="SBC cells to scale to (sets × parameters)"
    )
    add_regional_arguments(ap)
    a = ap.parse_args(argv)
    if a.sets < 2 or not 0 <= a.burn < a.steps:
        ap.error(
            f"--sets {a.sets} --burn {a.burn} --steps {a.steps}: need sets >= 2, 0 <= burn < steps"
        )
    try:  # a missing or bad config is one line and exit 2 (tregsim's errors are ValueErrors)
        config = load_config(a.config)
    except ValueError as e:
        ap.error(str(e))
    rec = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(rec.visit_day.max()))
    names = V.CANDIDATES[config.candidate][0]
    priors = regional_priors_from_arguments(ap, a, names) or config.priors
    rates = []
    for k in range(a.sets):
        truth, _, y, g = prior_dataset(
            k, config=config, rec=rec, table=table, seed=a.seed, priors=priors
        )
        if not np.all(np.isfinite(y)):
            continue
        post = R.StructurePosterior(
            R.likelihood_for(config, table, dataclasses.replace(rec, y=y)), config.candidate, priors
        )
        _, _, chain, acc, _ = R.sample_posterior(
            post,
            n_walkers=config.method["n_walkers"],
            n_steps=a.steps,
            seed=int(g.integers(2**31)),
            start=truth,
            move="independence",
            burn=a.burn,
        )
        kept = chain[a.burn :]
        rates.append(leave_one_walker_out(kept))
        print(f"set {k + 1}/{a.sets}: acceptance {acc:.2f}", file=sys.stderr, flush=True)
    r = np.array(rates)
    walkers = config.method["n_walkers"]
    scale = a.cells * (walkers - 1) / walkers
    boot = np.random.default_rng(a.seed).integers(0, len(r), (4000, len(r)))
    lo, hi = np.quantile(r[boot].mean(axis=(1, 2)), [0.025, 0.975])
    iid = 2.0 / ((a.steps - a.burn) * (walkers - 1) + 1)
    print("per parameter:", ", ".join(f"{n} {v:.5f}" for n, v in zip(names, r.mean(0))))
    print(
        f"P(beyond all draws of the other walkers) per cell: {r.mean():.5f} "
        f"(independent draws: {iid:.5f}); expected cells in {a.cells}: "
        f"{scale * r.mean():.1f} (95 % {scale * lo:.1f}-{scale * hi:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
