"""Issue #14 item 6 follow-up: does a random effect on the deceleration q help the chosen
structure ("lincovariate+power") on the placebo records?

Candidate "lincovariate+power+qre": logit q_i = logit q + ω_q·ξ_i, ξ_i ~ N(0, 1), integrated
with ``n_xi`` Gauss–Hermite nodes (a third quadrature dimension). MAP of both structures on the
same grids; reports the in-sample log-likelihood gain (nats) per added parameter. Leave-one-
study-out only when the gain exceeds 2 nats per added parameter (``--loso``).

    OMP_NUM_THREADS=1 python benchmarks/structure_q_random_effect.py --out runs/qre [--loso]

Reads ../shared/data/placebo_cpeptide_individual.csv (not shipped). docs/calibration.md,
"Hierarchical likelihood of the chosen structure".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import tregsim
from tregsim.calibrate import variability as V
from tregsim.calibrate.likelihood import CurveTable

RECORDS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "placebo_cpeptide_individual.csv"
)
TABLE_FIXED = {"s0": 0.41, "k_re": 0.02}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-xi", type=int, default=5)
    ap.add_argument("--loso", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table = CurveTable(
        tregsim.load_model("treg_t1d"),
        fixed=TABLE_FIXED,
        n_loglam=121,
        n_q=21,
        max_day=1250.0,
        day_step=5.0,
    )
    rec = V.load_records(RECORDS)
    base = V.StructureLikelihood(table, rec)
    qre = V.StructureLikelihood(table, rec, n_xi=a.n_xi)
    t0 = time.time()
    f0 = V.fit_structure(base, "lincovariate+power")
    t1 = time.time()
    start = f0.theta | {"omega_q": 0.5}
    f1 = V.fit_structure(qre, "lincovariate+power+qre", start=start)
    t2 = time.time()
    # the structure's MAP is the ω_q → 0 limit: its log-likelihood under the qre likelihood
    # (ω_q = 1e-6) checks that the two quadratures agree there
    ll_limit = float(qre.per_patient(f0.theta | {"omega_q": 1e-6}).sum())
    res = {
        "n_xi": a.n_xi,
        "chosen": {"theta": f0.theta, "log_lik": f0.log_lik, "seconds": t1 - t0},
        "qre": {"theta": f1.theta, "log_lik": f1.log_lik, "seconds": t2 - t1},
        "chosen_log_lik_under_qre_quadrature": ll_limit,
        "gain_nats": f1.log_lik - f0.log_lik,
        "added_parameters": 1,
        "score_chosen": float(V.conditional_score(base, f0.theta).sum()),
        "score_qre": float(V.conditional_score(qre, f1.theta).sum()),
    }
    print(json.dumps(res, indent=1), flush=True)
    (out / "qre_in_sample.json").write_text(json.dumps(res, indent=1))
    if a.loso and res["gain_nats"] > 2.0:
        folds = {}
        for s in sorted(set(rec.study)):
            out_s = {}
            for name, like_cls_kw, th0 in (
                ("chosen", {}, f0.theta),
                ("qre", {"n_xi": a.n_xi}, f1.theta),
            ):
                train = V.StructureLikelihood(table, rec.subset(rec.study != s), **like_cls_kw)
                test = V.StructureLikelihood(table, rec.subset(rec.study == s), **like_cls_kw)
                cand = "lincovariate+power" if name == "chosen" else "lincovariate+power+qre"
                f = V.fit_structure(train, cand, start=th0)
                out_s[name] = float(V.conditional_score(test, f.theta).sum())
            folds[s] = out_s
            print(s, out_s, flush=True)
        (out / "qre_loso.json").write_text(json.dumps(folds, indent=1))


if __name__ == "__main__":
    main()
