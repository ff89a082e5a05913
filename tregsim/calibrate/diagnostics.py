"""Calibration diagnostics (pure numpy): SBC, interval coverage, contraction, predictive checks."""

from __future__ import annotations

import numpy as np
from scipy import stats


def sbc_ranks(theta_true: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Rank of each true value among its posterior draws.

    theta_true (m, d), draws (m, L, d) → ranks (m, d) in 0..L (uniform under calibration).
    """
    return np.sum(draws < theta_true[:, None, :], axis=1)


def central_coverage(theta_true: np.ndarray, draws: np.ndarray, level: float) -> np.ndarray:
    """Fraction of datasets whose central ``level`` interval contains the truth, per parameter."""
    a = (1 - level) / 2
    lo = np.quantile(draws, a, axis=1)
    hi = np.quantile(draws, 1 - a, axis=1)
    return np.mean((theta_true >= lo) & (theta_true <= hi), axis=0)


def sbc_uniformity_pvalue(ranks: np.ndarray, n_draws: int) -> np.ndarray:
    """Per-parameter chi-square p-value of rank uniformity (10 bins)."""
    bins = np.linspace(0, n_draws + 1, 11)
    out = []
    for j in range(ranks.shape[1]):
        counts, _ = np.histogram(ranks[:, j], bins=bins)
        out.append(stats.chisquare(counts).pvalue)
    return np.asarray(out)


def truth_z(u: np.ndarray, n_draws: int) -> np.ndarray:
    """Where each true value sits in its posterior, in posterior SDs under a Gaussian reading:
    z = Φ⁻¹((u·L + ½)/(L + 1)) of the normalised rank u = rank / L ∈ [0, 1] (any shape),
    L = ``n_draws``. N(0, 1) under calibration (up to the rank's discreteness)."""
    L = float(n_draws)
    return stats.norm.ppf((np.asarray(u, float) * L + 0.5) / (L + 1.0))


def sbc_location_spread(u: np.ndarray, n_draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter, the mean and SD over datasets of :func:`truth_z` of normalised ranks
    ``u`` (m, d): an effect size for a rank histogram that is not flat.

    mean: 0 when calibrated; > 0: the posterior sits below the truth (by that many posterior
    SDs on average), < 0: above. SD: 1 when calibrated; < 1: posteriors too wide
    (conservative intervals), > 1: too narrow (over-confident). Their Monte-Carlo SEs are
    ≈ 1/√m and 1/√(2m).
    """
    z = truth_z(u, n_draws)
    return z.mean(axis=0), z.std(axis=0, ddof=1)


def nested_agreement(
    coarse: np.ndarray, fine: np.ndarray, extra_cov: np.ndarray | None = None
) -> dict:
    """Do a posterior given summaries s(y) (``coarse``, e.g. NPE) and one given all of y
    (``fine``, e.g. the records likelihood) agree as two correct posteriors must?

    coarse (n_c, d), fine (n_f, d): draws in one coordinate system where both are near
    Gaussian (e.g. log / logit of positive / unit-interval parameters). When both are correct,
    the law of total expectation and covariance gives, given s,
    E[m_fine] = m_coarse and Cov(m_fine) = Σ_coarse − E[Σ_fine] ≈ Σ_coarse − Σ_fine:
    the fine posterior refines the coarse one, and its mean moves by about the information the
    summaries miss. Hence D² = Δᵀ S⁻¹ Δ, with Δ = m_fine − m_coarse and
    S = Σ_coarse − Σ_fine + Σ_coarse / n_c + Σ_fine / n_f (the last two: Monte Carlo error
    of the means), is ≈ χ²_d. Directions where S is not positive (the fine posterior wider
    than the coarse one, against nesting) are counted and left out of D². ``extra_cov``
    (d, d) adds any other error of the means, e.g. an NPE's training-seed spread (the
    covariance of posterior means between seeds).

    Returns ``d2``, ``df`` (positive directions), ``p_value`` (χ² upper tail),
    ``n_nonpositive``, per-parameter ``z`` = Δ_j / sqrt(S_jj) (d,) (NaN where S_jj ≤ 0) and
    ``delta`` (d,).
    """
    coarse = np.asarray(coarse, float)
    fine = np.asarray(fine, float)
    if coarse.ndim != 2 or fine.ndim != 2 or coarse.shape[1] != fine.shape[1]:
        raise ValueError(f"coarse {coarse.shape} and fine {fine.shape} must be (n, d) with one d")
    delta = fine.mean(0) - coarse.mean(0)
    cc = np.atleast_2d(np.cov(coarse, rowvar=False))
    cf = np.atleast_2d(np.cov(fine, rowvar=False))
    s = cc - cf + cc / len(coarse) + cf / len(fine)
    if extra_cov is not None:
        s = s + np.atleast_2d(np.asarray(extra_cov, float))
    w, v = np.linalg.eigh((s + s.T) / 2)
    keep = w > 1e-12 * max(np.abs(w).max(), 1e-300)
    proj = v[:, keep].T @ delta
    d2 = float(np.sum(proj**2 / w[keep]))
    df = int(keep.sum())
    diag = np.diag(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(diag > 0, delta / np.sqrt(np.where(diag > 0, diag, 1.0)), np.nan)
    return {
        "d2": d2,
        "df": df,
        "p_value": float(stats.chi2.sf(d2, df)) if df else float("nan"),
        "n_nonpositive": int((~keep).sum()),
        "z": z,
        "delta": delta,
    }


def contraction_table(names, prior_draws: np.ndarray, post_draws: np.ndarray, units=None):
    """Prior vs posterior summary per parameter (pandas DataFrame).

    ``contraction = 1 − var_post / var_prior`` (≈ 0: the data say nothing; ≈ 1: fully
    determined); ``z_shift`` = (posterior mean − prior mean) / prior SD.
    """
    import pandas as pd

    rows = []
    for j, n in enumerate(names):
        pr, po = prior_draws[:, j], post_draws[:, j]
        rows.append(
            {
                "parameter": n,
                "unit": (units or {}).get(n, ""),
                "prior_mean": pr.mean(),
                "prior_sd": pr.std(),
                "posterior_mean": po.mean(),
                "posterior_sd": po.std(),
                "posterior_q05": np.quantile(po, 0.05),
                "posterior_q50": np.quantile(po, 0.5),
                "posterior_q95": np.quantile(po, 0.95),
                "contraction": 1 - po.var() / pr.var(),
                "z_shift": (po.mean() - pr.mean()) / pr.std(),
            }
        )
    return pd.DataFrame(rows)


def predictive_check(
    feature_names, observed: np.ndarray, predicted: np.ndarray, level: float = 0.95
):
    """Per feature: observed value vs the ``level`` predictive interval of simulated ones.

    predicted (n_draws, n_features) (non-finite rows dropped). Returns a DataFrame with
    columns statistic, age_group, month, observed, predictive median/lower/upper, inside.
    """
    import pandas as pd

    predicted = predicted[np.all(np.isfinite(predicted), axis=1)]
    a = (1 - level) / 2
    lo, med, hi = np.quantile(predicted, [a, 0.5, 1 - a], axis=0)
    rows = []
    for k, f in enumerate(feature_names):
        stat, group, month = f.split("|")
        rows.append(
            {
                "statistic": stat,
                "age_group": group,
                "month": int(month),
                "observed": observed[k],
                "predicted_median": med[k],
                f"predicted_q{100 * a:g}": lo[k],
                f"predicted_q{100 * (1 - a):g}": hi[k],
                "inside": bool(lo[k] <= observed[k] <= hi[k]),
            }
        )
    return pd.DataFrame(rows)
