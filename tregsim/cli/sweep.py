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

    from tregsim.cli import options

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
    options.add_common(parser, parallel_chunk=16384)


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
    from tregsim.cli import options
    from tregsim.explore.sweep import sweep_study

    exp = options.load_experiment_arg(args)
    res = sweep_study(
        exp,
        args.grid,
        n=args.n,
        arm=args.arm,
        months=_months(args.months),
        threshold_nmol_L=args.responder_threshold,
        **options.analysis_kwargs(args),
    )
    out = res.save(args.out)
    n_failed = int(res.table["n_failed"].sum())
    print(
        f"sweep: {len(res.points)} grid points × {res.outcomes.ok.shape[1]} patients "
        f"(+ {res.outcomes.n_shared_controls} control cohort(s)) in "
        f"{res.manifest['settings_runtime']['seconds']:.1f} s; "
        f"{n_failed} failed solves; wrote {out}/sweep.csv",
        file=sys.stderr,
    )
    return 0
