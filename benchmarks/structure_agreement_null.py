"""Do the NPE and the records likelihood disagree on the records more than on data the structure
itself generates? A parametric bootstrap of the agreement statistics (issue #14 item 3).

``structure_npe_agreement.py`` refers the nested agreement statistic D² to χ²_d, which holds
when both posteriors are exact and Gaussian in the chosen coordinates. Neither is guaranteed (q's
summary posterior is pulled towards its beta(2, 2) prior, the NPE is a trained approximation),
and the stricter per-parameter criterion |Δ median| / pooled SD ≤ 1 has no reference at all.
This script builds the reference by simulation. For set k:

* θ* = a draw of the shipped likelihood posterior (``--theta-from``), picked by set k's
  generator;
* records simulated at θ*: the records' own participants, ages and visit days, values below the
  LLOQ coded LLOQ/2 as in the records (:func:`variability.simulate_records`);
* the likelihood posterior on them by the shipped sampler (the likelihood config's priors,
  walkers and quadrature; ``--steps`` / ``--burn``);
* the NPE's summaries of the same simulated records (the NPE config's nominal-month table and
  statistics plan, exactly as on the real records) and the trained NPE's posterior
  (``--npe-run``, the folder ``tregsim calibrate`` wrote; its estimator and seed).

Per set: D² in natural and log/logit coordinates, each parameter's Δ median / pooled SD and
nested z, whether the likelihood median lies in the NPE's 90 % interval, and both posteriors'
errors at θ*. The records' own values (the likelihood posterior ``--likelihood`` against the
NPE run's ``posterior.nc``) are then placed in these null distributions:
p = (1 + #{null ≥ observed}) / (1 + K). A small p: the two paths disagree on the records more
than on data the structure generates, so the structure misfits the records in a way the
summaries and the visits see differently. A large p where χ² gave a small one: the reference,
not the records, failed the test.

Phase 1 (≈ 1–2 min per set on one core) writes ``OUT/sets/set_NNNN.npz`` (θ*, the simulated
summaries, the likelihood's draws in the sampler's coordinates). A set is claimed with an
exclusive ``set_NNNN.claim`` file before it starts, so several processes on one ``OUT`` share
the work without repeating a set; a stopped run continues where it stopped (delete the claim
files of sets that have no ``.npz`` after a crash). Results do not depend on how many processes
ran or in which order: set k's generator is ``rng.block_generator(seed, STREAM, k)``.
Phase 2 (seconds) runs when ``--npe-run`` is given: ``OUT/null_sets.csv`` (one row per set) and
``OUT/null_summary.csv`` (statistic, observed on the records, null median and 95th percentile,
p), printed as a table.

    OMP_NUM_THREADS=1 python benchmarks/structure_agreement_null.py \\
        calibration/placebo_records_structure.toml calibration/natural_history_structure_npe.toml \\
        --sets 100 --out runs/agreement_null --npe-run runs/npe10/natural_history_structure_npe

Numbers in docs/calibration.md, "Round 10: the agreement test's reference by simulation".
Reads the records from ``../shared/data/`` (never copied); writes θ*, summaries and draws of
simulated records only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import structure_likelihood_sbc as S
from structure_npe_agreement import agreement, columns

from tregsim import rng as trng
from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.calibrate.diagnostics import nested_agreement
from tregsim.io import atomic_path
from tregsim.model import load_model

STREAM = "benchmark.agreement_null"
LIK_KEEP = 1200  # likelihood draws kept per set (evenly thinned)
COORDS = (("natural", False), ("u", True))


@dataclasses.dataclass
class Setup:
    lik_config: object
    rec: object  # variability.Records of the likelihood config
    table: object
    problem: object  # the NPE config's StructureProblem (plan, design)
    theta_pool: dict  # name → (n,) draws of --theta-from
    names: tuple


def build_setup(lik_path, npe_path, theta_from) -> Setup:
    from tregsim.calibrate.structure_simulator import build_problem
    from tregsim.posterior import load_posterior

    cfg, npe_cfg = load_config(lik_path), load_config(npe_path)
    for path, c, kind in (
        (lik_path, cfg, "structure_likelihood"),
        (npe_path, npe_cfg, "npe_structure"),
    ):
        if c.kind != kind:
            raise ValueError(f"{path}: [method] kind is {c.kind!r}; give a {kind!r} config here")
    rec = R.load_structure_records(cfg)
    table = R._curve_table(cfg, load_model(cfg.model), float(rec.visit_day.max()))
    problem = build_problem(npe_cfg)
    d = problem.data
    # the NPE's nominal-month table must be the likelihood's visits, picked by index
    if not np.allclose(d.values_nmol_l[d.visit_patient, d.visit_slot], rec.y[d.visit_record]):
        raise ValueError(
            f"{npe_path}: its records table does not match {lik_path}'s records; "
            "both configs must read the same records file and columns"
        )
    names = tuple(V.CANDIDATES[cfg.candidate][0])
    if tuple(problem.names) != names:
        raise ValueError(f"{npe_path}: calibrates {problem.names}, the likelihood {names}")
    post = load_posterior(theta_from)
    return Setup(cfg, rec, table, problem, {n: np.asarray(post[n]) for n in names}, names)


def simulate_set(s: Setup, k: int, seed: int):
    """θ* (dict), the simulated records' values (V,) and the NPE summaries (F,)."""
    from tregsim.calibrate.structure_simulator import _finite

    g = trng.block_generator(seed, STREAM, k)
    n_pool = len(next(iter(s.theta_pool.values())))
    i = int(g.integers(n_pool))
    truth = {n: float(s.theta_pool[n][i]) for n in s.names}
    cfg = s.lik_config
    th = truth | V.CANDIDATES[cfg.candidate][1] | dict(cfg.fixed)
    y = S.simulate_dataset(th, config=cfg, rec=s.rec, table=s.table, g=g)
    d = s.problem.data
    wide = np.full_like(d.values_nmol_l, np.nan)
    wide[d.visit_patient, d.visit_slot] = y[d.visit_record]
    x = _finite(s.problem.plan(wide[None]))[0]
    return truth, y, x, g


def run_set(s: Setup, k: int, seed: int, steps: int, burn: int) -> dict:
    t0 = time.perf_counter()
    truth, y, x, g = simulate_set(s, k, seed)
    cfg = s.lik_config
    _, (_, _, kept, acc, _) = S.sample_on(
        y,
        truth,
        config=cfg,
        rec=s.rec,
        table=s.table,
        priors=cfg.priors,
        n_steps=steps,
        burn=burn,
        seed=int(g.integers(2**31)),
    )
    kept = kept[np.linspace(0, len(kept) - 1, min(LIK_KEEP, len(kept))).astype(int)]
    return {
        "truth": np.array([truth[n] for n in s.names]),
        "x": x,
        "lik_u": kept,
        "acceptance": acc,
        "seconds": time.perf_counter() - t0,
    }


def phase1(s: Setup, out: Path, n_sets: int, seed: int, steps: int, burn: int) -> None:
    d = out / "sets"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(n_sets):
        npz, claim = d / f"set_{k:04d}.npz", d / f"set_{k:04d}.claim"
        if npz.is_file():
            continue
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue  # another process has it
        r = run_set(s, k, seed, steps, burn)
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **r)
        print(
            f"set {k + 1}/{n_sets}: {r['seconds']:.0f} s, acceptance {r['acceptance']:.2f}",
            file=sys.stderr,
            flush=True,
        )


def _from_u(names, u: np.ndarray) -> dict:
    """Draws (n, d) in the sampler's coordinates → name → natural-scale draws."""
    return {n: V._from_u(n, u[:, j]) for j, n in enumerate(names)}


def compare(names, npe: dict, lik: dict) -> dict:
    """Agreement statistics of one pair of posteriors (dicts name → draws, natural scale)."""
    tab = agreement(npe, lik, None).set_index("parameter").loc[list(names)]
    row = {}
    for label, in_u in COORDS:
        res = nested_agreement(columns(npe, names, in_u), columns(lik, names, in_u))
        row |= {
            f"d2_{label}": res["d2"],
            f"df_{label}": res["df"],
            f"p_chi2_{label}": res["p_value"],
        }
        row |= {f"z_{label}_{n}": z for n, z in zip(names, res["z"])}
    r = tab["median_diff_over_pooled_sd"]
    row |= {f"diff_pooled_{n}": float(r[n]) for n in names}
    row["max_abs_diff_pooled"] = float(r.abs().max())
    row["n_abs_diff_pooled_over_1"] = int((r.abs() > 1).sum())
    row["n_lik_median_outside_npe_90"] = int((~tab["lik_median_in_npe_90"].astype(bool)).sum())
    return row


def phase2(s: Setup, out: Path, npe_run: Path, likelihood: Path):
    from tregsim.calibrate.npe import load_estimator
    from tregsim.posterior import load_posterior

    est = load_estimator(npe_run / "estimator.pt")
    seed_npe = int(json.loads((npe_run / "manifest.json").read_text())["seed"])
    n_draws = int(s.problem.config.method["n_posterior_draws"])
    names = s.names
    rows = []
    files = sorted((out / "sets").glob("set_*.npz"))
    xs = []
    sets = []
    for f in files:
        with np.load(f) as z:
            sets.append({k: z[k] for k in z.files} | {"set": int(f.stem[4:])})
            xs.append(sets[-1]["x"])
    z_all = est.sample_z_batched(np.array(xs), n_draws, seed_npe)
    for st, z in zip(sets, z_all):
        th = s.problem.theta_from_z(z)
        npe = {n: th[:, j] for j, n in enumerate(names)}
        lik = _from_u(names, st["lik_u"])
        row = {"set": st["set"], "acceptance": float(st["acceptance"])}
        row |= {f"true_{n}": float(v) for n, v in zip(names, st["truth"])}
        row |= compare(names, npe, lik)
        for n, t in zip(names, st["truth"]):
            for lab, d in (("npe", npe), ("lik", lik)):
                row[f"err_{lab}_{n}"] = float((np.median(d[n]) - t) / np.std(d[n]))
        rows.append(row)
    null = pd.DataFrame(rows).sort_values("set")
    with atomic_path(out / "null_sets.csv") as tmp:
        null.to_csv(tmp, index=False)

    # the published layout: DIR/NAME.nc beside the run folder DIR/NAME (older runs: posterior.nc)
    nc = npe_run.parent / f"{npe_run.name}.nc"
    obs_npe = load_posterior(nc if nc.is_file() else npe_run / "posterior.nc")
    obs_lik = load_posterior(likelihood)
    obs = compare(
        names,
        {n: np.asarray(obs_npe[n]) for n in names},
        {n: np.asarray(obs_lik[n]) for n in names},
    )
    summ = null_table(null, obs, names)
    with atomic_path(out / "null_summary.csv") as tmp:
        summ.to_csv(tmp, index=False)
    plot_null(null, obs, names, out / "agreement_null.png")
    return summ


def null_table(null: pd.DataFrame, obs: dict, names) -> pd.DataFrame:
    """Each statistic's observed value (records) against its null distribution (``null``, one
    row per simulated set): median, 5 % and 95 % points and the Monte-Carlo p-value
    (1 + #{null ≥ observed}) / (1 + K) over the K sets where the statistic is finite, on |·| for
    the signed per-parameter ones (two-sided). A nested z is NaN where the likelihood is wider
    than the NPE along that parameter (no nested reference); such sets are left out of its row.
    For D², ``chi2_p_observed`` is the χ² p-value the analytic test gives the records and
    ``null_frac_chi2_p_below_0.05`` how often it would reject a dataset of the structure."""
    stats_ = ["d2_natural", "d2_u", "max_abs_diff_pooled", "n_abs_diff_pooled_over_1"]
    stats_ += ["n_lik_median_outside_npe_90"]
    stats_ += [f"diff_pooled_{n}" for n in names] + [f"z_u_{n}" for n in names]
    rows = []
    for c in stats_:
        v = null[c].to_numpy(float)
        v = v[np.isfinite(v)]
        o = float(obs[c])
        two_sided = c.startswith(("diff_pooled_", "z_u_"))
        a, b = (np.abs(v), abs(o)) if two_sided else (v, o)
        ok = v.size > 0 and np.isfinite(o)
        row = {
            "statistic": c,
            "observed": o,
            "null_median": float(np.median(v)) if v.size else np.nan,
            "null_q05": float(np.quantile(v, 0.05)) if v.size else np.nan,
            "null_q95": float(np.quantile(v, 0.95)) if v.size else np.nan,
            "p": float((1 + np.sum(a >= b)) / (1 + v.size)) if ok else np.nan,
            "sided": "two" if two_sided else "upper",
            "n_sets": int(v.size),
        }
        if c.startswith("d2_"):
            lab = c[3:]
            row["chi2_p_observed"] = float(obs[f"p_chi2_{lab}"])
            row["null_frac_chi2_p_below_0.05"] = float(np.mean(null[f"p_chi2_{lab}"] < 0.05))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_null(null: pd.DataFrame, obs: dict, names, path: Path) -> None:
    """Histograms of the null D² (both coordinates) and max |Δ median| / pooled SD with the
    records' value, and each parameter's Δ median / pooled SD (null box, records dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [1, 1, 1, 2]})
    for a, c, lab in (
        (ax[0], "d2_natural", "D² (natural coordinates)"),
        (ax[1], "d2_u", "D² (log / logit coordinates)"),
        (ax[2], "max_abs_diff_pooled", "max |Δ median| / pooled SD"),
    ):
        v = null[c].to_numpy(float)
        v = v[np.isfinite(v)]
        log = c.startswith("d2")  # heavy right tail
        lo, hi = max(v.min(), 1e-3), v.max()
        bins = np.geomspace(lo, hi, 30) if log else 30
        a.hist(v, bins=bins, color="0.7", label=f"structure's data ({v.size} sets)")
        a.axvline(obs[c], color="C3", lw=2, label="records")
        if log:
            df = int(np.median(null[f"df_{c[3:]}"]))
            a.axvline(stats.chi2.ppf(0.95, df), color="C0", ls="--", label=f"χ²_{df} 95 %")
            a.set_xscale("log")
        a.set_xlabel(lab)
        a.set_ylabel("sets")
        a.legend(fontsize=7)
    cols = [f"diff_pooled_{n}" for n in names]
    ax[3].boxplot([null[c].dropna() for c in cols], whis=(2.5, 97.5), showfliers=False)
    ax[3].plot(range(1, len(cols) + 1), [obs[c] for c in cols], "o", color="C3", label="records")
    ax[3].axhline(1, color="0.4", ls=":")
    ax[3].axhline(-1, color="0.4", ls=":")
    ax[3].set_xticks(range(1, len(cols) + 1), names, rotation=45, fontsize=7)
    ax[3].set_ylabel("Δ median / pooled SD (NPE − likelihood)")
    ax[3].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("likelihood_config")
    ap.add_argument("npe_config")
    ap.add_argument("--sets", type=int, default=100, help="null sets to simulate (phase 1)")
    ap.add_argument("--steps", type=int, default=200, help="sampler steps per set (default 200)")
    ap.add_argument("--burn", type=int, default=40, help="steps discarded (default 40)")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument(
        "--theta-from",
        default="calibration/posteriors/natural_history.nc",
        help="posterior whose draws are the sets' θ* (default: the shipped one)",
    )
    ap.add_argument("--likelihood", default="calibration/posteriors/natural_history.nc")
    ap.add_argument("--npe-run", default=None, help="folder of a `tregsim calibrate` NPE run")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    for p, what in ((a.theta_from, "--theta-from"), (a.likelihood, "--likelihood")):
        if not Path(p).is_file():
            ap.error(f"{what} {p}: no such posterior file")
    if a.npe_run and not (Path(a.npe_run) / "estimator.pt").is_file():
        ap.error(
            f"--npe-run {a.npe_run}: no estimator.pt; give DIR/NAME of a `tregsim calibrate` run"
        )
    if a.burn >= a.steps:
        ap.error(f"--burn {a.burn} must be below --steps {a.steps}")
    try:  # a bad config or posterior is one line and exit 2 (tregsim's errors are ValueErrors)
        s = build_setup(a.likelihood_config, a.npe_config, a.theta_from)
    except ValueError as e:
        ap.error(str(e))
    out = Path(a.out)
    phase1(s, out, a.sets, a.seed, a.steps, a.burn)
    if a.npe_run:
        if not any((out / "sets").glob("set_*.npz")):
            ap.error(f"--out {a.out}: no finished sets; run phase 1 first (--sets N)")
        summ = phase2(s, out, Path(a.npe_run), Path(a.likelihood))
        print(summ.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
