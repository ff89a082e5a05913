"""``tregsim check natural-history EXPERIMENT --out DIR``: the routine-care arm vs placebo data."""

from __future__ import annotations

import sys

HELP = "compare the model with reference data (natural-history: control arm vs placebo arms)"

CHECKS = ("natural-history",)
DATA_NAME = "placebo_cpeptide_by_age_month.csv"


def add_arguments(parser) -> None:
    parser.add_argument("check", choices=CHECKS, help="which check to run")
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--data", help=f"path of {DATA_NAME} (default: ../shared/data/)")
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="simulated patients per observed month-0 patient (default 10)",
    )
    parser.add_argument(
        "--posterior",
        help="posterior netCDF (from `tregsim calibrate`, e.g. "
        "calibration/posteriors/natural_history.nc): a posterior predictive check",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of a different run in --out instead of refusing",
    )


def default_data_path():
    """``../shared/data/placebo_cpeptide_by_age_month.csv`` beside the working directory or the
    source tree, whichever exists first (``None`` if neither)."""
    from pathlib import Path

    import tregsim

    for base in (Path.cwd().parent, Path(tregsim.__file__).resolve().parents[2]):
        p = base / "shared" / "data" / DATA_NAME
        if p.exists():
            return p
    return None


def run(args) -> int:
    from pathlib import Path

    from tregsim import io
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.cohort import natural_history
    from tregsim.errors import ArgumentError, DataFileError
    from tregsim.experiment import load_experiment

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if args.scale < 1:
        raise ArgumentError(
            f"--scale must be ≥ 1, got {args.scale}", field="--scale", fix="give a whole number ≥ 1"
        )
    data = Path(args.data) if args.data else default_data_path()
    if data is None or not data.exists():
        raise DataFileError(
            "placebo table not found",
            file=data or DATA_NAME,
            field="--data",
            fix=f"pass --data PATH/{DATA_NAME}",
        )
    exp = load_experiment(args.experiment)
    from tregsim.cohort import read_placebo_table

    read_placebo_table(data)  # validate the table before anything is written
    posterior = None
    inputs = {**{k: str(v) for k, v in exp.input_files().items()}, "data": str(data)}
    if args.posterior:
        from tregsim.cohort import load_posterior_draws

        if not Path(args.posterior).exists():
            raise DataFileError(
                "posterior file not found",
                file=args.posterior,
                field="--posterior",
                fix="pass the posterior.nc written by `tregsim calibrate`",
            )
        posterior = load_posterior_draws(args.posterior, exp.model)
        inputs["posterior"] = str(args.posterior)
    manifest = io.build_manifest(
        command="check natural-history",
        seed=args.seed,
        inputs=inputs,
        settings={"scale": args.scale},
        argv=["tregsim", *sys.argv[1:]],
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    nh = natural_history(exp, data, args.seed, scale=args.scale, posterior=posterior)
    io.write_text(out / "natural_history.csv", nh.frame().to_csv(index=False))
    from tregsim.plots.cohort import plot_natural_history, save

    save(plot_natural_history(nh, exp), out / "natural_history_vpc.png")
    io.write_json(out / io.MANIFEST, manifest)
    for r in nh.rows:
        if r["age_group"] == "all" and r["month"] in (0, 12, 24):
            print(
                f"month {r['month']:g}: simulated mean {r['sim_mean_nmol_L']:.3f} vs observed "
                f"{r['obs_mean_nmol_L']:.3f} nmol/L (z = {r['z_mean']:+.1f}); ≥0.2: "
                f"{r['sim_frac_ge_0_2']:.0%} vs {r['obs_frac_ge_0_2']:.0%}"
            )
    print(f"wrote {out}/natural_history.csv and natural_history_vpc.png", file=sys.stderr)
    return 0
