"""``tregsim check natural-history EXPERIMENT --out DIR``: the routine-care arm vs placebo data.
``tregsim check treatment-effect EXPERIMENT --out DIR``: the arm comparison under the
treatment-effect posterior (docs/treatment_effect.md)."""

from __future__ import annotations

import sys

HELP = (
    "compare the model with reference data (natural-history: control arm vs placebo arms; "
    "treatment-effect: the arm comparison under the Treg trials' evidence)"
)

CHECKS = ("natural-history", "treatment-effect")


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
