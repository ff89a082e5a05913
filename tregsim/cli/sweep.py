"""``tregsim sweep EXPERIMENT --grid NAME=SPEC [--grid …] --n N --seed S --out DIR``."""

from __future__ import annotations

import sys

HELP = "sweep Treg dose × timing (or any regimen field / model parameter) with paired controls"

EPILOG = """grid syntax (repeat --grid; every combination is simulated):
  NAME=a..b:log:k   k log-spaced values from a to b      e.g. dose_per_kg=1e6..1e8:log:9
  NAME=a..b:lin:k   k evenly spaced values               e.g. infusion_day=14..179:lin:12
  NAME=a..b:step    a, a+step, ... up to b               e.g. infusion_day=14..180:7
  NAME=v1,v2,...    listed values                        e.g. n_infusions=1,2,3  phi=1,10,100
NAME: a regimen field of the treatment arm (dose_per_kg cells/kg, dose_total cells,
infusion_day days since diagnosis, n_infusions, interval_days days) or a population/fixed
model parameter (e.g. phi, psi, FX, lambda_ref). Writes sweep.csv (ΔC-peptide vs the same
patients under routine care at 12 and 24 months after the baseline visit, nmol/L),
heatmap.png (2+ axes) or lines.png (1 axis), and manifest.json."""


def add_arguments(parser) -> None:
    import argparse

    from tregsim.parallel import add_parallel_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="a swept quantity and its values (see below); repeatable",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=1000,
        help="virtual patients, the same at every grid point (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--arm", default=None, help="treatment arm whose regimen is swept (default: the first)"
    )
    parser.add_argument(
        "--months",
        default="12,24",
        help="visit months after the baseline visit for ΔC-peptide (default 12,24)",
    )
    parser.add_argument(
        "--responder-threshold",
        type=float,
        default=0.05,
        metavar="NMOL_L",
        help="responder: paired ΔC-peptide ≥ this, nmol/L (default 0.05)",
    )
    parser.add_argument(
        "--posterior",
        default=None,
        help="posterior netCDF (from `tregsim calibrate`): patient i draws its population "
        "parameters from draw i mod n_draws (default: the model file's values)",
    )
    add_parallel_arguments(parser, chunk_size=16384)


def _months(text: str) -> list[float]:
    from tregsim.errors import ArgumentError

    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ArgumentError(
            f"cannot read months {text!r}", field="--months", fix="write e.g. --months 12,24"
        ) from e
    if not vals or any(v < 0 for v in vals) or sorted(set(vals)) != vals:
        raise ArgumentError(
            f"months must be increasing and ≥ 0, got {text!r}",
            field="--months",
            fix="write e.g. --months 12,24",
        )
    return vals


def run(args) -> int:
    import time
    from pathlib import Path

    from tregsim.checkpoint import prepare_output_dir
    from tregsim.cohort import posterior_option
    from tregsim.errors import ArgumentError
    from tregsim.experiment import load_experiment
    from tregsim.explore.sweep import parse_grid, sweep, validate_sweep
    from tregsim.io import build_manifest, write_json
    from tregsim.parallel import parallel_options

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if not args.responder_threshold == args.responder_threshold:  # NaN
        raise ArgumentError(
            "--responder-threshold is NaN",
            field="--responder-threshold",
            fix="give a number in nmol/L, e.g. 0.05",
        )
    exp = load_experiment(args.experiment)
    axes = [parse_grid(g) for g in args.grid]
    months = _months(args.months)
    arm = validate_sweep(exp, axes, arm=args.arm, n=args.n)
    settings = {
        "grid": [f"{a.name}=" + ",".join(f"{v:.10g}" for v in a.values) for a in axes],
        "n": args.n,
        "arm": arm,
        "months": months,
        "responder_threshold_nmol_L": args.responder_threshold,
    }
    inputs = exp.input_files()
    posterior, label = posterior_option(args.posterior, exp.model)
    if posterior:
        inputs["posterior"] = args.posterior
    argv = ["tregsim", "sweep", *sys.argv[2:]] if sys.argv[1:2] == ["sweep"] else None
    manifest = build_manifest(
        command="sweep", seed=args.seed, inputs=inputs, settings=settings, argv=argv
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    t0 = time.perf_counter()
    res = sweep(
        exp,
        axes,
        n=args.n,
        seed=args.seed,
        arm=arm,
        months=months,
        threshold_nmol_L=args.responder_threshold,
        posterior=posterior,
        posterior_label=label,
        out_dir=out,
        **parallel_options(args),
    )
    seconds = time.perf_counter() - t0
    res.to_csv(out / "sweep.csv")

    from tregsim.plots import explore as pe

    if len(axes) >= 2:
        pe.save(pe.plot_sweep_heatmap(res, month=months[0]), out / "heatmap.png")
    else:
        pe.save(pe.plot_sweep_lines(res), out / "lines.png")
    manifest["settings_runtime"] = {
        "seconds": round(seconds, 2),
        "n_points": len(res.points),
        "n_rows": int(
            res.points.shape[0] * res.outcomes.ok.shape[1]
            + res.outcomes.n_shared_controls * res.outcomes.ok.shape[1]
        ),
    }
    write_json(Path(out) / "manifest.json", manifest)
    n_failed = int(res.table["n_failed"].sum())
    print(
        f"sweep: {len(res.points)} grid points × {res.outcomes.ok.shape[1]} patients "
        f"(+ {res.outcomes.n_shared_controls} control cohort(s)) in {seconds:.1f} s; "
        f"{n_failed} failed solves; wrote {out}/sweep.csv",
        file=sys.stderr,
    )
    return 0
