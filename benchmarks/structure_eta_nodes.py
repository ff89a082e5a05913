"""Fixed against adaptive η nodes of the records likelihood, on SBC datasets, against a dense
reference, with the time of one evaluation side by side.

The records likelihood integrates each participant's hazard random effect η on the config's
``n_eta`` nodes: a fixed grid on [−4, 4] (``[method] eta_nodes = "fixed"``, spacing 0.25 at 33
nodes) or, from round 26, nodes that follow each participant and each ζ node
(``eta_nodes = "adaptive"``, :meth:`variability.StructureLikelihood.eta_nodes`). Round 25
found the SBC's hard datasets (the independence move accepting < 0.2) to be those where a
participant's visits pin η more tightly than the fixed grid's spacing, so that the fixed
grid's error swings by up to several nats as q moves (docs/calibration.md).

For each chosen SBC set (θ* and data exactly as ``structure_likelihood_sbc.py`` makes them)
this prints and writes, at θ* and at θ* with logit q moved by −2 … +2, the total
log-likelihood's error against the reference: the fixed rule on ``--reference-nodes`` η
nodes over [−10, 10] (default 2,049, spacing 0.01) with the config's ζ nodes. The swing of
the error over the five points is what changes a posterior (a constant error does not). The
time of one evaluation is the median over the five points.

    OMP_NUM_THREADS=1 python benchmarks/structure_eta_nodes.py \\
        calibration/placebo_records_structure.toml \\
        --prior-from calibration/posteriors/natural_history.nc --widen 3 \\
        --subset-from benchmarks/results/sbc_likelihood_t/sbc_sets_20261205.csv --out DIR

Round 27 adds a third rule, ``refined``: the adaptive nodes with the half-rule check (a
participant whose log-likelihood moves by more than ``ETA_REFINE_NATS`` between the rule and
every other node is integrated again on 2n − 1 nodes); ``adaptive`` is round 26's rule.

``--accepting N``: instead the first N sets whose acceptance is ≥ 0.2 (the comparison group).
Writes ``OUT/eta_nodes.csv`` (one row per set and point, appended as each set finishes) and
``OUT/eta_nodes.png`` (each set's error swing, fixed against adaptive, log axes).

``--reweight POSTERIOR.nc`` runs no SBC set: it weights every draw of a posterior sampled on
the fixed grid by exp(adaptive − fixed log-likelihood) on the config's records and prints how
far each parameter's mean moves (in posterior SDs), its SD ratio and the weights' ESS: whether
that posterior leans on the fixed grid (written to ``OUT/reweight.csv``).
Reads the records from ``../shared/data/`` (never copied); writes only totals.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

import structure_likelihood_sbc as SBC

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.io import atomic_path
from tregsim.model import load_model

Q_SHIFTS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # logit q moved from θ*


def reference_likelihood(config, table, rec, n_nodes: int, half_width: float = 10.0):
    """The config's likelihood with η on ``n_nodes`` fixed nodes over ±``half_width``."""
    like = R.likelihood_for(config, table, rec, n_eta=n_nodes, adaptive_eta=False)
    like.eta = np.linspace(-half_width, half_width, n_nodes)
    lw = stats.norm.logpdf(like.eta)
    like._lwe = lw - special.logsumexp(lw)
    return like


def set_rows(k, *, config, rec, table, seed, priors, ref_nodes, n_eta) -> list[dict]:
    """Set ``k``'s rows: per q shift, the fixed and adaptive rules' totals minus the
    reference's (nats), each rule's time (s) and the adaptive rule's passes."""
    _, th, y, _ = SBC.prior_dataset(
        k, config=config, rec=rec, table=table, seed=seed, priors=priors
    )
    if not np.all(np.isfinite(y)):
        return []
    r = dataclasses.replace(rec, y=y)
    rules = {
        "fixed": R.likelihood_for(config, table, r, n_eta=n_eta, adaptive_eta=False),
        "adaptive": R.likelihood_for(
            config, table, r, n_eta=n_eta, adaptive_eta=True, refine_eta=False
        ),
        "refined": R.likelihood_for(config, table, r, n_eta=n_eta, adaptive_eta=True),
    }
    ref = reference_likelihood(config, table, r, ref_nodes)
    rows = []
    for dq in Q_SHIFTS:
        t = th | {"q": float(special.expit(special.logit(th["q"]) + dq))}
        with np.errstate(all="ignore"):
            total_ref = float(R.independent_log_lik(ref, t).sum())
            row = {"set": k, "logit_q_shift": dq, "q": t["q"], "omega_lambda": th["omega_lambda"]}
            t0 = time.perf_counter()
            total = float(R.independent_log_lik(rules["fixed"], t).sum())
            row["fixed_s"] = time.perf_counter() - t0
            row["fixed_error_nats"] = total - total_ref
            # independent_log_lik's own path for adaptive nodes, keeping the passes it ran
            for name in ("adaptive", "refined"):
                t0 = time.perf_counter()
                zeta, lwz = rules[name].zeta_nodes(t)
                _, _, ll, passes = rules[name]._adaptive_eta(t, zeta, lwz)
                row[f"{name}_s"] = time.perf_counter() - t0
                row[f"{name}_error_nats"] = float(ll.sum()) - total_ref
                row[f"{name}_passes"] = passes
        rows.append(row)
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per set: each rule's error swing over the q shifts and largest |error| (nats), and the
    median time of one evaluation (ms); ``refined`` (round 27) is the adaptive rule with the
    half-rule refinement (:data:`tregsim.calibrate.variability.ETA_REFINE_NATS`), ``adaptive``
    round 26's rule without it."""
    g = df.groupby("set")
    out = pd.DataFrame({"omega_lambda": g["omega_lambda"].first()})
    for name in (n for n in ("fixed", "adaptive", "refined") if f"{n}_error_nats" in df):
        e = g[f"{name}_error_nats"]
        out[f"{name}_swing_nats"] = e.max() - e.min()
        out[f"{name}_max_abs_error_nats"] = g[f"{name}_error_nats"].apply(lambda s: s.abs().max())
        out[f"{name}_ms"] = 1e3 * g[f"{name}_s"].median()
    return out.reset_index()


def swing_plot(tab: pd.DataFrame, path: Path, n_eta: int) -> None:
    """Each set's error swing on the fixed grid (x) against the adaptive nodes (y), log axes,
    with the quadrature check's threshold on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = 1e-3
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    x = tab["fixed_swing_nats"].clip(lower=lo)
    y = tab["adaptive_swing_nats"].clip(lower=lo)
    ax.scatter(x, y, s=14, color="C0")
    top = max(float(x.max()), float(y.max()), 1.0) * 1.5
    ax.plot([lo, top], [lo, top], color="0.6", lw=0.8, label="equal")
    thr = R.QUADRATURE_SPREAD_NATS
    ax.axhline(thr, color="C3", lw=0.8, ls="--", label=f"check threshold {thr} nats")
    ax.axvline(thr, color="C3", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlim=(lo, top), ylim=(lo, top))
    ax.set_xlabel(f"fixed grid ({n_eta} nodes on [−4, 4]): error swing (nats)")
    ax.set_ylabel(f"adaptive nodes ({n_eta}): error swing (nats)")
    ax.set_title(f"{len(tab)} SBC sets, logit q moved −2 … +2 from θ*", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def reweight(config, table, rec, posterior_path) -> tuple[pd.DataFrame, np.ndarray]:
    """Per free parameter (sampling coordinates): the shift of the mean (posterior SDs) and
    the SD ratio when the posterior's draws are weighted from the fixed to the adaptive η
    rule, and the log-likelihood differences (adaptive − fixed) per draw (nats)."""
    import arviz as az

    names, fixed = V.CANDIDATES[config.candidate]
    post = az.from_netcdf(posterior_path).posterior
    flat = {n: post[n].to_numpy().ravel() for n in names}
    rules = [R.likelihood_for(config, table, rec, adaptive_eta=a) for a in (False, True)]
    d = np.empty(flat[names[0]].size)
    for i in range(d.size):
        th = {n: float(flat[n][i]) for n in names} | fixed | dict(config.fixed)
        f, a = (float(R.independent_log_lik(lk, th).sum()) for lk in rules)
        d[i] = a - f
    w = np.exp(d - d.max())
    w /= w.sum()
    rows = []
    for n in names:
        x = V._to_u(n, flat[n])
        m1 = float(np.sum(w * x))
        s1 = float(np.sqrt(np.sum(w * (x - m1) ** 2)))
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant draw: NaN
            rows.append(
                {
                    "parameter": n,
                    "mean_shift_sd": (m1 - x.mean()) / x.std(),
                    "sd_ratio": s1 / x.std(),
                }
            )
    return pd.DataFrame(rows), d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a structure_likelihood config")
    ap.add_argument("--seed", type=int, default=20261205, help="the SBC run's seed")
    ap.add_argument(
        "--reweight", metavar="POSTERIOR", help="no SBC sets: reweight this posterior's draws"
    )
    ap.add_argument(
        "--subset-from",
        metavar="CSV",
        help="an sbc_sets.csv of the same seed and priors: its sets below --below-acceptance",
    )
    ap.add_argument("--below-acceptance", type=float, default=0.2)
    ap.add_argument(
        "--accepting", type=int, default=0, help="the first N sets at or above it instead"
    )
    ap.add_argument("--reference-nodes", type=int, default=2049)
    ap.add_argument("--n-eta", type=int, default=None, help="η nodes (default: the config's)")
    SBC.add_regional_arguments(ap)
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args(argv)
    try:
        config = load_config(a.config)
    except ValueError as e:
        ap.error(str(e))
    rec = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(rec.visit_day.max()))
    out = Path(a.out)
    if a.reweight:
        if not Path(a.reweight).is_file():
            ap.error(f"--reweight: no such file: {a.reweight}")
        tab, d = reweight(config, table, rec, a.reweight)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "reweight.csv") as tmp:
            tab.to_csv(tmp, index=False)
        w = np.exp(d - d.max())
        print(
            f"{d.size} draws; log-likelihood adaptive - fixed {d.min():+.3f} to {d.max():+.3f} "
            f"nats (SD {d.std():.3f}); weights' ESS {w.sum() ** 2 / np.sum(w * w):.0f}"
        )
        print(tab.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
        return 0
    if a.subset_from is None or not Path(a.subset_from).is_file():
        ap.error(f"--subset-from: no such file: {a.subset_from}")
    old = pd.read_csv(a.subset_from)
    low = old["acceptance"] < a.below_acceptance
    sets = (old.loc[~low, "set"].head(a.accepting) if a.accepting else old.loc[low, "set"]).astype(
        int
    )
    priors = SBC.regional_priors_from_arguments(ap, a, V.CANDIDATES[config.candidate][0])
    n_eta = config.method["n_eta"] if a.n_eta is None else a.n_eta
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eta_nodes.csv"
    rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
    have = {int(r["set"]) for r in rows}
    for k in (k for k in sets if k not in have):
        rows += set_rows(
            k,
            config=config,
            rec=rec,
            table=table,
            seed=a.seed,
            priors=priors,
            ref_nodes=a.reference_nodes,
            n_eta=n_eta,
        )
        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        s = summary(pd.DataFrame(rows)).set_index("set").loc[k]
        print(
            f"set {k}: omega_lambda {s.omega_lambda:.2f}; error swing fixed "
            f"{s.fixed_swing_nats:.3f}, adaptive {s.adaptive_swing_nats:.3f} nats; "
            f"{s.fixed_ms:.0f} / {s.adaptive_ms:.0f} ms",
            file=sys.stderr,
            flush=True,
        )
    tab = summary(pd.DataFrame(rows))
    swing_plot(tab, out / "eta_nodes.png", n_eta)
    print(tab.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    sw = tab[["fixed_swing_nats", "adaptive_swing_nats"]]
    print(
        f"\n{len(tab)} sets, {n_eta} eta nodes: error swing median fixed "
        f"{sw.fixed_swing_nats.median():.3f} / adaptive {sw.adaptive_swing_nats.median():.3f} "
        f"nats; > 0.5 nats: {int((sw.fixed_swing_nats > 0.5).sum())} / "
        f"{int((sw.adaptive_swing_nats > 0.5).sum())}; max {sw.fixed_swing_nats.max():.2f} / "
        f"{sw.adaptive_swing_nats.max():.2f}; one evaluation, median: fixed "
        f"{tab.fixed_ms.median():.1f} ms, adaptive {tab.adaptive_ms.median():.1f} ms (ratio "
        f"{(tab.adaptive_ms / tab.fixed_ms).median():.2f})"
    )
    if "refined_swing_nats" in tab:
        print(
            f"refined adaptive (half-rule check, {V.ETA_REFINE_NATS} nats per participant): "
            f"error swing median {tab.refined_swing_nats.median():.3f} nats; > 0.5 nats: "
            f"{int((tab.refined_swing_nats > 0.5).sum())}; max {tab.refined_swing_nats.max():.2f}"
            f"; one evaluation, median {tab.refined_ms.median():.1f} ms (ratio to fixed "
            f"{(tab.refined_ms / tab.fixed_ms).median():.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
