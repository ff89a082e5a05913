"""``tregsim check natural-history EXPERIMENT --out DIR``: the routine-care arm vs placebo data."""

from __future__ import annotations

import sys

HELP = "compare the model with reference data (natural-history: control arm vs placebo arms)"

CHECKS = ("natural-history",)


def add_arguments(parser) -> None:
    from tregsim.cli import options

    parser.add_argument("check", choices=CHECKS, help="which check to run")
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--data",
        help="path of placebo_cpeptide_by_age_month.csv (default: ../shared/data/)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="simulated patients per observed month-0 patient (default 10)",
    )
    options.add_common(parser)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.placebo import natural_history_check

    exp = options.load_experiment_arg(args)
    nh = natural_history_check(
        exp,
        data=args.data,
        scale=args.scale,
        **options.analysis_kwargs(args),
    )
    out = nh.save(args.out, exp)
    for line in nh.report_lines():
        print(line)
    print(f"wrote {out}/natural_history.csv and natural_history_vpc.png", file=sys.stderr)
    return 0
