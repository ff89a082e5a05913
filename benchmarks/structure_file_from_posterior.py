"""Write ``calibration/natural_history_structure.json`` from the shipped records posterior.

The structure file holds point values of the records-fitted structure of individual
variability: the values a run uses when its population posterior is not a records-structure
posterior (:func:`tregsim.population.structure.records_structure`). Since round 19 they are the
MAP of the shipped natural-history posterior (``tregsim calibrate
calibration/placebo_records_structure.toml``, in its manifest), so that the two cannot drift
apart; σ_bio = 0 and τ_bio = 180 days (no biological OU deviation in the chosen structure).
The log-likelihood at the MAP is recomputed from the records (../shared/data, never copied).

    OMP_NUM_THREADS=1 python benchmarks/structure_file_from_posterior.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSTERIOR = ROOT / "calibration" / "posteriors" / "natural_history"
CONFIG = ROOT / "calibration" / "placebo_records_structure.toml"
OUT = ROOT / "calibration" / "natural_history_structure.json"


def main() -> int:
    from tregsim.calibrate import structure_run as R
    from tregsim.calibrate.config import load_config
    from tregsim.io import write_json
    from tregsim.model import load_model
    from tregsim.population.structure import STRUCTURE_OBSERVATION, STRUCTURE_POPULATION

    man = json.loads((POSTERIOR / "manifest.json").read_text())
    if man["inputs"]["config"]["path"] != "calibration/placebo_records_structure.toml":
        print(f"{POSTERIOR}/manifest.json is not from {CONFIG.name}", file=sys.stderr)
        return 2
    config = load_config(CONFIG)
    theta = dict(man["results"]["map"]) | {"sigma_bio": 0.0, "tau_bio": 180.0}
    theta.setdefault("inv_nu", 0.0)
    missing = [k for k in (*STRUCTURE_POPULATION, *STRUCTURE_OBSERVATION) if k not in theta]
    if missing:
        print(f"the posterior's MAP lacks {missing}", file=sys.stderr)
        return 2
    records = R.load_structure_records(config)
    table = R._curve_table(config, load_model(config.model), float(records.visit_day.max()))
    like = R.likelihood_for(config, table, records)
    fixed = dict(config.fixed)
    log_lik = float(R.independent_log_lik(like, theta | fixed).sum())
    units = R.UNITS | {"sigma_bio": "1 (log scale)", "tau_bio": "day"}
    out = {
        "description": (
            "Structure of individual variability fitted to the placebo records (issue #14): "
            "hazard covariate on the baseline-visit C-peptide (power law and linear-scale "
            "exponential), heteroscedastic Student-t within-patient deviation (nu = 1/inv_nu, "
            "scale sigma_meas). MAP of the shipped natural-history posterior, candidate "
            f"{config.candidate!r}; docs/calibration.md, 'Round 19: the heavy-tailed deviation "
            "adopted'."
        ),
        "candidate": config.candidate,
        "theta": {k: round(float(v), 6) for k, v in theta.items()},
        "units": {k: units[k] for k in theta},
        "curve_table": {
            **fixed,
            "baseline_day": config.baseline_day,
            "note": "s0, k_re: shipped NPE posterior means (the config's fixed values)",
        },
        "log_likelihood": round(log_lik, 2),
        "map_log_posterior": round(float(man["results"]["map_logpost"]), 2),
        "data": "placebo_cpeptide_individual.csv (../shared/data; not shipped)",
        "data_sha256": man["inputs"]["data"]["sha256"],
        "posterior_sha256": man["outputs"]["natural_history.nc"],
        "command": "OMP_NUM_THREADS=1 python benchmarks/structure_file_from_posterior.py",
    }
    write_json(OUT, out)
    print(f"wrote {OUT.relative_to(ROOT)}: log-likelihood at the MAP {log_lik:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
