"""Does the shipped sampler of the records likelihood reproduce the posterior? An independent check.

For regional-SBC sets (θ* and data as ``structure_likelihood_sbc.py`` makes them, same seed and
priors), the posterior is computed twice:

* by the shipped sampler (:func:`tregsim.calibrate.structure_run.sample_posterior`: MAP,
  Laplace, independence Metropolis–Hastings; 16 walkers × ``--steps``, ``--burn`` discarded);
* by importance sampling from a wide multivariate t around the MAP (df 4, the Laplace covariance
  × 1.5²; ``--is-draws`` draws, Pareto-smoothed weights, arviz ``psislw``), which shares nothing
  with the chain but the MAP and the Laplace covariance.

Per set it prints the mean of 2·(lp_MAP − lp) over each one's draws, and θ*'s log-posterior
rank (fraction of draws with a lower log posterior than θ*, as ``structure_likelihood_sbc.py``'s
``lp_rank``: uniform over sets when the posterior is calibrated) and per-parameter ranks under
each. Where the two agree the sampler is not what makes the SBC miss; where θ*'s rank piles
near 0 under both, the posterior itself is over-confident. Writes OUT/sampler_check.csv (one row per set; appended as each finishes).

    OMP_NUM_THREADS=1 python benchmarks/structure_sampler_check.py \\
        calibration/placebo_records_structure.toml --prior-from POSTERIOR.nc --sets 0-11 \\
        --seed 20261206 --out runs/sampler_check

Numbers in docs/calibration.md, "Round 8: is it the sampler?". Reads the records from
``../shared/data/`` (never copied); writes only θ*, ranks and summaries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import structure_likelihood_sbc as S

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.io import atomic_path
from tregsim.model import load_model

IS_SCALE, IS_DF = 1.5, 4.0


def check_set(k, *, config, rec, table, seed, priors, steps, burn, n_is):
    import arviz as az

    names = V.CANDIDATES[config.candidate][0]
    t0 = time.perf_counter()
    truth, post, run = S.set_posterior(
        k, config=config, rec=rec, table=table, seed=seed, n_steps=steps, burn=burn, priors=priors
    )
    if post is None:
        return None
    u_map, lp_map, kept, acc, _ = run
    u_t = post.u_of(truth)
    lp_t = post(u_t)
    lp_mc = np.array([post(u) for u in kept[::2]])
    prop = stats.multivariate_t(
        loc=u_map, shape=R.laplace_covariance(post, u_map) * IS_SCALE**2, df=IS_DF
    )
    xs = prop.rvs(n_is, random_state=np.random.default_rng([seed, k]))
    lp_is = np.array([post(u) for u in xs])
    ok = np.isfinite(lp_is)
    plw, khat = az.psislw(lp_is[ok] - prop.logpdf(xs[ok]))
    w = np.exp(plw - plw.max())
    w /= w.sum()
    row = {
        "set": k,
        "acceptance": acc,
        "gap_true": 2 * (lp_map - lp_t),
        "gap_mean_mcmc": float(np.mean(2 * (lp_map - lp_mc))),
        "gap_mean_is": float(np.sum(w * 2 * (lp_map - lp_is[ok]))),
        "lp_rank_mcmc": float(np.mean(lp_mc < lp_t)),
        "lp_rank_is": float(np.sum(w * (lp_is[ok] < lp_t))),
        "is_ess": float(1 / np.sum(w**2)),
        "is_khat": float(khat),
        "seconds": time.perf_counter() - t0,
    }
    for j, n in enumerate(names):
        row[f"rank_mcmc_{n}"] = float(np.mean(kept[:, j] < u_t[j]))
        row[f"rank_is_{n}"] = float(np.sum(w * (xs[ok][:, j] < u_t[j])))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--sets", default="0-11", help="range a-b (inclusive) or a comma list")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--burn", type=int, default=50)
    ap.add_argument("--is-draws", type=int, default=6000)
    S.add_regional_arguments(ap)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if "-" in a.sets:
        lo, hi = (int(x) for x in a.sets.split("-"))
        sets = list(range(lo, hi + 1))
    else:
        sets = [int(x) for x in a.sets.split(",")]
    config = load_config(a.config)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(rec.visit_day.max()))
    priors = S.regional_priors_from_arguments(ap, a, V.CANDIDATES[config.candidate][0])
    priors = config.priors if priors is None else priors
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in sets:
        r = check_set(
            k,
            config=config,
            rec=rec,
            table=table,
            seed=a.seed,
            priors=priors,
            steps=a.steps,
            burn=a.burn,
            n_is=a.is_draws,
        )
        if r is None:
            continue
        rows.append(r)
        with atomic_path(out / "sampler_check.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        print(
            f"set {k}: gap* {r['gap_true']:.2f} | MCMC: draws' gap {r['gap_mean_mcmc']:.2f}, "
            f"lp-rank {r['lp_rank_mcmc']:.3f} | IS: draws' gap {r['gap_mean_is']:.2f}, "
            f"lp-rank {r['lp_rank_is']:.3f}, ESS {r['is_ess']:.0f}, k̂ {r['is_khat']:.2f} "
            f"| {r['seconds']:.0f} s",
            flush=True,
        )
    d = pd.DataFrame(rows)
    good = d[d.is_ess >= 100]
    print(
        f"{len(d)} sets: θ*'s gap {d.gap_true.mean():.2f} vs the draws' {d.gap_mean_mcmc.mean():.2f} "
        f"(MCMC) / {d.gap_mean_is.mean():.2f} (IS); lp-rank mean {d.lp_rank_mcmc.mean():.3f} "
        f"(0.5 when calibrated), KS p {stats.kstest(d.lp_rank_mcmc, 'uniform').pvalue:.3f}; "
        f"max |MCMC − IS| lp-rank where IS ESS ≥ 100 ({len(good)} sets): "
        f"{(good.lp_rank_mcmc - good.lp_rank_is).abs().max():.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
