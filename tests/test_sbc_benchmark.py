"""The likelihood SBC benchmark's paired comparison (benchmarks/structure_likelihood_sbc.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_agreement import _benchmark_module


def _sets(ranks, truth, nonfinite=None):
    n = len(ranks)
    return pd.DataFrame(
        {
            "set": np.arange(n),
            "nonfinite_data": np.zeros(n, bool) if nonfinite is None else nonfinite,
            "true_q": truth,
            "rank_q": ranks,
        }
    )


def test_paired_table_matches_its_definitions():
    sbc = _benchmark_module("structure_likelihood_sbc")
    g = np.random.default_rng(4)
    truth = g.random(60)
    old = g.random(60)
    old[:3] = [0.0, 1.0, 0.5]
    new = np.clip(old + g.normal(0, 0.05, 60), 0, 1)
    skip = np.zeros(60, bool)
    skip[10] = True  # a non-finite set in either run is left out of both
    tab = sbc.paired(_sets(old, truth, skip), _sets(new, truth)).iloc[0]
    keep = ~skip
    assert tab["n_sets"] == 59
    assert tab["coverage_90_old"] == np.mean(np.abs(old[keep] - 0.5) < 0.45)
    assert tab["coverage_50_new"] == np.mean(np.abs(new[keep] - 0.5) < 0.25)
    assert tab["beyond_all_draws_old"] == 2
    assert tab["rank_spearman"] == pytest.approx(stats.spearmanr(old[keep], new[keep])[0])


def test_paired_refuses_different_datasets():
    sbc = _benchmark_module("structure_likelihood_sbc")
    a = _sets(np.full(5, 0.5), np.linspace(0.1, 0.5, 5))
    b = _sets(np.full(5, 0.5), np.linspace(0.1, 0.5, 5) + 1e-3)
    with pytest.raises(ValueError, match="differ"):
        sbc.paired(a, b)
