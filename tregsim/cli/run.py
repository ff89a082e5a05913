"""``tregsim run EXPERIMENT --out DIR [--quick] [--seed S]``: all enabled analyses + report."""

from __future__ import annotations

import sys

HELP = "run every analysis an experiment file enables and write one self-contained report.html"


def add_arguments(parser) -> None:
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="use the experiment's [run.quick] budget (a check in under 2 minutes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of a different run in --out instead of refusing "
        "(without it, rerunning the same run resumes its checkpoints)",
    )
    parser.add_argument(
        "--posterior",
        metavar="FILE",
        help="population posterior (netCDF) for the cohort, natural-history and power sections "
        "(default: the shipped calibration/posteriors/natural_history.nc; 'none' = the model "
        "file's values)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run each section's chunks on a local Dask cluster of N worker processes "
        "(default: in this process; results do not depend on it)",
    )


def run(args) -> int:
    from tregsim.errors import ArgumentError
    from tregsim.report.run import run_experiment

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if args.workers is not None and args.workers < 1:
        raise ArgumentError(
            f"--workers must be ≥ 1, got {args.workers}",
            field="--workers",
            fix="give a whole number ≥ 1, or omit it to run in this process",
        )
    from pathlib import Path

    from tregsim.errors import DataFileError
    from tregsim.posterior import DEFAULT_POSTERIOR

    posterior = args.posterior
    if posterior is None:
        posterior = str(DEFAULT_POSTERIOR) if DEFAULT_POSTERIOR.exists() else None
    elif posterior.lower() == "none":
        posterior = None
    elif not Path(posterior).exists():
        raise DataFileError(
            "posterior file not found",
            file=posterior,
            field="--posterior",
            fix="give a posterior.nc from `tregsim calibrate`, or 'none'",
        )
    outcomes = run_experiment(
        args.experiment,
        args.out,
        posterior=posterior,
        quick=args.quick,
        seed=args.seed,
        overwrite=args.overwrite,
        workers=args.workers,
        argv=["tregsim", *sys.argv[1:]],
    )
    failed = [oc for oc in outcomes if oc.status != "ok"]
    print(f"report: {args.out}/report.html", file=sys.stderr)
    if failed:
        for oc in failed:
            print(f"tregsim run: error: section {oc.name} failed: {oc.error}", file=sys.stderr)
        return 1
    return 0
