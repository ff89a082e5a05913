"""The nested agreement test of two posteriors (tregsim.calibrate.diagnostics.nested_agreement)
on a linear-Gaussian model whose posteriors given y and given a lossy summary s = B y are exact
(closed form): D² must be χ²_d when both are correct, and large when the coarse one is shifted."""

import sys

import numpy as np
import pytest
from scipy import stats

from tregsim.calibrate.diagnostics import nested_agreement

D, N_OBS, SIGMA = 3, 6, 0.7


def _posteriors(rng, A, B):
    """θ ~ N(0, I), y = Aθ + σε, s = B y: exact Gaussian posteriors (mean, cov) given y and s."""
    theta = rng.standard_normal(D)
    y = A @ theta + SIGMA * rng.standard_normal(N_OBS)
    cov_f = np.linalg.inv(np.eye(D) + A.T @ A / SIGMA**2)
    m_f = cov_f @ A.T @ y / SIGMA**2
    BA, noise = B @ A, SIGMA**2 * B @ B.T
    prec_s = BA.T @ np.linalg.solve(noise, BA)
    cov_c = np.linalg.inv(np.eye(D) + prec_s)
    m_c = cov_c @ BA.T @ np.linalg.solve(noise, B @ y)
    return (m_c, cov_c), (m_f, cov_f)


def _d2(rng, A, B, shift=0.0, n=3000):
    (m_c, cov_c), (m_f, cov_f) = _posteriors(rng, A, B)
    coarse = rng.multivariate_normal(m_c, cov_c, n)
    coarse[:, 0] += shift * np.sqrt(cov_c[0, 0])
    fine = rng.multivariate_normal(m_f, cov_f, n)
    return nested_agreement(coarse, fine)


@pytest.fixture
def design():
    rng = np.random.default_rng(11)
    return rng, rng.standard_normal((N_OBS, D)), rng.standard_normal((2, N_OBS))


def test_d2_is_chi_square_when_both_posteriors_are_exact(design):
    rng, A, B = design
    res = [_d2(rng, A, B) for _ in range(400)]
    d2 = np.array([r["d2"] for r in res])
    assert all(r["df"] == D and r["n_nonpositive"] == 0 for r in res)
    # SE of the mean of 400 χ²_3 values: sqrt(6 / 400) = 0.12
    assert abs(d2.mean() - D) < 0.37
    assert stats.kstest(d2, stats.chi2(D).cdf).pvalue > 1e-3
    z = np.array([r["z"] for r in res])
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.12)


def test_a_shifted_coarse_posterior_is_detected(design):
    rng, A, B = design
    p = np.array([_d2(rng, A, B, shift=2.0)["p_value"] for _ in range(100)])
    assert np.mean(p < 0.05) > 0.5


def test_pooled_sd_would_call_exact_posteriors_disagreeing(design):
    """Why the test is nested: the fine mean moves by sqrt(Σ_c − Σ_f), not by a pooled SD, so
    |Δ| / pooled SD > 1 happens often for two exact posteriors."""
    rng, A, B = design
    ratios = []
    for _ in range(400):
        (m_c, cov_c), (m_f, cov_f) = _posteriors(rng, A, B)
        ratios.append(np.abs(m_f - m_c) / np.sqrt((np.diag(cov_c) + np.diag(cov_f)) / 2))
    assert np.mean(np.max(ratios, axis=1) > 1) > 0.2


def test_extra_covariance_absorbs_a_known_error_of_the_coarse_mean(design):
    """A coarse posterior whose mean carries an extra error e ~ N(0, V) (e.g. training noise):
    D² is inflated without V and χ²_d again with extra_cov = V."""
    rng, A, B = design
    without, with_v = [], []
    for _ in range(300):
        (m_c, cov_c), (m_f, cov_f) = _posteriors(rng, A, B)
        v = 0.5 * cov_c
        coarse = rng.multivariate_normal(m_c + rng.multivariate_normal(np.zeros(D), v), cov_c, 3000)
        fine = rng.multivariate_normal(m_f, cov_f, 3000)
        without.append(nested_agreement(coarse, fine)["d2"])
        with_v.append(nested_agreement(coarse, fine, extra_cov=v)["d2"])
    assert np.mean(without) > D + 1.0
    assert abs(np.mean(with_v) - D) < 0.45  # SE of 300 χ²_3 means: 0.14


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one d"):
        nested_agreement(np.zeros((5, 2)), np.zeros((5, 3)))


def _benchmark_module(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_pooling_rules_give_the_variances_of_their_definitions():
    """Three Gaussian members with unit within-SD and different means: the linear pool's
    variance is 1 + (K−1)/K·s², standard-error pooling's 1 + s²/K, recentring's 1; all keep
    the ensemble mean (law of total variance; s² the sample variance of the member means)."""
    pool = _benchmark_module("structure_npe_pooling").pool
    rng = np.random.default_rng(3)
    centres = np.array([-0.6, 0.1, 0.9])
    draws = [c + rng.standard_normal((200_000, 1)) for c in centres]
    mu = np.array([d.mean() for d in draws])
    s2, k = mu.var(ddof=1), len(draws)
    within = np.mean([d.var() for d in draws])
    expected = {
        "mixture": within + (k - 1) / k * s2,
        "se_pool": within + s2 / k,
        "recentred": within,
    }
    for rule, var in expected.items():
        pooled = pool(draws, rule)
        assert pooled.shape == (600_000, 1)
        assert pooled.mean() == pytest.approx(mu.mean(), abs=1e-9)
        assert pooled.var() == pytest.approx(var, rel=1e-9)


def test_null_table_p_values_count_the_null_sets_at_or_beyond_the_records():
    """Monte-Carlo p = (1 + #{null ≥ observed}) / (1 + K) over the finite null values; on |·|
    for signed statistics; the χ² columns say how often the analytic test rejects the null."""
    import pandas as pd

    table = _benchmark_module("structure_agreement_null").null_table
    k = 99
    v = np.arange(1.0, k + 1)  # 1 … 99
    signed = np.where(np.arange(k) % 2, v, -v) / 10  # ±0.1 … ±9.9
    signed[:9] = np.nan  # nine sets without a nested reference
    null = pd.DataFrame(
        {
            "d2_natural": v,
            "d2_u": v,
            "p_chi2_natural": np.where(v > 90, 0.01, 0.5),
            "p_chi2_u": 0.5,
            "max_abs_diff_pooled": v,
            "n_abs_diff_pooled_over_1": v,
            "n_lik_median_outside_npe_90": v,
            "diff_pooled_a": signed,
            "z_u_a": signed,
        }
    )
    obs = {c: 95.5 for c in null} | {"diff_pooled_a": -9.55, "z_u_a": np.nan}
    obs |= {"p_chi2_natural": 0.003, "p_chi2_u": 0.2}
    t = table(null, obs, ["a"]).set_index("statistic")
    assert t.loc["d2_natural", "p"] == pytest.approx((1 + 4) / (1 + k))  # 96 … 99
    assert t.loc["d2_natural", "null_frac_chi2_p_below_0.05"] == pytest.approx(9 / k)
    assert t.loc["d2_natural", "chi2_p_observed"] == 0.003
    # |signed| ≥ 9.55 among the 90 finite values 1.0 … 9.9: 9.6 … 9.9
    assert t.loc["diff_pooled_a", "n_sets"] == 90
    assert t.loc["diff_pooled_a", "p"] == pytest.approx((1 + 4) / (1 + 90))
    assert np.isnan(t.loc["z_u_a", "p"])
