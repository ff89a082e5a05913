"""The shipped natural-history posterior is reproduced by its documented command (slow, ~2 min).

``tregsim calibrate calibration/placebo_records_structure.toml --out DIR`` is rerun into a
temporary folder and its ``summary.csv`` compared with the shipped one. The sampler is seeded,
but floating-point results differ between machines (host-compiled numba kernels), and emcee
chains that differ in the last digit diverge after a few steps. So the comparison is
statistical, with tolerances that follow from Monte-Carlo theory and the shipped draws alone:

* posterior mean: |Δ| ≤ 3·√2·SD/√ESS_bulk, three standard errors of the difference of two
  independent runs of the shipped length (same-seed reruns are closer than independent ones);
* 5 %, 50 %, 95 % quantiles: |Δ| ≤ 3·√2·MCSE, the quantile's Monte-Carlo SE estimated by
  ArviZ on the shipped draws;
* MAP log posterior: within 0.01 nats, ten times the Nelder–Mead polish's ``fatol`` (1e-3,
  ``structure_run.map_estimate``).

Reads the records from ``../shared/data/``; skipped where they are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

from tregsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "calibration" / "placebo_records_structure.toml"
SHIPPED = ROOT / "calibration" / "posteriors" / "natural_history"
RECORDS = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"
QUANTILES = {"q05": 0.05, "q50": 0.50, "q95": 0.95}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RECORDS.is_file(), reason="placebo records not in ../shared/data"),
]


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reproduce")
    assert main(["calibrate", str(CONFIG), "--out", str(out)]) == 0
    return out


def _tolerances(shipped: pd.DataFrame) -> pd.DataFrame:
    """Per parameter (rows) and statistic (columns): the largest |Δ| the rerun may show."""
    draws = az.from_netcdf(SHIPPED.with_suffix(".nc"))
    tol = pd.DataFrame(index=shipped.index)
    tol["posterior_mean"] = 3 * np.sqrt(2) * shipped["posterior_sd"] / np.sqrt(shipped["ess_bulk"])
    for col, prob in QUANTILES.items():
        mcse = az.mcse(draws, var_names=list(shipped.index), method="quantile", prob=prob)
        tol[col] = [3 * np.sqrt(2) * float(mcse[p]) for p in shipped.index]
    return tol


def test_documented_command_reproduces_the_shipped_summary(rerun):
    shipped = pd.read_csv(SHIPPED / "summary.csv", index_col="parameter")
    new = pd.read_csv(rerun / "natural_history" / "summary.csv", index_col="parameter")
    assert list(new.index) == list(shipped.index)
    assert list(new.columns) == list(shipped.columns)
    tol = _tolerances(shipped)
    diff = (new[tol.columns] - shipped[tol.columns]).abs()
    over = diff > tol
    report = (diff / shipped[["posterior_sd"]].to_numpy()).round(3)
    assert not over.to_numpy().any(), f"|Δ| / posterior SD:\n{report}\nover tolerance:\n{over}"


def test_documented_command_reproduces_the_shipped_map(rerun):
    shipped = json.loads((SHIPPED / "manifest.json").read_text())["results"]
    new = json.loads((rerun / "natural_history" / "manifest.json").read_text())["results"]
    assert abs(new["map_logpost"] - shipped["map_logpost"]) <= 0.01
    assert new["rhat_max"] <= 1.05
    assert new["n_participants"] == shipped["n_participants"]
    assert new["n_visits"] == shipped["n_visits"]
