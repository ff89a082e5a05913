"""Huber M-estimation of many regressions at once (the robust ANCOVA's estimator).

Under a heavy-tailed within-patient deviation (the records' Student-t with ν ≈ 3,
docs/calibration.md) the OLS ANCOVA's variance follows the deviation's variance, which a few
far-off visits set; a bounded influence function caps what one visit can do. This is the
estimator of statsmodels' ``RLM`` with its defaults — Huber's ψ with c = 1.345 (95 %
efficiency at the normal), the scale re-estimated at every iteration as the MAD of the
residuals about 0, and Huber's H1 covariance (Huber 1981, *Robust Statistics*, §7.6) — run
by iteratively reweighted least squares on a (R, n, p) stack of designs. The test of the arm
coefficient uses a t reference with n − p degrees of freedom (statsmodels reports z; t is the
conservative choice at trial sizes).

The analysis built on it, with its test and interval, is
:func:`tregsim.trial.endpoints.ancova_huber` (``tests = ("ancova_huber",)``). Arrays are
``(R, n)`` replicate trials × patient slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HUBER_C", "HuberFit", "huber_regression"]

HUBER_C = 1.345
"""Huber's tuning constant: 95 % asymptotic efficiency relative to OLS at the normal."""

_MAD_NORMAL = 0.6744897501960817  # Φ⁻¹(3/4): MAD / this estimates a normal SD


@dataclass(frozen=True)
class HuberFit:
    """Huber M-estimates of R regressions: ``beta`` (R, p); ``scale`` (R,) the MAD scale of
    the residuals; ``effective_sd`` (R,) the SD per observation that the estimator's H1
    covariance implies, Var(β̂) = effective_sd² · (XᵀX)⁻¹ (OLS's residual SD in that role;
    the closed-form sample size takes it in place of the residual SD); ``iterations`` (R,)
    and ``converged`` (R,) bool."""

    beta: np.ndarray
    scale: np.ndarray
    effective_sd: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def _mad0(resid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """MAD about 0 of each row's analysed residuals, normal-consistent: (R,); NaN for a row
    with none. (A sort with the excluded slots last: several times faster than nanmedian.)"""
    a = np.sort(np.where(mask, np.abs(resid), np.inf), axis=1)
    k = mask.sum(axis=1)
    lo = np.take_along_axis(a, np.maximum((k - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(a, np.maximum(k // 2, 0)[:, None] % a.shape[1], axis=1)[:, 0]
    return np.where(k > 0, 0.5 * (lo + hi), np.nan) / _MAD_NORMAL


def _wls(X, y, w, ok):
    """β of Σ w (y − Xβ)² for every row (R, p); rows not ``ok`` solve an identity system."""
    p = X.shape[-1]
    Xw = np.swapaxes(X * w[..., None], 1, 2)  # (R, p, n)
    A = Xw @ X
    b = (Xw @ y[..., None])[..., 0]
    A = np.where(ok[:, None, None], A, np.eye(p))
    return np.linalg.solve(A, np.where(ok[:, None], b, 0.0)[..., None])[..., 0]


def huber_regression(
    X: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    *,
    c: float = HUBER_C,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> HuberFit:
    """Huber regression of ``y`` (R, n) on ``X`` (R, n, p) over the slots ``mask`` (R, n)
    (rows of ``X`` outside the mask are ignored), by IRLS from the OLS fit, the MAD scale
    updated at every step (statsmodels ``RLM(y, X, HuberT(c)).fit()``).

    Stops when no coefficient or scale moves by more than ``tol`` × (1 + its size), at most
    ``max_iter`` steps; a trial that has not converged keeps its last step (as statsmodels
    does) and is flagged in ``converged``. Rows with fewer analysed slots than columns, or a
    singular design, get NaN.
    """
    X = np.asarray(X, float)
    m = np.asarray(mask, bool)
    X = np.where(m[..., None], X, 0.0)
    y = np.where(m, np.asarray(y, float), 0.0)
    R, _, p = X.shape
    n_used = m.sum(axis=1).astype(float)
    XtX = np.einsum("rni,rnj->rij", X, X)
    ok = n_used > p
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.linalg.cond(np.where(ok[:, None, None], XtX, np.eye(p)))
    ok &= np.isfinite(cond) & (cond < 1e12)
    w = m.astype(float)
    beta = _wls(X, y, w, ok)
    resid = np.where(m, y - np.einsum("rni,ri->rn", X, beta), 0.0)
    scale = _mad0(resid, m)
    iters = np.zeros(R, int)
    done = ~ok | ~(scale > 0)
    for _ in range(max_iter):
        if done.all():
            break
        run = ~done
        u = resid[run] / scale[run, None]
        with np.errstate(divide="ignore"):
            wr = np.where(np.abs(u) <= c, 1.0, c / np.abs(u)) * m[run]
        b_new = _wls(X[run], y[run], wr, ok[run])
        r_new = np.where(m[run], y[run] - (X[run] @ b_new[..., None])[..., 0], 0.0)
        s_new = _mad0(r_new, m[run])
        moved = np.maximum(
            np.max(np.abs(b_new - beta[run]) / (1.0 + np.abs(beta[run])), axis=1),
            np.abs(s_new - scale[run]) / (1.0 + scale[run]),
        )
        beta[run], resid[run], scale[run] = b_new, r_new, s_new
        iters[run] += 1
        done[run] = (moved <= tol) | ~(s_new > 0)
    # Huber's H1 covariance (statsmodels RLMResults.bcov_scaled, cov="H1")
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(m, resid / scale[:, None], np.nan)
        psi = np.clip(u, -c, c)
        dpsi = np.where(np.isnan(u), np.nan, (np.abs(u) <= c).astype(float))
        mean_d = np.nanmean(dpsi, axis=1)
        var_d = np.nanvar(dpsi, axis=1)
        k = 1.0 + p / n_used * var_d / mean_d**2
        ss_psi = np.nansum(psi**2, axis=1)
        eff = k * scale * np.sqrt(ss_psi / (n_used - p)) / mean_d
    nan = ~ok
    beta = np.where(nan[:, None], np.nan, beta)
    return HuberFit(
        beta=beta,
        scale=np.where(nan, np.nan, scale),
        effective_sd=np.where(nan, np.nan, eff),
        iterations=iters,
        converged=ok & done,
    )
