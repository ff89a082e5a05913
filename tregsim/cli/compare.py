"""``tregsim compare --models A,B,C [--n N] [--seed S] [--dose-per-kg D] [--infusion-day T]
[--il2 IU] [--experiment FILE] [--set NAME=VALUE ...] --out DIR``: model variants on the same virtual patients."""

from __future__ import annotations

import sys

HELP = "compare model variants (e.g. treg_t1d, V0 empirical, V1 IL-2) on the same virtual patients"

EPILOG = """Every model runs the same patients (built-in: age U(8, 45) y, cpep0 log-normal around
0.7 nmol/L, weight from age, one IIV draw for f_lambda; or --experiment FILE: that experiment's
population and arms) under routine care ('control') and a Treg infusion ('treg'); with --il2 IU
also 'treg_il2' (daily IL-2 for --il2-days from the infusion day, in models taking IL2 doses).
Writes compare.csv (model, arm, month, median/5 %/95 % C-peptide nmol/L, mean paired
ΔC-peptide arm − control nmol/L; '# model:' and '# phi:' header lines), compare.png and
manifest.json. phi (potency × homing of infused Tregs) is assumed in every model; --set phi=20
(repeatable, any parameter) replaces a file value in every model that has it, for every
patient ('# set:' header line)."""


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
    from tregsim.cli import options

    options.add_seed(parser)
    options.add_set(parser)
    options.add_out(parser)
    options.add_overwrite(parser)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.explore.compare_study import compare_study

    exp = None
    if args.experiment:
        from tregsim.experiment import load_experiment

        exp = load_experiment(args.experiment)
    st = compare_study(
        args.models.split(","),
        n=args.n,
        months=args.months,
        experiment=exp,
        dose_per_kg=args.dose_per_kg,
        infusion_day=args.infusion_day,
        il2_iu=args.il2,
        il2_days=args.il2_days,
        il2_start_day=args.il2_start_day,
        sets=options.parse_sets(args.set),
        **options.analysis_kwargs(args),
    )
    out = st.save(args.out)
    for line in st.report_lines():
        print(line, file=sys.stderr)
    print(f"compare: wrote {out}/compare.csv", file=sys.stderr)
    return 0
