"""Issue #14 item 3: why the records-structure NPE ensemble over-covers σ_meas — pooling rules.

An ensemble of K flows is sampled as an equal-weight mixture (the *linear pool*). A linear
pool of distinct calibrated forecasts is over-dispersed (Ranjan & Gneiting 2010, JRSS B 72:
71–91, "Combining probability forecasts"); averaging quantiles instead keeps the pool's mean
and is always sharper (Lichtendahl, Grushka-Cockayne & Winkler 2013, Management Science 59:
1594–1611, "Is it better to average probabilities or quantiles?"). Three rules on the same
member draws, in the flows' unconstrained coordinates z, for each conditioning x:

* ``mixture``: the members' draws as they are (what ``tregsim calibrate`` ships);
* ``se_pool``: member m's draws shifted by −(1 − c)(μ_m − μ̄), c = 1/√(K − 1), so the pool's
  between-member variance is the standard error of the ensemble mean (s²/K) instead of
  (K − 1)/K · s²;
* ``recentred``: c = 0, every member moved to the ensemble mean μ̄ (quantile averaging when
  the members differ by location only).

μ_m is member m's mean of its draws at that x. For each seed (seed 0: ``--run``'s members;
seed k ≥ 1: ``--seeds-dir``/member_seed<k>_m<m>.pt of ``structure_npe_seed_banks.py``) it
prints the SBC coverage (50 %, 90 %) on the run's held-out ``sbc_bank.npz`` (200 draws per
member and dataset), each member's own coverage, the median over datasets of the SD of the
member means / mean member SD, and the seed spread on the records under each rule (the
metric of ``structure_npe_seed_banks.py``).

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_pooling.py \\
        calibration/natural_history_structure_npe.toml --run runs/npe8/natural_history_structure_npe \\
        --seeds-dir runs/npe8_seeds --seeds 4 --out runs/npe8_pooling

Numbers in docs/calibration.md, "Round 9: why the ensemble over-covers σ_meas".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

RULES = ("mixture", "se_pool", "recentred")


def pool(draws: list[np.ndarray], rule: str) -> np.ndarray:
    """Member draws [(..., n, d)] → pooled draws (..., K·n, d) under a pooling rule."""
    k = len(draws)
    c = {"mixture": 1.0, "se_pool": 1.0 / np.sqrt(max(k - 1, 1)), "recentred": 0.0}[rule]
    mu = np.stack([d.mean(-2) for d in draws])
    shift = (1.0 - c) * (mu - mu.mean(0))
    return np.concatenate([d - shift[m][..., None, :] for m, d in enumerate(draws)], -2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--run", required=True, help="DIR/NAME of `tregsim calibrate CONFIG`: seed 0")
    ap.add_argument("--seeds-dir", default=None, help="OUT of structure_npe_seed_banks.py")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--draws", type=int, default=20000, help="per member, on the records")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    run = Path(a.run)
    for name in ("estimator.pt", "sbc_bank.npz"):
        if not (run / name).is_file():
            ap.error(f"--run {a.run}: no {name}; give DIR/NAME of a `tregsim calibrate` run")
    if a.seeds > 1 and a.seeds_dir is None:
        ap.error("--seeds > 1 needs --seeds-dir (the --out of structure_npe_seed_banks.py)")

    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from structure_npe_seed_banks import spread_table

    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.npe import Estimator, load_estimator
    from tregsim.calibrate.structure_simulator import build_problem

    torch.set_num_threads(1)
    cfg = load_config(a.config)
    problem = build_problem(cfg)
    names = list(problem.names)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    est0 = load_estimator(run / "estimator.pt")
    members = {0: [Estimator(nets=[n], meta=est0.meta) for n in est0.nets]}
    paths = {
        k: [Path(a.seeds_dir) / f"member_seed{k}_m{m}.pt" for m in range(len(est0.nets))]
        for k in range(1, a.seeds)
    }
    missing = [p.name for ps in paths.values() for p in ps if not p.is_file()]
    if missing:
        ap.error(
            f"--seeds-dir {a.seeds_dir}: missing {', '.join(missing)}; train them with "
            f"structure_npe_seed_banks.py --seeds {a.seeds} or lower --seeds"
        )
    for k, ps in paths.items():
        members[k] = [load_estimator(p) for p in ps]
    with np.load(run / "sbc_bank.npz", allow_pickle=False) as f:
        z, x = f["z"], f["x"]
    ok = np.all(np.isfinite(x), axis=1)
    z, x = z[ok], x[ok]

    rows, means, sds = [], {r: [] for r in RULES}, {r: [] for r in RULES}

    def coverage(label: str, seed: int, zs: np.ndarray) -> None:
        for level in (0.5, 0.9):
            c = diag.central_coverage(z, zs, level)
            rows.extend(
                {"seed": seed, "rule": label, "level": level, "parameter": n, "coverage": c[j]}
                for j, n in enumerate(names)
            )

    for k, mem in members.items():
        sbc_draws = [e.sample_z_batched(x, 200, cfg.seed + 1 + m) for m, e in enumerate(mem)]
        obs_draws = [
            e.sample_z(problem.data.observed, a.draws, cfg.seed + m) for m, e in enumerate(mem)
        ]
        if k == 0:
            for m, d in enumerate(sbc_draws):
                coverage(f"member{m}", 0, d)
            mu = np.stack([d.mean(1) for d in sbc_draws])
            ratio = np.median(
                mu.std(0, ddof=1) / np.stack([d.std(1) for d in sbc_draws]).mean(0), 0
            )
            print("seed 0, median over datasets of SD(member means) / mean member SD:")
            print("  " + ", ".join(f"{n} {r:.2f}" for n, r in zip(names, ratio)))
        for r in RULES:
            coverage(r, k, pool(sbc_draws, r))
            th = problem.theta_from_z(pool(obs_draws, r))
            means[r].append(th.mean(0))
            sds[r].append(th.std(0))
        print(f"seed {k} done", flush=True)

    sbc = pd.DataFrame(rows)
    sbc.to_csv(out / "pooling_sbc.csv", index=False)
    with pd.option_context("display.width", 250):
        for level in (0.5, 0.9):
            s = sbc[sbc.level == level]
            print(f"SBC coverage at {level:.0%} ({int(ok.sum())} held-out datasets)")
            print(
                s.pivot_table(
                    index="parameter", columns=["rule", "seed"], values="coverage", sort=False
                )
                .round(3)
                .to_string()
            )
            print(s.groupby(["rule", "seed"]).coverage.agg(["min", "max"]).round(3).to_string())
        if a.seeds > 1:
            spread = []
            for r in RULES:
                tab = spread_table(np.array(means[r]), np.array(sds[r]), names)
                tab.insert(0, "rule", r)
                spread.append(tab)
                print(
                    f"{r}: seed spread over {a.seeds} seeds, max SD of means / SD "
                    f"{tab.sd_of_means_over_sd.max():.3f}, max range / SD {tab.range_over_sd.max():.3f}"
                )
            pd.concat(spread).to_csv(out / "pooling_seed_spread.csv", index=False)


if __name__ == "__main__":
    main()
