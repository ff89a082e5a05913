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
    assert "sd_ratio_median" not in tab  # runs before round 24 have no posterior SDs


def test_paired_compares_posterior_sds_when_both_runs_have_them():
    sbc = _benchmark_module("structure_likelihood_sbc")
    truth = np.linspace(0.1, 0.9, 7)
    ranks = np.linspace(0.2, 0.8, 7)
    a, b = _sets(ranks, truth), _sets(ranks, truth)
    a["sd_u_q"] = np.arange(1.0, 8.0)
    b["sd_u_q"] = a["sd_u_q"] * np.array([1.0, 1.5, 2.0, 1.2, 0.9, 1.1, 3.0])
    assert sbc.paired(a, b).iloc[0]["sd_ratio_median"] == pytest.approx(1.2)


def test_paired_refuses_different_datasets():
    sbc = _benchmark_module("structure_likelihood_sbc")
    a = _sets(np.full(5, 0.5), np.linspace(0.1, 0.5, 5))
    b = _sets(np.full(5, 0.5), np.linspace(0.1, 0.5, 5) + 1e-3)
    with pytest.raises(ValueError, match="differ"):
        sbc.paired(a, b)


def test_criterion_counts_cells_and_sums_z_squared():
    """Two parameters: coverages 0.50 / 0.90 exactly (z = 0), and 0.56 / 0.85 at 100 sets
    (z = 0.06 / 0.05 = 1.2 and −0.05 / 0.03 = −1.667): one cell outside ±5 points, Σ z² by hand."""
    sbc = _benchmark_module("structure_likelihood_sbc")
    n = 100
    se50, se90 = np.sqrt(0.25 / n), np.sqrt(0.09 / n)
    cov = pd.DataFrame(
        {
            "parameter": ["a", "b"],
            "coverage_50": [0.50, 0.56],
            "mc_se_50": [se50, se50],
            "coverage_90": [0.90, 0.85],
            "mc_se_90": [se90, se90],
        }
    )
    c = sbc.criterion(cov)
    z2 = (0.06 / se50) ** 2 + (0.05 / se90) ** 2
    assert c["cells"] == 4 and c["within"] == 3  # 0.85 is on the edge: within
    assert c["sum_z2"] == pytest.approx(z2)
    assert c["p_chi2"] == pytest.approx(stats.chi2.sf(z2, 4))


@pytest.mark.parametrize("walkers", [None, "25"])
def test_slice_with_too_few_or_odd_walkers_is_one_line_exit_2(walkers, tmp_path, capsys):
    """The shipped config's 16 walkers (or 25) cannot run the slice move on 12 parameters:
    argparse's one line and exit 2 before any set is drawn, not a traceback."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "placebo_cpeptide_individual.csv").is_file():
        pytest.skip("records not present beside the checkout")
    sbc = _benchmark_module("structure_likelihood_sbc")
    argv = [str(root / "calibration" / "placebo_records_structure.toml"), "--move", "slice"]
    argv += ["--out", str(tmp_path / "out")] + ([] if walkers is None else ["--walkers", walkers])
    with pytest.raises(SystemExit) as e:
        sbc.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "needs at least 24 and an even number" in err[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # one set: no SD
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_one_set_records_the_sampler_used_and_the_quadrature_check(tmp_path, monkeypatch):
    """One SBC set end to end on a small synthetic records file, ``--move auto`` forced to
    switch, on adaptive η nodes: the row has the slice's walkers × kept steps, the acceptance
    that decided, and the quadrature check `tregsim calibrate` runs (error at the MAP, spread
    over the draws)."""
    from test_structure_kernel_t import _table
    from test_structure_run import CONFIG, _synthetic, _write_csv

    from tregsim.calibrate import structure_run as R

    table = _table()
    _write_csv(_synthetic(table, 30, 2), tmp_path / "visits.csv")
    (tmp_path / "s.toml").write_text(CONFIG)
    monkeypatch.setattr(R, "LOW_ACCEPTANCE", 1.01)
    sbc = _benchmark_module("structure_likelihood_sbc")
    argv = [str(tmp_path / "s.toml"), "--sets", "1", "--steps", "24", "--burn", "8"]
    argv += ["--eta-nodes", "adaptive"]  # the config's fixed grid overridden (round 26)
    assert sbc.main([*argv, "--move", "auto", "--out", str(tmp_path / "out")]) == 0
    row = pd.read_csv(tmp_path / "out" / "sbc_sets.csv").iloc[0]
    assert row["switched_to_slice"] == 1.0 and 0 < row["independence_acceptance"] < 1
    assert row["kept_draws"] == 22 * 16 and row["acceptance"] == 1.0
    assert np.isfinite(row["quad_error_map_nats"]) and row["quad_spread_nats"] >= 0


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_eta_nodes_benchmark_runs_the_chosen_sets_and_resumes(tmp_path, capsys):
    """``structure_eta_nodes.py`` on a small synthetic records file: the sets below the
    acceptance threshold of the given ``sbc_sets.csv`` (here set 1 of 0–2), five logit-q
    points each, the fixed and adaptive rules' errors against the reference and their
    times; a second run finds the set done and adds nothing."""
    from test_structure_kernel_t import _table
    from test_structure_run import CONFIG, _synthetic, _write_csv

    _write_csv(_synthetic(_table(), 20, 2), tmp_path / "visits.csv")
    (tmp_path / "s.toml").write_text(CONFIG)
    pd.DataFrame({"set": [0, 1, 2], "acceptance": [0.5, 0.1, 0.3]}).to_csv(
        tmp_path / "sets.csv", index=False
    )
    bench = _benchmark_module("structure_eta_nodes")
    argv = [str(tmp_path / "s.toml"), "--subset-from", str(tmp_path / "sets.csv")]
    argv += ["--reference-nodes", "201", "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    df = pd.read_csv(tmp_path / "out" / "eta_nodes.csv")
    assert df["set"].tolist() == [1] * 5
    assert df["logit_q_shift"].tolist() == list(bench.Q_SHIFTS)
    cols = ["fixed_error_nats", "adaptive_error_nats", "fixed_s", "adaptive_s"]
    assert np.isfinite(df[cols].to_numpy()).all() and (df["adaptive_passes"] >= 2).all()
    assert "ratio" in capsys.readouterr().out
    assert bench.main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "eta_nodes.csv"), df)


def test_eta_nodes_reweight_weights_each_draw_by_the_rules_difference(tmp_path, capsys):
    """``--reweight``: a posterior of five draws on a small synthetic records file. With weights
    exp(adaptive − fixed), the reweighted mean of each coordinate is the weighted mean of its
    draws; checked against the two rules' log-likelihoods computed here."""
    import arviz as az
    from test_structure_kernel_t import _table
    from test_structure_run import CONFIG, TRUTH, _synthetic, _write_csv

    from tregsim.calibrate import structure_run as R
    from tregsim.calibrate import variability as V
    from tregsim.calibrate.config import load_config

    table = _table()
    _write_csv(_synthetic(table, 20, 2), tmp_path / "visits.csv")
    (tmp_path / "s.toml").write_text(CONFIG)
    names = V.CANDIDATES["lincovariate+power"][0]
    g = np.random.default_rng(5)
    om = TRUTH["omega_lambda"] * np.exp(0.3 * g.standard_normal(5))
    draws = {n: np.full((1, 5), TRUTH[n]) for n in names} | {"omega_lambda": om[None]}
    az.from_dict(posterior=draws).to_netcdf(tmp_path / "p.nc")
    bench = _benchmark_module("structure_eta_nodes")
    argv = [str(tmp_path / "s.toml"), "--reweight", str(tmp_path / "p.nc")]
    assert bench.main([*argv, "--out", str(tmp_path / "out")]) == 0
    tab = pd.read_csv(tmp_path / "out" / "reweight.csv").set_index("parameter")
    config = load_config(tmp_path / "s.toml")
    rec = R.load_structure_records(config)
    d = []
    for o in om:
        th = TRUTH | {"omega_lambda": float(o)}
        f, a = (
            R.independent_log_lik(R.likelihood_for(config, table, rec, adaptive_eta=x), th).sum()
            for x in (False, True)
        )
        d.append(a - f)
    w = np.exp(np.array(d) - max(d))
    x = np.log(om)
    want = (np.sum(w * x) / w.sum() - x.mean()) / x.std()
    assert tab.loc["omega_lambda", "mean_shift_sd"] == pytest.approx(want, rel=1e-9)
    assert list(tab.index) == list(names)
