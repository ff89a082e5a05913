"""The contaminated-normal within-patient deviation (round 20's ``scale_mixture`` candidate of
benchmarks/structure_extension_loso.py): its draws against the mixture's CDF, and its
records likelihood at the ends where it is a normal (p = 0: scale σ; p = 1: scale k·σ;
k = 1: scale σ for any p) against the normal branch, on made-up records with censored
visits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_agreement import _benchmark_module
from test_structure_kernel_t import _like_plain, _table
from test_structure_run import TRUTH

from tregsim.calibrate import variability as V


@pytest.fixture(scope="module")
def like():
    """test_structure_kernel_t's made-up records, three visits censored, a fixed ζ grid."""
    return _like_plain(_table())


def test_mixture_deviations_follow_the_contaminated_normal():
    p, k = 0.05, 4.0
    x = V._deviations(np.random.default_rng(7), (200_000,), {"mix_p": p, "mix_k": k})

    def cdf(v):
        return (1 - p) * stats.norm.cdf(v) + p * stats.norm.cdf(v / k)

    assert stats.kstest(x, cdf).pvalue > 1e-3
    # the variance (1 − p) + p·k² = 1.75: well away from a normal's 1 or a mix-up's
    assert abs(x.var() - 1.75) < 0.05
    # without mix_p the stream is the normal one, draw for draw
    np.testing.assert_array_equal(
        V._deviations(np.random.default_rng(7), (50,), {}),
        np.random.default_rng(7).standard_normal(50),
    )


@pytest.mark.parametrize(
    ("p", "k", "sigma_factor"), [(1e-300, 3.0, 1.0), (1.0, 3.0, 3.0), (0.3, 1.0, 1.0)]
)
def test_mixture_likelihood_is_the_normal_at_its_ends(like, p, k, sigma_factor):
    lo = _benchmark_module("structure_extension_loso")
    sm = np.full(len(like.r.ids), TRUTH["sigma_meas"])
    with np.errstate(all="ignore"):
        mix = lo.participant_log_lik(like, TRUTH, TRUTH | {"mix_p": p, "mix_k": k}, sm)
        normal = lo.participant_log_lik(like, TRUTH, TRUTH, sm * sigma_factor)
    assert np.all(np.isfinite(mix))
    np.testing.assert_allclose(mix, normal, rtol=1e-12, atol=1e-10)
    # and in between it is neither end
    with np.errstate(all="ignore"):
        mid = lo.participant_log_lik(like, TRUTH, TRUTH | {"mix_p": 0.1, "mix_k": 3.0}, sm)
    assert np.abs(mid - normal).max() > 1e-2
