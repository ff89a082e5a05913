"""``tregsim sensitivity EXPERIMENT --params a,b,… --method sobol|morris --n N --out DIR``."""

from __future__ import annotations

import sys

HELP = "global sensitivity (Sobol' or Morris, via SALib) of C-peptide and ΔC-peptide over time"

EPILOG = """Outputs, at each visit month after the baseline visit: the cohort mean of routine-care
C-peptide and of the paired ΔC-peptide (Treg arm − the same patient under routine care),
MMTT 2-h AUC mean in nmol/L, over --patients fixed virtual patients. Parameter ranges default
to the 5-95 % quantiles of the model file's priors (log scale for log-normal priors);
override with --range NAME=LOW..HIGH[:log]. Writes indices.csv, bars_<output>_<m>mo.png,
time_<output>.png and manifest.json."""


def add_arguments(parser) -> None:
    import argparse

    from tregsim.cli import options

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--params",
        default="lambda_ref,gamma_a,q,phi,FX,alpha_X,F_M,psi,w",
        help="comma-separated model parameters to vary (default: %(default)s)",
    )
    parser.add_argument(
        "--method",
        choices=("sobol", "morris"),
        default="sobol",
        help="sobol (S1, ST) or morris (mu*, sigma) (default sobol)",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=512,
        help="Sobol' base sample (power of 2; n·(d+2) model runs) or Morris "
        "trajectories (n·(d+1) runs) (default 512)",
    )
    parser.add_argument(
        "--patients",
        type=int,
        default=16,
        help="fixed virtual patients per design point (default 16)",
    )
    parser.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="NAME=LOW..HIGH[:log]",
        help="override the prior-based range of one parameter; repeatable",
    )
    parser.add_argument("--arm", default=None, help="treatment arm (default: the first)")
    options.add_common(parser, posterior=False, parallel_chunk=16384)


def run(args) -> int:
    from tregsim.cli import options
    from tregsim.explore.sensitivity import sensitivity_study

    res = sensitivity_study(
        options.load_experiment_arg(args),
        params=args.params.split(","),
        ranges=args.range,
        method=args.method,
        n=args.n,
        patients=args.patients,
        arm=args.arm,
        **options.analysis_kwargs(args),
    )
    out = res.save(args.out)
    for note in res.notes:
        print(f"sensitivity: note: {note}", file=sys.stderr)
    print(
        f"sensitivity ({args.method}): {res.n_evaluations} design points × {args.patients} "
        f"patients × 2 arms in {res.manifest['settings_runtime']['seconds']:.1f} s; "
        f"wrote {out}/indices.csv",
        file=sys.stderr,
    )
    return 0
