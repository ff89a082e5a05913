"""Accuracy of the likelihood path's fixed quadrature grid, on the records and over the prior.

The records likelihood (:class:`tregsim.calibrate.variability.StructureLikelihood`) integrates
each participant's baseline-level and hazard random effects (ζ, η) on a fixed grid (the
config's ``n_zeta`` × ``n_eta``, 37 × 33 over [−4.5, 4.5] × [−4, 4]). A rectangle rule is
accurate while the integrand is wider than about half a grid cell. This script prints the
total log-likelihood at the config's grid and at 2× and 4× denser grids (the 4× grid is the
reference):

* on the placebo records, at the shipped posterior's medians;
* on ``--sets`` datasets simulated at θ* drawn from the config's priors (as
  ``structure_likelihood_sbc.py`` draws them), at θ*.

Round 6 (docs/calibration.md, "SBC of the likelihood path"): on the records the config's grid
is within 0.01 nats of the 4× grid (0.001 at round 5's medians, 0.007 at round 6's); on prior-drawn datasets with little noise relative to
the between-patient spread (σ_meas ≈ 0.1–0.2 with s_c up to 2), a participant's integrand is a
thin diagonal ridge in (ζ, η) (level and hazard trade off) and the grid misses it by up to
hundreds of nats.

Round 7: the last column is the same node count with adaptive ζ nodes (each participant's
nodes around ζ given its baseline visit, ``[method] zeta_nodes = "adaptive"``, the default).
On regional-SBC datasets it is within 0.05 nats of a 289 × 257 fixed grid where the fixed
37 × 33 grid is off by up to 2.9; on the config's prior it resolves the draws where only ζ
is thin, not those where the hazard (η) is also pinned more tightly than η's spacing.
``--prior-from POSTERIOR --widen K`` draws θ* as the regional SBC does.

    OMP_NUM_THREADS=1 python benchmarks/structure_quadrature_accuracy.py \\
        calibration/placebo_records_structure.toml --sets 20

Reads the records from ``../shared/data/`` (never copied); prints totals only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import structure_likelihood_sbc as SBC

from tregsim.calibrate import structure_run as R
from tregsim.calibrate import variability as V
from tregsim.calibrate.config import load_config
from tregsim.model import load_model
from tregsim.posterior import DEFAULT_POSTERIOR


def totals(table, rec, th, config, grids) -> list[float]:
    """Total log-likelihood on each fixed grid (n_zeta, n_eta), then with adaptive ζ nodes on
    the first grid's node counts."""
    out = []
    for nz, ne in grids:
        like = R.likelihood_for(config, table, rec, n_zeta=nz, n_eta=ne, adaptive_zeta=False)
        out.append(float(R.independent_log_lik(like, th).sum()))
    nz, ne = grids[0]
    like = R.likelihood_for(config, table, rec, n_zeta=nz, n_eta=ne, adaptive_zeta=True)
    out.append(float(R.independent_log_lik(like, th).sum()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--sets", type=int, default=20, help="prior-drawn datasets (default 20)")
    ap.add_argument("--seed", type=int, default=20261206)
    SBC.add_regional_arguments(ap)
    a = ap.parse_args(argv)
    config = load_config(a.config)
    meth = config.method
    model = load_model(config.model)
    rec = R.load_structure_records(config)
    table = R._curve_table(config, model, float(rec.visit_day.max()))
    nz, ne = meth["n_zeta"], meth["n_eta"]
    grids = [(nz, ne), (2 * nz - 1, 2 * ne - 1), (4 * nz - 3, 4 * ne - 3)]
    names, fixed = V.CANDIDATES[config.candidate]
    priors = SBC.regional_priors_from_arguments(ap, a, names)
    print(
        "grids (zeta x eta): " + ", ".join(f"{g[0]} x {g[1]}" for g in grids) + "; "
        "columns: log-likelihood on each fixed grid, then with adaptive zeta nodes on the "
        "first; fixed and adaptive minus the densest fixed grid (nats)"
    )

    import arviz as az

    post = az.from_netcdf(DEFAULT_POSTERIOR).posterior
    if all(n in post for n in names):
        med = {n: float(post[n].median()) for n in names}
        v = totals(table, rec, med | fixed | dict(config.fixed), config, grids)
        print(
            f"records at the shipped medians: {v[0]:.4f} {v[1]:.4f} {v[2]:.4f} {v[3]:.4f}  "
            f"Δ fixed {v[0] - v[2]:+.4f}  Δ adaptive {v[3] - v[2]:+.4f}"
        )
    for k in range(a.sets):
        truth, th, y, _ = SBC.prior_dataset(
            k, config=config, rec=rec, table=table, seed=a.seed, priors=priors
        )
        if not np.all(np.isfinite(y)):
            print(f"prior set {k}: non-finite data (left out, as in the SBC)")
            continue
        with np.errstate(all="ignore"):
            v = totals(table, dataclasses.replace(rec, y=y), th, config, grids)
        print(
            f"prior set {k}: sigma_meas {truth['sigma_meas']:.3f}, s_c {truth['s_c']:.3f}, "
            f"omega_lambda {truth['omega_lambda']:.3f}: {v[0]:.2f} {v[1]:.2f} {v[2]:.2f} "
            f"{v[3]:.2f}  Δ fixed {v[0] - v[2]:+.2f}  Δ adaptive {v[3] - v[2]:+.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
