"""Leave-one-study-out check of the mechanistic twin as a prognostic covariate (docs/twin.md).

For each of the five placebo studies in ``../shared/data/placebo_cpeptide_individual.csv``
(AbATE, START, T1DAL, TN02, TN05):

1. calibrate the records likelihood (:mod:`tregsim.calibrate.likelihood`: MAP multi-start, then
   a short emcee chain) on the OTHER four studies' records;
2. predict each held-out participant's ln(AUC + 1) at 6, 12 and 24 months from the baseline
   MMTT and age only (:class:`tregsim.twin.Twin`, K draws of that posterior × individual η);
3. compare with the observed value: partial correlation of prediction and outcome beyond
   ln(AUC_0 + 1) and age, residual SD of the TrialNet ANCOVA (y ~ ln(AUC_0+1) + age) without
   and with the prediction, the implied sample-size ratio 1 − ρ²_partial and the ratio of
   residual variances, each with a participant-bootstrap 95 % interval.

Also reported: R² of the prediction on (ln(AUC_0+1), age) — how far the twin is from a linear
function of what the ANCOVA already holds — and, for the studies with a month-3 MMTT (TN02,
TN05), a hypothetical run-in design whose twin also conditions on that second MMTT.

The records are read from ``../shared/data`` and never copied; only aggregates of n ≥ 5
participants are printed or written.

    python benchmarks/twin_loso.py [--out runs/twin_loso] [--draws 512] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

RECORDS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / ("placebo_cpeptide_individual.csv")
)
STUDIES = ("ABATE", "START", "T1DAL", "TN02", "TN05")
MONTHS = (6.0, 12.0, 24.0)
BASELINE_DAY = (
    60.0  # days from diagnosis to data day 0, as calibration/placebo_records_likelihood.toml
)
MIN_N = 5


def records_frame() -> pd.DataFrame:
    """The placebo records from ``../shared/data`` (read, never copied), study names upper-case."""
    df = pd.read_csv(RECORDS)
    df["study"] = df["study"].str.upper()
    return df


def _patient_data(df: pd.DataFrame):
    from tregsim.calibrate.data import PatientData

    ids, inv = np.unique(df["participant_id"].astype(str).to_numpy(), return_inverse=True)
    age = df.groupby(inv)["age_years"].first().to_numpy(float)
    return PatientData(
        ids=ids,
        age_years=age,
        visit_patient=inv,
        visit_day=np.maximum(df["study_day"].to_numpy(float), 0.0),
        cpeptide_nmol_l=df["auc_mean_cpeptide_nmol_l"].to_numpy(float),
    )


def calibrate_fold(model, table, train: pd.DataFrame, seed: int, walkers: int, steps: int):
    """Records-likelihood posterior draws (name → (n,)) and the MAP on the training studies."""
    from tregsim.calibrate.likelihood import IndividualCalibration

    cal = IndividualCalibration(model, _patient_data(train), table=table, baseline_day=BASELINE_DAY)
    post = cal.sample(
        seed, n_walkers=walkers, n_steps=steps, burn=steps // 2, thin=2, n_starts=4, progress=False
    )
    draws = {k: v.reshape(-1) for k, v in post.draws().items()}
    return draws, dict(zip(post.names, post.map_theta)), post


def heldout_records(test: pd.DataFrame, with_month3: bool = False):
    """TwinRecords of the held-out participants with a baseline MMTT, and their outcomes."""
    from tregsim.twin import TwinRecords
    from tregsim.units import DAYS_PER_MONTH, LLOQ_NMOL_L

    base = test[test["month"] == 0].drop_duplicates("participant_id").set_index("participant_id")
    ids = base.index.to_numpy(str)
    y0 = base["auc_mean_cpeptide_nmol_l"].to_numpy(float)
    age = base["age_years"].to_numpy(float)
    screen = None
    if with_month3:
        m3 = test[test["month"] == 3].drop_duplicates("participant_id").set_index("participant_id")
        m3 = m3.reindex(ids)
        # the month-3 MMTT taken as a second pre-randomization measurement, baseline moved to it
        screen = y0
        y0 = m3["auc_mean_cpeptide_nmol_l"].to_numpy(float)
        keep = np.isfinite(y0)
        ids, y0, age, screen = ids[keep], y0[keep], age[keep], screen[keep]
    rec = TwinRecords.from_baseline(
        y0,
        age,
        BASELINE_DAY + (3 * DAYS_PER_MONTH if with_month3 else 0.0),
        ids=ids,
        screening_nmol_l=screen,
        screening_day=None if screen is None else np.full(len(ids), BASELINE_DAY),
        lloq_nmol_l=LLOQ_NMOL_L,
    )
    outcome = {}
    for m in MONTHS:
        v = test[test["month"] == m].drop_duplicates("participant_id").set_index("participant_id")
        outcome[m] = v["auc_mean_cpeptide_nmol_l"].reindex(ids).to_numpy(float)
    base0 = base["auc_mean_cpeptide_nmol_l"].reindex(ids).to_numpy(float)
    return rec, base0, outcome


def _stats(y, x0, age, twin, extra=None):
    """ρ partial, residual SD without / with the twin, 1 − ρ², variance ratio, R²(twin | x0, age)."""
    from tregsim.trial.prognostic import partial_correlation, residual_sd

    cov = np.column_stack([x0, age] + ([] if extra is None else [extra]))
    rho = partial_correlation(y, twin, cov)
    sd0 = residual_sd(y, cov)
    sd1 = residual_sd(y, np.column_stack([cov, twin]))
    Z = np.column_stack([np.ones(len(y)), cov])
    fit = Z @ np.linalg.lstsq(Z, twin, rcond=None)[0]
    r2 = 1 - np.sum((twin - fit) ** 2) / np.sum((twin - twin.mean()) ** 2)
    return {
        "rho_partial": rho,
        "resid_sd_without": sd0,
        "resid_sd_with": sd1,
        "ratio_1_minus_rho2": 1 - rho**2,
        "ratio_resid_var": (sd1 / sd0) ** 2,
        "r2_twin_on_covariates": r2,
        "corr_twin_outcome": float(np.corrcoef(twin, y)[0, 1]),
    }


def evaluate(y, x0, age, twin, rng, n_boot: int, extra=None, strata=None):
    """Statistics and participant-bootstrap 95 % intervals (resampling within ``strata``)."""
    est = _stats(y, x0, age, twin, extra)
    n = len(y)
    boots = {k: [] for k in ("rho_partial", "ratio_1_minus_rho2", "ratio_resid_var")}
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    )
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        if np.ptp(twin[idx]) == 0:
            continue
        s = _stats(y[idx], x0[idx], age[idx], twin[idx], None if extra is None else extra[idx])
        for k in boots:
            boots[k].append(s[k])
    for k, v in boots.items():
        lo, hi = np.nanpercentile(v, [2.5, 97.5])
        est[f"{k}_lo"], est[f"{k}_hi"] = float(lo), float(hi)
    est["n"] = n
    return est


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/twin_loso")
    ap.add_argument("--draws", type=int, default=512, help="K twin draws per participant")
    ap.add_argument("--walkers", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300, help="emcee steps per fold (half burn-in)")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument(
        "--posterior",
        default=None,
        help="also score a twin built on this posterior file, not refitted per fold "
        "(e.g. the shipped NPE posterior, which saw every study's summaries), with "
        "the NCT06708780 experiment's baseline prior",
    )
    ap.add_argument("--table", default="321,41,5", help="curve table n_loglam,n_q,day_step")
    args = ap.parse_args(argv)
    if not RECORDS.is_file():
        print(f"skipped: {RECORDS} not found (the placebo records live in ../shared/data)")
        return 0
    from tregsim import load_model
    from tregsim.calibrate.likelihood import CurveTable
    from tregsim.twin import Twin

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = records_frame()
    model = load_model("treg_t1d")
    nl, nq, ds = (float(x) for x in args.table.split(","))
    t0 = time.time()
    table = CurveTable(
        model, n_loglam=int(nl), n_q=int(nq), day_step=ds, max_day=BASELINE_DAY + 1130
    )
    print(
        f"curve table {int(nl)}×{int(nq)}, {ds:g}-day steps: {time.time() - t0:.1f} s", flush=True
    )
    rows, fold_info, pooled = [], {}, {m: [] for m in MONTHS}
    pooled3 = {m: [] for m in MONTHS}
    coverage = {m: [] for m in MONTHS}
    rng = np.random.default_rng(args.seed)
    for k, study in enumerate(STUDIES):
        t0 = time.time()
        train = df[df["study"] != study]
        test = df[df["study"] == study]
        draws, map_theta, post = calibrate_fold(
            model, table, train, args.seed + k, args.walkers, args.steps
        )
        t_cal = time.time() - t0
        twin = Twin(model, draws, n_draws=args.draws, seed=args.seed + k)
        rec, base0, outcome = heldout_records(test)
        pred = twin.predict(rec, months=MONTHS)
        fold_info[study] = {
            "map": {n: float(v) for n, v in map_theta.items()},
            "posterior_mean": {n: float(np.mean(v)) for n, v in draws.items()},
            "acceptance": post.acceptance,
            "calibration_s": round(t_cal, 1),
            "n_train_participants": int(train["participant_id"].nunique()),
            "min_ess": float(pred.ess.min()),
            "n_ess_low": int(pred.ess_low.sum()),
        }
        print(
            f"{study}: calibrated on {fold_info[study]['n_train_participants']} participants "
            f"in {t_cal:.0f} s (acceptance {post.acceptance:.2f}); twin min ESS "
            f"{pred.ess.min():.0f}",
            flush=True,
        )
        extra_pred = None
        if args.posterior:
            from tregsim.experiment import load_experiment
            from tregsim.posterior import load_posterior
            from tregsim.twin import BaselinePrior

            exp = load_experiment("nct06708780")
            tw2 = Twin(
                model,
                load_posterior(args.posterior),
                n_draws=args.draws,
                seed=args.seed + k,
                baseline_prior=BaselinePrior.from_experiment(exp),
            )
            extra_pred = tw2.predict(rec, months=MONTHS)
        run_in = None
        if (test["month"] == 3).sum() >= MIN_N:
            rec3, base3, out3 = heldout_records(test, with_month3=True)
            pred3 = twin.predict(rec3, months=[m - 3 for m in MONTHS])
            run_in = (rec3, base3, out3, pred3)
        for j, m in enumerate(MONTHS):
            y = outcome[m]
            ok = np.isfinite(y) & np.isfinite(base0)
            if ok.sum() < MIN_N:
                continue
            yy, x0, age, tw = (
                np.log1p(y[ok]),
                np.log1p(base0[ok]),
                rec.age_years[ok],
                pred.mean[ok, j],
            )
            r = evaluate(yy, x0, age, tw, rng, args.boot)
            # calibration of the twin's predictive intervals (observed ln(AUC+1) inside them)
            q = pred.quantiles[ok, j]
            in90 = (yy >= q[:, 0]) & (yy <= q[:, -1])
            in50 = (yy >= q[:, 1]) & (yy <= q[:, -2])
            r.update(coverage_90=in90.mean(), coverage_50=in50.mean())
            coverage[m].append((in90, in50))
            rows.append({"held_out": study, "month": m, "twin": "baseline+age", **r})
            pooled[m].append((yy, x0, age, tw, np.full(ok.sum(), k)))
            if extra_pred is not None:
                r = evaluate(yy, x0, age, extra_pred.mean[ok, j], rng, args.boot)
                rows.append(
                    {"held_out": study, "month": m, "twin": "posterior file (not refitted)", **r}
                )
            if run_in is not None:
                rec3, base3, out3, pred3 = run_in
                y3 = out3[m]
                ok3 = np.isfinite(y3)
                if ok3.sum() >= MIN_N:
                    x3 = np.log1p(rec3.baseline_nmol_l[ok3])
                    pooled3[m].append(
                        (
                            np.log1p(y3[ok3]),
                            np.log1p(base3[ok3]),
                            rec3.age_years[ok3],
                            pred3.mean[ok3, j],
                            x3,
                            np.full(ok3.sum(), k),
                        )
                    )
    for m in MONTHS:
        if not pooled[m]:
            continue
        yy, x0, age, tw, st = (np.concatenate(a) for a in zip(*pooled[m]))
        dummies = (st[:, None] == np.unique(st)[None, 1:]).astype(float)
        r = evaluate(yy, x0, age, tw, rng, args.boot, extra=dummies, strata=st)
        in90, in50 = (np.concatenate(a) for a in zip(*coverage[m]))
        r.update(coverage_90=in90.mean(), coverage_50=in50.mean())
        rows.append(
            {"held_out": "all five (study-adjusted)", "month": m, "twin": "baseline+age", **r}
        )
        # is what the twin adds more than a smooth (quadratic) function of x0 and age?
        quad = np.column_stack([x0**2, age**2, x0 * age, dummies])
        r = evaluate(yy, x0, age, tw, rng, args.boot, extra=quad, strata=st)
        rows.append(
            {
                "held_out": "all five (study-adjusted)",
                "month": m,
                "twin": "baseline+age, beyond a quadratic in x0, age",
                **r,
            }
        )
        if pooled3[m]:
            yy, x0, age, tw, x3, st = (np.concatenate(a) for a in zip(*pooled3[m]))
            dummies = (st[:, None] == np.unique(st)[None, 1:]).astype(float)
            # run-in design: twin on MMTT at months 0 and 3, outcome at m; beyond (x0, age)
            r = evaluate(yy, x0, age, tw, rng, args.boot, extra=dummies, strata=st)
            rows.append(
                {
                    "held_out": "TN02+TN05 (run-in)",
                    "month": m,
                    "twin": "months 0+3 MMTT, beyond x0+age",
                    **r,
                }
            )
            ex = np.column_stack([x3, dummies]) if dummies.size else x3[:, None]
            r = evaluate(yy, x0, age, tw, rng, args.boot, extra=ex, strata=st)
            rows.append(
                {
                    "held_out": "TN02+TN05 (run-in)",
                    "month": m,
                    "twin": "months 0+3 MMTT, beyond x0+x3+age",
                    **r,
                }
            )
    res = pd.DataFrame(rows)
    res = res[res["n"] >= MIN_N]
    cols = [
        "held_out",
        "month",
        "twin",
        "n",
        "rho_partial",
        "rho_partial_lo",
        "rho_partial_hi",
        "resid_sd_without",
        "resid_sd_with",
        "ratio_1_minus_rho2",
        "ratio_1_minus_rho2_lo",
        "ratio_1_minus_rho2_hi",
        "ratio_resid_var",
        "ratio_resid_var_lo",
        "ratio_resid_var_hi",
        "r2_twin_on_covariates",
        "corr_twin_outcome",
        "coverage_90",
        "coverage_50",
    ]
    res = res[cols]
    res.to_csv(out / "twin_loso.csv", index=False, float_format="%.4g")
    (out / "folds.json").write_text(json.dumps(fold_info, indent=1))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(res.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
