"""What the evidence says: φ prior vs posterior, the target trial's predicted effect (all
evidence and each trial left out), posterior predictive checks, assurance over N.

:class:`TreatmentEffectResult` holds every number (tables as lists of dicts) and knows how to
save itself (``treatment_effect.csv``, ``summary.json``, figures) and to load back
(:meth:`TreatmentEffectResult.load`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from tregsim.calibrate.treatment_effect.emulator import features
from tregsim.calibrate.treatment_effect.hierarchy import KINETICS
from tregsim.calibrate.treatment_effect.inference import HYPER, ess, weighted_quantile

SCHEMA_VERSION = 1


@dataclass
class TreatmentEffectResult:
    """Tables (lists of row dicts) of the synthesis; see docs/treatment_effect.md."""

    target: str
    posterior_summary: list
    predictions: list  # all evidence and leave-one-trial-out
    predictive_checks: list
    assurance: dict
    phi_hist: dict
    diagnostics: dict = field(default_factory=dict)
    trial_reach: list = field(default_factory=list)  # what each comparison could detect

    def save(self, out) -> Path:
        """Write ``treatment_effect.csv`` (long format), ``summary.json`` and the figures."""
        from tregsim.io import atomic_path, write_json
        from tregsim.plots.treatment_effect import plot_assurance, plot_phi_prior_posterior

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = ["section,item,statistic,value"]
        for sec, table, key in (
            ("posterior", self.posterior_summary, "parameter"),
            ("prediction", self.predictions, "evidence"),
            ("predictive_check", self.predictive_checks, "term"),
            ("trial_reach", self.trial_reach, "term"),
        ):
            for r in table:
                for k, v in r.items():
                    if k != key and (v is None or isinstance(v, (int, float))):
                        rows.append(f"{sec},{r[key]},{k},{_fmt(v)}")
        a = self.assurance
        for i, n in enumerate(a["n_per_arm"]):
            for k in ("assurance_posterior", "assurance_prior", "mde_ln_auc_plus_1", "phi_needed"):
                rows.append(f"assurance,n_per_arm={n},{k},{_fmt(a[k][i])}")
        with atomic_path(out / "treatment_effect.csv") as tmp:
            Path(tmp).write_text("\n".join(rows) + "\n", encoding="utf-8")
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        write_json(out / "summary.json", _jsonable(d))
        plot_phi_prior_posterior(self, out / "phi_prior_posterior.png")
        plot_assurance(self, out / "assurance.png")
        return out

    @classmethod
    def load(cls, folder) -> TreatmentEffectResult:
        d = json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
        d.pop("schema_version", None)
        d["phi_hist"] = {k: np.asarray(v) for k, v in d["phi_hist"].items()}
        return cls(**d)


def _fmt(v) -> str:
    """A number for the CSV; None (an infinity read back from JSON) is written as inf."""
    return "inf" if v is None else f"{v:.6g}"


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _wq(x, w):
    return weighted_quantile(x, w, [0.05, 0.5, 0.95])


def _wvar(x, w):
    m = np.sum(w * x)
    return float(np.sum(w * (x - m) ** 2))


def target_effects(emus, params, eta_new, months) -> dict:
    """Predicted effect in the target trial per draw: φ_new = exp(mu + tau·eta_new)."""
    phi = np.exp(params["mu"] + params["tau"] * eta_new)
    f = features(np.column_stack([phi, *(params[k] for k in KINETICS)]))
    out = {"phi_new": phi}
    for m in months:
        for kind in ("d", "pct"):
            out[f"{kind}{m:g}"] = emus[f"target.m{m:g}.{kind}"].predict(f)
    return out


def summarise(
    *,
    target_name,
    lik,
    bank,
    emus,
    months,
    sd_rho,
    n_per_arm,
    alpha,
    power,
    seed,
    terms_of,
    phi_prior,
) -> TreatmentEffectResult:
    """Item 5 of docs/treatment_effect.md from a weighted prior bank."""
    from tregsim import rng as trng
    from tregsim.trial.closed_form import minimal_detectable_effect, power_ancova

    P = bank.params
    n = len(P["mu"])
    w_all = bank.weights()
    g = trng.block_generator(seed, "treatment_effect.eta_new", 0)
    eta_new = g.standard_normal(n)
    eff = target_effects(emus, P, eta_new, months)
    # ---------------------------------------------------------------- posterior summary
    post = []
    prior_w = np.full(n, 1.0 / n)
    log_phi = {f"phi_{t}": P["mu"] + P["tau"] * P[f"eta_{t}"] for t in lik.trials}
    log_phi["phi_new"] = np.log(eff["phi_new"])
    for k in list(HYPER) + list(log_phi):
        x = P[k] if k in P else log_phi[k]
        scale = "log" if k in log_phi else "natural"
        xv = np.exp(x) if k in log_phi else x
        q0, q1 = _wq(xv, prior_w), _wq(xv, w_all)
        post.append(
            {
                "parameter": k,
                "scale_of_contraction": scale,
                "prior_q05": q0[0],
                "prior_median": q0[1],
                "prior_q95": q0[2],
                "posterior_q05": q1[0],
                "posterior_median": q1[1],
                "posterior_q95": q1[2],
                "contraction": 1 - _wvar(x, w_all) / _wvar(x, prior_w),
            }
        )
    # ---------------------------------------------------------------- predictions (+ LOO)
    trials_all = sorted(set(terms_of.values()))
    preds = []
    for excl in [None, *trials_all]:
        w = w_all if excl is None else bank.weights((excl,), terms_of)
        row = {"evidence": "all" if excl is None else f"without {excl}", "ess": ess(w)}
        row["phi_new_median"] = float(_wq(eff["phi_new"], w)[1])
        row["mu_median"] = float(_wq(P["mu"], w)[1])
        for m in months:
            q = _wq(eff[f"pct{m:g}"], w)
            row[f"effect_{m:g}m_pct_median"] = q[1]
            row[f"effect_{m:g}m_pct_q05"] = q[0]
            row[f"effect_{m:g}m_pct_q95"] = q[2]
            row[f"effect_{m:g}m_ln_auc_plus_1_mean"] = float(np.sum(w * eff[f"d{m:g}"]))
        m0 = months[0]
        row[f"p_effect_{m0:g}m_gt_10pct"] = float(np.sum(w * (eff[f"pct{m0:g}"] > 10)))
        row[f"p_effect_{m0:g}m_gt_20pct"] = float(np.sum(w * (eff[f"pct{m0:g}"] > 20)))
        preds.append(row)
    base = preds[0]
    for r in preds[1:]:
        r["shift_of_median_12m_pct_vs_all"] = (
            r[f"effect_{months[0]:g}m_pct_median"] - base[f"effect_{months[0]:g}m_pct_median"]
        )
    # ---------------------------------------------------------------- predictive checks
    checks = []
    rng = trng.block_generator(seed, "treatment_effect.ppc", 0)
    rep = lik.simulate(P, bank.pred, rng)
    for r in lik.rows:
        for label, w in (
            ("posterior", w_all),
            ("new_trial_without_it", bank.weights((terms_of[_unit_of(lik, r)],), terms_of)),
        ):
            x = rep[r.term]
            if r.statistic == "p_two_sided":
                hit = x <= r.value
                what = f"P(p_rep <= {r.value:g})"
            elif r.statistic == "correlation_r":
                hit = x <= r.value
                what = f"P(r_rep <= {r.value:g})"
            elif r.statistic == "count_no_decline":
                hit = x <= r.value
                what = f"P(count_rep <= {r.value:g})"
            else:
                hit = x.astype(bool)
                what = "P(statement holds as reported)"
            checks.append(
                {
                    "term": f"{r.term} ({label})",
                    "what": what,
                    "p": float(np.sum(w * hit)),
                }
            )
    # ---------------------------------------------------------------- assurance
    m0 = months[0]
    sd, rho = sd_rho[m0]
    # assurance on 4,000 resampled posterior draws and 4,000 prior draws (noncentral-t power
    # is costly per draw; Monte-Carlo SE of an assurance ≤ 0.008)
    from tregsim.calibrate.treatment_effect.inference import resample

    idx = resample(w_all, 4000, seed, "treatment_effect.assurance")
    d_post = eff[f"d{m0:g}"][idx]
    d_prior = eff[f"d{m0:g}"][:4000]
    ass_post, ass_prior, mde, phi_need = [], [], [], []
    kin_med = {k: float(_wq(P[k], w_all)[1]) for k in KINETICS}
    grid = np.linspace(-4, 10, 561)
    th = np.column_stack([np.exp(grid), *(np.full_like(grid, kin_med[k]) for k in KINETICS)])
    d_grid = emus[f"target.m{m0:g}.d"].predict(features(th))
    for N in n_per_arm:
        pw = power_ancova(N, N, d_post, sd, rho, n_covariates=2, alpha=alpha, n_nodes=64)
        ass_post.append(float(np.mean(pw)))
        ass_prior.append(float(np.mean(power_ancova(N, N, d_prior, sd, rho, 2, alpha, n_nodes=64))))
        e = minimal_detectable_effect(N, sd, power, alpha, rho=rho, n_covariates=2)
        mde.append(e)
        above = np.flatnonzero(d_grid >= e)
        phi_need.append(float(np.exp(grid[above[0]])) if above.size else float("inf"))
    assurance = {
        "n_per_arm": list(n_per_arm),
        "month": m0,
        "sd_ln_auc_plus_1": sd,
        "rho_covariates": rho,
        "assurance_posterior": ass_post,
        "assurance_prior": ass_prior,
        "mde_ln_auc_plus_1": mde,
        "phi_needed": phi_need,
        "phi_needed_at_kinetics": kin_med,
        "power": power,
        "alpha": alpha,
    }
    # ---------------------------------------------------------------- what each trial can tell
    kin_arr = np.column_stack([np.full_like(grid, kin_med[k]) for k in KINETICS])
    feats = features(np.column_stack([np.exp(grid), kin_arr]))
    reach = []
    for r in lik.rows:
        if r.statistic not in ("p_two_sided", "not_significant", "significantly_higher"):
            continue
        key = f"{r.trial}.m{r.month:g}"
        pred = {
            f"{key}.d": emus[f"{key}.d"].predict(feats),
            f"{key}.se": emus[f"{key}.se"].predict(feats),
        }
        m, v = lik._z_mean(r, pred)
        pw = stats.norm.sf((1.96 - m) / np.sqrt(v)) + stats.norm.cdf((-1.96 - m) / np.sqrt(v))
        j70 = np.argmin(np.abs(grid - np.log(70.0)))
        row = {"term": r.term, "z_mean_at_phi_70": float(m[j70]), "power_at_phi_70": float(pw[j70])}
        for target_power in (0.5, 0.8):
            hit = np.flatnonzero(pw >= target_power)
            row[f"phi_for_power_{int(100 * target_power)}"] = (
                float(np.exp(grid[hit[0]])) if hit.size else float("inf")
            )
        reach.append(row)
    # ---------------------------------------------------------------- φ histograms
    edges = np.linspace(-3, 5, 81)
    c = 0.5 * (edges[1:] + edges[:-1])

    def hist(x, w):
        h, _ = np.histogram(x, edges, weights=w)
        return h / np.diff(edges) / max(w.sum(), 1e-300)

    l10 = np.log10
    ph = {
        "centres_log10_phi": c,
        "prior": stats.norm.pdf(c, l10(phi_prior[0]), phi_prior[1] / np.log(10)),
        "new_trial_prior": hist(l10(eff["phi_new"]), prior_w),
        "new_trial": hist(l10(eff["phi_new"]), w_all),
    }
    for t in lik.trials:
        ph[f"trial:{t}"] = hist(log_phi[f"phi_{t}"] / np.log(10), w_all)
    res = TreatmentEffectResult(target_name, post, preds, checks, assurance, ph)
    res.trial_reach = reach
    return res


def _unit_of(lik, r):
    return (
        r.term
        if r.term in {u[0].term for u in lik.units}
        else next(u[0].term for u in lik.units if r in u)
    )
