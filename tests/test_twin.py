"""The mechanistic twin: conditioning against quadrature and against brute-force simulation,
chunk invariance, file round trip, data-file errors; ancova_prognostic against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from tregsim import load_model
from tregsim.errors import DataFileError
from tregsim.experiment import load_experiment
from tregsim.posterior import load_posterior
from tregsim.resources import shipped_path
from tregsim.twin import (
    BaselinePrior,
    FastingModel,
    Twin,
    TwinRecords,
    load_twin_prediction,
    read_twin_records,
    twin_study,
)
from tregsim.units import DAYS_PER_MONTH

# the twin of this file is the lumped one (one residual sigma): its posterior
LUMPED = shipped_path("calibration/posteriors/natural_history_lumped.nc")


@pytest.fixture(scope="module")
def exp():
    return load_experiment("experiments/nct06708780.toml")


@pytest.fixture(scope="module")
def twin(exp):
    return Twin(
        exp.model,
        load_posterior(LUMPED),
        n_draws=64,
        seed=3,
        baseline_prior=BaselinePrior.from_experiment(exp),
        fasting=FastingModel.from_experiment(exp),
    )


def _quadrature_posterior(obs, prior, censored_at=None):
    """Mean, variance of log b and log marginal likelihood by brute-force quadrature.

    obs : list of (value_log, offset_log, sd) with value_log = log b + offset_log + sd·ε;
    censored_at : (log LLOQ, offset_log, sd) for one censored measurement, or None.
    """
    mu0, sd0 = prior

    def dens(x):
        d = stats.norm.pdf(x, mu0, sd0)
        for v, off, s in obs:
            d *= stats.norm.pdf(v, x + off, s)
        if censored_at is not None:
            L, off, s = censored_at
            d *= stats.norm.cdf((L - x - off) / s)
        return d

    lo, hi = mu0 - 12 * sd0, mu0 + 12 * sd0
    z = integrate.quad(dens, lo, hi, epsabs=0, epsrel=1e-11, limit=400)[0]
    m = integrate.quad(lambda x: x * dens(x), lo, hi, epsabs=0, epsrel=1e-11, limit=400)[0] / z
    v = integrate.quad(lambda x: (x - m) ** 2 * dens(x), lo, hi, epsabs=0, epsrel=1e-11, limit=400)
    return m, v[0] / z, np.log(z)


def test_posterior_of_baseline_matches_quadrature(twin):
    """Baseline + screening MMTT + fasting value: Gaussian posterior of log b and the
    importance weight, per draw, against numerical integration of prior × likelihood."""
    rec = TwinRecords.from_baseline(
        [0.45],
        [12.0],
        [70.0],
        screening_nmol_l=[0.6],
        screening_day=[40.0],
        fasting_pmol_l=[180.0],
    )
    K = twin.n_draws
    lc_pre = np.stack([np.full(K, -0.2), np.zeros(K)], axis=-1)[None]  # (1, K, 2): day 40, 70
    obs_log = np.log([[0.6, 0.45]])
    pre = np.ones((1, 2), bool)
    mean, var, ll = twin._posterior_log_b(rec, lc_pre, obs_log, pre, ~pre)
    mu0, sd0 = twin.baseline_prior(np.array([12.0]))
    f = twin.fasting
    for k in (0, 17, 63):
        s = twin.sigma[k]
        obs = [
            (np.log(0.6), -0.2, s),
            (np.log(0.45), 0.0, s),
            (np.log(180.0), np.log(1000 * f.ratio) - f.sd_log**2 / 2, f.sd_log),
        ]
        m, v, z = _quadrature_posterior(obs, (mu0[0], sd0[0]))
        np.testing.assert_allclose([mean[0, k], var[0, k]], [m, v], rtol=1e-7)
        # the weight is the marginal density of the log measurements
        np.testing.assert_allclose(ll[0, k], z, rtol=1e-8)


def test_censored_measurement_matches_quadrature(twin):
    rec = TwinRecords.from_baseline(
        [0.3], [30.0], [60.0], screening_nmol_l=[0.01], screening_day=[20.0]
    )
    assert rec.mmtt_censored.tolist() == [True, False]
    K = twin.n_draws
    lc_pre = np.stack([np.full(K, 0.1), np.zeros(K)], axis=-1)[None]
    obs_log = np.log([[0.017, 0.3]])
    pre = np.ones((1, 2), bool)
    cens = np.array([[True, False]])
    mean, var, ll = twin._posterior_log_b(rec, lc_pre, obs_log, pre, cens)
    mu0, sd0 = twin.baseline_prior(np.array([30.0]))
    for k in (1, 40):
        s = twin.sigma[k]
        m, v, z = _quadrature_posterior(
            [(np.log(0.3), 0.0, s)], (mu0[0], sd0[0]), censored_at=(np.log(0.017), 0.1, s)
        )
        np.testing.assert_allclose([mean[0, k], var[0, k], ll[0, k]], [m, v, z], rtol=2e-3)


def test_twin_agrees_with_brute_force_conditioning(exp):
    """Simulate a large routine-care population from the same posterior and prior, keep those
    whose observed baseline falls near y0, and compare their observed month-12 ln(AUC+1) with
    the twin's predictive mean and SD (independent of the importance-sampling algebra)."""
    from tregsim.observe import observe_cpeptide
    from tregsim.solve import simulate_arrays

    post = load_posterior(LUMPED)
    prior = BaselinePrior.from_experiment(exp)
    age, tb, y0 = 25.0, 60.0, 0.55
    n = 24000
    g = np.random.default_rng(5)
    pick = g.integers(0, len(post["sigma"]), n)
    th = {k: v[pick] for k, v in post.items()}
    om = th["omega_lambda"]
    mu0, sd0 = prior(np.array([age]))
    b = np.exp(mu0[0] + sd0[0] * g.standard_normal(n))
    params = exp.model.parameters(
        n, **th, f_lambda=np.exp(om * g.standard_normal(n)), age=age, cpep0=1.0
    )
    days = np.array([tb, tb + 12 * DAYS_PER_MONTH])
    c = simulate_arrays(exp.model, params, None, days, rtol=1e-6, atol=1e-9).observables["cpeptide"]
    mu = b[:, None] * c / c[:, :1]
    y, cens = observe_cpeptide(mu, g, th["sigma"][:, None], lloq=0.017)
    y = np.where(cens, 0.0085, y)
    near = np.abs(np.log(y[:, 0] / y0)) < 0.03
    z = np.log1p(y[near, 1])
    assert near.sum() > 300
    pred = Twin(exp.model, post, n_draws=1024, seed=2, baseline_prior=prior).predict(
        TwinRecords.from_baseline([y0], [age], [tb]), months=[12.0]
    )
    se = np.sqrt(z.var() / z.size + pred.sd[0, 0] ** 2 / pred.ess[0])
    assert abs(pred.mean[0, 0] - z.mean()) < 3 * se, (pred.mean[0, 0], z.mean(), se)
    assert abs(pred.sd[0, 0] / z.std() - 1) < 0.15
    assert pred.ess[0] > 500


def test_chunking_does_not_change_predictions(twin):
    rec = TwinRecords.from_baseline([0.2, 0.6, 1.1], [9.0, 17.0, 44.0], [30.0, 60.0, 95.0])
    a = twin.predict(rec, months=[6, 12], max_solves=64)
    b = twin.predict(rec, months=[6, 12], max_solves=10_000)
    np.testing.assert_array_equal(a.mean, b.mean)
    # the twin is a function of the record: the same participant alone gives the same values
    one = twin.predict(
        TwinRecords.from_baseline([0.6], [17.0], [60.0]), months=[6, 12], max_solves=64
    )
    np.testing.assert_allclose(one.mean[0], a.mean[1], rtol=1e-12)


def test_prediction_is_monotone_in_baseline(twin):
    rec = TwinRecords.from_baseline([0.1, 0.3, 0.6, 1.0], 20.0, 60.0)
    p = twin.predict(rec, months=[12.0])
    assert np.all(np.diff(p.mean[:, 0]) > 0)
    assert np.all(np.diff(p.quantiles[:, 0, :], axis=1) >= 0)


def test_save_and_load_round_trip(tmp_path, exp):
    rec = TwinRecords.from_baseline([0.4, 0.9], [11.0, 33.0], [60.0, 60.0], ids=["a", "b"])
    p = twin_study(exp, rec, n_draws=32, seed=1)
    p.save(tmp_path)
    q = load_twin_prediction(tmp_path)
    assert list(q.ids) == ["a", "b"]
    np.testing.assert_allclose(q.mean, p.mean, rtol=1e-9)
    np.testing.assert_allclose(q.quantiles, p.quantiles, rtol=1e-9)
    np.testing.assert_allclose(q.ess, p.ess, rtol=1e-9)
    np.testing.assert_allclose(q.baseline_p, p.baseline_p, rtol=1e-9)  # records structure
    np.testing.assert_array_equal(q.months, exp.visit_months)
    import json

    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["command"] == "twin" and man["results"]["n_participants"] == 2
    assert man["inputs"]["posterior"]["sha256"] and man["call"]["function"].endswith("twin_study")
    header = (tmp_path / "twin_predictions.csv").read_text().splitlines()[0]
    assert "pred_mean_ln_auc_plus_1" in header and "days_since_diagnosis" in header


# ---------------------------------------------------------------------------- data files
LONG = """id,day,cpeptide_nmol_l,age,fasting_cpeptide_pmol_l
p1,30,0.81,12.5,
p1,62,0.74,12.5,310
p2,55,0.42,31.0,
"""

NONMEM = """ID,TIME,DV,MDV,EVID,AMT,AGE,FCPEP
p1,30,0.81,0,0,0,12.5,.
p1,62,0.74,0,0,0,12.5,310
p2,55,0.42,0,0,0,31.0,.
"""


@pytest.mark.parametrize("text", [LONG, NONMEM], ids=["long", "nonmem"])
def test_read_twin_records(tmp_path, text):
    f = tmp_path / "twin.csv"
    f.write_text(text)
    rec = read_twin_records(f)
    assert list(rec.ids) == ["p1", "p2"]
    np.testing.assert_allclose(rec.baseline_day, [62.0, 55.0])
    np.testing.assert_allclose(rec.baseline_nmol_l, [0.74, 0.42])
    np.testing.assert_allclose(rec.age_years, [12.5, 31.0])
    assert rec.mmtt_participant.tolist() == [0, 0, 1]
    np.testing.assert_allclose(rec.fasting_pmol_l, [310.0, np.nan])


@pytest.mark.parametrize(
    "text, match",
    [
        (LONG.replace("0.42", ""), r"line 4, column cpeptide_nmol_l\] missing baseline"),
        (LONG.replace("0.42", "-0.42"), r"line 4, column cpeptide_nmol_l\].*≥ 0 nmol/L"),
        (LONG.replace("fasting_cpeptide_pmol_l", "hba1c"), r"line 1, column hba1c\] unknown"),
        (LONG.replace("12.5,310", ",310"), r"line 3, column age\] missing age"),
        (LONG.replace(",310", ",-5"), r"line 3, column fasting_cpeptide_pmol_l\].*> 0 pmol/L"),
        (NONMEM.replace("0.42", "-0.42"), r"line 4, column DV\] negative DV"),
        (NONMEM.replace("FCPEP", "HBA1C"), r"line 1, column HBA1C\] unknown"),
        (NONMEM.replace("p2,55,0.42,0,0,0", "p2,55,.,1,1,2e7"), r"line 4, column EVID\] dose"),
        (NONMEM.replace("p2,55,0.42,0", "p2,55,.,0"), r"line 4, column DV\] observation row"),
    ],
)
def test_bad_twin_files_name_line_and_fix(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DataFileError, match=match) as e:
        read_twin_records(f)
    msg = str(e.value)
    assert msg.startswith(str(f)) and "; fix: " in msg and "\n" not in msg


# ---------------------------------------------------------------------------- analysis
def test_ancova_prognostic_matches_statsmodels(rng):
    import statsmodels.api as sm

    from tregsim.trial.prognostic import ancova_prognostic, partial_correlation, residual_sd

    R, n = 25, 36
    arm = rng.random((R, n)) < 0.5
    base = rng.lognormal(-0.5, 0.5, (R, n))
    age = rng.uniform(8, 65, (R, n))
    prog = 0.9 * np.log1p(base) - 0.002 * age + rng.normal(0, 0.1, (R, n))
    y = np.expm1(0.1 + 0.5 * prog + 0.4 * np.log1p(base) + 0.1 * arm + rng.normal(0, 0.1, (R, n)))
    y[rng.random((R, n)) < 0.1] = np.nan
    inc = rng.random((R, n)) < 0.9
    res = ancova_prognostic(y, base, age, prog, arm, include=inc)
    for r in range(R):
        m = inc[r] & np.isfinite(y[r])
        X = sm.add_constant(
            np.column_stack([arm[r, m].astype(float), np.log1p(base[r, m]), age[r, m], prog[r, m]])
        )
        fit = sm.OLS(np.log1p(y[r, m]), X).fit()
        np.testing.assert_allclose(res.estimate[r], fit.params[1], rtol=1e-10)
        np.testing.assert_allclose(res.se[r], fit.bse[1], rtol=1e-10)
        np.testing.assert_allclose(res.p_value[r], fit.pvalues[1], rtol=1e-9)
        assert res.df[r] == fit.df_resid
    # partial correlation and residual SD against statsmodels' partial_corr-free definition:
    # ρ² = (RSS_without − RSS_with) / RSS_without
    m = np.isfinite(y[0])
    yy, cov, x = np.log1p(y[0, m]), np.column_stack([np.log1p(base[0, m]), age[0, m]]), prog[0, m]
    f0 = sm.OLS(yy, sm.add_constant(cov)).fit()
    f1 = sm.OLS(yy, sm.add_constant(np.column_stack([cov, x]))).fit()
    rho = partial_correlation(yy, x, cov)
    np.testing.assert_allclose(rho**2, (f0.ssr - f1.ssr) / f0.ssr, rtol=1e-10)
    np.testing.assert_allclose(residual_sd(yy, cov), np.sqrt(f0.mse_resid), rtol=1e-12)


def test_model_fixture_loads():
    assert "cpeptide" in load_model("treg_t1d").observable_names


def test_grid_twin_matches_exact_twin(twin):
    """The age-grid twin of the virtual trials against the exact per-participant twin."""
    from tregsim.twin import TwinGrid

    g = np.random.default_rng(4)
    n = 12
    age = np.exp(g.uniform(np.log(8), np.log(65), n))
    y0 = np.exp(g.normal(np.log(0.6), 0.6, n))
    y0[0] = 0.0085  # below the LLOQ, as virtual trials record it
    fast = np.where(
        g.random(n) < 0.5, 0.45 * y0 * 1000 * np.exp(0.3 * g.standard_normal(n)), np.nan
    )
    grid = TwinGrid(twin, np.geomspace(8, 65, 41), 60.0, [6.0, 12.0])
    got = grid.mean(np.r_[y0, np.nan], np.r_[age, 20.0], np.r_[fast, np.nan])
    assert np.isnan(got[-1]).all()
    exact = twin.predict(
        TwinRecords.from_baseline(y0, age, 60.0, fasting_pmol_l=fast), months=[6.0, 12.0]
    )
    np.testing.assert_allclose(got[:-1], exact.mean, atol=2e-3)
