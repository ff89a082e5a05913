"""``tregsim responders EXPERIMENT --out DIR``: who benefits, and the φ a target would need."""

from __future__ import annotations

import sys

HELP = "rank covariates/individual parameters by paired benefit; find the φ a target needs"

EPILOG = """Writes ranking.csv (Spearman ρ of each predictor with the paired ΔC-peptide at
--month months after the baseline visit, nmol/L), partial_dependence.png, phi_needed.csv and
phi_curve.png (the potency × homing φ at which the mean relative preservation
100·mean(Δ)/mean(control) reaches --target-pct), and manifest.json."""


def add_arguments(parser) -> None:
    import argparse

    from tregsim.parallel import add_parallel_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--n", type=int, default=2000, help="virtual patients of the Treg-arm cohort (default 2000)"
    )
    parser.add_argument(
        "--n-phi", type=int, default=500, help="virtual patients for the φ search (default 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--arm", default=None, help="treatment arm (default: the first)")
    parser.add_argument(
        "--month", type=float, default=12.0, help="months after the baseline visit (default 12)"
    )
    parser.add_argument(
        "--target-pct",
        type=float,
        default=10.0,
        help="target mean relative C-peptide preservation, %% (default 10)",
    )
    parser.add_argument(
        "--posterior",
        default=None,
        help="posterior netCDF (from `tregsim calibrate`): patient i draws its population "
        "parameters from draw i mod n_draws, and they join the ranked predictors "
        "(default: the model file's values)",
    )
    add_parallel_arguments(parser, chunk_size=16384)


def run(args) -> int:
    import io
    import math
    import time
    from pathlib import Path

    from tregsim.checkpoint import prepare_output_dir
    from tregsim.errors import ArgumentError
    from tregsim.experiment import load_experiment
    from tregsim.explore.responders import phi_needed, responder_analysis
    from tregsim.explore.sweep import ledger_lines
    from tregsim.io import build_manifest, write_json, write_text
    from tregsim.parallel import parallel_options

    for name, v, lo in (("--seed", args.seed, 0), ("--n", args.n, 3), ("--n-phi", args.n_phi, 1)):
        if v < lo:
            raise ArgumentError(
                f"{name} must be ≥ {lo}, got {v}", field=name, fix=f"give a whole number ≥ {lo}"
            )
    if not (math.isfinite(args.month) and args.month > 0):
        raise ArgumentError(
            f"--month must be > 0, got {args.month}",
            field="--month",
            fix="give months after the baseline visit, e.g. 12",
        )
    if not math.isfinite(args.target_pct):
        raise ArgumentError(
            "--target-pct must be finite", field="--target-pct", fix="give a percentage, e.g. 10"
        )
    exp = load_experiment(args.experiment)
    arm = exp.treatment_arm(args.arm)
    settings = {
        "n": args.n,
        "n_phi": args.n_phi,
        "arm": arm,
        "month": args.month,
        "target_pct": args.target_pct,
    }
    from tregsim.cohort import posterior_option

    posterior, label = posterior_option(args.posterior, exp.model)
    inputs = exp.input_files() | ({"posterior": args.posterior} if posterior else {})
    argv = ["tregsim", "responders", *sys.argv[2:]] if sys.argv[1:2] == ["responders"] else None
    manifest = build_manifest(
        command="responders", seed=args.seed, inputs=inputs, settings=settings, argv=argv
    )
    out = prepare_output_dir(args.out, manifest, overwrite=args.overwrite)
    opts = parallel_options(args)
    t0 = time.perf_counter()
    ranking, _ = responder_analysis(
        exp,
        n=args.n,
        seed=args.seed,
        arm=arm,
        month=args.month,
        posterior=posterior,
        out_dir=out,
        stage="ranking",
        **opts,
    )
    pn = phi_needed(
        exp,
        args.target_pct,
        args.month,
        n=args.n_phi,
        seed=args.seed,
        arm=arm,
        posterior=posterior,
        **opts,
    )
    seconds = time.perf_counter() - t0

    ledger = ledger_lines(exp, arm=arm, swept=[], n=args.n, seed=args.seed, posterior=label)
    buf = io.StringIO()
    ranking.table.to_csv(buf, index=False, float_format="%.6g")
    head = [*ledger, f"# outcome: {ranking.outcome} (paired Treg − control)"]
    head += [f"# note: {x}" for x in ranking.notes]
    write_text(out / "ranking.csv", "\n".join(head) + "\n" + buf.getvalue())
    ledger_phi = [
        ln
        for ln in ledger_lines(
            exp, arm=arm, swept=[], n=args.n_phi, seed=args.seed, posterior=label
        )
        if not ln.startswith("# phi:")
    ]
    ledger_phi.insert(1, "# phi: searched (the model default is replaced by each value tried)")
    rows = [
        "phi,phi_low,phi_high,target_preservation_pct,month,rounds,note",
        f"{pn.phi:.6g},{pn.phi_low:.6g},{pn.phi_high:.6g},{pn.target_pct:g},{pn.month:g},"
        f'{pn.rounds},"{pn.note}"',
    ]
    curve = ["phi,mean_rel_preservation_pct"] + [
        f"{a:.6g},{b:.6g}" for a, b in zip(pn.curve_phi, pn.curve_pct)
    ]
    head_phi = [*ledger_phi, "# preservation: 100 * mean(C_treg - C_control) / mean(C_control), %"]
    write_text(out / "phi_needed.csv", "\n".join(head_phi + rows) + "\n")
    write_text(out / "phi_curve.csv", "\n".join(head_phi + curve) + "\n")

    from tregsim.plots import explore as pe

    pe.save(pe.plot_partial_dependence(ranking, ledger=ledger), out / "partial_dependence.png")
    pe.save(pe.plot_phi_needed(pn, ledger=ledger_phi), out / "phi_curve.png")
    manifest["settings_runtime"] = {"seconds": round(seconds, 2)}
    write_json(Path(out) / "manifest.json", manifest)
    top = ranking.table.iloc[0]
    msg = f"phi needed ≈ {pn.phi:.3g}" if math.isfinite(pn.phi) else f"phi: {pn.note}"
    print(
        f"responders: strongest predictor {top['predictor']} (ρ = {top['spearman_rho']:+.2f});"
        f" {msg} for {args.target_pct:g} % preservation at {args.month:g} months; "
        f"{seconds:.1f} s; wrote {out}",
        file=sys.stderr,
    )
    return 0
