"""Leave-one-study-out of the twin's whole predictive distribution: records-structure twin vs
lumped twin vs a linear ANCOVA predictive, by a proper score (docs/twin.md).

``tregsim twin`` has used :class:`tregsim.twin_structure.StructureTwin` (the records
structure: hazard covariate on the baseline level, heteroscedastic Student-t deviation)
since round 22 when the posterior carries the structure; before, the lumped
:class:`tregsim.twin.Twin` (course proportional to the baseline, one log-normal σ).
``twin_loso.py`` scores the lumped twin's predictive *mean* as an ANCOVA covariate; here
both twins' predictive *distributions* of each held-out participant's observed ln(AUC + 1)
(LLOQ/2 below the LLOQ, as recorded) at 6, 12 and 24 months are scored, from the baseline
MMTT and age only. For each of the five placebo studies:

1. fit both on the other four studies' records: the records structure by its config
   (``calibration/placebo_records_structure.toml``: MAP, Laplace start, emcee with the
   independence move, the config's steps), the lumped twin's records likelihood as
   ``twin_loso.py`` (emcee, ``--steps``);
2. predict the held-out participants (K draws each: ``--draws``);
3. score against the observed value with the quantile (pinball) score averaged over the
   levels 0.05, 0.10, …, 0.95 and doubled, a discretised CRPS (proper; lower is better;
   units of ln(AUC + 1)), and the central 50 % / 90 % interval coverage.

A third predictive is what a statistician would pick instead: per month, the linear ANCOVA
ln(y_m + 1) ~ ln(y_0 + 1) + age fitted by least squares on the training studies, its
predictive distribution Student-t with n − 3 degrees of freedom and the prediction's own
standard error.

Differences are paired by participant (the sum of a participant's scores over the months),
with a study-stratified participant-bootstrap 95 % interval. The records are read from
``../shared/data`` and never copied; only aggregates of n ≥ 5 participants are printed or
written (``OUT/scores.csv``, ``OUT/folds.json``).

    OMP_NUM_THREADS=1 python benchmarks/twin_structure_loso.py --out runs/twin_structure_loso
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin_loso import (
    BASELINE_DAY,
    MIN_N,
    MONTHS,
    RECORDS,
    STUDIES,
    calibrate_fold,
    heldout_records,
    records_frame,
)

CONFIG = Path(__file__).resolve().parents[1] / "calibration" / "placebo_records_structure.toml"
LEVELS = np.round(np.arange(0.05, 0.951, 0.05), 2)
PREDICTIVES = ("structure twin", "lumped twin", "linear ANCOVA")


def quantile_score(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2 × mean pinball loss over :data:`LEVELS`: q (..., L) predictive quantiles, y (...)
    observed. A discretised CRPS (Gneiting & Raftery 2007, eq. 22 and §6.2)."""
    d = y[..., None] - q
    return 2.0 * np.mean(np.maximum(LEVELS * d, (LEVELS - 1.0) * d), axis=-1)


def structure_fold(config, model, rec_train, seed: int) -> tuple[dict, dict]:
    """Posterior draws (name → (n,)) of the records structure on ``rec_train`` and fold info."""
    from tregsim.calibrate import structure_run as R
    from tregsim.calibrate import variability as V

    meth = config.method
    t0 = time.time()
    table = R._curve_table(config, model, float(rec_train.visit_day.max()))
    like = R.likelihood_for(config, table, rec_train)
    post = R.StructurePosterior(like, config.candidate, config.priors)
    burn, thin = int(meth["burn"]), int(meth["thin"])
    u_map, _, chain, acc, _ = R.sample_posterior(
        post,
        n_walkers=int(meth["n_walkers"]),
        n_steps=int(meth["n_steps"]),
        seed=seed,
        move=meth.get("move", "stretch"),
        burn=burn,
        thin=thin,
        min_ess=float(meth["min_ess"]),
        max_steps=int(meth["max_steps"]) or None,
    )
    kept = chain[burn + thin - 1 :: thin]  # (S, W, d)
    draws = {n: V._from_u(n, kept[:, :, k]).reshape(-1) for k, n in enumerate(post.free)}
    draws |= {n: np.full(kept.shape[0] * kept.shape[1], v) for n, v in config.fixed.items()}
    th_map = post.theta(u_map)
    info = {
        "acceptance": round(acc, 3),
        "seconds": round(time.time() - t0, 1),
        "steps_run": int(chain.shape[0]),
        "map": {n: round(float(th_map[n]), 5) for n in post.free},
    }
    return draws, info


def linear_predictive(train: pd.DataFrame, test_x0, test_age, month: float) -> np.ndarray:
    """Quantiles (P, L) of the linear ANCOVA predictive of ln(y_m + 1) (see module doc)."""
    base = train[train["month"] == 0].drop_duplicates("participant_id").set_index("participant_id")
    v = train[train["month"] == month].drop_duplicates("participant_id").set_index("participant_id")
    both = base.index.intersection(v.index)
    x0 = np.log1p(base.loc[both, "auc_mean_cpeptide_nmol_l"].to_numpy(float))
    age = base.loc[both, "age_years"].to_numpy(float)
    y = np.log1p(v.loc[both, "auc_mean_cpeptide_nmol_l"].to_numpy(float))
    X = np.column_stack([np.ones_like(x0), x0, age])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    s2 = np.sum((y - X @ beta) ** 2) / dof
    Xt = np.column_stack([np.ones_like(test_x0), test_x0, test_age])
    se = np.sqrt(s2 * (1.0 + np.einsum("ij,jk,ik->i", Xt, np.linalg.inv(X.T @ X), Xt)))
    return (Xt @ beta)[:, None] + se[:, None] * stats.t.ppf(LEVELS, dof)[None, :]


def bootstrap_ci(x: np.ndarray, strata: np.ndarray, rng, n_boot: int) -> tuple[float, float]:
    """Study-stratified participant-bootstrap 95 % interval of the mean of x (P,)."""
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    means = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        means[b] = x[idx].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/twin_structure_loso")
    ap.add_argument("--draws", type=int, default=256, help="K posterior draws per twin")
    ap.add_argument("--steps", type=int, default=400, help="lumped twin: emcee steps per fold")
    ap.add_argument("--boot", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--studies", default=",".join(STUDIES), help="folds to run (comma list)")
    args = ap.parse_args(argv)
    if not RECORDS.is_file():
        print(f"skipped: {RECORDS} not found (the placebo records live in ../shared/data)")
        return 0
    from tregsim import load_model
    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.likelihood import CurveTable
    from tregsim.calibrate.structure_run import load_structure_records
    from tregsim.twin import Twin
    from tregsim.twin_structure import StructureTwin

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = records_frame()
    config = load_config(CONFIG)
    rec_all = load_structure_records(config)
    rec_study = np.char.upper(rec_all.study.astype(str))
    model = load_model("treg_t1d")
    t0 = time.time()
    lumped_table = CurveTable(
        model, n_loglam=321, n_q=41, day_step=5.0, max_day=BASELINE_DAY + 1130
    )
    print(f"lumped curve table: {time.time() - t0:.1f} s", flush=True)
    rows, folds = [], {}
    for k, study in enumerate(args.studies.split(",")):
        train = df[df["study"] != study]
        test = df[df["study"] == study]
        t0 = time.time()
        s_draws, s_info = structure_fold(
            config, model, rec_all.subset(rec_study != study), args.seed + k
        )
        print(
            f"{study}: structure fit {s_info['seconds']:.0f} s, acceptance {s_info['acceptance']}",
            flush=True,
        )
        t1 = time.time()
        l_draws, _, l_post = calibrate_fold(
            model, lumped_table, train, args.seed + k, 16, args.steps
        )
        print(
            f"{study}: lumped fit {time.time() - t1:.0f} s, acceptance {l_post.acceptance:.2f}",
            flush=True,
        )
        hrec, base0, outcome = heldout_records(test)
        t1 = time.time()
        st = StructureTwin(model, s_draws, n_draws=args.draws, seed=args.seed + k)
        _, s_mean, _, s_q, s_ess, _ = st.predict_arrays(
            hrec, months=np.array(MONTHS), levels=LEVELS
        )
        lt = Twin(model, l_draws, n_draws=args.draws, seed=args.seed + k)
        lp = lt.predict(hrec, months=MONTHS, levels=LEVELS)
        folds[study] = {
            "structure": s_info,
            "lumped": {"acceptance": round(float(l_post.acceptance), 3)},
            "n_heldout": int(hrec.n),
            "predict_s": round(time.time() - t1, 1),
            "median_ess": {
                "structure": float(np.median(s_ess)),
                "lumped": float(np.median(lp.ess)),
            },
        }
        x0 = np.log1p(base0)
        for j, m in enumerate(MONTHS):
            y = outcome[m]
            ok = np.isfinite(y) & np.isfinite(base0)
            if ok.sum() < MIN_N:
                continue
            yy = np.log1p(y[ok])
            qs = {
                "structure twin": s_q[ok, j],
                "lumped twin": lp.quantiles[ok, j],
                "linear ANCOVA": linear_predictive(train, x0[ok], hrec.age_years[ok], m),
            }
            means = {
                "structure twin": s_mean[ok, j],
                "lumped twin": lp.mean[ok, j],
                "linear ANCOVA": qs["linear ANCOVA"][:, LEVELS.size // 2],
            }
            for name, q in qs.items():
                for i, pid in enumerate(hrec.ids[ok]):
                    rows.append(
                        {
                            "study": study,
                            "participant": pid,
                            "month": m,
                            "predictive": name,
                            "score": float(quantile_score(q[i], yy[i])),
                            "in50": bool(q[i, 4] <= yy[i] <= q[i, 14]),
                            "in90": bool(q[i, 0] <= yy[i] <= q[i, -1]),
                            "sq_err": float((means[name][i] - yy[i]) ** 2),
                        }
                    )
        print(
            f"{study}: {hrec.n} held out, predictions {folds[study]['predict_s']:.0f} s, "
            f"structure fold {time.time() - t0:.0f} s in all",
            flush=True,
        )
        (out / "folds.json").write_text(json.dumps(folds, indent=1))
    per = pd.DataFrame(rows)  # per participant and month: kept in memory only (individual level)
    rng = np.random.default_rng(args.seed)
    table = []
    for (study, month), g in list(per.groupby(["study", "month"])) + [
        (("all five", mo), g) for mo, g in per.groupby("month")
    ]:
        for name, h in g.groupby("predictive", sort=False):
            if len(h) < MIN_N:
                continue
            table.append(
                {
                    "held_out": study,
                    "month": month,
                    "predictive": name,
                    "n": len(h),
                    "crps_ln_auc_plus_1": h["score"].mean(),
                    "coverage_50": h["in50"].mean(),
                    "coverage_90": h["in90"].mean(),
                    "rmse_ln_auc_plus_1": np.sqrt(h["sq_err"].mean()),
                }
            )
    scores = pd.DataFrame(table)
    # paired by participant: the sum of a participant's scores over the months
    wide = per.pivot_table(
        index=["study", "participant"], columns="predictive", values="score", aggfunc="sum"
    )
    strata = wide.index.get_level_values("study").to_numpy()
    pairs = []
    for a, b in (
        ("structure twin", "lumped twin"),
        ("structure twin", "linear ANCOVA"),
        ("lumped twin", "linear ANCOVA"),
    ):
        d = (wide[a] - wide[b]).to_numpy()
        lo, hi = bootstrap_ci(d, strata, rng, args.boot)
        pairs.append(
            {
                "held_out": "all five",
                "month": "6+12+24",
                "predictive": f"{a} − {b}",
                "n": d.size,
                "crps_ln_auc_plus_1": d.mean(),
                "diff_lo": lo,
                "diff_hi": hi,
            }
        )
    scores = pd.concat([scores, pd.DataFrame(pairs)], ignore_index=True)
    scores.to_csv(out / "scores.csv", index=False, float_format="%.5g")
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.max_rows", 200
    ):
        print(scores.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
