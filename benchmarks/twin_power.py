"""Virtual trials with the twin as a prognostic covariate: type I error, power, N for 80 %.

Model-based virtual trials of ``experiments/nct06708780.toml`` (population parameters at the
shipped posterior's medians, randomized 1:1 unless ``--allocation experiment``), analysed by
the TrialNet ANCOVA and by ``ancova_prognostic`` (the same plus each participant's twin
prediction of the control outcome at the endpoint, from the observed baseline MMTT, age and the
baseline day only: no post-randomization data).

* no effect: the treatment arm's dose set to 0 cells/kg (identical arms): the rejection rate
  must lie within α ± 3 binomial SE;
* effect: φ = ``--phi`` (default 200, ≈ +7 % AUC+1 at 12 months): power of both tests at each N
  per arm and the smallest grid N reaching 80 %.

    python benchmarks/twin_power.py [--trials 2000] [--power-trials 1000] [--n-per-arm 10:80:10]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "nct06708780.toml"


def _experiment(dose_zero: bool, tmp: Path):
    from tregsim.experiment import load_experiment

    if not dose_zero:
        return load_experiment(EXPERIMENT)
    text = EXPERIMENT.read_text()
    text, n = re.subn(r"(?m)^dose_per_kg = .*$", "dose_per_kg = 0.0", text)
    assert n == 1
    path = tmp / "nct06708780_no_effect.toml"
    path.write_text(text)
    return load_experiment(path)


def run(args):
    from tregsim.posterior import load_posterior
    from tregsim.trial.allocation import LogisticAllocation, first_n_per_arm
    from tregsim.trial.endpoints import ancova_trialnet
    from tregsim.trial.power import parse_grid
    from tregsim.trial.prognostic import ancova_prognostic
    from tregsim.trial.virtual import virtual_trials
    from tregsim.twin import BaselinePrior, Twin, TwinGrid

    post = load_posterior()
    theta = {k: float(np.median(v)) for k, v in post.items()}
    grid = parse_grid(args.n_per_arm)
    alloc = LogisticAllocation() if args.allocation == "experiment" else None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, dose_zero in (("no effect", True), (f"phi = {args.phi:g}", False)):
            exp = _experiment(dose_zero, Path(tmp))
            t0 = time.time()
            twin = Twin(
                exp.model,
                post,
                n_draws=args.draws,
                seed=args.seed,
                baseline_prior=BaselinePrior.from_experiment(exp),
            )
            tg = TwinGrid(twin, np.geomspace(8.0, 65.0, 41), exp.baseline_day, [args.month])
            t_twin = time.time() - t0
            th = dict(theta)
            if not dose_zero:
                th["phi"] = args.phi
            t0 = time.time()
            data = virtual_trials(
                exp,
                n_trials=args.trials if dose_zero else args.power_trials,
                n_max_per_arm=int(grid.max()),
                seed=args.seed,
                theta=th,
                allocation=alloc,
                endpoint_month=args.month,
                effect_patients=16,
                progress=False,
            )
            t_sim = time.time() - t0
            t0 = time.time()
            prog = tg.mean(data.baseline_auc_nmol_l.ravel(), data.age_years.ravel())[:, 0]
            prog = prog.reshape(data.baseline_auc_nmol_l.shape)
            t_pred = time.time() - t0
            arm = np.asarray(data.arm, bool)
            rows = []
            for n in grid:
                inc = first_n_per_arm(arm, int(n))
                a = ancova_trialnet(
                    data.endpoint_auc_nmol_l,
                    data.baseline_auc_nmol_l,
                    data.age_years,
                    arm,
                    include=inc,
                )
                p = ancova_prognostic(
                    data.endpoint_auc_nmol_l,
                    data.baseline_auc_nmol_l,
                    data.age_years,
                    prog,
                    arm,
                    include=inc,
                )
                rows.append(
                    (int(n), a.reject.mean(), p.reject.mean(), np.nanmean(a.se), np.nanmean(p.se))
                )
            out[label] = rows
            print(
                f"\n{label}: {data.n_trials} trials, twin {t_twin:.0f} s, virtual trials "
                f"{t_sim:.0f} s, predictions {t_pred:.1f} s; mean true effect "
                f"{np.nanmean(data.true_effect):+.4f} ln(AUC+1)"
            )
            se = np.sqrt(0.05 * 0.95 / data.n_trials)
            print(
                f"{'N/arm':>6} {'ancova':>8} {'ancova_prognostic':>18} {'mean SE ancova':>15} "
                f"{'mean SE prognostic':>19}"
            )
            for n, pa, pp, sa, sp in rows:
                print(f"{n:>6} {pa:>8.3f} {pp:>18.3f} {sa:>15.4f} {sp:>19.4f}")
            if dose_zero:
                print(f"type I error band α ± 3 SE = {0.05 - 3 * se:.3f} – {0.05 + 3 * se:.3f}")
            else:
                for j, name in ((1, "ancova"), (2, "ancova_prognostic")):
                    hit = [r[0] for r in rows if r[j] >= 0.8]
                    print(f"N per arm for 80 % power, {name}: {hit[0] if hit else '> grid'}")
            # the control arm's variance components with and without the twin
            yc = np.log1p(data.endpoint_auc_nmol_l)[~arm]
            x0 = np.log1p(data.baseline_auc_nmol_l)[~arm]
            ag = data.age_years[~arm]
            pc = prog[~arm]
            ok = np.isfinite(yc) & np.isfinite(x0) & np.isfinite(pc)
            from tregsim.trial.prognostic import partial_correlation, residual_sd

            cov = np.column_stack([x0[ok], ag[ok]])
            rho = partial_correlation(yc[ok], pc[ok], cov)
            print(
                f"control arm pooled (n = {ok.sum()}): residual SD {residual_sd(yc[ok], cov):.4f}"
                f" → {residual_sd(yc[ok], np.column_stack([cov, pc[ok]])):.4f} with the twin; "
                f"ρ_partial {rho:.3f}, 1 − ρ² = {1 - rho**2:.3f}"
            )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2000, help="replicates without effect")
    ap.add_argument("--power-trials", type=int, default=1000, help="replicates with effect")
    ap.add_argument("--n-per-arm", default="10:80:10")
    ap.add_argument("--phi", type=float, default=200.0)
    ap.add_argument("--month", type=float, default=12.0)
    ap.add_argument("--draws", type=int, default=256)
    ap.add_argument("--allocation", choices=("randomized", "experiment"), default="randomized")
    ap.add_argument("--seed", type=int, default=1)
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
