"""The score test's ratio table (benchmarks/structure_score_test.py) on a model whose
information identity is known analytically."""

from __future__ import annotations

import numpy as np
import pytest
from test_agreement import _benchmark_module


def _normal_mean_scores(g, n_datasets: int, n_obs: int, sd_true: float, sd_model: float):
    """Scores of y ~ N(θ, sd_model²) at the true θ = 0 for data drawn with sd_true: the
    score Σy/sd_model² has variance n·sd_true²/sd_model⁴, the information n/sd_model²."""
    y = g.normal(0.0, sd_true, (n_datasets, n_obs))
    scores = y.sum(1, keepdims=True) / sd_model**2
    info = np.full((3, 1, 1), n_obs / sd_model**2)
    return scores, info


def test_ratio_is_one_when_the_model_is_the_simulator_and_not_otherwise():
    st = _benchmark_module("structure_score_test")
    g = np.random.default_rng(7)
    scores, info = _normal_mean_scores(g, 400, 30, 1.0, 1.0)
    t = st.ratio_table(scores, info, ["theta"])
    # identical Hessians: the SE is the sampling SE of a variance from 400 normal scores
    assert np.isclose(t.loc["theta", "ratio_se"], t.loc["theta", "ratio"] * np.sqrt(2 / 399))
    assert abs(t.loc["theta", "ratio"] - 1.0) < 3 * t.loc["theta", "ratio_se"]
    assert abs(t.loc["theta", "z_mean_score"]) < 4
    # a model whose SD is 20 % too large: Var(score)/information = (1/1.2)² = 0.69
    scores, info = _normal_mean_scores(g, 400, 30, 1.0, 1.2)
    t = st.ratio_table(scores, info, ["theta"])
    assert abs(t.loc["theta", "ratio"] - 1 / 1.44) < 3 * t.loc["theta", "ratio_se"]
    assert (1.0 - t.loc["theta", "ratio"]) > 4 * t.loc["theta", "ratio_se"]


def test_ratio_se_counts_the_spread_of_the_hessians():
    st = _benchmark_module("structure_score_test")
    g = np.random.default_rng(8)
    scores = g.normal(0, 2.0, (200, 2))
    infos = np.stack([np.diag(g.normal([4.0, 4.0], [0.0, 1.0])) for _ in range(10)])
    t = st.ratio_table(scores, infos, ["a", "b"])
    rel_b = infos[:, 1, 1].std(ddof=1) / np.sqrt(10) / infos[:, 1, 1].mean()
    assert np.isclose(t.loc["b", "ratio_se"], t.loc["b", "ratio"] * np.sqrt(2 / 199 + rel_b**2))
    assert (
        t.loc["b", "ratio_se"] / t.loc["b", "ratio"] > t.loc["a", "ratio_se"] / t.loc["a", "ratio"]
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--hessians", "1"], "need 2 <= hessians <= datasets"),
        (["--datasets", "10", "--hessians", "20"], "need 2 <= hessians <= datasets"),
        (["--score-step", "0"], "--score-step 0.0: must be > 0"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args, words, capsys):
    st = _benchmark_module("structure_score_test")
    with pytest.raises(SystemExit) as e:
        st.main(["calibration/placebo_records_structure.toml", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1] and "Traceback" not in "".join(err)
