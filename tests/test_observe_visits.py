"""tregsim.observe.observe_visits: chunk-independent draws, the variance/correlation structure it
promises (checked by its own definition on large samples), per-patient output times."""

from __future__ import annotations

import numpy as np
import pytest

import tregsim
from tregsim.observe import observe_visits, solve_at_patient_times, visit_normals


def test_normals_do_not_depend_on_chunks():
    full = visit_normals(7, "test.visits", 0, 3000, 5)
    part = np.concatenate(
        [visit_normals(7, "test.visits", a, b, 5) for a, b in [(0, 999), (999, 2500), (2500, 3000)]]
    )
    np.testing.assert_array_equal(full, part)


def test_homoscedastic_residual_sd():
    P, T = 100_000, 3
    mu = np.full((P, T), 0.5)
    z = visit_normals(1, "test.visits", 0, P, T)
    y, cens = observe_visits(mu, [0.0, 182.0, 365.0], z, sigma_meas=0.2)
    r = np.log(y / mu)
    assert not cens.any()
    assert r.std(axis=0) == pytest.approx([0.2] * 3, rel=0.01)
    assert abs(np.corrcoef(r.T)[0, 1]) < 0.01


def test_ou_and_assay_covariance():
    P = 200_000
    days = np.array([0.0, 91.0, 365.0])
    mu = np.full((P, 3), 0.6)  # h = 1 at the reference
    z = visit_normals(2, "test.visits", 0, P, 3)
    y, _ = observe_visits(mu, days, z, sigma_meas=0.07, sigma_bio=0.25, tau_bio=120.0, kappa=0.3)
    r = np.log(y / mu)
    c = np.cov(r.T)
    assert c[0, 0] == pytest.approx(0.07**2 + 0.25**2, rel=0.02)
    assert c[0, 1] == pytest.approx(0.25**2 * np.exp(-91 / 120), rel=0.03)
    assert c[1, 2] == pytest.approx(0.25**2 * np.exp(-274 / 120), abs=0.002)


def test_heteroscedastic_factor():
    P = 100_000
    mu = np.concatenate([np.full((P, 1), 0.15), np.full((P, 1), 0.6)], axis=1)
    z = visit_normals(3, "test.visits", 0, P, 2)
    y, _ = observe_visits(mu, [0.0, 1e6], z, sigma_meas=0.2, kappa=0.5, lloq=1e-9)
    sd = np.log(y / mu).std(axis=0)
    assert sd[1] == pytest.approx(0.2, rel=0.02)
    assert sd[0] / sd[1] == pytest.approx(4**0.5, rel=0.02)  # (0.15/0.6)^(-0.5)


def test_censoring():
    mu = np.full((1000, 1), 0.01)
    y, cens = observe_visits(mu, [0.0], visit_normals(4, "t", 0, 1000, 1), sigma_meas=0.1)
    assert cens.mean() > 0.99 and np.all(y[cens] == 0.017)


def test_patient_times_match_single_solves():
    model = tregsim.load_model("treg_t1d")
    ages = np.array([9.0, 15.0, 30.0])
    params = model.parameters(3, age=ages)
    base = np.array([30.0, 60.0, 95.0])  # each patient's own enrolment day
    times = base[:, None] + np.array([0.0, 182.6, 365.25])[None]
    got = solve_at_patient_times(model, params, times)
    for i in range(3):
        one = tregsim.simulate_arrays(model, model.parameters(1, age=ages[i]), times=times[i])
        np.testing.assert_allclose(got[i], one.observables["cpeptide"][0], rtol=1e-6)


@pytest.mark.parametrize("inv_nu", [0.1, 0.3, 0.45])
def test_student_t_deviation_follows_scipy_t(inv_nu):
    """With inv_nu = 1/ν the standardised deviation is Student-t (scipy's CDF, KS test at the
    1 % level on 50,000 draws) with the scale σ_meas·h, and its variance is
    visit_variance_log's (σ_meas·h)²·ν/(ν − 2) (at ν > 4, where the sample variance has a
    finite variance: ν 10)."""
    from scipy import stats

    from tregsim.observe import visit_variance_log

    P, T = 50_000, 2
    mu = np.full((P, T), 3.0)  # h = (3/0.6)^(-κ); far above the LLOQ even for a t tail
    z = visit_normals(3, "test.visits", 0, P, T)
    y, cens = observe_visits(mu, [0.0, 365.0], z, sigma_meas=0.15, kappa=0.4, inv_nu=inv_nu)
    scale = 0.15 * (3.0 / 0.6) ** -0.4
    e = np.where(cens, -np.inf, np.log(y / mu) / scale)  # censored: below the LLOQ, far left
    for k in range(T):
        assert stats.kstest(e[:, k], stats.t(1.0 / inv_nu).cdf).pvalue > 0.01
    if inv_nu == 0.1:
        v = visit_variance_log(np.log(3.0), 0.15, 0.0, 0.4, inv_nu=inv_nu)
        assert np.log(y / mu).var() == pytest.approx(float(v), rel=0.05)


def test_student_t_keeps_the_normal_stream_at_zero():
    P, T = 1000, 3
    mu = np.full((P, T), 0.5)
    z = visit_normals(4, "test.visits", 0, P, T)
    a, _ = observe_visits(mu, [0.0, 182.0, 365.0], z, sigma_meas=0.2, kappa=0.3)
    b, _ = observe_visits(mu, [0.0, 182.0, 365.0], z, sigma_meas=0.2, kappa=0.3, inv_nu=0.0)
    np.testing.assert_array_equal(a, b)


def test_student_t_needs_a_white_deviation():
    from tregsim.errors import ArgumentError

    z = visit_normals(4, "test.visits", 0, 2, 2)
    with pytest.raises(ArgumentError, match="inv_nu"):
        observe_visits(np.ones((2, 2)), [0.0, 1.0], z, sigma_meas=0.1, sigma_bio=0.2, inv_nu=0.3)


def test_deconvolved_sd_is_the_variance_rule_for_the_normal():
    from tregsim.observe import deconvolved_sd

    m, sc = np.array([0.5, 0.36, 0.3]), np.array([0.2, 0.25, 0.3])
    out = deconvolved_sd(m, sc, 0.0)
    np.testing.assert_allclose(out[:2], np.sqrt(m[:2] ** 2 - sc[:2] ** 2), rtol=1e-15)
    assert np.isnan(out[2])  # the error alone is as wide


@pytest.mark.parametrize("inv_nu, scale", [(0.2, 0.2), (0.3015, 0.1644), (0.45, 0.3)])
def test_deconvolved_sd_matches_the_interquartile_range_by_monte_carlo(inv_nu, scale):
    """N(0, s²) + scale·t_ν with s = deconvolved_sd(0.5, scale, 1/ν) has the interquartile range
    of N(0, 0.5²): 2,000,000 draws (the IQR/1.349 of that many has an SE ≈ 0.0004; the
    table's bilinear interpolation adds ≲ 0.001 off its nodes, both points here are off)."""
    from scipy import stats

    from tregsim.observe import deconvolved_sd

    s = float(deconvolved_sd(0.5, scale, inv_nu))
    g = np.random.default_rng(11)
    n = 2_000_000
    y = s * g.standard_normal(n) + scale * stats.t.rvs(1.0 / inv_nu, size=n, random_state=g)
    q25, q75 = np.percentile(y, [25, 75])
    assert (q75 - q25) / (2 * stats.norm.ppf(0.75)) == pytest.approx(0.5, abs=4 * 0.0004 + 0.001)


def test_log1p_recorded_is_the_records_coding():
    """ln(y + 1) with LLOQ/2 below the LLOQ, from ln y: equal to the direct formula where y is
    finite, ≈ ln y where exp would overflow (a far node of a heavy-tailed deviation)."""
    from tregsim.observe import log1p_recorded

    y = np.array([1e-6, 0.0169, 0.017, 0.5, 3.0, 1e6])
    np.testing.assert_allclose(
        log1p_recorded(np.log(y), 0.017),
        np.log1p(np.where(y < 0.017, 0.0085, y)),
        rtol=1e-15,
        atol=0,
    )
    assert log1p_recorded(np.array([800.0]))[0] == 800.0
