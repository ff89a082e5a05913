"""Closed-form power, sample size and minimal detectable effect for a normal endpoint.

The endpoint is taken on the analysis scale (``ln(AUC+1)`` for MMTT C-peptide, nmol/L), with
residual SD ``sd`` and a true treatment − control difference ``effect`` on that scale.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from tregsim.errors import ArgumentError


def _check(n1, n2, sd, alpha):
    if np.any(np.asarray(sd) <= 0):
        raise ArgumentError(f"sd must be > 0, got {sd}", field="sd", fix="pass a positive SD")
    if not 0 < alpha < 1:
        raise ArgumentError(
            f"alpha must be in (0, 1), got {alpha}", field="alpha", fix="use e.g. 0.05"
        )
    if np.any(np.asarray(n1) < 2) or np.any(np.asarray(n2) < 2):
        raise ArgumentError(
            f"need ≥ 2 patients per arm, got {n1}, {n2}",
            field="n_per_arm",
            fix="use at least 2 per arm",
        )


def _nct_two_sided(df, ncp, alpha):
    crit = stats.t.ppf(1 - alpha / 2, df)
    upper = stats.nct.sf(crit, df, ncp)
    lower = stats.nct.sf(crit, df, -ncp)
    # scipy's noncentral t returns NaN for the far tail at large |ncp| (e.g. df 1998,
    # ncp 11); that tail is < 1e-25 there, so it contributes nothing.
    far = np.abs(ncp) > 8
    upper = np.where(far & (ncp < 0) & np.isnan(upper), 0.0, upper)
    lower = np.where(far & (ncp > 0) & np.isnan(lower), 0.0, lower)
    return upper + lower


def power_t_test(n1, n2, effect, sd, alpha: float = 0.05):
    """Power of the two-sided pooled two-sample t-test (noncentral t), any broadcastable shapes.

    n1, n2 : patients per arm; effect : true mean difference; sd : common SD (same units).
    """
    _check(n1, n2, sd, alpha)
    n1 = np.asarray(n1, dtype=float)
    n2 = np.asarray(n2, dtype=float)
    df = n1 + n2 - 2
    ncp = np.asarray(effect, dtype=float) / (np.asarray(sd) * np.sqrt(1 / n1 + 1 / n2))
    return _nct_two_sided(df, ncp, alpha)


def power_ancova(
    n1,
    n2,
    effect,
    sd,
    rho: float,
    n_covariates: int = 1,
    alpha: float = 0.05,
    method: str = "exact",
    n_nodes: int = 256,
):
    """Power of the two-sided ANCOVA test of the arm coefficient.

    Parameters
    ----------
    n1, n2 : patients per arm (scalars or broadcastable arrays).
    effect : true treatment − control difference (analysis scale).
    sd : marginal SD of the outcome within an arm; ``rho`` the multiple correlation of the
        outcome with the covariates, so the residual SD is ``sd·sqrt(1−rho²)``.
    n_covariates : k, covariates besides the arm; the error df is n1+n2−2−k.
    method : ``"approx"`` — noncentral t with ncp = effect / (sd·sqrt(1−ρ²)·sqrt(1/n1+1/n2));
        ``"exact"`` — unconditional power for multivariate-normal covariates (Shieh 2017,
        Behav Res 49:1, doi:10.3758/s13428-016-0720-8): the arm-coefficient variance carries the
        chance covariate imbalance factor 1 + k/(N−1−k)·F, F ~ F(k, N−1−k); power is averaged
        over F with ``n_nodes`` quantile nodes.
    """
    _check(n1, n2, sd, alpha)
    if not 0 <= rho < 1:
        raise ArgumentError(f"rho must be in [0, 1), got {rho}", field="rho", fix="use 0 ≤ ρ < 1")
    n1, n2, effect = np.broadcast_arrays(
        np.asarray(n1, dtype=float), np.asarray(n2, dtype=float), np.asarray(effect, dtype=float)
    )
    k = int(n_covariates)
    N = n1 + n2
    df = N - 2 - k
    if np.any(df < 1):
        raise ArgumentError(
            f"too few patients for {k} covariates", field="n_per_arm", fix="increase N"
        )
    sd_res = np.asarray(sd) * np.sqrt(1 - rho**2)
    ncp0 = effect / (sd_res * np.sqrt(1 / n1 + 1 / n2))
    if method == "approx" or k == 0:
        return _nct_two_sided(df, ncp0, alpha)
    if method != "exact":
        raise ArgumentError(
            f"unknown method {method!r}", field="method", fix="use 'exact' or 'approx'"
        )
    u = (np.arange(n_nodes) + 0.5) / n_nodes
    d2 = N - 1 - k
    F = stats.f.ppf(u.reshape((n_nodes,) + (1,) * N.ndim), k, d2)
    ncp = ncp0 / np.sqrt(1 + k / d2 * F)
    return _nct_two_sided(df, ncp, alpha).mean(axis=0)


def n_per_arm_for_power(
    target: float,
    effect: float,
    sd: float,
    alpha: float = 0.05,
    rho: float | None = None,
    n_covariates: int = 1,
    n_max: int = 100_000,
) -> int:
    """Smallest equal N per arm whose closed-form power reaches ``target``.

    t-test if ``rho`` is None, else ANCOVA (exact) with ``n_covariates``.
    """

    def pw(n):
        if rho is None:
            return float(power_t_test(n, n, effect, sd, alpha))
        return float(power_ancova(n, n, effect, sd, rho, n_covariates, alpha))

    lo = 2 if rho is None else max(2, n_covariates // 2 + 2)
    if pw(n_max) < target:
        raise ArgumentError(
            f"power {target} is not reached with {n_max} per arm",
            field="target",
            fix="raise the effect or lower the target",
        )
    hi = n_max
    while lo < hi:  # power is increasing in n
        mid = (lo + hi) // 2
        if pw(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def minimal_detectable_effect(
    n_per_arm: int,
    sd: float,
    target: float = 0.8,
    alpha: float = 0.05,
    rho: float | None = None,
    n_covariates: int = 1,
) -> float:
    """Smallest positive effect (analysis scale) with closed-form power ``target`` at N per arm.

    Also returned as a ratio by ``exp(mde)`` when the scale is ln(AUC+1).
    """

    def f(d):
        if rho is None:
            return float(power_t_test(n_per_arm, n_per_arm, d, sd, alpha)) - target
        return float(power_ancova(n_per_arm, n_per_arm, d, sd, rho, n_covariates, alpha)) - target

    hi = sd
    while f(hi) < 0:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-10))
