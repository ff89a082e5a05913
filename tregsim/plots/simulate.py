"""Figures for `tregsim simulate`."""

from __future__ import annotations

import numpy as np

import tregsim.plots  # noqa: F401  (selects the Agg backend)


def plot_cpeptide_arms(
    months: np.ndarray, cpeptide: np.ndarray, arms: list[str], *, title: str = "", ax=None
):
    """C-peptide vs months, one line per arm. ``cpeptide`` (n_arms, n_times) nmol/L."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, arm in enumerate(arms):
        ax.plot(months, cpeptide[k], lw=2, label=arm)
    ax.axhline(0.2, color="grey", ls=":", lw=1, label="0.2 nmol/L (clinically meaningful)")
    ax.set_xlabel("time since diagnosis (months)")
    ax.set_ylabel("MMTT 2-h AUC mean C-peptide (nmol/L)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure
