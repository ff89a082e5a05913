"""Compiled per-participant marginal likelihood of a structure with independent visits.

:func:`structure_run.independent_log_lik` builds the (visits × quadrature nodes) array of
log C-peptide, residuals and variances with numpy: ≈ 0.02–0.05 s per evaluation on the placebo
records (115 participants, 584 visits, 37 × 33 nodes), most of it temporaries. This kernel
computes the same sum in one pass without them (the numbers are the same to rounding; a test
checks it against the numpy path and against ``StructureLikelihood.per_patient``). It makes
the likelihood path's simulation-based calibration affordable (docs/calibration.md, "SBC of
the likelihood path"). From round 15 its exp loops are vectorised (:func:`_exp_parts`), which
more than halves its time (4.4 against 9.7 ms on the records). With ``inv_nu`` = 1/ν > 0 the
within-patient deviation is Student-t with ν degrees of freedom instead of normal (its log CDF
for censored visits by :func:`_t_logcdf`); ``inv_nu`` = 0 runs the normal code unchanged.
The t density's ln(1 + z²/ν) is taken once per participant and node, of the product over
the participant's visits (round 20: 14.3 against 19.9 ms per evaluation on the records, the
scalar log being what the t costs over the normal's 6.2 ms; the same numbers to 2·10⁻¹⁵).
Round 21 vectorises those logs (:func:`_ln_parts`): 6.6 against 9.4 ms on the quiet machine
(normal 3.8–4.0 ms); the rest of the t's cost is its censored visits' log CDF. Round 22
takes that log CDF for all nodes of a censored visit at once from a power series
(:func:`_t_logcdf_parts`; the continued fraction stays for ν > 26): 5.7 against 6.6 ms.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)


@numba.njit(cache=True)
def _log_ndtr(x: float) -> float:
    """log Φ(x): erfc where it is accurate, the asymptotic series below −20 (as scipy's
    ``special.log_ndtr``)."""
    if x > -20.0:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    x2 = x * x
    # Φ(x) = φ(x)/(−x) · (1 − 1/x² + 3/x⁴ − 15/x⁶ + …)
    s = 1.0 - 1.0 / x2 + 3.0 / (x2 * x2) - 15.0 / (x2 * x2 * x2)
    return -0.5 * x2 - math.log(-x) - 0.5 * _LOG_2PI + math.log(s)


_LOG_HALF = math.log(0.5)


@numba.njit(cache=True)
def _lentz(aa: float, c: float, d: float, fpmin: float):
    """One modified-Lentz step with coefficient ``aa``: the new (c, d)."""
    d = 1.0 + aa * d
    if abs(d) < fpmin:
        d = fpmin
    c = 1.0 + aa / c
    if abs(c) < fpmin:
        c = fpmin
    return c, 1.0 / d


@numba.njit(cache=True)
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function I_x(a, b), by the
    modified Lentz method (Numerical Recipes' ``betacf``); converges fast for
    x < (a + 1)/(a + b + 2), in O(√max(a, b)) terms."""
    fpmin = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < fpmin:
        d = fpmin
    d = 1.0 / d
    h = d
    for m in range(1, 2001):
        m2 = 2.0 * m
        c, d = _lentz(m * (b - m) * x / ((qam + m2) * (a + m2)), c, d, fpmin)  # even step
        h *= d * c
        c, d = _lentz(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), c, d, fpmin)  # odd
        de = d * c
        h *= de
        if abs(de - 1.0) < 1e-16:
            break
    return h


@numba.njit(cache=True)
def _t_logcdf_c(x: float, nu: float, lbeta: float) -> float:
    """log T_ν(x), the Student-t log CDF, given lbeta = ln B(ν/2, 1/2):
    T_ν(x) = ½ I_w(ν/2, ½) for x < 0, 1 − ½ I_w(ν/2, ½) for x ≥ 0, w = ν/(ν + x²). I_w from
    its continued fraction on whichever side converges (1 − w = x²/(ν + x²) computed as such),
    all in logs, so that it neither underflows nor loses the relative accuracy of a tail."""
    if x == 0.0:
        return _LOG_HALF
    a, b = 0.5 * nu, 0.5
    x2 = x * x
    den = nu + x2
    w, w1 = nu / den, x2 / den
    lbt = a * math.log(w) + b * math.log(w1) - lbeta  # ln(w^a (1−w)^b / B(a, b))
    if w < (a + 1.0) / (a + b + 2.0):
        log_i = lbt + math.log(_betacf(a, b, w) / a)  # ln I_w(a, b)
        if x < 0.0:
            return _LOG_HALF + log_i
        return math.log1p(-0.5 * math.exp(log_i))
    i_c = math.exp(lbt) * _betacf(b, a, w1) / b  # 1 − I_w(a, b) = I_{1−w}(b, a)
    if x < 0.0:
        return _LOG_HALF + math.log1p(-i_c)
    return _LOG_HALF + math.log1p(i_c)


@numba.njit(cache=True)
def _t_logcdf(x: float, nu: float) -> float:
    """log T_ν(x), the Student-t log CDF with ν degrees of freedom (as scipy's
    ``stats.t.logcdf``)."""
    lbeta = math.lgamma(0.5 * nu) + math.lgamma(0.5) - math.lgamma(0.5 * nu + 0.5)
    return _t_logcdf_c(x, nu, lbeta)


# Cody–Waite reduction x = k·ln 2 + r, |r| ≤ ln2/2, then exp(r) by its Taylor series to r¹³
# (truncation < 1e-17): within 1 ulp of math.exp on the likelihood's range. LLVM has no
# vectorised exp here (no SVML), but this polynomial vectorises: the kernel's two exp loops
# run ≈ 4× faster than calls to math.exp (benchmarks/bench_structure_likelihood.py).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_C = [1.0 / math.factorial(n) for n in range(14)]
_C13 = _C[13]
_HORNER = tuple(_C[12::-1])  # 1/12!, 1/11!, …, 1/1!, 1/0!


@numba.njit(cache=True)
def _exp_parts(x, mant, k1, k2):
    """exp(x[i]) = mant[i] · 2^(k1[i] − 1023) · 2^(k2[i] − 1023), k1/k2 as float64 bit
    patterns (int64) so that a caller's ``.view(np.float64)`` gives the powers. Two factors
    keep each power a normal number, so the product under- or overflows to 0 or inf exactly
    where exp does; x is clamped to [−746, 710] first (beyond, exp is already 0 or inf) and a
    NaN stays NaN."""
    for i in range(x.size):
        xi = min(max(x[i], -746.0), 710.0)
        k = math.floor(xi * _LOG2E + 0.5)
        r = (xi - k * _LN2_HI) - k * _LN2_LO
        m = _C13
        for c in _HORNER:  # a constant tuple: LLVM unrolls it and vectorises over i
            m = m * r + c
        mant[i] = m
        ki = np.int64(k)
        h = ki >> 1
        k1[i] = (h + 1023) << 52
        k2[i] = (ki - h + 1023) << 52


# ln x = e·ln 2 + ln m, x = m·2^e with m in [√½, √2), and ln m = 2·atanh(s), s = (m − 1)/(m + 1),
# |s| ≤ 0.1716, by its series to s²¹ (truncation < 1e-18); the exponent becomes a float through
# the 2⁵² bit pattern (no int64 → float64 conversion, which AVX2 lacks), so both loops
# vectorise where calls to math.log do not (no SVML). For the t's per-node logs (round 21).
_MANT_MASK = (1 << 52) - 1
_ONE_BITS = 1023 << 52
_TWO52_BITS = 0x4330000000000000  # the bit pattern of 2⁵²; | e gives 2⁵² + e
_TWO52_PLUS_BIAS = 4503599627370496.0 + 1023.0
_ATANH = tuple(1.0 / (2 * j + 1) for j in range(10, -1, -1))  # 1/21, 1/19, …, 1/1


@numba.njit(cache=True)
def _ln_parts(x, xb, mb, eb, mf, ef, out):
    """out[i] = ln x[i] for positive normal x (``xb`` its int64 view); +inf and NaN pass
    through (an overflowed product stays inf, as with math.log). ``mb``/``mf`` and ``eb``/``ef``
    are the int64/float64 views of two scratch buffers. Within 3 ulp of math.log on
    [1, 1e300] (tests/test_structure_kernel_t.py)."""
    for i in range(xb.size):
        b = xb[i]
        mb[i] = (b & _MANT_MASK) | _ONE_BITS
        eb[i] = (b >> 52) | _TWO52_BITS
    for i in range(xb.size):
        m = mf[i]
        e = ef[i] - _TWO52_PLUS_BIAS
        hi = m > _SQRT2
        m = 0.5 * m if hi else m
        e1 = e + 1.0 if hi else e
        s = (m - 1.0) / (m + 1.0)
        s2 = s * s
        q = 0.0
        for c in _ATANH:  # a constant tuple: LLVM unrolls it and vectorises over i
            q = q * s2 + c
        r = e1 * _LN2_HI + (e1 * _LN2_LO + 2.0 * s * q)
        out[i] = x[i] if e == 1024.0 else r  # exponent field 2047: inf or NaN


_T_SERIES_MAX = 400  # longest series of :func:`t_series_coefficients`; beyond, the scalar path
_T_SERIES_TOL = 1e-17


@numba.njit(cache=True)
def t_series_coefficients(nu: float, coef):
    """The power series behind :func:`_t_logcdf_parts` at ν: with a = ν/2, b = ½ and
    F_A(x) = ₂F₁(a + b, 1; A + 1; x) = Σ_n (a + b)_n / (A + 1)_n · xⁿ (DLMF 8.17.8:
    I_x(A, B) = x^A (1 − x)^B F_A(x) / (A·B(a, b)) for (A, B) = (a, b) or (b, a)), writes the
    coefficients of F_a into ``coef[0]`` and of F_b into ``coef[1]`` (shape (2, ≥ N)) and
    returns N, the number of terms that makes the remainder below 1e-17 where each series is
    used (F_a for x < x₁ = (a + 1)/(a + b + 2), F_b for x ≤ 1 − x₁, the continued fraction's
    own split, which keeps I away from 1; every term is positive and F ≥ 1, so that is a
    relative bound), or 0 when more than ``_T_SERIES_MAX`` would be needed (ν > 26: the
    caller uses the continued fraction). N is 55 at ν = 1, 86 at ν = 3.3, 175 at ν = 10."""
    a, b = 0.5 * nu, 0.5
    x1 = (a + 1.0) / (a + b + 2.0)
    x0 = 1.0 - x1
    c1 = 1.0
    c0 = 1.0
    t1 = 1.0  # x1**n
    t0 = 1.0
    for n in range(_T_SERIES_MAX):
        coef[0, n] = c1
        coef[1, n] = c0
        r1 = x1 * (a + b + n) / (a + 1.0 + n)  # the next term over this one, at the largest x
        r0 = x0 * (a + b + n) / (b + 1.0 + n)
        if r1 < 1.0 and r0 < 1.0:
            if (
                c1 * t1 * r1 / (1.0 - r1) < _T_SERIES_TOL
                and c0 * t0 * r0 / (1.0 - r0) < _T_SERIES_TOL
            ):
                return n + 1
        t1 *= x1
        t0 *= x0
        c1 *= (a + b + n) / (a + 1.0 + n)
        c0 *= (a + b + n) / (b + 1.0 + n)
    return 0


@numba.njit(cache=True)
def _t_logcdf_parts(
    x, nu, lbeta, coef, n_terms, out, w, w1, acc, side, xb, mb, eb, mf, ef, lg, mant, k1, k2
):
    """out[i] = log T_ν(x[i]) for a whole array at one ν, as :func:`_t_logcdf_c` (the same
    identities: T_ν(x) = ½ I_w(ν/2, ½) for x < 0, 1 − ½ I_w for x ≥ 0, w = ν/(ν + x²)), but
    with I from the power series of :func:`t_series_coefficients` (``coef``, ``n_terms``) on
    the same side of the same split instead of the continued fraction: Horner's rule over the
    elements has no division and no data-dependent exit, so LLVM vectorises it, and the logs
    and the exp are :func:`_ln_parts` and :func:`_exp_parts`. ``lbeta`` = ln B(ν/2, ½). The
    other arguments are scratch arrays of x's size (``k1``/``k2``/``xb``/``mb``/``eb`` int64,
    ``mf``/``ef`` the float64 views of ``mb``/``eb``, ``xb`` the int64 view of ``lg``).
    Round 22, for the censored visits: within 2·10⁻¹⁵ of scipy (relative) at ν ≤ 10, 5·10⁻¹⁴
    at ν = 25; 3× faster than the continued fraction per element (which does not vectorise:
    its divisions and its exit depend on the element)."""
    n = x.size
    a, b = 0.5 * nu, 0.5
    thr = (a + 1.0) / (a + b + 2.0)
    for i in range(n):
        x2 = x[i] * x[i]
        inv_den = 1.0 / (nu + x2)
        wi, w1i = nu * inv_den, x2 * inv_den
        s = 1.0 if wi < thr else 0.0  # 1: I_w(a, b) by F_a(w); 0: I_{1−w}(b, a) by F_b(1 − w)
        side[i] = s
        w[i], w1[i] = wi, w1i
        acc[i] = 0.0
    for j in range(n_terms - 1, -1, -1):
        ca, cb = coef[0, j], coef[1, j]
        for i in range(n):
            s = side[i]
            acc[i] = acc[i] * (s * w[i] + (1.0 - s) * w1[i]) + (s * ca + (1.0 - s) * cb)
    # ln I = a ln w + ln(√(1 − w) F / A) − ln B(a, b) (b = ½): two vectorised logs
    ia, ib = 1.0 / a, 1.0 / b
    for i in range(n):
        lg[i] = w[i]
        s = side[i]
        acc[i] = math.sqrt(w1[i]) * acc[i] * (s * ia + (1.0 - s) * ib)
    _ln_parts(lg, xb, mb, eb, mf, ef, out)  # out = ln w
    for i in range(n):
        lg[i] = acc[i]
    _ln_parts(lg, xb, mb, eb, mf, ef, w1)  # w1 = ln(√(1 − w) F / A)
    for i in range(n):
        acc[i] = a * out[i] + w1[i] - lbeta  # side 1: ln I_w(a, b); 0: ln I_{1−w}(b, a)
    _exp_parts(acc, mant, k1, k2)
    p1 = k1.view(np.float64)
    p2 = k2.view(np.float64)
    for i in range(n):
        v = mant[i] * p1[i] * p2[i]
        neg = x[i] < 0.0
        if side[i] == 1.0:
            y = 0.0 if neg else -0.5 * v
        else:
            y = -v if neg else v
        w[i] = y
        lg[i] = 1.0 + y
    _ln_parts(lg, xb, mb, eb, mf, ef, w1)  # ln(1 + y), made log1p below
    for i in range(n):
        y, u = w[i], lg[i]
        # log1p(y) = ln u · y / (u − 1) (Goldberg's trick: a few ulp for tiny y)
        l1p = y if u == 1.0 else w1[i] * (y / (u - 1.0))
        neg = x[i] < 0.0
        if side[i] == 1.0:
            r = _LOG_HALF + acc[i] if neg else l1p
        else:
            r = _LOG_HALF + l1p
        out[i] = _LOG_HALF if x[i] == 0.0 else r


# fastmath without "nnan"/"ninf": an overflowing draw must still give inf or nan, not garbage;
# without "reassoc": numba compiles _exp_parts with its caller's flags, and reassociation
# undoes the two-part ln 2 of the reduction (errors of ~100 ulp instead of 1)
@numba.njit(cache=True, fastmath={"nsz", "arcp", "contract", "afn"})
def per_patient_kernel(
    lc,  # (V, L) log-curve change from baseline at each visit, at the draw's q
    la,  # (V,) ln(age / 10 y) of the visit's participant
    logy,  # (V,) ln of the observation (of the LLOQ when censored)
    cens,  # (V,) bool: below the LLOQ
    starts,  # (P + 1,) visits of participant p are order[starts[p]:starts[p + 1]]
    order,  # (V,) visit indices sorted by participant
    zeta,  # (P, Z) baseline-level nodes of each participant
    lwz,  # (P, Z) their log quadrature weights
    eta,  # (1 or P, 1 or Z, E) hazard nodes: one grid, or each participant's and ζ node's
    lwe,  # (same shape) their log quadrature weights
    loglam_lo,  # first node of the table's ln λ grid
    loglam_step,  # spacing of the table's ln λ grid
    p,  # (14,) parameters, see :func:`pack`
    mom,  # (P, Z, 3) or (0, 0, 3): if P rows, the mean and SD of η given each ζ node and
    # the log of the node's mass (its summand of the participant's likelihood)
    todo,  # (P,) bool or (0,): if P, only these participants (the others' entries NaN)
):
    mu_c, mu_a, s_c = p[0], p[1], p[2]
    loglam_ref, gamma_a, beta_c, gamma_beta, beta_lin = p[3], p[4], p[5], p[6], p[7]
    omega, sigma_meas, kappa, sigma_add, log_lloq = p[8], p[9], p[10], p[11], p[12]
    inv_nu = p[13]  # 1/ν of a Student-t deviation; 0: normal
    log_cref = math.log(0.6)
    cref = 0.6
    n_l = lc.shape[1]
    n_z, n_e = zeta.shape[1], eta.shape[2]
    pe_all, ze_all = eta.shape[0] > 1, eta.shape[1] > 1
    want_mom = mom.shape[0] > 0
    n_k = n_z * n_e
    n_p = starts.size - 1
    out = np.empty(n_p)
    tot = np.empty(n_k)
    lm = np.empty(n_k)  # log μ at each node, for the visit at hand
    xs = np.empty(n_k)  # an exp's argument at each node
    mant = np.empty(n_k)
    k1 = np.empty(n_k, np.int64)
    k2 = np.empty(n_k, np.int64)
    p1 = k1.view(np.float64)
    p2 = k2.view(np.float64)
    log_sm2 = 2.0 * math.log(sigma_meas)
    inv_step = 1.0 / loglam_step
    top = n_l - 1.0
    nu = t_const = t_lbeta = t_half = 0.0
    if inv_nu > 0.0:  # the t density's constant and ln B(ν/2, ½), once
        nu = 1.0 / inv_nu
        t_lbeta = math.lgamma(0.5 * nu) + math.lgamma(0.5) - math.lgamma(0.5 * nu + 0.5)
        t_const = math.lgamma(0.5 * nu + 0.5) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
        t_half = 0.5 * (nu + 1.0)
    t_prod = np.ones(n_k)  # Π over a participant's uncensored visits of 1 + z²/ν (the t)
    t_bits = t_prod.view(np.int64)
    t_log = np.empty(n_k)
    mb = np.empty(n_k, np.int64)
    eb = np.empty(n_k, np.int64)
    mf = mb.view(np.float64)
    ef = eb.view(np.float64)
    # the censored visits' t log CDF, all nodes at once (:func:`_t_logcdf_parts`), with scratch
    # of its own: handing it the kernel's xs/mant/k1/k2 made every path 0.1-0.2 ms slower
    coef = np.empty((2, _T_SERIES_MAX))
    n_terms = t_series_coefficients(nu, coef) if inv_nu > 0.0 else 0
    tz, tl, tw, tw1, tacc, tside, tlg, tmant = (
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
        np.empty(n_k),
    )
    tk1 = np.empty(n_k, np.int64)
    tk2 = np.empty(n_k, np.int64)
    tlb = tlg.view(np.int64)
    some = todo.size > 0
    for pp in range(n_p):
        if some and not todo[pp]:
            out[pp] = np.nan
            continue
        pe = pp if pe_all else 0
        for z in range(n_z):
            ze = z if ze_all else 0
            for e in range(n_e):
                tot[z * n_e + e] = lwz[pp, z] + lwe[pe, ze, e]
        for jj in range(starts[pp], starts[pp + 1]):
            v = order[jj]
            a = la[v]
            bc = beta_c * math.exp(-gamma_beta * a)
            base = loglam_ref - gamma_a * a
            ly = logy[v]
            for z in range(n_z):
                lev = mu_c + mu_a * a + s_c * zeta[pp, z]
                ll0 = base - bc * (lev - log_cref) - beta_lin * (math.exp(lev) - cref)
                er = eta[pe, z if ze_all else 0]
                for e in range(n_e):
                    f = (ll0 + omega * er[e] - loglam_lo) * inv_step
                    f = min(max(f, 0.0), top)
                    i = min(int(f), n_l - 2)
                    w = f - i
                    lm[z * n_e + e] = lev + (1.0 - w) * lc[v, i] + w * lc[v, i + 1]
            # ln var = ln σ² − 2κ (ln μ − ln 0.6), μ floored at the LLOQ
            if inv_nu > 0.0:  # Student-t deviation (σ_add = 0, checked by pack): xs = −ln sd
                for k in range(n_k):
                    xs[k] = kappa * (max(lm[k], log_lloq) - log_cref) - 0.5 * log_sm2
                _exp_parts(xs, mant, k1, k2)
                if cens[v] and n_terms > 0:  # log T_ν((ln LLOQ − ln μ) / sd), vectorised
                    for k in range(n_k):
                        tz[k] = (ly - lm[k]) * (mant[k] * p1[k] * p2[k])
                    _t_logcdf_parts(
                        tz,
                        nu,
                        t_lbeta,
                        coef,
                        n_terms,
                        tl,
                        tw,
                        tw1,
                        tacc,
                        tside,
                        tlb,
                        mb,
                        eb,
                        mf,
                        ef,
                        tlg,
                        tmant,
                        tk1,
                        tk2,
                    )
                    for k in range(n_k):
                        tot[k] += tl[k]
                elif cens[v]:  # ν too large for the series: the continued fraction per node
                    for k in range(n_k):
                        tzk = (ly - lm[k]) * (mant[k] * p1[k] * p2[k])
                        tot[k] += _t_logcdf_c(tzk, nu, t_lbeta)
                else:  # log t_ν(r / sd) − ln sd − ln y; the −(ν+1)/2·ln(1 + z²/ν) as a product
                    big = False
                    for k in range(n_k):
                        tzk = (ly - lm[k]) * (mant[k] * p1[k] * p2[k])
                        tot[k] += t_const + xs[k] - ly
                        t_prod[k] *= 1.0 + tzk * tzk * inv_nu
                        big |= t_prod[k] > 1e250
                    if big:  # flush before it could overflow
                        _ln_parts(t_prod, t_bits, mb, eb, mf, ef, t_log)
                        for k in range(n_k):
                            tot[k] -= t_half * t_log[k]
                            t_prod[k] = 1.0
            elif sigma_add == 0.0 and not cens[v]:
                for k in range(n_k):
                    xs[k] = 2.0 * kappa * (max(lm[k], log_lloq) - log_cref) - log_sm2
                _exp_parts(xs, mant, k1, k2)
                for k in range(n_k):
                    r = ly - lm[k]
                    inv_var = mant[k] * p1[k] * p2[k]
                    tot[k] += -0.5 * (r * r * inv_var - xs[k] + _LOG_2PI) - ly
            elif sigma_add == 0.0:  # below the LLOQ: log Φ((ln LLOQ − ln μ) / sd)
                for k in range(n_k):
                    xs[k] = kappa * (max(lm[k], log_lloq) - log_cref) - 0.5 * log_sm2
                _exp_parts(xs, mant, k1, k2)
                for k in range(n_k):
                    tot[k] += _log_ndtr((ly - lm[k]) * (mant[k] * p1[k] * p2[k]))
            else:
                for k in range(n_k):
                    logvar = log_sm2 - 2.0 * kappa * (max(lm[k], log_lloq) - log_cref)
                    if sigma_add != 0.0:
                        logvar = math.log(math.exp(logvar) + (sigma_add * math.exp(-lm[k])) ** 2)
                    r = ly - lm[k]
                    if cens[v]:
                        tot[k] += _log_ndtr(r * math.exp(-0.5 * logvar))
                    else:
                        tot[k] += -0.5 * (r * r * math.exp(-logvar) + logvar + _LOG_2PI) - ly
        if inv_nu > 0.0:  # one log per node and participant instead of one per visit
            _ln_parts(t_prod, t_bits, mb, eb, mf, ef, t_log)
            for k in range(n_k):
                tot[k] -= t_half * t_log[k]
                t_prod[k] = 1.0
        m = tot.max()
        for k in range(n_k):
            xs[k] = tot[k] - m
        _exp_parts(xs, mant, k1, k2)
        s = 0.0
        for k in range(n_k):
            s += mant[k] * p1[k] * p2[k]
        out[pp] = m + math.log(s)
        if want_mom:  # η's moments given each ζ node, weights relative to that node's largest
            for z in range(n_z):
                er = eta[pe, z if ze_all else 0]
                mz = tot[z * n_e]
                for e in range(1, n_e):
                    mz = max(mz, tot[z * n_e + e])
                sw = sm = sq = 0.0
                for e in range(n_e):
                    wk = math.exp(tot[z * n_e + e] - mz)
                    sw += wk
                    sm += wk * er[e]
                    sq += wk * er[e] * er[e]
                mean = sm / sw
                mom[pp, z, 0] = mean
                mom[pp, z, 1] = math.sqrt(max(sq / sw - mean * mean, 0.0))
                mom[pp, z, 2] = mz + math.log(sw)
    return out


def pack(th: dict, lloq_nmol_l: float) -> np.ndarray:
    """The kernel's parameter vector (14,) from a natural-scale parameter dict; ``inv_nu`` (1/ν
    of a Student-t deviation, default 0: normal) must be ≥ 0 and excludes ``sigma_add``."""
    inv_nu = float(th.get("inv_nu", 0.0))
    if not inv_nu >= 0.0:
        raise ValueError(f"inv_nu must be >= 0 (got {inv_nu})")
    if inv_nu > 0.0 and th.get("sigma_add", 0.0) != 0.0:
        raise ValueError(
            "a Student-t deviation (inv_nu > 0) is defined only without an additive error "
            "(sigma_add = 0)"
        )
    return np.array(
        [
            th["mu_c"],
            th["mu_a"],
            th["s_c"],
            math.log(th["lambda_ref"]),
            th["gamma_a"],
            th["beta_c"],
            th.get("gamma_beta", 0.0),
            th.get("beta_lin", 0.0),
            th["omega_lambda"],
            th["sigma_meas"],
            th.get("kappa", 0.0),
            th.get("sigma_add", 0.0),
            math.log(lloq_nmol_l),
            inv_nu,
        ],
        float,
    )
