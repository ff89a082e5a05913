"""``tregsim cohort EXPERIMENT --n N --seed S --out DIR``: a virtual cohort in every arm."""

from __future__ import annotations

import sys

HELP = "simulate N virtual patients in every arm of an experiment (paired, streamed in chunks)"


def add_arguments(parser) -> None:
    from tregsim.cli import options

    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument("--n", type=int, required=True, help="number of eligible patients")
    parser.add_argument(
        "--save-trajectories",
        action="store_true",
        help="keep every patient in cohort.nc (memory grows ~0.2 kB/patient); "
        "default keeps the first 100,000",
    )
    parser.add_argument(
        "--posterior-draw",
        type=int,
        default=None,
        metavar="K",
        help="every patient takes posterior draw K (one true θ, as in one real trial: the "
        "cohort to analyse like a trial's data; several K = a VPC's replicates); default: "
        "patient i takes draw i mod n_draws (the posterior's uncertainty in the cohort)",
    )
    options.add_variability(parser)
    options.add_common(parser, parallel_chunk=4096)


def run(args) -> int:
    import time

    from tregsim.cli import options
    from tregsim.cohort import KEEP_DEFAULT, cohort_study

    exp = options.load_experiment_arg(args)
    t0 = time.perf_counter()
    res = cohort_study(
        exp,
        n=args.n,
        keep=None if args.save_trajectories else KEEP_DEFAULT,
        posterior_draw=args.posterior_draw,
        **options.analysis_kwargs(args),
    )
    res.save(args.out)
    for line in res.report_lines():
        print(line)
    if (warning := res.age_warning()) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.n:,} patients (acceptance {res.acceptance_rate:.1%}) in "
        f"{time.perf_counter() - t0:.1f} s → {args.out}",
        file=sys.stderr,
    )
    return 0
