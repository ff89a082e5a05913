"""``tregsim cohort EXPERIMENT --n N --seed S --out DIR``: a virtual cohort in every arm."""

from __future__ import annotations

import sys

HELP = "simulate N virtual patients in every arm of an experiment (paired, streamed in chunks)"


def add_arguments(parser) -> None:
    from tregsim.parallel import add_parallel_arguments

    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument("--n", type=int, required=True, help="number of eligible patients")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--save-trajectories",
        action="store_true",
        help="keep every patient in cohort.nc (memory grows ~0.2 kB/patient); "
        "default keeps the first 100,000",
    )
    parser.add_argument(
        "--posterior",
        metavar="FILE",
        help="posterior netCDF (from `tregsim calibrate`): patient i uses "
        "draw i mod n_draws of the population parameters",
    )
    add_parallel_arguments(parser, chunk_size=4096)


def run(args) -> int:
    import time

    from tregsim import io
    from tregsim.checkpoint import prepare_output_dir
    from tregsim.cohort import KEEP_DEFAULT, posterior_option, run_cohort
    from tregsim.errors import ArgumentError
    from tregsim.experiment import load_experiment
    from tregsim.parallel import parallel_options

    if args.n < 1:
        raise ArgumentError(
            f"--n must be ≥ 1, got {args.n}",
            field="--n",
            fix="give the number of virtual patients, e.g. --n 1000",
        )
    if args.seed < 0:
        raise ArgumentError(
            f"--seed must be ≥ 0, got {args.seed}", field="--seed", fix="give a whole number ≥ 0"
        )
    exp = load_experiment(args.experiment)
    inputs = {k: str(v) for k, v in exp.input_files().items()}
    posterior, _ = posterior_option(args.posterior, exp.model)
    if posterior:
        inputs["posterior"] = args.posterior
    keep = None if args.save_trajectories else KEEP_DEFAULT
    opts = parallel_options(args)
    manifest = io.build_manifest(
        command="cohort",
        seed=args.seed,
        inputs=inputs,
        settings={"n": args.n, "keep": keep},
        argv=["tregsim", *sys.argv[1:]],
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    t0 = time.perf_counter()
    res = run_cohort(exp, args.n, args.seed, keep=keep, posterior=posterior, out_dir=out, **opts)
    res.save(out)
    from tregsim.plots.cohort import plot_cohort, save

    save(plot_cohort(res), out / "cpeptide_by_arm.png")
    manifest["results"] = {
        "acceptance_rate": res.acceptance_rate,
        "n_failed": {r["arm"]: r["n_failed"] for r in res.summary},
        "n_patients_in_cohort_nc": int(res.patients["patient"].size),
    }
    io.write_json(out / io.MANIFEST, manifest)
    last = [r for r in res.summary if r["visit_month"] == exp.visit_months[-1]]
    for r in last:
        d = (
            ""
            if r["arm"] == exp.control_arm
            else f", paired Δ vs {exp.control_arm} {r['diff_mean_nmol_L']:+.4f} "
            f"[{r['diff_ci95_low_nmol_L']:+.4f}, {r['diff_ci95_high_nmol_L']:+.4f}]"
        )
        print(
            f"{r['arm']}: month {r['visit_month']:g} mean {r['mean_nmol_L']:.3f} nmol/L, "
            f"≥0.2 nmol/L {r['frac_ge_0_2_nmol_L']:.1%}{d}"
        )
    print(
        f"{args.n:,} patients (acceptance {res.acceptance_rate:.1%}) in "
        f"{time.perf_counter() - t0:.1f} s → {out}",
        file=sys.stderr,
    )
    return 0
