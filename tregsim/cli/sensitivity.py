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

    from tregsim.parallel import add_parallel_arguments

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
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--arm", default=None, help="treatment arm (default: the first)")
    add_parallel_arguments(parser, chunk_size=16384)


def run(args) -> int:
    import time
    from pathlib import Path

    from tregsim.checkpoint import prepare_output_dir
    from tregsim.errors import ArgumentError
    from tregsim.experiment import load_experiment
    from tregsim.explore import sensitivity as sa
    from tregsim.explore.sweep import ledger_lines
    from tregsim.io import build_manifest, write_json
    from tregsim.parallel import parallel_options

    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    if args.patients < 1:
        raise ArgumentError(
            f"--patients must be ≥ 1, got {args.patients}",
            field="--patients",
            fix="use e.g. --patients 16",
        )
    exp = load_experiment(args.experiment)
    names = [p.strip() for p in args.params.split(",") if p.strip()]
    overrides = {r.name: r for r in (sa.parse_range(s, exp.model) for s in args.range)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ArgumentError(
            f"--range given for {unknown}, which are not in --params",
            field="--range",
            fix="add them to --params or drop the --range",
        )
    problem = sa.make_problem(
        [overrides.get(nm) or sa.default_ranges(exp.model, [nm])[0] for nm in names]
    )
    if args.method == "sobol":
        sa.check_sample_size(args.n, "--n", power_of_two=True)
    else:
        sa.check_sample_size(args.n, "--n", power_of_two=False)
    arm = exp.treatment_arm(args.arm)
    settings = {
        "method": args.method,
        "n": args.n,
        "patients": args.patients,
        "arm": arm,
        "problem": [[p.name, p.low, p.high, p.scale] for p in problem],
    }
    argv = ["tregsim", "sensitivity", *sys.argv[2:]] if sys.argv[1:2] == ["sensitivity"] else None
    manifest = build_manifest(
        command="sensitivity",
        seed=args.seed,
        inputs=exp.input_files(),
        settings=settings,
        argv=argv,
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    t0 = time.perf_counter()
    res = sa.experiment_sensitivity(
        exp,
        problem,
        args.n,
        seed=args.seed,
        method=args.method,
        n_patients=args.patients,
        arm=arm,
        out_dir=out,
        **parallel_options(args),
    )
    seconds = time.perf_counter() - t0
    swept = [p.name for p in problem]
    ledger = ledger_lines(exp, arm=arm, swept=swept, n=args.patients, seed=args.seed)
    ledger = [
        ln.replace("# phi: swept (column phi)", "# phi: varied (a sensitivity parameter)")
        for ln in ledger
    ]
    res.to_csv(out / "indices.csv", header=ledger)

    from tregsim.plots import explore as pe

    foot = pe._ledger_footnote(ledger)
    index = "ST" if args.method == "sobol" else "mu_star"
    for i, o in enumerate(res.outputs):
        if o.month == 12.0 or (12.0 not in [x.month for x in res.outputs] and i == 0):
            ax = pe.plot_sensitivity_bars(res, i)
            pe.add_footnote(ax.figure, foot)
            ax.figure.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
            pe.save(ax.figure, out / f"bars_{o.name}_{o.month:g}mo.png")
    for name in dict.fromkeys(o.name for o in res.outputs):
        ax = pe.plot_indices_vs_time(res, name, index)
        pe.add_footnote(ax.figure, foot)
        ax.figure.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
        pe.save(ax.figure, out / f"time_{name}.png")
    manifest["settings_runtime"] = {
        "seconds": round(seconds, 2),
        "n_model_evaluations": res.n_evaluations,
    }
    write_json(Path(out) / "manifest.json", manifest)
    for note in res.notes:
        print(f"sensitivity: note: {note}", file=sys.stderr)
    print(
        f"sensitivity ({args.method}): {res.n_evaluations} design points × {args.patients} "
        f"patients × 2 arms in {seconds:.1f} s; wrote {out}/indices.csv",
        file=sys.stderr,
    )
    return 0
