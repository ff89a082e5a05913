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


def test_logitnormal_needs_a_positive_sigma():
    with pytest.raises(ModelFileError, match="sigma must be > 0"):
        parse_prior({"dist": "logitnormal", "mu": 0.0, "sigma": 0.0}, file="m.toml", key="q.prior")
    p = parse_prior({"dist": "logitnormal", "mu": -1.0, "sigma": 0.5}, file="m.toml", key="q")
    assert p.args == {"mu": -1.0, "sigma": 0.5}
