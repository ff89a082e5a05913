"""``tregsim compare --models A,B,C [--n N] [--seed S] [--dose-per-kg D] [--infusion-day T]
[--il2 IU] [--experiment FILE] --out DIR``: model variants on the same virtual patients."""

from __future__ import annotations

import sys

HELP = "compare model variants (e.g. treg_t1d, V0 empirical, V1 IL-2) on the same virtual patients"

EPILOG = """Every model runs the same patients (built-in: age U(8, 45) y, cpep0 log-normal around
0.7 nmol/L, weight from age, one IIV draw for f_lambda; or --experiment FILE: that experiment's
population and arms) under routine care ('control') and a Treg infusion ('treg'); with --il2 IU
also 'treg_il2' (daily IL-2 for --il2-days from the infusion day, in models taking IL2 doses).
Writes compare.csv (model, arm, month, median/5 %/95 % C-peptide nmol/L, mean paired
ΔC-peptide arm − control nmol/L; '# model:' and '# phi:' header lines), compare.png and
manifest.json. phi (potency × homing of infused Tregs) is assumed in every model."""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--models",
        default="treg_t1d,treg_t1d_v0_empirical,treg_t1d_v1_il2",
        help="comma-separated model names in models/ or paths "
        "(default: treg_t1d,treg_t1d_v0_empirical,treg_t1d_v1_il2)",
    )
    parser.add_argument("--n", type=int, default=200, help="virtual patients (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument(
        "--dose-per-kg",
        type=float,
        default=2e7,
        metavar="CELLS_PER_KG",
        help="Treg dose, cells/kg (default 2e7)",
    )
    parser.add_argument(
        "--infusion-day",
        type=float,
        default=60.0,
        metavar="DAYS",
        help="infusion day, days after diagnosis (default 60)",
    )
    parser.add_argument(
        "--il2",
        type=float,
        default=0.0,
        metavar="IU",
        help="add a 'treg_il2' arm: IL-2 IU per daily injection "
        "(TILT: 0.3e6-1e6 IU); 0 = none (default)",
    )
    parser.add_argument(
        "--il2-days",
        type=int,
        default=5,
        help="daily IL-2 injections per course (default 5, as in TILT)",
    )
    parser.add_argument(
        "--il2-start-day",
        type=float,
        default=None,
        metavar="DAYS",
        help="first IL-2 injection, days after diagnosis (default: infusion day)",
    )
    parser.add_argument(
        "--months",
        type=float,
        default=24.0,
        help="follow-up, months after diagnosis (default 24; monthly outputs)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        metavar="FILE",
        help="take the population and arms from this experiment file instead",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results of a different run in --out"
    )


def run(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from tregsim.checkpoint import prepare_output_dir
    from tregsim.errors import ArgumentError
    from tregsim.explore.compare import (
        MONTH_DAYS,
        builtin_population,
        compare_models,
        default_arms,
        population_from_experiment,
    )
    from tregsim.io import build_manifest, write_json, write_text
    from tregsim.model import load_model, resolve_model_path

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if args.n < 1:
        raise ArgumentError(
            f"--n must be ≥ 1, got {args.n}",
            field="--n",
            fix="give the number of virtual patients, e.g. --n 200",
        )
    if not (np.isfinite(args.months) and 1 <= args.months <= 600):
        raise ArgumentError(
            f"--months must be in [1, 600], got {args.months}",
            field="--months",
            fix="give the follow-up in months, e.g. 24",
        )
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    if not names:
        raise ArgumentError(
            "no models given",
            field="--models",
            fix="pass e.g. --models treg_t1d,treg_t1d_v0_empirical",
        )
    models = [load_model(s) for s in names]  # validates every file before writing anything
    inputs = {f"model:{m.name}": resolve_model_path(s) for m, s in zip(models, names)}
    times = np.arange(int(np.floor(args.months)) + 1) * MONTH_DAYS

    if args.experiment:
        from tregsim.experiment import load_experiment

        if args.il2 > 0:
            raise ArgumentError(
                "--il2 cannot be combined with --experiment",
                field="--il2",
                fix="set il2_dose_iu / il2_days in the experiment's arm, or drop --experiment",
            )

        exp = load_experiment(args.experiment)
        pop, arms = population_from_experiment(exp, args.n, args.seed)
        inputs.update({f"experiment:{k}": v for k, v in exp.input_files().items()})
        regimen = {"experiment": str(args.experiment)}
    else:
        arms = default_arms(
            args.dose_per_kg, args.infusion_day, args.il2, args.il2_days, args.il2_start_day
        )
        pop = builtin_population(args.n, args.seed)
        regimen = {
            "dose_per_kg": args.dose_per_kg,
            "infusion_day": args.infusion_day,
            "il2_iu_per_dose": args.il2,
            "il2_days": args.il2_days,
            "il2_start_day": args.il2_start_day,
        }
    settings = {"models": [m.name for m in models], "n": args.n, "months": args.months, **regimen}
    argv = ["tregsim", "compare", *sys.argv[2:]] if sys.argv[1:2] == ["compare"] else None
    manifest = build_manifest(
        command="compare", seed=args.seed, inputs=inputs, settings=settings, argv=argv
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)

    t0 = time.perf_counter()
    res = compare_models(models, arms, pop, times_days=times, seed=args.seed)
    seconds = time.perf_counter() - t0
    write_text(Path(out) / "compare.csv", res.to_csv_text())

    from tregsim.plots.compare import plot_compare

    plot_compare(res, Path(out) / "compare.png")
    manifest["settings_runtime"] = {"seconds": round(seconds, 2)}
    write_json(Path(out) / "manifest.json", manifest)

    t = res.table
    last = t["month"].max()
    m12 = 12.0 if (t["month"] == 12.0).any() else last
    for (mname, aname), g in t.groupby(["model", "arm"], sort=False):
        if g["arm"].iloc[0] == next(a.name for a in res.arms if a.control):
            continue
        d = {
            m: float(g.loc[g["month"] == m, "mean_delta_vs_control_nmol_L"].iloc[0])
            for m in sorted({m12, last})
        }
        txt = ", ".join(f"{v:+.4f} nmol/L at {m:g} mo" for m, v in d.items())
        print(f"compare: {mname} {aname} − control: {txt}", file=sys.stderr)
    n_failed = int(
        args.n * len(res.cpeptide)
        - sum(np.isfinite(c).all(axis=1).sum() for c in res.cpeptide.values())
    )
    print(
        f"compare: {len(models)} models × {len(arms)} arms × {args.n} patients in "
        f"{seconds:.1f} s; {n_failed} failed solves; wrote {out}/compare.csv",
        file=sys.stderr,
    )
    return 0
