"""``tregsim twin DATA.csv --experiment EXP --out DIR``: each participant's routine-care twin."""

from __future__ import annotations

import sys

HELP = "predict each participant's routine-care C-peptide course from their baseline records"


def add_arguments(parser) -> None:
    parser.add_argument(
        "data",
        help="pre-randomization records, long format (id, day, cpeptide_nmol_l, age[, censored, "
        "fasting_cpeptide_pmol_l]) or NONMEM style (ID, TIME, DV, MDV, EVID, AMT, AGE[, FCPEP])",
    )
    parser.add_argument(
        "--experiment",
        required=True,
        help="experiment file or name: model, baseline distribution, visit months",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--posterior",
        metavar="FILE",
        help="posterior netCDF of the population parameters (default: the shipped "
        "calibration/posteriors/natural_history.nc)",
    )
    parser.add_argument(
        "--draws", type=int, default=512, help="posterior × individual draws per participant"
    )
    parser.add_argument(
        "--months", help="visit months after baseline, comma list (default: the experiment's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an output folder of another command"
    )


def run(args) -> int:
    import time

    import numpy as np

    from tregsim import io
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.errors import ArgumentError
    from tregsim.experiment import load_experiment
    from tregsim.twin import read_twin_records, twin_for_experiment

    if args.draws < 2:
        raise ArgumentError(
            f"--draws must be ≥ 2, got {args.draws}", field="--draws", fix="use e.g. 512"
        )
    months = None
    if args.months:
        try:
            months = [float(m) for m in args.months.split(",") if m.strip()]
        except ValueError:
            raise ArgumentError(
                f"cannot read --months {args.months!r}",
                field="--months",
                fix="give months after baseline as a comma list, e.g. 6,12,24",
            ) from None
    records = read_twin_records(args.data)
    exp = load_experiment(args.experiment)
    inputs = {k: str(v) for k, v in exp.input_files().items()}
    inputs["data"] = args.data
    if args.posterior:
        inputs["posterior"] = args.posterior
    manifest = io.build_manifest(
        command="twin",
        seed=args.seed,
        inputs=inputs,
        settings={"draws": args.draws, "months": months},
        argv=["tregsim", *sys.argv[1:]],
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    t0 = time.perf_counter()
    pred = twin_for_experiment(
        exp, records, posterior=args.posterior, n_draws=args.draws, seed=args.seed, months=months
    )
    pred.save(out, manifest=manifest)
    last = len(pred.months) - 1
    for i in range(min(pred.ids.size, 5)):
        q = pred.quantiles[i, last]
        print(
            f"{pred.ids[i]}: month {pred.months[last]:g} ln(AUC+1) {pred.mean[i, last]:.3f} "
            f"(90 % {q[0]:.3f}–{q[-1]:.3f}; AUC median {np.expm1(q[len(q) // 2]):.3f} nmol/L), "
            f"ESS {pred.ess[i]:.0f}"
        )
    if pred.ids.size > 5:
        print(f"... {pred.ids.size - 5} more")
    n_low = int(pred.ess_low.sum())
    if n_low:
        print(
            f"warning: {n_low} participant(s) with effective sample size < {pred.min_ess:g} "
            "(column ess_low): their baseline is unusual under the posterior; raise --draws",
            file=sys.stderr,
        )
    print(
        f"{pred.ids.size} participants, {args.draws} draws each, median ESS "
        f"{np.median(pred.ess):.0f}, in {time.perf_counter() - t0:.1f} s → {out}",
        file=sys.stderr,
    )
    return 0
