"""Issue #14: does a study random effect on the hazard explain the < 13 y ANCOVA slopes?

Round 8 traced the one persistent predictive-check miss of the shipped structure — the < 13 y
ANCOVA slope at 12 and 24 months (observed 1.30 / 1.32) — to between-study differences: within
ABATE and TN02 the children's slopes are 0.8–1.2, pooled 1.3, because TN02's children keep
much more C-peptide. The shipped structure has no study effect. This benchmark adds one,

    ln λ_i = (shipped structure's ln λ_i) + b_s(i),   b_s ~ N(0, ω_study²)  per study s,

integrated by Gauss–Hermite quadrature over each study's b (the participants of a study share
it), and compares it with the shipped structure (ω_study = 0) on the same records, the same
likelihood (the config's: grids, adaptive ζ nodes, LLOQ) and the config's priors
(ω_study: half-normal, scale ``--omega-scale``):

1. MAP of both on all records: log-likelihood, log posterior, the study effects' conditional
   means at the MAP;
2. leave-one-study-out: fit without the study, score its participants' later visits given
   their baseline visits, jointly (a held-out study's b is unknown: integrated over
   N(0, ω_study²)), nats — the score of ``structure_variability.py --loso``, of which this is
   the study-effect case;
3. the predictive check of the records likelihood (``structure_run.predictive_check``: the
   records' own participants, ages and visit days; ``--copies`` copies at each MAP; with the
   study effect, each copy draws every study's b from its conditional posterior at the MAP),
   its rows for the ANCOVA statistics by age group.

Writes ``OUT/fits.json``, ``OUT/loso.csv``, ``OUT/predictive_<candidate>.csv`` and prints the
tables. Reads the records from ``../shared/data/`` (never copied); writes aggregates only.

    OMP_NUM_THREADS=1 python benchmarks/structure_study_effect.py \\
        calibration/placebo_records_structure.toml --out runs/study_effect
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.io import atomic_path
from tregsim.model import load_model

SHIPPED_SUMMARY = (
    Path(__file__).resolve().parents[1]
    / "calibration"
    / "posteriors"
    / "natural_history"
    / "summary.csv"
)


class StudyEffectPosterior:
    """log posterior of the config's structure (+ ln ω_study when ``study_effect``) in
    unconstrained coordinates u (d,): the structure's parameters as in
    :class:`structure_run.StructurePosterior`, then u = ln ω_study."""

    def __init__(
        self, config, table, rec: V.Records, study_effect: bool, *, omega_scale: float, n_nodes: int
    ):
        self.base = R.StructurePosterior(
            R.likelihood_for(config, table, rec), config.candidate, config.priors
        )
        self.study_effect = study_effect
        self.studies = sorted(set(rec.study))
        self.likes = [
            R.likelihood_for(config, table, rec.subset(rec.study == s)) for s in self.studies
        ]
        self.prior_omega = stats.halfnorm(scale=omega_scale)
        x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
        self.x, self.lw = x, np.log(w / w.sum())

    @property
    def dim(self) -> int:
        return self.base.dim + int(self.study_effect)

    def theta(self, u) -> tuple[dict, float]:
        u = np.asarray(u, float)
        om = float(np.exp(u[-1])) if self.study_effect else 0.0
        return self.base.theta(u[: self.base.dim]), om

    def study_node_log_lik(self, th: dict, omega: float, x=None) -> np.ndarray:
        """Σ over each study's participants of their log marginal likelihood with the study's
        b = ω·x: (S, J) for nodes x (J,) (default: the Gauss–Hermite nodes)."""
        x = self.x if x is None else np.asarray(x, float)
        with np.errstate(all="ignore"):
            return np.array(
                [
                    [
                        R.independent_log_lik(
                            like, th | {"lambda_ref": th["lambda_ref"] * np.exp(omega * xj)}
                        ).sum()
                        for xj in x
                    ]
                    for like in self.likes
                ]
            )

    def log_lik(self, th: dict, omega: float) -> float:
        if omega == 0.0:
            with np.errstate(all="ignore"):
                return float(R.independent_log_lik(self.base.like, th).sum())
        ll = self.study_node_log_lik(th, omega)
        return float(special.logsumexp(ll + self.lw[None, :], axis=1).sum())

    def __call__(self, u) -> float:
        lp = self.base.log_prior(np.asarray(u, float)[: self.base.dim])
        if self.study_effect:
            lp += self.prior_omega.logpdf(np.exp(u[-1])) + u[-1]
        if not np.isfinite(lp):
            return -np.inf
        v = lp + self.log_lik(*self.theta(u))
        return v if np.isfinite(v) else -np.inf


def fit(post: StudyEffectPosterior, start: dict, omega0: float, maxiter: int) -> dict:
    """MAP (L-BFGS-B, then a bounded Nelder–Mead polish as ``structure_run.map_estimate``)."""
    u0 = post.base.u_of(start)
    if post.study_effect:
        u0 = np.r_[u0, np.log(omega0)]

    def neg(u):
        v = -post(u)
        return v if np.isfinite(v) else 1e12

    t0 = time.perf_counter()
    r1 = optimize.minimize(neg, u0, method="L-BFGS-B", options={"maxiter": maxiter})
    r2 = optimize.minimize(
        neg, r1.x, method="Nelder-Mead", options={"maxiter": maxiter, "xatol": 1e-3, "fatol": 1e-3}
    )
    best = r2 if r2.fun <= r1.fun else r1
    th, om = post.theta(best.x)
    return {
        "theta": th,
        "omega_study": om,
        "log_post": -float(best.fun),
        "log_lik": post.log_lik(th, om),
        "seconds": time.perf_counter() - t0,
    }


def held_out_score(config, table, test: V.Records, th: dict, omega: float, n_nodes: int) -> float:
    """log p(later visits | baseline visits) of a held-out study's participants, jointly (nats):
    their shared b integrated over N(0, ω²); baseline visits do not depend on the hazard."""
    like = R.likelihood_for(config, table, test)
    base = like.per_patient(th, visits=test.visit_month == 0).sum()
    if omega == 0.0:
        return float(R.independent_log_lik(like, th).sum() - base)
    x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    ll = [
        R.independent_log_lik(
            like, th | {"lambda_ref": th["lambda_ref"] * np.exp(omega * xj)}
        ).sum()
        for xj in x
    ]
    return float(special.logsumexp(np.array(ll) + np.log(w / w.sum())) - base)


def study_effect_posterior_grid(post, th, omega, n=41):
    """Each study's conditional posterior of b at (θ, ω) on a grid: nodes (n,), probs (S, n)."""
    x = np.linspace(-4.0, 4.0, n)
    ll = post.study_node_log_lik(th, omega, x) + stats.norm.logpdf(x)[None, :]
    p = np.exp(ll - special.logsumexp(ll, axis=1, keepdims=True))
    return omega * x, p


def simulator(table, rec, config, post, th, omega):
    """``simulate(θ, rng)`` for ``predictive_check``: each study's b drawn from its conditional
    posterior at the MAP (``omega`` 0: the shipped structure's own simulation)."""
    if omega == 0.0:
        return None
    b, p = study_effect_posterior_grid(post, th, omega)
    vis_study = rec.study[rec.visit_patient]

    def simulate(th_k, g):
        y = np.empty(rec.y.size)
        for s, study in enumerate(post.studies):
            bs = b[g.choice(b.size, p=p[s])]
            sub = rec.subset(rec.study == study)
            y[vis_study == study] = V.simulate_records(
                table,
                th_k | {"lambda_ref": th_k["lambda_ref"] * np.exp(bs)},
                sub,
                g,
                baseline_day=config.baseline_day,
                lloq_nmol_l=config.lloq_nmol_l,
            )[0]
        return y

    return simulate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a structure_likelihood config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--omega-scale", type=float, default=0.5, help="half-normal scale of ω_study")
    ap.add_argument("--nodes", type=int, default=7, help="Gauss–Hermite nodes over each b")
    ap.add_argument("--maxiter", type=int, default=400)
    ap.add_argument("--copies", type=int, default=400, help="predictive copies at each MAP")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--no-loso", action="store_true")
    a = ap.parse_args(argv)
    config = load_config(a.config)
    if config.kind != "structure_likelihood":
        ap.error(
            f"{a.config}: [method] kind is {config.kind!r}; give a 'structure_likelihood' config"
        )
    model = load_model(config.model)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, model, float(rec.visit_day.max()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"omega_scale": a.omega_scale, "n_nodes": a.nodes}
    # start at the shipped posterior's MAP (a starting point only: both are refitted here)
    shipped = pd.read_csv(SHIPPED_SUMMARY, index_col="parameter")["map"].to_dict()
    start = V.START | shipped
    cands = {"shipped": False, "study_effect": True}
    fits = {}
    for name, se in cands.items():
        post = StudyEffectPosterior(config, table, rec, se, **kw)
        fits[name] = fit(post, fits.get("shipped", {}).get("theta", start), 0.2, a.maxiter)
        if se:
            b, p = study_effect_posterior_grid(post, fits[name]["theta"], fits[name]["omega_study"])
            fits[name]["study_effect_mean"] = dict(zip(post.studies, (p @ b).tolist()))
        print(name, json.dumps(fits[name]), file=sys.stderr, flush=True)
        with atomic_path(out / "fits.json") as tmp:
            Path(tmp).write_text(json.dumps(fits, indent=1))
    if not a.no_loso:
        rows = []
        for s in sorted(set(rec.study)):
            train, test = rec.subset(rec.study != s), rec.subset(rec.study == s)
            row = {
                "held_out_study": s,
                "n_participants": len(test.ids),
                "n_later_visits": int(np.sum(test.visit_month > 0)),
            }
            for name, se in cands.items():
                post = StudyEffectPosterior(config, table, train, se, **kw)
                f = fit(post, fits[name]["theta"], max(fits[name]["omega_study"], 0.05), a.maxiter)
                row[f"score_{name}_nats"] = held_out_score(
                    config, table, test, f["theta"], f["omega_study"], a.nodes
                )
                if se:
                    row["omega_study_fold"] = f["omega_study"]
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
            loso = pd.DataFrame(rows)
            loso["difference_nats"] = loso.score_study_effect_nats - loso.score_shipped_nats
            with atomic_path(out / "loso.csv") as tmp:
                loso.to_csv(tmp, index=False)
        print(loso.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print(
            f"total: shipped {loso.score_shipped_nats.sum():.2f}, study effect "
            f"{loso.score_study_effect_nats.sum():.2f} nats "
            f"(difference {loso.difference_nats.sum():+.2f})"
        )
    keep = {"ancova_slope", "ancova_resid_sd", "corr_baseline"}
    for name, se in cands.items():
        post = StudyEffectPosterior(config, table, rec, se, **kw)
        th, om = fits[name]["theta"], fits[name]["omega_study"]
        ppc = R.predictive_check(
            table,
            rec,
            [th] * a.copies,
            seed=a.seed,
            baseline_day=config.baseline_day,
            lloq_nmol_l=config.lloq_nmol_l,
            simulate=simulator(table, rec, config, post, th, om),
        )
        with atomic_path(out / f"predictive_{name}.csv") as tmp:
            ppc.to_csv(tmp, index=False)
        sel = ppc[ppc.statistic.isin(keep)]
        print(f"\n{name}: {int(ppc.inside_95.sum())}/{len(ppc)} statistics inside")
        cols = [
            "statistic",
            "group",
            "month",
            "n_participants",
            "observed",
            "predicted_median",
            "predicted_lo",
            "predicted_hi",
            "predictive_p",
        ]
        print(sel[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
