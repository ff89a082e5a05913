"""``tregsim calibrate CONFIG --out DIR``: calibration of a model's population parameters.

The config's ``[method] kind`` picks the path: ``"npe"`` (default) runs population NPE (sbi)
on summary data (:func:`tregsim.calibrate.pipeline.calibrate`); ``"likelihood"`` runs the
individual-level hierarchical likelihood (MAP + emcee) on long-format patient records
(:func:`tregsim.calibrate.individual_run.calibrate_individual`). ``--budget`` and
``--no-diagnostics`` are NPE options and are refused with a likelihood config (its chain
length is ``[method] n_steps`` in the config).
"""

from __future__ import annotations

HELP = (
    "calibrate population parameters to data: NPE (sbi) on summaries, or the "
    "individual-level likelihood (emcee) on patient records ([method] kind)"
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "config", help="calibration TOML, e.g. calibration/natural_history_npe.toml"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder, in the shipped layout: DIR/NAME.nc (the posterior; NAME is the "
        "config's name) and DIR/NAME/ (manifest, tables, figures, working files; a simulation "
        "bank already there with the same settings is reused and extended). "
        "--out calibration/posteriors replaces the shipped posterior",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="NPE only: number of training simulations (θ draws); default: config budget "
        "(likelihood configs set their chain length with [method] n_steps)",
    )
    parser.add_argument("--seed", type=int, default=None, help="master seed; default: config seed")
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="NPE only: skip SBC and posterior-predictive checks",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from tregsim.calibration import calibration_study
    from tregsim.cli import options

    cal = calibration_study(
        args.config,
        args.out,
        budget=args.budget,
        seed=args.seed,
        progress=not args.quiet,
        diagnostics=not args.no_diagnostics,
        argv=options.argv(),
    )
    for line in cal.report_lines():
        print(line)
    return 0
