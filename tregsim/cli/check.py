"""``tregsim check natural-history EXPERIMENT --out DIR``: the routine-care arm vs placebo data.
``tregsim check treatment-effect EXPERIMENT --out DIR``: the arm comparison under the
treatment-effect posterior (docs/treatment_effect.md).
``tregsim check published-course EXPERIMENT --data CSV --out DIR``: the routine-care arm's
per-visit medians vs a published median (IQR) course (docs/calibration.md, "Out of sample:
very young children")."""

from __future__ import annotations

import sys

HELP = (
    "compare the model with reference data (natural-history: control arm vs placebo arms; "
    "treatment-effect: the arm comparison under the Treg trials' evidence; published-course: "
    "per-visit medians vs a published median (IQR) course)"
)

CHECKS = ("natural-history", "treatment-effect", "published-course")


def add_arguments(parser) -> None:
    from tregsim.cli import options

    parser.add_argument("check", choices=CHECKS, help="which check to run")
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--data",
        help="natural-history: path of placebo_cpeptide_by_age_month.csv (default: "
        "../shared/data/); published-course: the published course (required), e.g. "
        "../shared/data/young_children_cpeptide_haller2011.csv",
    )
    parser.add_argument(
        "--replicates",
        type=int,
        default=2000,
        help="published-course: virtual cohorts of the published size (default 2000)",
    )
    parser.add_argument(
        "--age-floor",
        type=float,
        default=None,
        metavar="YEARS",
        help="published-course: do not extrapolate the hazard's age effect below this age "
        "(e.g. 8: the records have no participant younger); default: the model as calibrated",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="simulated patients per observed month-0 patient (default 10)",
    )
    parser.add_argument(
        "--treatment-effect",
        default=None,
        help="treatment-effect posterior (default: calibration/posteriors/treatment_effect.nc)",
    )
    options.add_variability(parser)
    options.add_common(parser)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.placebo import natural_history_check

    exp = options.load_experiment_arg(args)
    if args.check == "treatment-effect":
        return _treatment_effect(args, exp)
    if args.check == "published-course":
        return _published_course(args, exp)
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


def _treatment_effect(args, exp) -> int:
    from tregsim.calibrate.treatment_effect.check import effect_under_posterior
    from tregsim.cli import options
    from tregsim.results import ensure_output_dir, posterior_path

    nh = posterior_path(options.posterior_arg(args))
    res = effect_under_posterior(
        exp,
        posterior=args.treatment_effect,
        natural_history=nh,
        seed=1 if args.seed is None else args.seed,
        argv=options.argv(),
    )
    out = res.save(ensure_output_dir(args.out))
    for line in res.report_lines():
        print(line)
    print(f"wrote {out}/treatment_effect.csv and phi_prior_posterior.png", file=sys.stderr)
    return 0


def _published_course(args, exp) -> int:
    from pathlib import Path

    from tregsim.cli import options
    from tregsim.errors import ArgumentError
    from tregsim.published_course import published_course_check

    if args.data is None:
        raise ArgumentError(
            "published-course needs the published course",
            field="--data",
            fix="pass --data CSV, e.g. ../shared/data/young_children_cpeptide_haller2011.csv",
        )
    if args.replicates < 20:
        raise ArgumentError(
            f"--replicates must be ≥ 20, got {args.replicates}",
            field="--replicates",
            fix="give 20 or more virtual cohorts (default 2000)",
        )
    res = published_course_check(
        exp,
        args.data,
        n_rep=args.replicates,
        age_floor=args.age_floor,
        **options.analysis_kwargs(args),
    )
    floor = "" if args.age_floor is None else f"; hazard's age held at ≥ {args.age_floor:g} y"
    note = f"model {exp.model.name}; {exp.name}; published: {Path(args.data).name}{floor}"
    out = res.save(args.out, footnote=note)
    for line in res.report_lines():
        print(line)
    print(f"wrote {out}/published_course.csv and published_course.png", file=sys.stderr)
    return 0
