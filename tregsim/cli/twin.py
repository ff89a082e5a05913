"""``tregsim twin DATA.csv --experiment EXP --out DIR``: each participant's routine-care twin."""

from __future__ import annotations

import sys

HELP = "predict each participant's routine-care C-peptide course from their baseline records"


def add_arguments(parser) -> None:
    from tregsim.cli import options

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
    parser.add_argument(
        "--draws",
        type=int,
        default=None,
        help="posterior draws (records structure, default 256) or posterior × individual "
        "draws (lumped, default 512)",
    )
    parser.add_argument(
        "--months", help="visit months after baseline, comma list (default: the experiment's)"
    )
    options.add_common(parser)


def run(args) -> int:
    import time

    from tregsim.cli import options
    from tregsim.errors import ArgumentError
    from tregsim.twin import read_twin_records, twin_study

    if args.draws is not None and args.draws < 2:
        raise ArgumentError(
            f"--draws must be ≥ 2, got {args.draws}", field="draws", fix="use e.g. 256"
        )
    months = None
    if args.months:
        try:
            months = [float(m) for m in args.months.split(",") if m.strip()]
        except ValueError:
            raise ArgumentError(
                f"cannot read --months {args.months!r}",
                field="months",
                fix="give months after baseline as a comma list, e.g. 6,12,24",
            ) from None
    records = read_twin_records(args.data)
    exp = options.load_experiment_arg(args)
    posterior = options.posterior_arg(args)
    t0 = time.perf_counter()
    pred = twin_study(
        exp,
        records,
        posterior=posterior,
        n_draws=args.draws,
        seed=args.seed,
        months=months,
        argv=options.argv(),
        progress=True,
    )
    pred.manifest["inputs"]["data"] = _data_input(args.data)
    pred.save(args.out)
    for line in pred.report_lines():
        print(line)
    print(f"in {time.perf_counter() - t0:.1f} s → {args.out}", file=sys.stderr)
    return 0


def _data_input(path):
    from tregsim.io import file_sha256
    from tregsim.results import display_path

    return {"path": display_path(path), "sha256": file_sha256(path)}
