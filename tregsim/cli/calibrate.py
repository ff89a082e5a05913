"""``tregsim calibrate CONFIG --out DIR``: population NPE calibration of a model to data."""

from __future__ import annotations

HELP = "calibrate population parameters to data by NPE (sbi): posterior.nc, diagnostics, figures"


def add_arguments(parser) -> None:
    parser.add_argument(
        "config", help="calibration TOML, e.g. calibration/natural_history_npe.toml"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created; a simulation "
        "bank already there with the same settings is reused and extended)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="number of training simulations (θ draws); default: config budget",
    )
    parser.add_argument("--seed", type=int, default=None, help="master seed; default: config seed")
    parser.add_argument(
        "--no-diagnostics", action="store_true", help="skip SBC and posterior-predictive checks"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import sys

    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.pipeline import calibrate
    from tregsim.errors import ArgumentError

    if args.budget is not None and args.budget < 50:
        raise ArgumentError(
            f"--budget {args.budget} is too small",
            field="--budget",
            fix="give at least 50 simulations (1,000+ for a usable posterior)",
        )
    cfg = load_config(args.config)
    res = calibrate(
        cfg,
        args.out,
        budget=args.budget,
        seed=args.seed,
        progress=not args.quiet,
        diagnostics=not args.no_diagnostics,
        command_line=sys.argv,
    )
    t = res.contraction
    print(f"posterior: {res.out / 'posterior.nc'}")
    for _, r in t.iterrows():
        print(
            f"  {r['parameter']:>13s} [{r['unit']}]: mean {r['posterior_mean']:.4g}, "
            f"90% [{r['posterior_q05']:.4g}, {r['posterior_q95']:.4g}], "
            f"contraction {r['contraction']:.2f}"
        )
    if res.sbc_coverage is not None:
        for _, r in res.sbc_coverage.iterrows():
            print(
                f"  SBC {r['parameter']:>13s}: coverage50 {r['coverage_50']:.2f}, "
                f"coverage90 {r['coverage_90']:.2f}"
            )
        print(
            "  predictive 95% inside: "
            + ", ".join(f"{k} {v}" for k, v in res.info["predictive_inside_95"].items())
        )
    print("  timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings_s.items()))
    return 0
