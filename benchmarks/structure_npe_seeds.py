"""Issue #14 item 6: spread of NPE posterior means between training seeds (records structure).

Trains the ``kind = "npe_structure"`` flow of CONFIG on the simulation bank of a finished
``tregsim calibrate`` run (``RUN/bank.npz``, RUN = DIR/NAME: the same θ draws and cohorts
for every seed) with training seeds ``seed, seed+100, seed+200, …`` (initial weights,
validation split, batch order; ensemble members use seed + m), each with ``--n-ensemble``
flows, and reports per parameter (max − min of the posterior means) / posterior SD and SD of
the means / posterior SD (target ≤ 0.25).

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_seeds.py \\
        calibration/natural_history_structure_npe.toml --run DIR/NAME --seeds 3 \\
        [--n-ensemble 1] [--n-train 30000] [--with-run] --out runs/seeds_e1

``--with-run`` counts the run's posterior (DIR/NAME.nc; the config's seed) as seed 0;
``--only 1`` and ``--only 2`` in two processes train seeds in parallel (the last one to
finish writes the table of all seeds found). Writes OUT/seed_spread.csv,
OUT/posterior_seed<k>.npz, OUT/estimator_seed<k>.pt, OUT/timings_*.json.
Numbers in docs/calibration.md, "NPE on within-patient statistics".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument(
        "--run",
        required=True,
        help="working folder of a finished tregsim calibrate run (DIR/NAME, with bank.npz)",
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=None, help="default: the config's seed")
    ap.add_argument("--n-ensemble", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=None, help="use the first N bank rows")
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated seed indices to train here (parallel processes); the table is "
        "made from every OUT/posterior_seed<k>.npz present",
    )
    ap.add_argument(
        "--with-run",
        action="store_true",
        help="count the run's posterior DIR/NAME.nc (the config's seed) as one of the seeds",
    )
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch

    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.npe import save_estimator, train_npe
    from tregsim.calibrate.structure_simulator import build_problem

    torch.set_num_threads(1)
    cfg = load_config(a.config)
    problem = build_problem(cfg)
    with np.load(Path(a.run) / "bank.npz", allow_pickle=False) as f:
        z, x = f["z"], f["x"]
        assert list(f["features"]) == list(problem.data.feature_names), "bank of another config"
    if a.n_train:
        z, x = z[: a.n_train], x[: a.n_train]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    first = cfg.seed if a.first_seed is None else a.first_seed
    meth = dict(cfg.method) | {"n_ensemble": a.n_ensemble}
    times = {}
    todo = range(1 if a.with_run else 0, a.seeds)
    if a.only:
        todo = [int(k) for k in a.only.split(",")]
    for k in todo:
        seed = first + 100 * k  # members of an ensemble use seed + m (m < 20): no overlap
        t0 = time.perf_counter()
        est, info = train_npe(
            z,
            x,
            method=meth,
            seed=seed,
            names=problem.names,
            feature_names=problem.data.feature_names,
            progress=False,
        )
        times[f"seed_{seed}_training_s"] = time.perf_counter() - t0
        th = problem.theta_from_z(est.sample_z(problem.data.observed, a.draws, seed))
        np.savez(out / f"posterior_seed{k}.npz", theta=th, names=np.array(problem.names))
        save_estimator(est, out / f"estimator_seed{k}.pt")  # for ensembles of seeds
        print(f"seed {seed}: {info['epochs']} epochs, {times[f'seed_{seed}_training_s']:.0f} s")
    means, sds = [], []
    if a.with_run:  # read at the end: the run may still be finishing when this starts
        from tregsim.posterior import load_posterior

        run = Path(a.run)  # DIR/NAME/ (its posterior is DIR/NAME.nc) or an older DIR/
        post = load_posterior(
            run / "posterior.nc" if (run / "posterior.nc").is_file() else run.with_suffix(".nc")
        )
        th = np.stack([post[n] for n in problem.names], axis=1)
        means.append(th.mean(0))
        sds.append(th.std(0))
    for k in range(1 if a.with_run else 0, a.seeds):
        f = out / f"posterior_seed{k}.npz"
        if f.is_file():
            with np.load(f) as g:
                means.append(g["theta"].mean(0))
                sds.append(g["theta"].std(0))
    n_seeds = len(means)
    print(f"{n_seeds} seeds in the table")
    means, sds = np.array(means), np.array(sds)
    sd = sds.mean(0)
    tab = pd.DataFrame(
        {
            "parameter": problem.names,
            **{f"mean_seed{k}": means[k] for k in range(n_seeds)},
            "posterior_sd": sd,
            "range_over_sd": (means.max(0) - means.min(0)) / sd,
            "sd_of_means_over_sd": means.std(0, ddof=1) / sd,
        }
    )
    tab.to_csv(out / "seed_spread.csv", index=False)
    (out / f"timings_{a.only or 'all'}.json").write_text(
        json.dumps(
            times
            | {"n_train": len(z), "n_ensemble": a.n_ensemble, "seeds": a.seeds, "first": first},
            indent=1,
        )
    )
    with pd.option_context("display.width", 200):
        print(tab.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
