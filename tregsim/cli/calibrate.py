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
        help="output folder (created; a simulation "
        "bank already there with the same settings is reused and extended)",
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
    import sys

    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.pipeline import calibrate
    from tregsim.errors import ArgumentError

    cfg = load_config(args.config)
    if cfg.kind == "likelihood":
        return _run_likelihood(cfg, args)
    if args.budget is not None and args.budget < 50:
        raise ArgumentError(
            f"--budget {args.budget} is too small",
            field="--budget",
            fix="give at least 50 simulations (1,000+ for a usable posterior)",
        )
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


def _run_likelihood(cfg, args) -> int:
    import math
    import sys

    from tregsim.calibrate.individual_run import calibrate_individual
    from tregsim.errors import ArgumentError

    for flag, given, fix in (
        ("--budget", args.budget is not None, "set [method] n_steps in the config instead"),
        ("--no-diagnostics", args.no_diagnostics, "drop it"),
    ):
        if given:
            raise ArgumentError(
                f"{flag} is an NPE option; {cfg.path.name} has method.kind = 'likelihood'",
                field=flag,
                fix=fix,
            )
    res = calibrate_individual(
        cfg, args.out, seed=args.seed, progress=not args.quiet, command_line=sys.argv
    )
    m = cfg.method
    print(
        f"posterior: {res.out / 'posterior.nc'} ({res.n_participants} participants, "
        f"{res.n_visits} visits, {res.n_censored} below the LLOQ)"
    )
    head = ("MAP", "mean", "SD", "q05", "q95", "τ (steps)")
    print(f"  {'parameter':<13s} {'unit':<11s}" + "".join(f"{h:>11s}" for h in head))
    for _, r in res.table.iterrows():
        vals = [r[k] for k in ("map", "posterior_mean", "posterior_sd", "q05", "q95")]
        print(
            f"  {r['parameter']:<13s} {r['unit']:<11s}"
            + "".join(f"{v:>11.4g}" for v in vals)
            + f"{r['autocorr_time_steps']:>11.0f}"
        )
    near = int((res.starts_logpost >= res.map_logpost - 0.1).sum())
    print(
        f"  MAP log posterior {res.map_logpost:.2f}: {near}/{len(res.starts_logpost)} "
        "starts within 0.1 of it"
    )
    ratio = res.kept_steps_per_tau
    note = "" if math.isfinite(ratio) and ratio >= 50 else " (< 50: run more steps)"
    print(
        f"  emcee: {m['n_walkers']} walkers x {m['n_steps']} steps (burn {m['burn']}, "
        f"thin {m['thin']}), acceptance {res.acceptance:.2f}, "
        f"steps after burn-in / max τ = {ratio:.0f}{note}"
    )
    print(
        "  timings (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in res.timings_s.items())
    )
    return 0
