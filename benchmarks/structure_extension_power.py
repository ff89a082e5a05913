"""Issue #14: could the leave-one-study-out rule adopt an extension on records like ours?

Round 17 set the rule for adopting a structure extension: the participant-bootstrap 95 %
interval of its held-out gain over the shipped structure must lie above 0. The best candidate,
``age_beta_c``, gained +1.73 nats (−2.47 to +5.24) on the 115 participants. This asks how
often the rule adopts it *if it were true*, and how many children it would take:

1. simulate synthetic records from ``--truth`` (the extension at its MAP on the real records,
   or ``shipped`` for the null) with the records' own participants, ages, studies and visit
   days, the children (< 13 y) repeated ``--children-factor`` times with fresh draws (in their
   own studies, so the five folds stay);
2. fit the shipped structure and the extension on them, run the leave-one-study-out loop of
   ``structure_extension_loso.py`` and the paired interval;
3. repeat ``--replicates`` times per factor and report how often the lower end is above 0
   (the rule's power under the extension, its false adoption rate under ``shipped``).

Synthetic values stay in memory; ``OUT/replicates.csv`` holds one row of aggregates per
replicate (resumable: finished rows are skipped), ``OUT/summary.csv`` the rates per factor.

    OMP_NUM_THREADS=1 python benchmarks/structure_extension_power.py \\
        calibration/placebo_records_structure.toml --extension age_beta_c \\
        --fits runs/age_beta_c/fits.json --children-factor 1,2,4 --replicates 6 --out runs/power_age_beta_c
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.io import atomic_path
from tregsim.model import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import structure_extension_loso as L

CHILD_AGE_YEARS = 13.0


def with_more_children(rec: V.Records, factor: int) -> V.Records:
    """``rec`` with each participant younger than 13 y repeated ``factor`` times in all (the
    copies keep the study, age and visit days; their ``y`` is a placeholder)."""
    if factor < 1:
        raise ValueError(f"--children-factor {factor}: give integers ≥ 1")
    kids = np.flatnonzero(rec.age_years < CHILD_AGE_YEARS)
    parts = [rec]
    for k in range(1, factor):
        keep = np.zeros(len(rec.ids), bool)
        keep[kids] = True
        sub = rec.subset(keep)
        parts.append(dataclasses.replace(sub, ids=np.array([f"{i}~{k}" for i in sub.ids])))
    out, offset = parts[0], len(parts[0].ids)
    for p in parts[1:]:
        out = V.Records(
            np.r_[out.ids, p.ids],
            np.r_[out.study, p.study],
            np.r_[out.age_years, p.age_years],
            np.r_[out.visit_patient, p.visit_patient + offset],
            np.r_[out.visit_day, p.visit_day],
            np.r_[out.visit_month, p.visit_month],
            np.r_[out.y, p.y],
        )
        offset += len(p.ids)
    return out


def synthetic(cls, config, table, rec: V.Records, fits: dict, truth: str, g) -> V.Records:
    """Records ``rec`` with ``y`` drawn from ``truth`` ("shipped" or the extension's name) at
    its MAP in ``fits``."""
    active = truth != "shipped"
    post = cls(config, table, rec, active)
    th, v = fits[truth]["theta"], fits[truth][cls.param]
    sim = post.simulator(th, v) if active else None
    y = sim(th, g) if sim is not None else post._simulate(table, th, rec, g)
    return dataclasses.replace(rec, y=np.asarray(y, float))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a structure_likelihood config")
    ap.add_argument("--extension", choices=sorted(L.EXTENSIONS), required=True)
    ap.add_argument("--fits", required=True, help="fits.json of structure_extension_loso.py")
    ap.add_argument("--truth", default="", help="'shipped' (the null) or the extension (default)")
    ap.add_argument("--children-factor", default="1,2,4")
    ap.add_argument("--replicates", type=int, default=6)
    ap.add_argument(
        "--first-replicate",
        type=int,
        default=0,
        help="replicates first … first+replicates−1 (their seeds do not depend on the split)",
    )
    ap.add_argument("--maxiter", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        config = load_config(a.config)
        factors = [int(x) for x in a.children_factor.split(",")]
    except ValueError as e:
        ap.error(str(e))
    if min(factors) < 1 or a.replicates < 1 or a.first_replicate < 0:
        ap.error("--children-factor takes integers ≥ 1, --replicates ≥ 1, --first-replicate ≥ 0")
    cls = L.EXTENSIONS[a.extension]
    truth = a.truth or a.extension
    if truth not in ("shipped", a.extension):
        ap.error(f"--truth {truth!r}: give 'shipped' or {a.extension!r}")
    if not Path(a.fits).is_file():
        ap.error(f"--fits {a.fits}: no such file; run structure_extension_loso.py --out DIR first")
    fits = json.loads(Path(a.fits).read_text())
    if a.extension not in fits:
        ap.error(f"{a.fits}: holds no fit of {a.extension!r}; run structure_extension_loso.py")
    model = load_model(config.model)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, model, float(rec.visit_day.max()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "replicates.csv"
    done = pd.read_csv(path).to_dict("records") if path.exists() else []
    have = {(int(d["children_factor"]), int(d["replicate"])) for d in done}
    opts = {"omega_scale": 0.5, "n_nodes": 7, "s0_nodes": 13}
    v0 = fits[a.extension][cls.param]
    for m in factors:
        aug = with_more_children(rec, m)
        for r in range(a.first_replicate, a.first_replicate + a.replicates):
            if (m, r) in have:
                continue
            t0 = time.perf_counter()
            g = np.random.default_rng([a.seed, m, r, int(truth == "shipped")])
            syn = synthetic(cls, config, table, aug, fits, truth, g)
            fs = {}
            for name, active in {"shipped": False, a.extension: True}.items():
                post = cls(config, table, syn, active, **opts)
                fs[name] = L.fit(post, fits[name]["theta"], v0, a.maxiter)
            _, paired = L.loso_folds(a.extension, config, table, syn, fs, v0, a.maxiter, opts)
            p = L.paired_interval(np.concatenate(paired))
            done.append(
                {
                    "truth": truth,
                    "children_factor": m,
                    "replicate": r,
                    "n_participants": len(syn.ids),
                    "n_children": int(np.sum(syn.age_years < CHILD_AGE_YEARS)),
                    f"{cls.param}_map": fs[a.extension][cls.param],
                    "gain_nats": p["total"],
                    "se_nats": p["se"],
                    "lo_nats": p["lo"],
                    "hi_nats": p["hi"],
                    "adopted": p["lo"] > 0,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(done[-1], file=sys.stderr, flush=True)
            with atomic_path(path) as tmp:
                pd.DataFrame(done).to_csv(tmp, index=False)
    df = pd.DataFrame(done)
    df = df[df.children_factor.isin(factors)]
    summ = (
        df.groupby("children_factor")
        .agg(
            replicates=("replicate", "size"),
            n_children=("n_children", "first"),
            gain_mean_nats=("gain_nats", "mean"),
            se_mean_nats=("se_nats", "mean"),
            adoption_rate=("adopted", "mean"),
        )
        .reset_index()
    )
    summ.insert(0, "truth", truth)
    with atomic_path(out / "summary.csv") as tmp:
        summ.to_csv(tmp, index=False)
    print(summ.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
