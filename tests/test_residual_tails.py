"""Round 21's item-4 tools: the month-by-month residual-tail statistics
(``benchmarks/residual_tails_by_month.py``) against statsmodels and scipy, the records' age
mix of ``benchmarks/sample_size_vs_closed_form.py --population records``, its
``--theta map`` posterior and its ``--population structure`` parameter sets, and the
``late_tail`` extension of ``benchmarks/structure_extension_loso.py`` (its own ν after
month 6) against the plain Student-t likelihood and simulation it must reduce to."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from test_agreement import _benchmark_module
from test_structure_kernel_t import _records, _table
from test_structure_run import TRUTH

from tregsim.calibrate import variability as V
from tregsim.experiment import load_experiment
from tregsim.resources import project_root

T_TRUTH = TRUTH | {"inv_nu": 0.3}


def test_residual_statistics_match_statsmodels_and_scipy():
    rt = _benchmark_module("residual_tails_by_month")
    g = np.random.default_rng(11)
    P = 60
    age = g.uniform(8, 40, P)
    # visits 0 and m of P participants (V = 2P), some month-m visits missing
    y = np.exp(g.normal(-0.5, 0.6, (3, 2 * P)))
    i0 = np.arange(P)
    im = P + np.arange(P)
    im[g.choice(P, 9, replace=False)] = -1
    got = rt.residual_statistics(y, i0, im, age)
    ok = im >= 0
    for r in range(3):
        X = sm.add_constant(np.column_stack([np.log1p(y[r, i0[ok]]), age[ok]]))
        fit = sm.OLS(np.log1p(y[r, im[ok]]), X).fit()
        assert got["resid_var"][r] == pytest.approx(fit.scale, rel=1e-10)
        assert got["excess_kurtosis"][r] == pytest.approx(
            stats.kurtosis(fit.resid, fisher=True), rel=1e-9
        )
        assert got["max_abs_z"][r] == pytest.approx(
            np.abs(fit.resid).max() / np.sqrt(fit.scale), rel=1e-10
        )


def test_records_age_mix_reproduces_the_whole_year_counts():
    ss = _benchmark_module("sample_size_vs_closed_form")
    exp = load_experiment(project_root() / "experiments" / "nct06708780.toml")
    age = np.r_[np.full(10, 9.5), np.full(30, 14.2), np.full(20, 31.9)]
    mixed = ss.with_records_age_mix(exp, age)
    drawn = mixed.population.sample(5, 0, 30_000)["age"]
    years, counts = np.unique(np.floor(drawn).astype(int), return_counts=True)
    assert years.tolist() == [9, 14, 31]
    assert stats.chisquare(counts, 30_000 * np.array([10, 30, 20]) / 60).pvalue > 1e-3
    # uniform within the year, not the records' exact ages
    assert stats.kstest(drawn[np.floor(drawn) == 14] - 14.0, "uniform").pvalue > 1e-3
    # the experiment's other covariates are untouched
    assert mixed.population.cpep_baseline is exp.population.cpep_baseline


def test_structure_population_takes_the_shipped_posterior_or_its_map():
    """``--population structure``: one structure per posterior draw (draw i's values), or the
    structure file's MAP alone; the OU terms the records structure does not have are off."""
    import json

    from tregsim.posterior import DEFAULT_POSTERIOR, load_posterior

    ss = _benchmark_module("sample_size_vs_closed_form")
    post = load_posterior(DEFAULT_POSTERIOR)
    draws = ss.structure_thetas("posterior")
    assert len(draws) == post["q"].size
    for i in (0, len(draws) - 1):
        assert all(draws[i][k] == float(v[i]) for k, v in post.items())
        assert draws[i]["sigma_bio"] == 0.0
    (m,) = ss.structure_thetas("map")
    st = json.loads((project_root() / "calibration" / "natural_history_structure.json").read_text())
    assert all(m[k] == v for k, v in st["theta"].items()) and m["sigma_bio"] == 0.0


@pytest.fixture(scope="module")
def late_like():
    table = _table()
    rec = _records(table)
    return table, rec, V.StructureLikelihood(table, rec, n_zeta=15, n_eta=13)


def test_late_tail_reduces_to_the_t_at_the_shared_nu(late_like):
    lo = _benchmark_module("structure_extension_loso")
    _, rec, like = late_like
    sm_p = np.full(len(rec.ids), T_TRUTH["sigma_meas"])
    with np.errstate(all="ignore"):
        t = lo.participant_log_lik(like, T_TRUTH, T_TRUTH, sm_p)
        same = lo.participant_log_lik(like, T_TRUTH, T_TRUTH | {"inv_nu_late": 0.3}, sm_p)
        other = lo.participant_log_lik(like, T_TRUTH, T_TRUTH | {"inv_nu_late": 0.05}, sm_p)
    np.testing.assert_allclose(same, t, rtol=1e-13)
    assert np.abs(other - t).max() > 1e-2  # the late visits' own ν is read


def test_late_tail_leaves_the_first_six_months_alone(late_like):
    lo = _benchmark_module("structure_extension_loso")
    table, rec, _ = late_like
    early = rec.with_visits(rec.visit_month <= lo.LATE_AFTER_MONTH)
    like = V.StructureLikelihood(table, early, n_zeta=15, n_eta=13)
    sm_p = np.full(len(rec.ids), T_TRUTH["sigma_meas"])
    with np.errstate(all="ignore"):
        t = lo.participant_log_lik(like, T_TRUTH, T_TRUTH, sm_p)
        late = lo.participant_log_lik(like, T_TRUTH, T_TRUTH | {"inv_nu_late": 0.05}, sm_p)
    np.testing.assert_allclose(late, t, rtol=1e-13)


def test_late_tail_simulation_takes_each_visit_from_its_own_nu(late_like):
    lo = _benchmark_module("structure_extension_loso")
    table, rec, _ = late_like

    def sim(tab, th, r, g):
        return V.simulate_records(tab, th, r, g)[0]

    seed = int(np.random.default_rng(4).integers(2**63))
    got = lo.simulate_late_tail(
        sim, table, T_TRUTH | {"inv_nu_late": 0.05}, rec, np.random.default_rng(4)
    )
    plain = sim(table, T_TRUTH, rec, np.random.default_rng(seed))
    light = sim(table, T_TRUTH | {"inv_nu": 0.05}, rec, np.random.default_rng(seed))
    late = rec.visit_month > lo.LATE_AFTER_MONTH
    np.testing.assert_array_equal(got[~late], plain[~late])
    np.testing.assert_array_equal(got[late], light[late])
    assert not np.array_equal(plain[late], light[late])


def test_map_posterior_is_one_draw_at_the_structure_files_map(tmp_path):
    import json

    from tregsim.posterior import load_posterior

    ss = _benchmark_module("sample_size_vs_closed_form")
    ss.map_posterior(tmp_path / "map.nc")
    got = load_posterior(tmp_path / "map.nc")
    shipped = load_posterior(project_root() / "calibration" / "posteriors" / "natural_history.nc")
    th = json.loads(
        (project_root() / "calibration" / "natural_history_structure.json").read_text()
    )["theta"]
    assert set(got) == set(shipped)
    for k, v in got.items():
        assert v.shape == (1,)
        assert v[0] == (th[k] if k in th else np.median(shipped[k]))


def test_late_tail_refuses_a_structure_without_the_t():
    """On the normal structure the t branch never runs, so late_tail would silently be the
    shipped structure: the benchmark refuses it (one line naming the field and the fix)."""
    from types import SimpleNamespace

    lo = _benchmark_module("structure_extension_loso")
    msg = lo.config_mismatch("late_tail", SimpleNamespace(candidate="lincovariate+power"))
    assert msg.startswith("[parameters] candidate") and "fix:" in msg
    assert (
        lo.config_mismatch("late_tail", SimpleNamespace(candidate="lincovariate+power+t")) is None
    )


def test_huber_closed_form_takes_statsmodels_rlm_on_the_records_and_their_copy():
    """Round 27's ``--analysis huber`` closed form: the control effective SD is statsmodels
    RLM's SE over √((XᵀX)⁻¹) on (ln y₁₂+1 ~ ln y₀+1 + age); Δ is RLM's arm coefficient on the
    records stacked with their copy under the effect, and "each arm's SD" its SE / √(2/n)."""
    ss = _benchmark_module("sample_size_vs_closed_form")
    g = np.random.default_rng(5)
    n = 80
    age = g.uniform(8, 40, n)
    y0 = np.exp(g.normal(-0.6, 0.5, n))
    y12 = np.exp(np.log(y0) - 0.4 + 0.3 * g.standard_t(3, n))
    x0 = np.log1p(y0)
    X = sm.add_constant(np.column_stack([x0, age]))
    hub = sm.robust.norms.HuberT()
    ref = sm.RLM(np.log1p(y12), X, M=hub).fit(tol=1e-13, maxiter=1000)
    inv = np.linalg.inv(X.T @ X)
    assert ss.huber_sd(np.log1p(y12), x0, age) == pytest.approx(
        ref.bse[1] / np.sqrt(inv[1, 1]), rel=1e-6
    )
    delta, sd_pooled, n_cf, n_cf2 = ss.closed_form_huber(y0, y12, age, 0.3)
    arm = np.r_[np.zeros(n), np.ones(n)]
    X2 = sm.add_constant(np.column_stack([arm, np.r_[x0, x0], np.r_[age, age]]))
    y2 = np.r_[np.log1p(y12), np.log1p(1.3 * y12)]
    ref2 = sm.RLM(y2, X2, M=hub).fit(tol=1e-13, maxiter=1000)
    assert delta == pytest.approx(ref2.params[1], rel=1e-6)
    assert sd_pooled == pytest.approx(ref2.bse[1] / np.sqrt(2 / n), rel=1e-6)
    assert n_cf2 >= n_cf  # the stretched treated copy only adds spread


def test_structure_power_by_huber_analyses_the_same_trials():
    """``structure_n(..., analysis="huber")`` simulates the very trials of
    ``ancova_power_by_simulation`` (``simulate_two_arm_trials``, same generator): analysed by
    the OLS ANCOVA of ``tregsim.trial.endpoints`` they give its power exactly, and by the
    Huber ANCOVA the benchmark's power."""
    from tregsim.trial.endpoints import ancova_trialnet, ancova_trialnet_huber

    table = _table()
    pool = np.linspace(8.0, 40.0, 30)
    th = T_TRUTH | {"sigma_bio": 0.0}
    n, trials = 15, 120
    power = V.ancova_power_by_simulation(
        table, th, pool, np.array([n]), 0.5, np.random.default_rng([9, n]), n_trials=trials
    )[0]
    y, ages = V.simulate_two_arm_trials(
        table, th, pool, n, 0.5, np.random.default_rng([9, n]), n_trials=trials
    )
    arm = np.broadcast_to(np.r_[np.zeros(n, bool), np.ones(n, bool)], ages.shape)
    ols = ancova_trialnet(y[:, :, 1], y[:, :, 0], ages, arm)
    assert ols.reject.mean() == power
    ss = _benchmark_module("sample_size_vs_closed_form")
    got = ss.structure_n((table, 60.0), [th], pool, 0.5, f"{n}:{n}:1", trials, 9, "huber")
    hub = ancova_trialnet_huber(y[:, :, 1], y[:, :, 0], ages, arm)
    assert got["power"] == hub.reject.mean()
    assert not np.array_equal(hub.p_value, ols.p_value)
