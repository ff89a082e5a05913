"""Figure for the model-variant comparison: one panel per model, median and 90 % band per arm.

Plotting only: every number comes from :func:`tregsim.explore.compare.compare_models`.
Each panel title names the model and its φ (potency × homing of infused Tregs, the least
known number — the assumption ledger).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tregsim.plots.explore import save

_COLORS = ["0.35", "tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange"]


def plot_compare_lowlevel(panels: dict, arms: list[str], phi: dict, footnote: str = ""):
    """``panels``: model → arm → dict(month, median, p5, p95, delta) arrays (nmol/L).

    Top row: median and 5-95 % band of C-peptide per arm; bottom row: mean paired
    ΔC-peptide arm − control (the first arm is the control). ``phi``: model → text for the
    panel title. Returns the figure.
    """
    import textwrap

    k = max(len(panels), 1)
    fig, axes = plt.subplots(
        2,
        k,
        figsize=(4.4 * k, 6.6),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [2.2, 1]},
        layout="constrained",
    )
    foot = "\n".join(textwrap.wrap(footnote, width=int(50 * k))) if footnote else ""
    nlines = foot.count("\n") + 1 if foot else 0
    fig.get_layout_engine().set(rect=(0, 0.02 + 0.028 * nlines, 1, 0.98 - 0.028 * nlines))
    for j, (model, per_arm) in enumerate(panels.items()):
        top, bot = axes[0, j], axes[1, j]
        for i, arm in enumerate(arms):
            d = per_arm.get(arm)
            if d is None:
                continue
            col = _COLORS[i % len(_COLORS)]
            ls = "--" if i == 0 else "-"
            top.fill_between(d["month"], d["p5"], d["p95"], color=col, alpha=0.12, lw=0)
            top.plot(
                d["month"], d["median"], color=col, lw=1.6, ls=ls, label=f"{arm}: median, 5-95 %"
            )
            if i > 0:
                bot.plot(d["month"], d["delta"], color=col, lw=1.6, label=f"{arm} − {arms[0]}")
        top.set_title(f"{model}\nφ = {phi.get(model, '?')}", fontsize=9)
        top.grid(alpha=0.3)
        bot.axhline(0.0, color="0.5", lw=0.8)
        bot.set_xlabel("months after diagnosis")
        bot.grid(alpha=0.3)
        bot.legend(fontsize=7, loc="best")
    axes[0, 0].set_ylabel("MMTT C-peptide AUC mean (nmol/L)")
    axes[1, 0].set_ylabel("mean paired ΔC-peptide (nmol/L)")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    if foot:
        fig.text(0.01, 0.005, foot, fontsize=7, color="0.35", ha="left", va="bottom")
    return fig


def plot_compare(result, path=None):
    """Side-by-side panels for a :class:`~tregsim.explore.compare.ComparisonResult`.

    Saves a PNG atomically if ``path`` is given; returns the figure (closed after saving).
    """
    t = result.table
    panels = {}
    for model in result.models:
        per_arm = {}
        for arm in [a.name for a in result.arms]:
            s = t[(t["model"] == model) & (t["arm"] == arm)]
            if len(s):
                per_arm[arm] = {
                    "month": s["month"].to_numpy(),
                    "median": s["median_cpeptide_nmol_L"].to_numpy(),
                    "p5": s["p5_cpeptide_nmol_L"].to_numpy(),
                    "p95": s["p95_cpeptide_nmol_L"].to_numpy(),
                    "delta": s["mean_delta_vs_control_nmol_L"].to_numpy(),
                }
        panels[model] = per_arm
    phi = {m: f"{i['phi']} ({i['phi_prior']})" for m, i in result.models.items()}
    arms = "; ".join(f"{a.name}: {a.describe()}" for a in result.arms)
    foot = (
        f"{arms}. n = {result.n} shared patients ({result.population}), seed {result.seed}. "
        "φ = potency × homing of infused Tregs: assumed, differences rest on it."
    )
    ctrl = [a.name for a in result.arms if a.control]
    order = ctrl + [a.name for a in result.arms if not a.control]
    fig = plot_compare_lowlevel(panels, order, phi, foot)
    if path is not None:
        save(fig, path)
    return fig


__all__ = ["plot_compare", "plot_compare_lowlevel"]
