"""``tregsim run EXPERIMENT --out DIR [--quick] [--seed S]``: all enabled analyses + report."""

from __future__ import annotations

import sys

HELP = "run every analysis an experiment file enables and write one self-contained report.html"


def add_arguments(parser) -> None:
    from tregsim.cli import options

    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="use the experiment's [run.quick] budget (a check in under 2 minutes)",
    )
    parser.add_argument(
        "--phi",
        choices=("treatment-effect", "prior"),
        default="treatment-effect",
        help="the power section's assurance φ: 'treatment-effect' (default: the shipped "
        "posterior from the Treg trials' results) or 'prior' (φ's prior in the model file)",
    )
    options.add_variability(parser)
    options.add_common(parser)
    options.add_workers(parser)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.report.run import run_experiment

    outcomes = run_experiment(
        options.load_experiment_arg(args),
        args.out,
        posterior=options.posterior_arg(args),
        phi=args.phi.replace("-", "_"),
        variability=args.variability,
        quick=args.quick,
        seed=args.seed,
        overwrite=args.overwrite,
        workers=args.workers,
        argv=options.argv(),
    )
    failed = [oc for oc in outcomes if oc.status != "ok"]
    print(f"report: {args.out}/report.html", file=sys.stderr)
    if failed:
        for oc in failed:
            print(f"tregsim run: error: section {oc.name} failed: {oc.error}", file=sys.stderr)
        return 1
    return 0
