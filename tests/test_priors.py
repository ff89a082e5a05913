"""Prior distributions of `tregsim.model.priors` against independent constructions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from tregsim.errors import ModelFileError
from tregsim.model.priors import Prior, parse_prior


def test_logitnormal_is_the_logistic_image_of_a_normal():
    p = Prior("logitnormal", {"mu": -2.7, "sigma": 1.3})
    f = p.frozen()
    assert integrate.quad(lambda x: np.exp(f.logpdf(x)), 0, 1, limit=200)[0] == pytest.approx(
        1.0, abs=1e-8
    )
    x = np.array([1e-6, 0.01, 0.06, 0.3, 0.9])
    # change of variables from N(mu, sigma) on logit x
    ref = stats.norm(-2.7, 1.3).logpdf(special.logit(x)) - np.log(x * (1 - x))
    np.testing.assert_allclose(f.logpdf(x), ref, rtol=1e-12)
    np.testing.assert_allclose(f.cdf(f.ppf([0.05, 0.5, 0.95])), [0.05, 0.5, 0.95], rtol=1e-12)
    draws = p.sample(np.random.default_rng(3), 4000)
    other = special.expit(np.random.default_rng(4).normal(-2.7, 1.3, 4000))
    assert stats.ks_2samp(draws, other).pvalue > 1e-3
    assert p.bounds == (0.0, 1.0)
    assert p.describe() == "logit-N(-2.7, 1.3)"


def test_logitnormal_density_at_the_ends_is_zero_without_warnings():
    """x = expit(u) rounds to exactly 1 for u > 37 (and to 0 below −745): the density's limit
    there is 0, which used to come out as inf − inf with divide-by-zero warnings."""
    f = Prior("logitnormal", {"mu": -2.7, "sigma": 1.3}).frozen()
    with np.errstate(divide="raise", invalid="raise"):
        lp = f.logpdf(np.array([0.0, special.expit(40.0), special.expit(-800.0)]))
    assert np.all(lp == -np.inf)


def test_log_jacobian_of_logit_is_finite_and_matches_the_direct_formula():
    from tregsim.calibrate.variability import _log_jac

    u = np.array([-30.0, -4.0, 0.0, 2.5, 30.0])
    ref = np.log(special.expit(u)) + np.log(special.expit(-u))  # σ(−u) = 1 − σ(u)
    np.testing.assert_allclose(_log_jac("q", u), ref, rtol=1e-12)
    with np.errstate(divide="raise", invalid="raise"):
        far = _log_jac("q", np.array([-800.0, 800.0]))
    np.testing.assert_allclose(far, [-800.0, -800.0])


def test_logitnormal_needs_a_positive_sigma():
    with pytest.raises(ModelFileError, match="sigma must be > 0"):
        parse_prior({"dist": "logitnormal", "mu": 0.0, "sigma": 0.0}, file="m.toml", key="q.prior")
    p = parse_prior({"dist": "logitnormal", "mu": -1.0, "sigma": 0.5}, file="m.toml", key="q")
    assert p.args == {"mu": -1.0, "sigma": 0.5}


@pytest.mark.parametrize(
    "dist,args",
    [
        ("lognormal", {"median": 1.7e-3, "sdlog": 0.5}),
        ("normal", {"mean": -0.3, "sd": 0.8}),
        ("normal", {"mean": 0.2, "sd": 0.5, "lower": 0.0}),  # truncated: scipy fallback
        ("halfnormal", {"scale": 0.3}),
        ("logitnormal", {"mu": -2.7, "sigma": 1.3}),
        ("beta", {"a": 2.0, "b": 5.0}),
        ("uniform", {"lower": -1.0, "upper": 2.0}),
        ("loguniform", {"lower": 0.01, "upper": 10.0}),
    ],
)
def test_scalar_logpdf_is_scipys(dist, args):
    """The samplers' per-call prior density equals scipy's frozen logpdf, inside and outside
    the support."""
    p = Prior(dist, args)
    f, ref = p.scalar_logpdf(), p.frozen()
    xs = np.r_[ref.ppf([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999999]), -1.0, 0.0, 1.0, 1.5, 50.0]
    for x in xs:
        want = float(ref.logpdf(x))
        got = f(float(x))
        if np.isinf(want):
            assert got == want, (x, got)
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), x
