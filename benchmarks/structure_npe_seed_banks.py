"""Issue #14 item 6: seed spread of the records-structure NPE with independent banks and inits.

Seed k uses ``seed_k = seed + 100 k`` (seed: the config's) for BOTH its simulation bank
(``[budget] n_simulations`` θ draws and cohorts, as ``tregsim calibrate`` makes them) and its
flows (member m: torch seed seed_k + m, as ``[method] n_ensemble`` trains them; with
``--member-banks disjoint``, as ``[method] member_banks = "disjoint"``, member m trains on its own
part m of a bank of n_ensemble × n simulations), so seed 0 is
exactly what ``tregsim calibrate CONFIG`` trains; ``--run DIR/NAME`` takes seed 0's members
from that run's ``estimator.pt`` instead of training them again. For K = 1 … ``--n-ensemble``
the equal-weight mixture of the first K members of every seed is sampled at the records'
summaries (``--draws`` draws) and the table reports, per parameter, the SD (ddof = 1) of the
seeds' posterior means / pooled posterior SD (mean of the seeds' SDs) and (max − min) / pooled
SD, with the number of seeds (target of the issue: ≤ 0.25).

    OMP_NUM_THREADS=1 python benchmarks/structure_npe_seed_banks.py \\
        calibration/natural_history_structure_npe.toml --seeds 3 --n-ensemble 6 \\
        --run runs/npe6/natural_history_structure_npe --out runs/npe6_seeds

Members are trained one at a time, round-robin over the seeds (m outer, k inner), and each is
saved as OUT/member_seed<k>_m<m>.pt, so an interrupted run keeps every finished member and
resumes; ``--table-only`` just writes the table from the members present. ``--sbc`` adds the
SBC coverage (50 %, 90 %) of seed 0's first K members on the run's held-out ``sbc_bank.npz``
(200 draws per dataset, as ``tregsim calibrate``). Writes OUT/seed_spread_by_k.csv,
OUT/sbc_by_k.csv, OUT/bank_seed<k>.npz, OUT/timings.jsonl.
Numbers in docs/calibration.md, "Round 6: seed spread".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def spread_table(means: np.ndarray, sds: np.ndarray, names) -> pd.DataFrame:
    """means, sds (n_seeds, d) → per parameter the pooled SD, SD of means / SD, range / SD."""
    sd = sds.mean(0)
    return pd.DataFrame(
        {
            "parameter": list(names),
            "n_seeds": means.shape[0],
            "pooled_posterior_sd": sd,
            "sd_of_means_over_sd": means.std(0, ddof=1) / sd,
            "range_over_sd": (means.max(0) - means.min(0)) / sd,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-ensemble", type=int, default=6)
    ap.add_argument("--n-sim", type=int, default=None, help="default: [budget] n_simulations")
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--run", default=None, help="DIR/NAME of `tregsim calibrate CONFIG`: seed 0")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument(
        "--sbc",
        action="store_true",
        help="also the SBC coverage of seed 0's first K members on RUN/sbc_bank.npz (with --run)",
    )
    ap.add_argument(
        "--member-banks",
        choices=("shared", "disjoint"),
        default=None,
        help="default: the config's [method] member_banks; disjoint: member m of seed k trains "
        "on rows m*n ... (m+1)*n of seed k's bank of n_ensemble * n simulations",
    )
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch

    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.npe import (
        Estimator,
        bank_size,
        load_estimator,
        member_rows,
        save_estimator,
        train_npe,
    )
    from tregsim.calibrate.pipeline import simulate_bank
    from tregsim.calibrate.structure_simulator import build_problem

    torch.set_num_threads(1)
    cfg = load_config(a.config)
    problem = build_problem(cfg)
    n_sim = a.n_sim or cfg.n_simulations
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [cfg.seed + 100 * k for k in range(a.seeds)]
    banks_kind = a.member_banks or cfg.method.get("member_banks", "shared")
    layout = dict(cfg.method) | {"n_ensemble": a.n_ensemble, "member_banks": banks_kind}
    n_bank = bank_size(n_sim, layout)
    rows = member_rows(n_bank, layout)
    meth = dict(cfg.method) | {"n_ensemble": 1, "member_banks": "shared"}

    def member_path(k: int, m: int) -> Path:
        return out / f"member_seed{k}_m{m}.pt"

    run_members = []
    if a.run:
        run = Path(a.run)
        # the run must be this config's seed and budget, or it is not seed 0
        with np.load(run / "bank.npz", allow_pickle=False) as f:
            assert json.loads(str(f["identity"]))["seed"] == cfg.seed, "run of another seed"
            assert f["x"].shape[0] >= n_sim, "the run's bank is smaller than n_sim"
        est = load_estimator(run / "estimator.pt")
        run_members = [Estimator(nets=[net], meta=est.meta) for net in est.nets]

    if not a.table_only:
        banks = {}
        for k, s in enumerate(seeds):
            if k == 0 and run_members:
                continue
            t0 = time.perf_counter()
            banks[k] = simulate_bank(
                problem,
                n_bank,
                s,
                path=out / f"bank_seed{k}.npz",
                chunk_size=cfg.chunk_size,
                progress=False,
            )
            print(f"bank seed {s}: {time.perf_counter() - t0:.0f} s", flush=True)
        for m in range(a.n_ensemble):
            for k, s in enumerate(seeds):
                if (k == 0 and run_members) or member_path(k, m).is_file():
                    continue
                t0 = time.perf_counter()
                est, info = train_npe(
                    banks[k]["z"][rows[m]],
                    banks[k]["x"][rows[m]],
                    method=meth,
                    seed=s + m,  # = member m of an ensemble trained with seed s
                    names=problem.names,
                    feature_names=problem.data.feature_names,
                    progress=False,
                )
                save_estimator(est, member_path(k, m))
                rec = {
                    "seed": s,
                    "member": m,
                    "member_banks": banks_kind,
                    "training_s": time.perf_counter() - t0,
                    "epochs": info["epochs"],
                    "best_validation_log_prob": info["best_validation_log_prob"],
                }
                with open(out / "timings.jsonl", "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)

    members = {}
    for k in range(a.seeds):
        if k == 0 and run_members:
            members[0] = run_members
            continue
        members[k] = []
        for m in range(a.n_ensemble):
            if not member_path(k, m).is_file():
                break
            members[k].append(load_estimator(member_path(k, m)))
    tabs = []
    for K in range(1, a.n_ensemble + 1):
        ks = [k for k in members if len(members[k]) >= K]
        if len(ks) < 2:
            continue
        means, sds = [], []
        for k in ks:
            est = Estimator(nets=[e.nets[0] for e in members[k][:K]], meta=members[k][0].meta)
            th = problem.theta_from_z(est.sample_z(problem.data.observed, a.draws, cfg.seed))
            means.append(th.mean(0))
            sds.append(th.std(0))
        tab = spread_table(np.array(means), np.array(sds), problem.names)
        tab.insert(0, "n_flows", K)
        for i, k in enumerate(ks):
            tab[f"mean_seed{seeds[k]}"] = np.array(means)[i]
        tabs.append(tab)
        print(
            f"K = {K} flows, {len(ks)} seeds: max SD of means / SD "
            f"{tab.sd_of_means_over_sd.max():.3f}, max range / SD {tab.range_over_sd.max():.3f}"
        )
    if a.sbc and run_members:
        from tregsim.calibrate import diagnostics as diag

        with np.load(Path(a.run) / "sbc_bank.npz", allow_pickle=False) as f:
            z, x = f["z"], f["x"]
        ok = np.all(np.isfinite(x), axis=1)
        rows = []
        for K in range(1, len(run_members) + 1):
            est = Estimator(nets=[e.nets[0] for e in run_members[:K]], meta=run_members[0].meta)
            zs = est.sample_z_batched(x[ok], 200, cfg.seed + 1)
            for cov in (0.5, 0.9):
                c = diag.central_coverage(z[ok], zs, cov)
                rows += [
                    {"n_flows": K, "level": cov, "parameter": n, "coverage": c[j]}
                    for j, n in enumerate(problem.names)
                ]
        sbc = pd.DataFrame(rows)
        sbc.to_csv(out / "sbc_by_k.csv", index=False)
        with pd.option_context("display.width", 200):
            print(f"SBC coverage of seed 0's first K flows ({int(ok.sum())} datasets)")
            print(sbc.pivot(index=["level", "parameter"], columns="n_flows").round(3).to_string())
    if tabs:
        res = pd.concat(tabs, ignore_index=True)
        res.to_csv(out / "seed_spread_by_k.csv", index=False)
        wide = res.pivot(index="parameter", columns="n_flows", values="sd_of_means_over_sd")
        rng = res.pivot(index="parameter", columns="n_flows", values="range_over_sd")
        order = list(problem.names)
        with pd.option_context("display.width", 200):
            print("SD of seed means / pooled SD (columns: flows per seed)")
            print(wide.loc[order].round(3).to_string())
            print("range of seed means / pooled SD")
            print(rng.loc[order].round(3).to_string())


if __name__ == "__main__":
    main()
