"""The records likelihood with a Student-t within-patient deviation (``inv_nu`` = 1/ν > 0):
the compiled kernel's t log CDF against scipy, the kernel against the numpy reference
(``structure_run.array_log_lik``, scipy's t) and, as ν → ∞, against the normal kernel, on
made-up records with censored visits; and the combinations it does not define raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from test_structure_run import TRUTH  # the made-up structure of the kernel's other tests

import tregsim
from tregsim.calibrate import structure_kernel as SK
from tregsim.calibrate import structure_run as S
from tregsim.calibrate import variability as V
from tregsim.calibrate.likelihood import CurveTable

VISIT_MONTHS = np.array([0, 3, 6, 12, 18, 24], float)


def _table() -> CurveTable:
    """The curve table of these tests (a coarse one: the tests compare paths on it)."""
    return CurveTable(
        tregsim.load_model("treg_t1d"),
        fixed={"s0": 0.41, "k_re": 0.02},
        n_loglam=41,
        n_q=11,
        max_day=900.0,
        day_step=10.0,
    )


@pytest.fixture(scope="module")
def table():
    return _table()


def _records(table, n: int = 25, seed: int = 3) -> V.Records:
    """Made-up records drawn from TRUTH (as tests/test_structure_run.py)."""
    rng = np.random.default_rng(seed)
    vp = np.repeat(np.arange(n), VISIT_MONTHS.size)
    vm = np.tile(VISIT_MONTHS, n)
    vd = np.round(vm * 30.4375) + np.where(vm > 0, rng.integers(-7, 8, vp.size), 0)
    rec = V.Records(
        ids=np.array([f"p{i:03d}" for i in range(n)]),
        study=np.where(np.arange(n) % 2 == 0, "A", "B"),
        age_years=rng.uniform(8.0, 35.0, n),
        visit_patient=vp,
        visit_day=vd.astype(float),
        visit_month=vm,
        y=np.ones(vp.size),
    )
    rec.y = V.simulate_records(table, TRUTH, rec, rng)[0]
    return rec


@pytest.fixture(scope="module")
def like(table):
    """A stress case: three visits set below the LLOQ (0.017; coded LLOQ/2, censored) where
    the participant's level is far above it (deviations z ≈ −10 to −20: the deep tail of
    the t log CDF), one a baseline, and one visit far off its participant's course."""
    rec = _records(table)
    rec.y[[4, 11, 6]] = 0.0085
    rec.y[20] *= 3.0
    lk = V.StructureLikelihood(table, rec, n_zeta=15, n_eta=13)
    assert lk._cens.sum() == 3
    return lk


def _like_plain(table) -> V.StructureLikelihood:
    """The records as drawn, the three lowest visits censored (coded LLOQ/2): deviations of
    the size the model expects (a fixed ζ grid)."""
    rec = _records(table)
    rec.y[np.argsort(rec.y)[:3]] = 0.0085
    lk = V.StructureLikelihood(table, rec, n_zeta=15, n_eta=13)
    assert lk._cens.sum() == 3
    return lk


@pytest.fixture(scope="module")
def like_plain(table):
    return _like_plain(table)


def test_t_logcdf_matches_scipy():
    """log T_ν(x) = ln(½ I_w(ν/2, ½)), w = ν/(ν + x²) (log1p(−½ I_w) for x ≥ 0). Its error is
    that of ln B(ν/2, ½) and a·ln w (a = ν/2) formed from terms of size up to
    lgamma(50.5) ≈ 146 and 50·ln 37 ≈ 180 (ν = 100, x = −60): a few × 10 × 180·ε ≈ 4e-13
    absolute, and |log T| ≥ ln 2 for x < 0, while for x ≥ 0 that error is relative to
    I_w ≈ −2·log T; the continued fraction adds O(n_terms·ε). Hence rtol 1e-11, with x = 0
    exactly ln ½."""
    x = np.r_[np.linspace(-60.0, 10.0, 1401), -1e-9, 1e-9, -0.0]
    for nu in (2.1, 3.3, 10.0, 100.0):
        got = np.array([SK._t_logcdf(v, nu) for v in x])
        np.testing.assert_allclose(got, stats.t.logcdf(x, nu), rtol=1e-11, atol=0)
        assert SK._t_logcdf(0.0, nu) == np.log(0.5)


def _t_logcdf_parts(x: np.ndarray, nu: float) -> tuple[np.ndarray, int]:
    """The vectorised log CDF on an array, with its scratch buffers, and the series length."""
    n = x.size
    coef = np.empty((2, SK._T_SERIES_MAX))
    n_terms = SK.t_series_coefficients(nu, coef)
    out, w, w1, acc, side, lg, mant = (np.empty(n) for _ in range(7))
    mb, eb, k1, k2 = (np.empty(n, np.int64) for _ in range(4))
    lbeta = math.lgamma(0.5 * nu) + math.lgamma(0.5) - math.lgamma(0.5 * nu + 0.5)
    if n_terms:
        SK._t_logcdf_parts(
            x, nu, lbeta, coef, n_terms, out, w, w1, acc, side, lg.view(np.int64),
            mb, eb, mb.view(np.float64), eb.view(np.float64), lg, mant, k1, k2,
        )  # fmt: skip
    return out, n_terms


def test_t_logcdf_series_matches_scipy():
    """The censored visits' vectorised log T_ν (round 22): I_w(a, ½) from the positive-term
    series ₂F₁(a + ½, 1; A + 1; x) on the continued fraction's own side of the split, so
    there is no cancellation: the sum of N ≤ 378 terms is good to ≈ N·ε relative
    (≤ 8·10⁻¹⁴), ln w and the final log1p to a few ulp, and a·ln w adds ≤ 13·|ln w|·ε at
    ν ≤ 25. Hence rtol 1e-12 against scipy (the scalar continued fraction's own test above
    has 1e-11 because its ν reaches 100), x = 0 exactly ln ½; the series is refused
    (N = 0) where it would need more than ``_T_SERIES_MAX`` terms."""
    x = np.r_[np.linspace(-60.0, 10.0, 1401), -1e-9, 1e-9, -0.0, 0.0, 1e-200, -1e-200, 40.0]
    for nu in (1.01, 2.1, 3.3, 10.0, 25.0):
        got, n_terms = _t_logcdf_parts(x, nu)
        assert 0 < n_terms <= SK._T_SERIES_MAX
        ref = stats.t.logcdf(x, nu)
        tiny = ref == 0.0  # log T rounds to 0 far right: compare absolutely there
        np.testing.assert_allclose(got[~tiny], ref[~tiny], rtol=1e-12, atol=0)
        np.testing.assert_allclose(got[tiny], 0.0, rtol=0, atol=1e-15)
        assert np.all(got[x == 0.0] == np.log(0.5))
    assert SK.t_series_coefficients(30.0, np.empty((2, SK._T_SERIES_MAX))) == 0


@pytest.mark.parametrize("inv_nu", [0.02, 0.05, 0.3])
@pytest.mark.parametrize("extra", [{}, {"kappa": 1.2, "beta_c": -0.7, "gamma_beta": -0.7}])
def test_kernel_equals_numpy_reference(like, inv_nu, extra):
    """Kernel against array_log_lik (scipy.stats.t): the same sums of the same per-node terms,
    which differ by rounding only (the kernel's exp ≤ 2 ulp, log1p vs scipy's formula, fused
    multiply-adds), each term ≲ 200 nats at the nodes that carry weight (the stress visits),
    so ≲ 6 visits × 200 × a few ε ≈ 1e-12 per participant, and ≲ 1e-12 for a censored
    visit's t log CDF (see above): rtol 1e-9 and, for a log-likelihood near 0, atol 1e-11."""
    th = TRUTH | extra | {"inv_nu": inv_nu}
    k = S.independent_log_lik(like, th)
    with np.errstate(all="ignore"):
        a = S.array_log_lik(like, th)
    assert np.all(np.isfinite(k))
    np.testing.assert_allclose(k, a, rtol=1e-9, atol=1e-11)
    # the t deviation changes the value (it is not the normal path by mistake)
    assert np.abs(k - S.independent_log_lik(like, TRUTH | extra)).max() > 1e-3


def test_small_inv_nu_tends_to_the_normal_kernel(like_plain):
    """At ν = 1e8 the t and normal log densities differ by (z⁴ − 2z² − 1)/(4ν) + O(ν⁻²): for
    the |z| ≲ 4 that carry the weight, ≲ 6 visits × 223/4e8 ≈ 3.3e-6 per participant (log T_ν
    and log Φ likewise). The t constant lgamma((ν+1)/2) − lgamma(ν/2) (and ln B(ν/2, ½))
    cancels two values ≈ 8.4e8 (ulp 1.2e-7): ≲ 2 ulp per visit, ≲ 1.4e-6 per participant.
    So ≲ 5e-6: atol 1e-5 nats. (Far-off visits would be outside this bound: a censored visit
    at z ≈ −15 alone differs by ≈ z⁴/(4ν) ≈ 1e-4, the t model's, not an error.)"""
    t = S.independent_log_lik(like_plain, TRUTH | {"inv_nu": 1e-8})
    n = S.independent_log_lik(like_plain, TRUTH)
    np.testing.assert_allclose(t, n, rtol=0, atol=1e-5)


def test_inv_nu_zero_is_the_normal_kernel_exactly(like):
    th = TRUTH | {"beta_c": 0.4}
    np.testing.assert_array_equal(
        S.independent_log_lik(like, th | {"inv_nu": 0.0}), S.independent_log_lik(like, th)
    )
    assert SK.pack(th, like.lloq).size == 14 and SK.pack(th, like.lloq)[13] == 0.0


def test_undefined_combinations_raise(like):
    th = TRUTH | {"inv_nu": 0.3}
    with pytest.raises(ValueError, match="sigma_add"):
        SK.pack(th | {"sigma_add": 0.01}, like.lloq)
    with pytest.raises(ValueError, match="sigma_add"):
        S.independent_log_lik(like, th | {"sigma_add": 0.01})
    with pytest.raises(ValueError, match="sigma_add"):
        S.array_log_lik(like, th | {"sigma_add": 0.01})
    with pytest.raises(ValueError, match="sigma_bio"):
        S.independent_log_lik(like, th | {"sigma_bio": 0.1})
    with pytest.raises(ValueError, match="inv_nu"):
        SK.pack(TRUTH | {"inv_nu": -0.1}, like.lloq)


def test_product_of_t_terms_is_flushed_before_it_overflows(like_plain):
    """The kernel multiplies a participant's 1 + z²/ν over visits and takes one log (round 20:
    1.4× faster); at σ_meas 1e-30 each visit's factor is ≈ 1e59, so six visits would overflow
    (1e354) without the flush at 1e250 (checked: the product alone gives −inf). Against the
    numpy reference, whose terms are ≈ −300 nats per visit: rtol 1e-9 as above."""
    th = TRUTH | {"inv_nu": 0.3, "sigma_meas": 1e-30}
    k = S.independent_log_lik(like_plain, th)
    with np.errstate(all="ignore"):
        a = S.array_log_lik(like_plain, th)
    assert np.all(np.isfinite(k)) and k.max() < -500.0
    np.testing.assert_allclose(k, a, rtol=1e-9)


def test_vectorised_log_matches_numpy():
    """The kernel's own ln (for the t's per-node logs) against numpy's: 2·10⁵ values spread
    over [1, e⁶⁹⁰] (the products it takes logs of are ≥ 1 and flushed at 1e250), values just
    above 1 (tiny logs), the range reduction's edge at √2, the largest double, inf and NaN. 3 ulp is
    the reduction and the series' rounding; a wrong coefficient or exponent bias is off by
    orders of magnitude more."""
    g = np.random.default_rng(0)
    sq2 = np.sqrt(2.0)
    x = np.r_[
        np.exp(g.uniform(0.0, 690.0, 200_000)),
        1.0 + g.uniform(0.0, 1e-6, 1000),
        [1.0, 2.0, sq2, np.nextafter(sq2, 2.0), np.nextafter(sq2, 1.0), 1e250, 1.7e308],
    ]
    x = np.r_[x, np.inf, np.nan]
    mb, eb, out = np.empty(x.size, np.int64), np.empty(x.size, np.int64), np.empty(x.size)
    SK._ln_parts(x, x.view(np.int64), mb, eb, mb.view(np.float64), eb.view(np.float64), out)
    # an overflowed product stays inf and a NaN stays NaN, as with np.log
    assert out[-2] == np.inf and np.isnan(out[-1])
    x, out = x[:-2], out[:-2]
    ref = np.log(x)
    assert out[x == 1.0] == 0.0
    nz = ref != 0
    assert np.max(np.abs(out[nz] - ref[nz]) / np.spacing(np.abs(ref[nz]))) <= 3.0
