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
