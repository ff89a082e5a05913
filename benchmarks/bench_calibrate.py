"""Wall time of the full natural-history NPE calibration, split into simulation and training.

    python benchmarks/bench_calibrate.py [--budget N] [--diagnostics] [--out DIR]

Runs ``tregsim.calibrate.pipeline.calibrate`` on ``calibration/natural_history_npe.toml`` into
a fresh folder (a temporary one unless ``--out`` is given; an existing bank there would be
reused, so use a new folder for a cold timing). Reports the simulation time (θ draws × virtual
placebo patients, one ``simulate_arrays`` call per chunk), the throughput in patients/s, the
NPE training time and, with ``--diagnostics``, SBC + posterior-predictive time. Target: the
full calibration (config budget: 30,000 θ × 115 patients) within 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--budget", type=int, default=None, help="training simulations (default: config budget)"
    )
    ap.add_argument("--diagnostics", action="store_true", help="also time SBC and PPC")
    ap.add_argument("--out", default=None, help="output folder (default: temporary)")
    args = ap.parse_args(argv)

    from tregsim.calibrate.config import load_config
    from tregsim.calibrate.pipeline import calibrate

    cfg = load_config(ROOT / "calibration" / "natural_history_npe.toml")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "cal"
        t0 = time.perf_counter()
        res = calibrate(
            cfg,
            out,
            budget=args.budget,
            progress=True,
            diagnostics=args.diagnostics,
            command_line=sys.argv,
        )
        total = time.perf_counter() - t0
    budget = args.budget or cfg.n_simulations
    n_pat = budget * 115
    t = res.timings_s
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"budget: {budget} θ draws × 115 patients = {n_pat} patient simulations")
    print(f"simulation: {t['simulation_s']:.1f} s ({n_pat / t['simulation_s']:.0f} patients/s)")
    print(f"training:   {t['training_s']:.1f} s ({res.info['training']['epochs']} epochs)")
    if "diagnostics_s" in t:
        print(
            f"diagnostics (SBC {cfg.method['n_sbc_datasets']} datasets + PPC): "
            f"{t['diagnostics_s']:.1f} s"
        )
    print(f"total wall time: {total:.1f} s (target ≤ 900 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
