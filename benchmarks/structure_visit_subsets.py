"""Which visits pull σ_meas up? The records likelihood's MAP on subsets of the visits.

The NPE on within-patient statistics sees the records through summaries: its within-patient
statistics use the nominal months 0, 6, 12, 18, 24, month 3 enters only through the per-visit
mean and SD of ln(x + 1) (within-patient scatter lumped with between-patient spread), months
30 and 36 not at all. The records likelihood sees every visit, including the 52 month-3
visits (TN02, TN05) and the 35 at months 30 and 36. Their σ_meas medians differ by −1.7 pooled SD
(round 10's agreement null, p 0.042). This refits the shipped config's MAP
(``structure_run.map_estimate``, the config's priors, grids and LLOQ) on all visits, on months
0, 6, 12, 18, 24 only, and without month 3, and prints the MAP of each.

    OMP_NUM_THREADS=1 python benchmarks/structure_visit_subsets.py \\
        calibration/placebo_records_structure.toml

Reads the records from ``../shared/data/`` (never copied); prints parameter values only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from tregsim.calibrate import structure_run as R
from tregsim.calibrate.config import load_config
from tregsim.model import load_model

SUBSETS = {
    "all visits": lambda m: np.ones(m.size, bool),
    "months 0, 6, 12, 18, 24": lambda m: np.isin(m, (0, 6, 12, 18, 24)),
    "without month 3": lambda m: m != 3,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a structure_likelihood config")
    a = ap.parse_args(argv)
    try:  # a missing or bad config is one line and exit 2 (tregsim's errors are ValueErrors)
        config = load_config(a.config)
    except ValueError as e:
        ap.error(str(e))
    if config.kind != "structure_likelihood":
        ap.error(
            f"{a.config}: [method] kind is {config.kind!r}; give a 'structure_likelihood' config"
        )
    rec = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(rec.visit_day.max()))
    rows = []
    for label, rule in SUBSETS.items():
        k = rule(rec.visit_month)
        sub = rec.with_visits(k)
        post = R.StructurePosterior(
            R.likelihood_for(config, table, sub), config.candidate, config.priors
        )
        t0 = time.perf_counter()
        u, _ = R.map_estimate(post)
        th = post.theta(u)
        rows.append({"visits": label, "n_visits": int(k.sum())} | {n: th[n] for n in post.free})
        print(
            f"{label}: {int(k.sum())} visits, MAP in {time.perf_counter() - t0:.0f} s", flush=True
        )
    print(pd.DataFrame(rows).set_index("visits").T.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
