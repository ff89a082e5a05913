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

    from tregsim.cli import options

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("experiment", help="experiment file (experiments/*.toml)")
    parser.add_argument(
        "--n", type=int, default=2000, help="virtual patients of the Treg-arm cohort (default 2000)"
    )
    parser.add_argument(
        "--n-phi", type=int, default=500, help="virtual patients for the φ search (default 500)"
    )
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
    options.add_common(parser, parallel_chunk=16384)


def run(args) -> int:
    import math

    from tregsim.cli import options
    from tregsim.explore.responders import responders_study

    st = responders_study(
        options.load_experiment_arg(args),
        n=args.n,
        n_phi=args.n_phi,
        arm=args.arm,
        month=args.month,
        target_pct=args.target_pct,
        **options.analysis_kwargs(args),
    )
    out = st.save(args.out)
    top = st.ranking.table.iloc[0]
    pn = st.phi_needed
    msg = f"phi needed ≈ {pn.phi:.3g}" if math.isfinite(pn.phi) else f"phi: {pn.note}"
    print(
        f"responders: strongest predictor {top['predictor']} (ρ = {top['spearman_rho']:+.2f});"
        f" {msg} for {args.target_pct:g} % preservation at {args.month:g} months; "
        f"{st.manifest['settings_runtime']['seconds']:.1f} s; wrote {out}",
        file=sys.stderr,
    )
    return 0
