"""Simulation-based calibration of the records-likelihood path (``kind = "structure_likelihood"``).

For each of ``--sets`` synthetic datasets: θ* from the config's priors; observed C-peptide of the
records' own participants (ages) at their own visit days from θ* (:func:`variability.
simulate_records`, values below the LLOQ coded LLOQ/2 as in the records); then the posterior of
θ on that dataset by the shipped path's own sampler (:func:`structure_run.sample_posterior`:
MAP, Laplace covariance, emcee with the independence move, the config's walkers, ``--steps``
steps). A first version used the Laplace proposal for importance sampling instead: on
prior-drawn datasets its effective sample size was 3–53 of 300 draws, too few for ranks.
The rank of θ* among the kept draws gives, per parameter, whether θ* lies in the central 50 %
and 90 % posterior intervals; over sets these coverages must match 0.50 and 0.90.

Writes ``OUT/sbc_sets.csv`` (one row per set, appended as each finishes: a crash or a stop loses
nothing; ``--sets`` larger than the rows present continues) and ``OUT/sbc_coverage.csv``
(coverage per parameter with its Monte-Carlo SE), and prints the table. ``--pool CSV ...``
runs nothing and gives the coverage over several runs' sets (the same priors, other seeds):

    python benchmarks/structure_likelihood_sbc.py --pool benchmarks/results/sbc_likelihood/*.csv \\
        --out runs/sbc_pooled

    OMP_NUM_THREADS=1 python benchmarks/structure_likelihood_sbc.py \\
        calibration/placebo_records_structure.toml --sets 200 --out runs/sbc_likelihood

Regional SBC (round 6): ``--prior-from POSTERIOR.nc --widen K`` draws θ* from priors around a
posterior (its mean and SD in the sampling coordinates, the SD times K; lognormal,
logit-normal (round 7; ``--q-prior beta`` for rounds 6–7's moment-matched beta) or normal,
written to ``OUT/sbc_priors.csv``) and uses the same priors in each posterior, so it
checks simulator, likelihood and sampler where the records put the parameters:

    OMP_NUM_THREADS=1 python benchmarks/structure_likelihood_sbc.py \
        calibration/placebo_records_structure.toml --sets 400 --steps 300 --burn 50 \
        --prior-from calibration/posteriors/natural_history.nc --widen 3 --out runs/sbc_regional

Why not the config's priors: they are weak (σ_meas halfnormal(0.3), s_c halfnormal(1)), and
where they put little noise against a wide between-patient spread a participant's integrand
over (ζ, η) is a thin ridge that the fixed quadrature grid misses by up to hundreds of nats
(``structure_quadrature_accuracy.py``: 7 of 12 prior-drawn datasets off by > 1 nat at θ*, the
records within 0.01). Round 5's partial run on those priors (10 sets, acceptance ≤ 6 % on 8)
and round 6's (8 sets, ranks of 0.00 or 1.00 for several parameters in 4) were runs of that
grid error, not only of the sampler.

Round 7: the regional SBC's over-confidence (90 % coverage 0.81–0.92 in round 6) came from the
fixed ζ grid (``structure_score_test.py``); the config's default is now adaptive ζ nodes
(``[method] zeta_nodes``), which this script uses through ``structure_run.likelihood_for``.

Round 8: each set also records ``lp_rank``, the rank of the log posterior at θ* among the
draws' (a joint test quantity: uniform when calibrated, piled near 0 when the posterior is
over-confident or shifted in any direction), summarised after the coverage table.

Cost (one core of the loaded 2-core machine, round 6 sampler and compiled likelihood): MAP
15–20 s, 16 × 300 steps ≈ 50–160 s per set.

Round 15: the kernel's vectorised exp and a closed-form prior density make a set ≈ 32 s
(two sets at once on the 2-core machine; it was ≈ 90–110 s).

Round 13: ``--paired OLD.csv NEW.csv`` compares two samplers on the same datasets (two
``sbc_sets.csv`` of the same seed and priors), set by set (``OUT/sbc_paired.csv``).

Reads the records from ``../shared/data/`` (never copied); writes only θ*, ranks and coverage.
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

from tregsim import rng as trng
from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.io import atomic_path
from tregsim.model import load_model
from tregsim.model.priors import Prior

STREAM = "benchmark.sbc.structure_likelihood"
LP_THIN = 4  # every 4th kept draw for the log-posterior rank (1,000 of 16 × 250)


def regional_priors(path, names, widen: float, q_prior: str = "logitnormal") -> dict:
    """Priors around a posterior (``path``, .nc): per parameter, its posterior mean and SD in
    the sampler's coordinates (log, logit or none: ``variability.PARAMS``), the SD times
    ``widen``, as a lognormal, logit-normal or normal prior. SBC under such a prior checks the
    path where the records put the parameters; the config's weak priors also reach regions
    where the quadrature grid is too coarse (docs/calibration.md).

    ``q_prior = "beta"`` (rounds 6–7) moment-matches a beta on q instead: Beta(0.32, 4.46)
    around the records' posterior, whose density in logit q decays only as e^{0.32·logit q},
    so ≈ 15 % of θ* have q < 10⁻³, where the curve does not depend on q and the posterior
    follows the prior further into that tail than the sampler reaches in a few hundred steps."""
    import arviz as az

    post = az.from_netcdf(path).posterior
    out = {}
    for n in names:
        x = post[n].values.ravel()
        kind = V.PARAMS[n][0]
        if kind == "log":
            u = np.log(x)
            out[n] = Prior(
                "lognormal", {"median": float(np.exp(u.mean())), "sdlog": widen * u.std()}
            )
        elif kind == "logit" and q_prior == "logitnormal":
            u = special.logit(x)
            out[n] = Prior("logitnormal", {"mu": float(u.mean()), "sigma": widen * float(u.std())})
        elif kind == "logit":
            m, v = x.mean(), (widen * x.std()) ** 2
            c = m * (1 - m) / v - 1
            out[n] = Prior("beta", {"a": float(m * c), "b": float((1 - m) * c)})
        else:
            out[n] = Prior("normal", {"mean": float(x.mean()), "sd": float(widen * x.std())})
    return out


def add_regional_arguments(ap: argparse.ArgumentParser) -> None:
    """``--prior-from``, ``--widen``, ``--q-prior``: θ* from priors around a posterior."""
    ap.add_argument(
        "--prior-from",
        default=None,
        help="posterior .nc: θ* from priors around it (regional SBC), not the config's",
    )
    ap.add_argument("--widen", type=float, default=3.0, help="with --prior-from: SD factor")
    ap.add_argument(
        "--q-prior",
        choices=("logitnormal", "beta"),
        default="logitnormal",
        help="with --prior-from: the regional prior of q (beta: rounds 6-7)",
    )


def regional_priors_from_arguments(ap: argparse.ArgumentParser, a, names) -> dict | None:
    """:func:`regional_priors` from the arguments of :func:`add_regional_arguments` (None
    without ``--prior-from``: the config's priors); a bad value is one line and exit 2."""
    if a.prior_from is None:
        return None
    if not Path(a.prior_from).is_file():
        ap.error(f"--prior-from {a.prior_from}: no such posterior file (give a .nc posterior)")
    if a.widen <= 0:
        ap.error(f"--widen {a.widen}: must be > 0 (the factor on the posterior SD)")
    return regional_priors(a.prior_from, names, a.widen, a.q_prior)


def prior_dataset(k, *, config, rec, table, seed, priors=None):
    """Set ``k``'s θ* (free parameters, from ``priors``, default the config's), the full
    parameter dict and the records simulated at it (V,), values below the LLOQ coded LLOQ/2;
    the generator is then at the state the sampler's seed is drawn from."""
    g = trng.block_generator(seed, STREAM, k)
    names, fixed = V.CANDIDATES[config.candidate]
    priors = config.priors if priors is None else priors
    truth = {n: float(priors[n].sample(g, 1)[0]) for n in names}
    th = truth | fixed | dict(config.fixed)
    return truth, th, simulate_dataset(th, config=config, rec=rec, table=table, g=g), g


def simulate_dataset(th, *, config, rec, table, g) -> np.ndarray:
    """Observed C-peptide (V,) of the records' participants at their visit days under the full
    parameter dict ``th``, values below the LLOQ coded LLOQ/2 as in the records."""
    with np.errstate(over="ignore"):
        return V.simulate_records(
            table,
            th,
            rec,
            g,
            baseline_day=config.baseline_day,
            lloq_nmol_l=config.lloq_nmol_l,
            below_lloq="half_lloq",
        )[0]


def sample_on(
    y,
    truth,
    *,
    config,
    rec,
    table,
    priors,
    n_steps,
    burn,
    seed,
    min_ess=0.0,
    max_steps=None,
    move="independence",
    n_walkers=None,
):
    """The shipped sampler (MAP, Laplace, independence move, the config's walkers) on records
    with values ``y``: (post, (u_map, lp_map, kept draws (n, d) in u, acceptance, info)); info
    holds the walkers used, :func:`structure_run.quadrature_check`'s error at the MAP and
    spread over it and 20 kept draws (nats), and with ``move = "auto"`` the acceptance that
    decided and whether it switched.
    ``min_ess`` > 0: the chain runs on until every coordinate's ESS over the kept draws reaches
    it (or ``max_steps``; :func:`structure_run.sample_posterior`). ``move = "slice"``:
    ensemble slice sampling instead (round 24), with ``n_walkers`` (default the config's)."""
    like = R.likelihood_for(config, table, dataclasses.replace(rec, y=y))
    post = R.StructurePosterior(like, config.candidate, priors)
    # the MAP does not depend on the start; starting at θ* only saves time
    u_map, lp_map, chain, acc, timings = R.sample_posterior(
        post,
        n_walkers=config.method["n_walkers"] if n_walkers is None else n_walkers,
        n_steps=n_steps,
        seed=seed,
        start=truth,
        move=move,
        burn=burn,
        min_ess=min_ess,
        max_steps=max_steps,
    )
    info = {"n_walkers": chain.shape[1]} | {
        k: timings[k] for k in ("independence_acceptance", "switched_to_slice") if k in timings
    }
    kept = chain[burn:].reshape(-1, post.dim)
    # the quadrature check `tregsim calibrate` runs (and warns on), so the SBC can be read by
    # whether a user would have been warned (round 25: on some hard sets the η nodes are off
    # by several nats)
    pick = np.linspace(0, len(kept) - 1, R.QUADRATURE_CHECK_DRAWS).round().astype(int)
    quad = R.quadrature_check(
        config, table, dataclasses.replace(rec, y=y), post, np.vstack([u_map, kept[pick]])
    )
    info |= {
        "quad_error_map_nats": quad["error_map_nats"],
        "quad_spread_nats": quad["error_spread_nats"],
    }
    return post, (u_map, lp_map, kept, acc, info)


def set_posterior(k, *, config, rec, table, seed, n_steps, burn, priors, **sampler):
    """Set ``k``'s θ*, its posterior and the shipped sampler's run on its data (MAP, Laplace,
    independence move, the config's walkers): (truth, post, (u_map, lp_map, kept draws (n, d)
    in u, acceptance, info)) with info as :func:`sample_on`'s; post and the run are None when
    the simulated data are non-finite. The one place SBC sets are made, so every benchmark
    checks the same posteriors."""
    truth, _, y, g = prior_dataset(k, config=config, rec=rec, table=table, seed=seed, priors=priors)
    if not np.all(np.isfinite(y)):
        return truth, None, None
    post, run = sample_on(
        y,
        truth,
        config=config,
        rec=rec,
        table=table,
        priors=priors,
        n_steps=n_steps,
        burn=burn,
        seed=int(g.integers(2**31)),
        **sampler,
    )
    return truth, post, run


def one_set(k, *, config, rec, table, seed, n_steps, burn, priors=None, **sampler):
    """θ*, ranks (fraction of kept draws below θ*) and the sampler's acceptance; θ* from
    ``priors`` (default: the config's), the same priors in the posterior. ``sampler``:
    ``min_ess``, ``max_steps``, ``move``, ``n_walkers`` of :func:`sample_on`."""
    names = V.CANDIDATES[config.candidate][0]
    priors = config.priors if priors is None else priors
    t0 = time.perf_counter()
    truth, post, run = set_posterior(
        k,
        config=config,
        rec=rec,
        table=table,
        seed=seed,
        n_steps=n_steps,
        burn=burn,
        priors=priors,
        **sampler,
    )
    row = {"set": k}
    if post is None:
        # θ* so extreme that a simulated C-peptide overflows: no dataset to condition on. Such
        # sets are counted and left out (the prior truncated to finite data; the count shows
        # how much of the prior that is)
        return row | {"nonfinite_data": True} | {f"true_{n}": v for n, v in truth.items()}
    _, _, kept, acc, info = run
    u_true = post.u_of(truth)
    ranks = {n: float(np.mean(kept[:, i] < u_true[i])) for i, n in enumerate(names)}
    # the joint test quantity (Modrák et al. 2023, "SBC checking ... the choice of test
    # quantities"): the rank of the log posterior at θ* among the draws' (every LP_THIN-th
    # kept draw); an over-confident or shifted posterior puts θ* where the density is low
    lp_draws = np.array([post(u) for u in kept[::LP_THIN]])
    lp_rank = float(np.mean(lp_draws < post(u_true)))
    row |= {"nonfinite_data": False, "acceptance": acc, "seconds": time.perf_counter() - t0}
    row |= {
        "kept_draws": len(kept),
        "min_ess": float(R.chain_ess(kept.reshape(-1, info["n_walkers"], len(names))).min()),
    }
    # move = "auto": the acceptance that decided and whether the set went to the slice move
    row |= {k: v for k, v in info.items() if k != "n_walkers"}
    row |= {f"true_{n}": v for n, v in truth.items()}
    row |= {f"rank_{n}": v for n, v in ranks.items()}
    # posterior SDs in the sampler's coordinates: two samplers on the same sets compare
    # directly (round 24), not only through ranks
    row |= {f"sd_u_{n}": float(kept[:, i].std()) for i, n in enumerate(names)}
    row |= {"lp_rank": lp_rank}
    return row


def lp_rank_summary(df: pd.DataFrame) -> dict | None:
    """Fraction of sets whose θ* log-posterior rank is below 0.05 / 0.10 (0.05 / 0.10 when
    calibrated) and the KS p-value of uniformity; None without the column."""
    if "lp_rank" not in df or df["lp_rank"].isna().all():
        return None
    r = df["lp_rank"].dropna().to_numpy()
    return {
        "n_sets": len(r),
        "below_0.05": float(np.mean(r < 0.05)),
        "below_0.10": float(np.mean(r < 0.10)),
        "mean": float(r.mean()),
        "ks_p_uniform": float(stats.kstest(r, "uniform").pvalue),
    }


KEPT_DRAWS = 4000  # 16 walkers × 250 kept steps: the documented command's draws per set


def kept_draws(df: pd.DataFrame) -> int:
    """The kept draws behind each rank: the rows' median ``kept_draws`` (24 walkers of the slice
    move keep 4,800), :data:`KEPT_DRAWS` for files without the column."""
    if "kept_draws" in df and df["kept_draws"].notna().any():
        return int(df["kept_draws"].median())
    return KEPT_DRAWS


def coverage(df: pd.DataFrame, n_draws: int = KEPT_DRAWS) -> pd.DataFrame:
    """Per parameter: central 50 / 90 % coverage with Monte-Carlo SEs, the KS p-value of rank
    uniformity, and the effect size of a non-flat histogram
    (:func:`tregsim.calibrate.diagnostics.sbc_location_spread`: ``truth_z_mean`` 0 and
    ``truth_z_sd`` 1 when calibrated; ``n_draws`` the kept draws behind each rank)."""
    from tregsim.calibrate.diagnostics import sbc_location_spread

    out = []
    df = df[~df["nonfinite_data"].astype(bool)]
    n = len(df)
    for c in [c for c in df.columns if c.startswith("rank_")]:
        r = df[c].to_numpy()
        row = {"parameter": c[5:], "n_sets": n}
        for lev in (0.5, 0.9):
            cov = float(np.mean(np.abs(r - 0.5) < lev / 2))
            row[f"coverage_{int(lev * 100)}"] = cov
            row[f"mc_se_{int(lev * 100)}"] = float(np.sqrt(lev * (1 - lev) / n))
        row["ks_p_uniform"] = float(stats.kstest(r, "uniform").pvalue)
        if np.all(np.isfinite(r)):  # pooled files without this parameter's ranks: NaN
            zm, zs = sbc_location_spread(r[:, None], n_draws)
            row["truth_z_mean"], row["truth_z_sd"] = float(zm[0]), float(zs[0])
        out.append(row)
    return pd.DataFrame(out)


CRITERION_POINTS = 0.05  # issue #14: every coverage within ±5 points of its level


def criterion(cov: pd.DataFrame) -> dict:
    """Issue #14's SBC criterion on a :func:`coverage` table: how many of the 2·k cells
    (k parameters × 50 / 90 %) lie within ±5 points of their level, and the joint statistic
    Σ z² over the cells (z = (coverage − level) / Monte-Carlo SE) with its χ²(2k) p-value.
    The p-value is approximate: a parameter's 50 % and 90 % cells are positively correlated,
    so Σ z² varies more than χ²(2k) and the p-value is, if anything, too small."""
    z, within = [], 0
    for lev in (50, 90):
        d = cov[f"coverage_{lev}"].to_numpy() - lev / 100
        z.append(d / cov[f"mc_se_{lev}"].to_numpy())
        within += int(np.sum(np.abs(d) <= CRITERION_POINTS + 1e-12))
    z2 = float(np.sum(np.concatenate(z) ** 2))
    n_cells = 2 * len(cov)
    return {
        "cells": n_cells,
        "within": within,
        "sum_z2": z2,
        "p_chi2": float(stats.chi2.sf(z2, n_cells)),
    }


def report(df: pd.DataFrame, out: Path) -> None:
    """Write ``out/sbc_coverage.csv`` and print the coverage table and the set summary."""
    n_kept = kept_draws(df[~df["nonfinite_data"].astype(bool)])
    cov = coverage(df, n_kept)
    with atomic_path(out / "sbc_coverage.csv") as tmp:
        cov.to_csv(tmp, index=False)
    print(cov.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    crit = criterion(cov)
    print(
        f"criterion: {crit['within']} of {crit['cells']} cells within ±5 points; "
        f"Σ z² = {crit['sum_z2']:.1f} on {crit['cells']} cells (χ² p {crit['p_chi2']:.2f})"
    )
    bad = df["nonfinite_data"].astype(bool)
    ok = df[~bad]
    lps = lp_rank_summary(ok)
    if lps is not None:
        print(
            f"log-posterior rank of θ* ({lps['n_sets']} sets): mean {lps['mean']:.3f} (0.5), "
            f"below 0.05: {lps['below_0.05']:.3f}, below 0.10: {lps['below_0.10']:.3f}, "
            f"KS p {lps['ks_p_uniform']:.3f}"
        )
    ranks = ok[[c for c in ok.columns if c.startswith("rank_")]].to_numpy(float)
    if len(ranks) and np.all(np.isfinite(ranks)):
        # θ* beyond every kept draw (rank 0 or 1): probability 2/(L+1) per cell if calibrated
        outside = (ranks == 0) | (ranks == 1)
        p_cell = 2.0 / (n_kept + 1)
        print(
            f"θ* beyond all {n_kept} kept draws: {int(outside.sum())} cells in "
            f"{int(outside.any(axis=1).sum())} of {len(ranks)} sets "
            f"(calibrated: {outside.size * p_cell:.2f} cells expected)"
        )
    print(f"{int(bad.sum())} of {len(df)} prior draws gave non-finite data (left out)")
    print(
        f"{len(ok)} sets; acceptance median {ok['acceptance'].median():.2f} "
        f"(min {ok['acceptance'].min():.2f}); "
        f"{ok['seconds'].median():.0f} s per set (median)"
    )


def paired(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Two samplers on the same datasets (rows matched by ``set``; their θ* must agree): per
    parameter, each one's 50 / 90 % coverage, ``truth_z_mean`` / ``truth_z_sd`` (each run with
    its own :func:`kept_draws`), the count of θ* beyond all draws, and the Spearman correlation
    of the two runs' ranks (≈ 1 where both samplers find the same posterior)."""
    from tregsim.calibrate.diagnostics import sbc_location_spread

    m = old.merge(new, on="set", suffixes=("_old", "_new"))
    m = m[~(m["nonfinite_data_old"].astype(bool) | m["nonfinite_data_new"].astype(bool))]
    truth = [c for c in old.columns if c.startswith("true_")]
    a, b = m[[f"{c}_old" for c in truth]].to_numpy(), m[[f"{c}_new" for c in truth]].to_numpy()
    if not np.allclose(a, b, rtol=1e-12, atol=0):
        raise ValueError("--paired: the two files' θ* differ (not the same datasets)")
    rows = []
    n_kept = {"old": kept_draws(old), "new": kept_draws(new)}
    for c in [c for c in old.columns if c.startswith("rank_")]:
        row = {"parameter": c[5:], "n_sets": len(m)}
        for tag in ("old", "new"):
            r = m[f"{c}_{tag}"].to_numpy(float)
            row[f"coverage_50_{tag}"] = float(np.mean(np.abs(r - 0.5) < 0.25))
            row[f"coverage_90_{tag}"] = float(np.mean(np.abs(r - 0.5) < 0.45))
            zm, zs = sbc_location_spread(r[:, None], n_kept[tag])
            row[f"truth_z_mean_{tag}"], row[f"truth_z_sd_{tag}"] = float(zm[0]), float(zs[0])
            row[f"beyond_all_draws_{tag}"] = int(np.sum((r == 0) | (r == 1)))
        row["rank_spearman"] = float(stats.spearmanr(m[f"{c}_old"], m[f"{c}_new"])[0])
        sd = f"sd_u_{c[5:]}"
        if f"{sd}_old" in m and f"{sd}_new" in m:  # both runs from round 24 on
            row["sd_ratio_median"] = float(np.median(m[f"{sd}_new"] / m[f"{sd}_old"]))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", help="a structure_likelihood config (not with --pool)")
    ap.add_argument("--sets", type=int, default=200, help="synthetic datasets (default 200)")
    ap.add_argument(
        "--steps", type=int, default=None, help="emcee steps per set (default: the config's)"
    )
    ap.add_argument("--burn", type=int, default=None, help="steps discarded (default: config's)")
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument(
        "--min-ess",
        type=float,
        default=0.0,
        help="run each set's chain on until every coordinate's ESS reaches this (0: fixed "
        "--steps, the runs before round 23)",
    )
    ap.add_argument("--max-steps", type=int, default=None, help="with --min-ess: cap (4 × steps)")
    ap.add_argument(
        "--subset-from",
        metavar="CSV",
        help="rerun only the sets of this sbc_sets.csv (same seed and priors) whose acceptance "
        "is below --below-acceptance: a selection on the data alone keeps the ranks uniform",
    )
    ap.add_argument("--below-acceptance", type=float, default=0.2)
    ap.add_argument(
        "--move",
        choices=("independence", "slice", "auto"),
        default="independence",
        help="the sampler: the shipped independence move, ensemble slice sampling (round 24), "
        "or the independence move with a switch to the slice move below acceptance 0.2 "
        "(round 25)",
    )
    ap.add_argument(
        "--walkers", type=int, default=None, help="walkers (default: the config's; slice: ≥ 2·d)"
    )
    ap.add_argument(
        "--eta-nodes",
        choices=("fixed", "adaptive"),
        default=None,
        help="the hazard effect's quadrature nodes (default: the config's [method] eta_nodes; "
        "round 26)",
    )
    add_regional_arguments(ap)
    ap.add_argument(
        "--pool",
        nargs="+",
        metavar="CSV",
        help="no new sets: the coverage over the sets of these sbc_sets.csv files (runs of the "
        "same priors with different seeds), written to OUT/sbc_coverage.csv",
    )
    ap.add_argument(
        "--paired",
        nargs=2,
        metavar=("OLD_CSV", "NEW_CSV"),
        help="no new sets: two runs of the same datasets (same seed and priors, two samplers) "
        "compared set by set, written to OUT/sbc_paired.csv",
    )
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.paired:
        missing = [p for p in a.paired if not Path(p).is_file()]
        if missing:
            ap.error(f"--paired: no such file: {', '.join(missing)}")
        try:
            tab = paired(*(pd.read_csv(p) for p in a.paired))
        except ValueError as e:
            ap.error(str(e))
        except KeyError as e:  # not an sbc_sets.csv
            ap.error(f"--paired: column {e} missing: give two sbc_sets.csv files")
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "sbc_paired.csv") as tmp:
            tab.to_csv(tmp, index=False)
        print(tab.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return 0
    if a.pool:
        missing = [p for p in a.pool if not Path(p).is_file()]
        if missing:
            ap.error(f"--pool: no such file: {', '.join(missing)}")
        frames = [pd.read_csv(p).assign(source=Path(p).as_posix()) for p in a.pool]
        out.mkdir(parents=True, exist_ok=True)
        report(pd.concat(frames, ignore_index=True), out)
        return 0
    if a.config is None:
        ap.error("give a config (or --pool CSV ...)")
    try:  # a missing or bad config is one line and exit 2 (tregsim's errors are ValueErrors)
        config = load_config(a.config)
    except ValueError as e:
        ap.error(str(e))
    if a.eta_nodes is not None:
        config = dataclasses.replace(config, method=config.method | {"eta_nodes": a.eta_nodes})
    d = len(V.CANDIDATES[config.candidate][0])
    walkers = config.method["n_walkers"] if a.walkers is None else a.walkers
    least = 2 * d if a.move == "slice" else 4
    if walkers < least or (a.move == "slice" and walkers % 2):
        ap.error(
            f"--walkers {walkers}: --move {a.move} needs at least {least}"
            + (" and an even number (twice the parameters)" if a.move == "slice" else "")
        )
    model = load_model(config.model)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, model, float(rec.visit_day.max()))
    steps = config.method["n_steps"] if a.steps is None else a.steps
    burn = config.method["burn"] if a.burn is None else a.burn
    priors = regional_priors_from_arguments(ap, a, V.CANDIDATES[config.candidate][0])
    out.mkdir(parents=True, exist_ok=True)
    if priors is not None:
        pd.DataFrame([{"parameter": n, "dist": p.dist} | p.args for n, p in priors.items()]).to_csv(
            out / "sbc_priors.csv", index=False
        )
    path = out / "sbc_sets.csv"
    done = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    rows = done.to_dict("records")
    todo = list(range(len(rows), a.sets))
    if a.subset_from:
        old = pd.read_csv(a.subset_from)
        picked = old.loc[old["acceptance"] < a.below_acceptance, "set"].astype(int).tolist()
        have = {int(r["set"]) for r in rows}
        todo = [k for k in picked if k not in have][: max(a.sets - len(rows), 0)]
    for k in todo:
        rows.append(
            one_set(
                k,
                config=config,
                rec=rec,
                table=table,
                seed=a.seed,
                n_steps=steps,
                burn=burn,
                priors=priors,
                min_ess=a.min_ess,
                max_steps=a.max_steps,
                move=a.move,
                n_walkers=a.walkers,
            )
        )
        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        r = rows[-1]
        msg = (
            "non-finite data, left out"
            if r["nonfinite_data"]
            else f"{r['seconds']:.0f} s, acceptance {r['acceptance']:.2f}, "
            f"{r['kept_draws']} kept draws, min ESS {r['min_ess']:.0f}"
        )
        print(f"set {k} ({len(rows)}/{a.sets}): {msg}", file=sys.stderr, flush=True)
    report(pd.DataFrame(rows), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
