"""``tregsim calibrate CONFIG --out DIR``: calibration of a model's parameters to data.

The config's ``[method] kind`` picks the path (:data:`EPILOG` lists them, with the shipped
configs; docs/calibration.md and docs/treatment_effect.md document every key). ``--budget`` and
``--no-diagnostics`` are NPE options and are refused with other kinds (their chain length or
budgets are set in the config).
"""

from __future__ import annotations

HELP = (
    "calibrate model parameters to data: NPE (sbi) on summaries, or a likelihood (emcee) on "
    "patient records, or the treatment-effect synthesis ([method] kind of the config)"
)

EPILOG = """\
kinds ([method] kind of CONFIG):
  npe                   population NPE (sbi) on per-age-group x month summaries
                        e.g. calibration/natural_history_npe.toml (natural_history_lumped)
  npe_structure         NPE on per-visit and within-patient summaries of records-like cohorts
                        e.g. calibration/natural_history_structure_npe.toml
  structure_likelihood  hierarchical likelihood of the structure of individual variability
                        on long-format records (emcee); the shipped default natural history
                        e.g. calibration/placebo_records_structure.toml (natural_history)
  likelihood            individual-level likelihood on long-format records (MAP + emcee)
                        e.g. calibration/placebo_records_likelihood.toml
  treatment_effect      evidence synthesis for the Treg arm's effect (phi) from the Treg trials
                        e.g. calibration/treatment_effect.toml

Reproduce a shipped posterior: tregsim calibrate CONFIG --out calibration/posteriors
"""


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
