"""Issue #14 item 6: ensembles of independently trained flows (records-structure NPE).

An equal-weight mixture of flows trained on the same bank with different seeds is what
``[method] n_ensemble`` trains (members seed + m); here the members are the single flows of
``benchmarks/structure_npe_seeds.py`` (seeds seed + 100 k) and the run's own ``estimator.pt``
(``--run DIR/NAME``, the run's working folder).
For each group of members (``--groups "0,1,2;3,4,5"``, indices into ``--members``) it samples
the mixture posterior at the records' summaries, reports the spread of the groups' posterior
means / posterior SD, and the SBC coverage of the first group on the run's held-out
``sbc_bank.npz``.

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_ensemble.py \\
        calibration/natural_history_structure_npe.toml --run runs/v3 \\
        --members runs/v3/estimator.pt runs/v3_seeds_e1/estimator_seed1.pt ... \\
        --groups "0,1,2;3,4,5" --out runs/v3_ensemble

Numbers in docs/calibration.md, "NPE on within-patient statistics".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--run", required=True)
    ap.add_argument("--members", nargs="+", required=True)
    ap.add_argument("--groups", required=True)
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--sbc-draws", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch

    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.npe import Estimator, load_estimator
    from tregsim.calibrate.structure_simulator import build_problem

    torch.set_num_threads(1)
    cfg = load_config(a.config)
    problem = build_problem(cfg)
    ests = [load_estimator(m) for m in a.members]
    groups = [[int(i) for i in g.split(",")] for g in a.groups.split(";")]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    means, sds = [], []
    for gi, g in enumerate(groups):
        est = Estimator(nets=[ests[i].net for i in g], meta=ests[g[0]].meta)
        th = problem.theta_from_z(est.sample_z(problem.data.observed, a.draws, cfg.seed))
        np.savez(out / f"posterior_group{gi}.npz", theta=th, names=np.array(problem.names))
        means.append(th.mean(0))
        sds.append(th.std(0))
        if gi == 0:
            with np.load(Path(a.run) / "sbc_bank.npz", allow_pickle=False) as f:
                z, x = f["z"], f["x"]
            ok = np.all(np.isfinite(x), axis=1)
            zs = est.sample_z_batched(x[ok], a.sbc_draws, cfg.seed + 1)
            cov = pd.DataFrame(
                {
                    "parameter": problem.names,
                    "coverage_50": diag.central_coverage(z[ok], zs, 0.5),
                    "coverage_90": diag.central_coverage(z[ok], zs, 0.9),
                    "n_datasets": int(ok.sum()),
                    "n_members": len(g),
                }
            )
            cov.to_csv(out / "sbc_coverage_group0.csv", index=False)
            print(cov.round(3).to_string(index=False))
    means, sds = np.array(means), np.array(sds)
    sd = sds.mean(0)
    tab = pd.DataFrame(
        {
            "parameter": problem.names,
            **{f"mean_group{k}": means[k] for k in range(len(groups))},
            "posterior_sd": sd,
            "range_over_sd": (means.max(0) - means.min(0)) / sd,
        }
    )
    tab.to_csv(out / "ensemble_spread.csv", index=False)
    with pd.option_context("display.width", 200):
        print(tab.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
