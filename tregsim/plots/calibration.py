"""Calibration figures: VPC, pair plot (prior vs posterior), SBC rank histograms.

Plotting only: every number drawn was computed upstream (``tregsim.calibrate``). Each
function writes a PNG atomically and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tregsim.io import atomic_path


def _save(fig, path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def vpc(table, path, *, statistic: str, ylabel: str) -> Path:
    """Observed summary vs 95 % posterior-predictive interval per age group over months.

    ``table``: the predictive-check DataFrame (statistic, age_group, month, observed,
    predicted_median, predicted_q2.5, predicted_q97.5, inside).
    """
    sub = table[table["statistic"] == statistic]
    groups = list(dict.fromkeys(sub["age_group"]))
    fig, axes = plt.subplots(
        1, len(groups), figsize=(4 * len(groups), 3.6), sharey=True, layout="constrained"
    )
    for ax, g in zip(np.atleast_1d(axes), groups):
        s = sub[sub["age_group"] == g].sort_values("month")
        m = s["month"].to_numpy()
        ax.fill_between(
            m,
            s["predicted_q2.5"],
            s["predicted_q97.5"],
            alpha=0.3,
            color="C0",
            label="95 % predictive interval",
        )
        ax.plot(m, s["predicted_median"], color="C0", label="predictive median")
        inside = s["inside"].to_numpy(bool)
        ax.plot(m[inside], s["observed"].to_numpy()[inside], "ko", label="observed (inside)")
        ax.plot(
            m[~inside], s["observed"].to_numpy()[~inside], "rx", ms=8, label="observed (outside)"
        )
        ax.set_title(f"age {g} y: {int(inside.sum())}/{len(s)} inside")
        ax.set_xlabel("months since study entry (months)")
    np.atleast_1d(axes)[0].set_ylabel(ylabel)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _save(fig, path)


def pair_plot(prior: np.ndarray, posterior: np.ndarray, names, units: dict, path) -> Path:
    """Pairwise scatter of posterior draws over prior draws; marginal histograms."""
    d = len(names)
    fig, axes = plt.subplots(d, d, figsize=(2.2 * d, 2.2 * d), layout="constrained")
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                lo, hi = np.quantile(np.r_[prior[:, i], posterior[:, i]], [0.005, 0.995])
                bins = np.linspace(lo, hi, 40)
                ax.hist(prior[:, i], bins=bins, density=True, color="0.7", label="prior")
                ax.hist(
                    posterior[:, i],
                    bins=bins,
                    density=True,
                    color="C0",
                    alpha=0.7,
                    label="posterior",
                )
            elif i > j:
                ax.plot(prior[:, j], prior[:, i], ".", color="0.8", ms=1)
                ax.plot(posterior[:, j], posterior[:, i], ".", color="C0", ms=1, alpha=0.4)
            else:
                ax.axis("off")
            if i == d - 1:
                ax.set_xlabel(f"{names[j]} ({units.get(names[j], '')})", fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(f"{names[i]} ({units.get(names[i], '')})", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    return _save(fig, path)


def sbc_histograms(ranks: np.ndarray, n_draws: int, names, path) -> Path:
    """Histograms of SBC ranks with the uniform expectation and its 99 % band."""
    from scipy import stats

    d = len(names)
    m = ranks.shape[0]
    nb = 10
    fig, axes = plt.subplots(1, d, figsize=(2.6 * d, 2.6), layout="constrained")
    lo, hi = stats.binom.ppf([0.005, 0.995], m, 1 / nb)
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.axhspan(lo, hi, color="0.85")
        ax.hist(ranks[:, j], bins=np.linspace(0, n_draws + 1, nb + 1), color="C0")
        ax.axhline(m / nb, color="k", lw=0.8)
        ax.set_title(names[j], fontsize=9)
        ax.set_xlabel(f"rank among {n_draws} draws (count)", fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("datasets (count)")
    return _save(fig, path)


def treg_persistence(days, frac_prior, frac_accepted, path, *, targets=()) -> Path:
    """Infused-cell curves (fraction of peak) under the prior and after rejection ABC.

    frac_*: (n, n_days) arrays; targets: iterable of (day, value, label) persistence figures.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for arr, colour, label in ((frac_prior, "0.6", "prior"), (frac_accepted, "C0", "accepted")):
        q = np.quantile(arr, [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(days, q[0], q[2], color=colour, alpha=0.3, label=f"{label} 90 % band")
        ax.plot(days, q[1], color=colour, label=f"{label} median")
    for day, value, label in targets:
        ax.plot([day], [value], "kv")
        ax.annotate(label, (day, value), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.5)
    ax.set_xlabel("days since infusion (days)")
    ax.set_ylabel("infused Tregs X + M (fraction of peak)")
    ax.legend(fontsize=7)
    return _save(fig, path)
