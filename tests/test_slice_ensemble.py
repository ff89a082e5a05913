"""Ensemble slice sampling (``tregsim.calibrate.slice_ensemble``) against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tregsim.calibrate.likelihood import ensemble_ess
from tregsim.calibrate.slice_ensemble import SliceEnsemble

B, S2 = 1.0, 0.3  # banana: x2 | x1 ~ N(B (x1² − 1), S2²)


def _banana(x):
    """x1 ~ N(0, 1), x2 | x1 ~ N(B (x1² − 1), S2²), x3, x4 ~ N(0, 10²) independent: a curved
    ridge beside two wide directions. E x2 = 0, Var x2 = 2 B² + S2², Cov(x1², x2) = 2 B."""
    return -0.5 * (
        x[0] ** 2 + ((x[1] - B * (x[0] ** 2 - 1)) / S2) ** 2 + (x[2] ** 2 + x[3] ** 2) / 100
    )


def _run(seed, n_steps=3000, burn=300, n_walkers=16):
    g = np.random.default_rng(seed)
    ens = SliceEnsemble(_banana, 0.1 * g.standard_normal((n_walkers, 4)), g)
    ens.run(burn, tune=True)
    ens.run(n_steps)
    return ens, ens.get_chain()[burn:]


def _banana_cdfs(x):
    """The exact marginal CDFs of the banana at the draws x (n, 4): Φ(x1), x2's by a 1-D
    integral over x1, Φ(x3/10), Φ(x4/10)."""
    from scipy import stats

    t = np.linspace(-9, 9, 3601)
    w = stats.norm.pdf(t) * (t[1] - t[0])
    f2 = np.array(
        [w @ stats.norm.cdf((v - B * (t**2 - 1)) / S2) for v in np.linspace(-3, 40, 4301)]
    )
    return np.stack(
        [
            stats.norm.cdf(x[:, 0]),
            np.interp(x[:, 1], np.linspace(-3, 40, 4301), f2),
            stats.norm.cdf(x[:, 2] / 10),
            stats.norm.cdf(x[:, 3] / 10),
        ],
        axis=1,
    )


def test_slice_ensemble_recovers_a_banana():
    """Every coordinate's marginal: the exact CDF at the draws is uniform, its 10/25/50/75/90 %
    quantiles within 4 Monte Carlo SE, √(p(1 − p)/ESS), the ESS the ensemble's own (emcee's
    τ estimator, the slowest coordinate's)."""
    ens, ch = _run(0)
    ess = ensemble_ess(ch)
    assert ess > 150, ess  # τ ≈ 100 steps on this ridge: a check that it mixes at all
    u = _banana_cdfs(ch.reshape(-1, 4))
    for p in (0.1, 0.25, 0.5, 0.75, 0.9):
        se = np.sqrt(p * (1 - p) / ess)
        q = np.quantile(u, p, axis=0)
        assert np.all(np.abs(q - p) < 4 * se), (p, q, se)
    assert 3 < ens.n_evals / (16 * 3300) < 12  # a few evaluations per walker and step


def test_slice_ensemble_one_seed_one_chain():
    a, _ = _run(7, n_steps=50, burn=10)
    b, _ = _run(7, n_steps=50, burn=10)
    np.testing.assert_array_equal(a.get_chain(), b.get_chain())
    c, _ = _run(8, n_steps=50, burn=10)
    assert not np.array_equal(a.get_chain(), c.get_chain())


@pytest.mark.parametrize("n", [7, 6])
def test_slice_ensemble_refuses_too_few_or_odd_walkers(n):
    with pytest.raises(ValueError, match="even number"):
        SliceEnsemble(_banana, np.zeros((n, 4)), np.random.default_rng(0))


def test_slice_ensemble_refuses_a_start_outside_the_support():
    x0 = np.zeros((8, 4))
    x0[3, 0] = 5.0

    def f(x):
        return -np.inf if x[0] > 1 else _banana(x)

    with pytest.raises(ValueError, match="finite log density"):
        SliceEnsemble(f, x0, np.random.default_rng(0))
