"""Leave-one-study-out of the prognostic twin under the records structure (issue #17 redone on
issue #14's default structure of individual variability; docs/twin.md).

benchmarks/twin_loso.py measures the twin of ``tregsim.twin`` (lumped structure: one residual
σ, no hazard covariate). Since round 4 the virtual patients follow the records-fitted
structure ("lincovariate+power", ``calibration/natural_history_structure.json``): a hazard
covariate on the baseline-visit C-peptide and a heteroscedastic within-patient deviation.
Here the twin rests on that structure:

1. for each of the five placebo studies, refit the structure (MAP of
   :func:`tregsim.calibrate.variability.fit_structure`, candidate ``lincovariate+power``)
   on the OTHER four studies' records;
2. predict each held-out participant's E[ln(y_m + 1) | y_0, age] at 6, 12, 24 months by
   quadrature: the latent baseline level ℓ given the observed baseline MMTT y_0 (prior
   N(μ_c + μ_a·log(age/10), s_c²), observation log y_0 = ℓ + e, SD σ_meas·(e^ℓ/0.6)^−κ;
   censored below the LLOQ), the hazard's random effect η ~ N(0, 1) (Gauss–Hermite), the
   model curve (``CurveTable``) and the observation error at month m (Gauss–Hermite);
3. the same statistics as benchmarks/twin_loso.py (partial correlation beyond ln(y_0+1) and
   age, residual SD with / without, 1 − ρ², participant-bootstrap intervals), per study and
   pooled (study-adjusted).

The records are read from ``../shared/data`` and never copied; only aggregates of n ≥ 5
participants are printed or written.

    OMP_NUM_THREADS=1 python benchmarks/twin_loso_records.py [--out runs/twin_loso_records]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin_loso import MIN_N, MONTHS, RECORDS, STUDIES, evaluate

CANDIDATE = "lincovariate+power"
BASELINE_DAY = 60.0  # as the structure's curve table (calibration/natural_history_structure.json)


def predict(table, th: dict, y0: np.ndarray, age: np.ndarray, months, lloq: float) -> np.ndarray:
    """E[ln(y_m + 1) | y_0, age] under the structure ``th`` (P, len(months)); see the module
    docstring. ``table``: :class:`tregsim.calibrate.likelihood.CurveTable`."""
    from tregsim.calibrate.variability import LOG_CREF
    from tregsim.units import DAYS_PER_MONTH

    if th.get("sigma_bio", 0.0) > 0 or th.get("gamma_beta", 0.0) != 0:
        raise ValueError("this predictor covers sigma_bio = 0, gamma_beta = 0 structures")
    y0 = np.asarray(y0, float)
    la = np.log(np.asarray(age, float) / 10.0)
    cens = y0 < lloq
    centre = np.log(np.where(cens, lloq, y0))
    u = np.linspace(-2.5, 2.5, 201)
    lev = centre[:, None] + u[None, :]  # (P, L) latent baseline level, ln(nmol/L)
    prior = -0.5 * ((lev - (th["mu_c"] + th["mu_a"] * la[:, None])) / th["s_c"]) ** 2
    sd0 = th["sigma_meas"] * np.exp(-th["kappa"] * (lev - LOG_CREF))
    z0 = (centre[:, None] - lev) / sd0
    like = np.where(cens[:, None], special.log_ndtr(z0), -0.5 * z0**2 - np.log(sd0))
    logw = prior + like
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)  # (P, L)
    xe, we = np.polynomial.hermite_e.hermegauss(24)
    we = we / we.sum()  # η nodes and weights, N(0, 1)
    xo, wo = np.polynomial.hermite_e.hermegauss(16)
    wo = wo / wo.sum()  # observation-error nodes
    loglam = (
        np.log(th["lambda_ref"])
        - th["gamma_a"] * la[:, None, None]
        - th["beta_c"] * (lev[:, :, None] - LOG_CREF)
        - th["beta_lin"] * (np.exp(lev[:, :, None]) - np.exp(LOG_CREF))
        + th["omega_lambda"] * xe[None, None, :]
    )  # (P, L, E)
    q = np.full_like(loglam[..., None], th["q"])
    days = BASELINE_DAY + DAYS_PER_MONTH * np.asarray(months, float)
    logc = table(loglam[..., None], q, days) - table(loglam[..., None], q, np.array([BASELINE_DAY]))
    logmu = lev[:, :, None, None] + logc  # (P, L, E, M)
    sd = th["sigma_meas"] * np.exp(-th["kappa"] * (logmu - LOG_CREF))
    g = np.log1p(np.exp(logmu[..., None] + sd[..., None] * xo))  # (P, L, E, M, O)
    m = (g * wo).sum(axis=-1)
    m = (m * we[None, None, :, None]).sum(axis=2)  # (P, L, M)
    return np.einsum("pl,plm->pm", w, m)


def main(argv=None) -> int:
    import tregsim
    from tregsim.calibrate import variability as V
    from tregsim.calibrate.likelihood import CurveTable
    from tregsim.units import LLOQ_NMOL_L

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/twin_loso_records")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261205)
    args = ap.parse_args(argv)
    if not RECORDS.exists():
        print(f"records not found: {RECORDS}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    structure = json.loads(
        (
            Path(__file__).resolve().parents[1] / "calibration/natural_history_structure.json"
        ).read_text(encoding="utf-8")
    )
    fixed = {k: structure["curve_table"][k] for k in ("s0", "k_re")}
    t0 = time.time()
    table = CurveTable(
        tregsim.load_model("treg_t1d"),
        fixed=fixed,
        n_loglam=121,
        n_q=21,
        max_day=1250.0,
        day_step=5.0,
    )
    print(f"curve table: {time.time() - t0:.0f} s", flush=True)
    rec = V.load_records(RECORDS)
    df = pd.read_csv(RECORDS)
    rng = np.random.default_rng(args.seed)
    rows, folds, pooled = [], {}, {m: [] for m in MONTHS}
    for k, study in enumerate(STUDIES):
        t0 = time.time()
        train = V.StructureLikelihood(table, rec.subset(rec.study != study))
        fit = V.fit_structure(train, CANDIDATE, start=structure["theta"])
        th = dict(fit.theta)
        test = df[df["study"] == study]
        base = test[test["month"] == 0].drop_duplicates("participant_id")
        base = base.set_index("participant_id")
        ids = base.index.to_numpy()
        y0 = base["auc_mean_cpeptide_nmol_l"].to_numpy(float)
        age = base["age_years"].to_numpy(float)
        pred = predict(table, th, y0, age, MONTHS, LLOQ_NMOL_L)
        folds[study] = {"theta": th, "seconds": round(time.time() - t0, 1)}
        print(f"{study}: refit in {time.time() - t0:.0f} s", flush=True)
        for j, m in enumerate(MONTHS):
            v = test[test["month"] == m].drop_duplicates("participant_id")
            y = v.set_index("participant_id")["auc_mean_cpeptide_nmol_l"].reindex(ids)
            y = y.to_numpy(float)
            ok = np.isfinite(y) & np.isfinite(y0)
            if ok.sum() < MIN_N:
                continue
            yy, x0, a, tw = np.log1p(y[ok]), np.log1p(y0[ok]), age[ok], pred[ok, j]
            r = evaluate(yy, x0, a, tw, rng, args.boot)
            rows.append({"held_out": study, "month": m, "twin": "records structure", **r})
            pooled[m].append((yy, x0, a, tw, np.full(ok.sum(), k)))
    for m in MONTHS:
        yy, x0, a, tw, st = (np.concatenate(v) for v in zip(*pooled[m]))
        dummies = (st[:, None] == np.unique(st)[None, 1:]).astype(float)
        r = evaluate(yy, x0, a, tw, rng, args.boot, extra=dummies, strata=st)
        rows.append(
            {"held_out": "all five (study-adjusted)", "month": m, "twin": "records structure", **r}
        )
    res = pd.DataFrame(rows)
    res = res[res["n"] >= MIN_N]
    res.to_csv(out / "twin_loso_records.csv", index=False, float_format="%.4g")
    (out / "folds.json").write_text(json.dumps(folds, indent=1))
    cols = ["held_out", "month", "n", "rho_partial", "rho_partial_lo", "rho_partial_hi",
            "resid_sd_without", "resid_sd_with", "ratio_1_minus_rho2",
            "ratio_1_minus_rho2_lo", "ratio_1_minus_rho2_hi", "r2_twin_on_covariates"]  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(res[cols].round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
