"""Figures for virtual trials: power curves with Monte-Carlo bands, effect distributions.

Plotting only — every number drawn here was computed upstream (``PowerResult.table()``,
recorded effect draws). ``plot_x(...)`` calls ``plot_x_lowlevel(arrays, ax=None)`` and returns
the ``Axes``. The effect assumption (φ, or the effect on the ln(AUC+1) scale) is printed on
every figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_COLOURS = {"fixed": "C0", "assurance": "C3"}


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    return ax


def _assumption(ax, text: str) -> None:
    """The assumption ledger under the x label (inside the saved area, outside the data)."""
    if text:
        ax.text(
            0.0,
            -0.13,
            text,
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=7.5,
            color="0.25",
            wrap=True,
        )


def save(fig, path) -> None:
    """Save ``fig`` atomically as PNG (tregsim.io.atomic_path) and close it."""
    from tregsim.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def plot_power_curve_lowlevel(
    curves: Sequence[Mapping[str, np.ndarray | str]],
    *,
    targets: Sequence[float] = (0.8, 0.9),
    alpha: float | None = None,
    assumption: str = "",
    title: str = "",
    ax=None,
):
    """Power (or assurance) vs N per arm, one line + shaded MC band per curve.

    curves : each a mapping with ``n_per_arm`` (K,), ``power`` (K,), ``low`` (K,),
        ``high`` (K,) and ``label`` (str); optional ``style`` ("fixed" | "assurance").
    targets : horizontal reference lines (80 %, 90 %).
    alpha : the test level, drawn as a dashed line (rejection rate with no effect).
    assumption : text printed in the figure (φ or effect, allocation, endpoint, α).
    """
    ax = _ax(ax)
    for i, c in enumerate(curves):
        colour = _COLOURS.get(str(c.get("style", "")), f"C{i}")
        ls = "--" if c.get("style") == "assurance" else "-"
        n = np.asarray(c["n_per_arm"])
        ax.fill_between(n, c["low"], c["high"], color=colour, alpha=0.18, linewidth=0)
        ax.plot(n, c["power"], ls, marker="o", ms=3.5, color=colour, label=str(c["label"]))
    for t in targets:
        ax.axhline(t, color="0.5", lw=0.8, ls=":")
        ax.text(
            ax.get_xlim()[0], t, f" {100 * t:.0f}%", va="bottom", ha="left", fontsize=8, color="0.4"
        )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("patients enrolled per arm, N")
    ax.set_ylabel("power / assurance (fraction of trials with p < α)")
    if title:
        ax.set_title(title, fontsize=10)
    _assumption(ax, assumption)
    if alpha is not None:
        ax.axhline(alpha, color="0.5", lw=0.8, ls="--")
        ax.text(
            ax.get_xlim()[0], alpha, f" α = {alpha:g}", va="top", ha="left", fontsize=8, color="0.4"
        )
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.grid(alpha=0.25)
    return ax


def plot_power_curve(
    tables: Mapping[str, Mapping[str, np.ndarray]],
    *,
    tests: Sequence[str] = ("ancova",),
    alpha: float | None = None,
    assumption: str = "",
    title: str = "",
    ax=None,
):
    """Power curves from ``PowerResult.table()`` dicts keyed by curve kind.

    tables : e.g. ``{"fixed": table, "assurance": table}``; the curve for test ``t`` uses
        columns ``power_t``, ``power_t_mc_low``, ``power_t_mc_high``.
    """
    names = {
        "ancova": "ANCOVA",
        "ancova_huber": "ANCOVA (Huber)",
        "ancova_prognostic": "ANCOVA + twin",
        "welch": "Welch t",
        "pooled_t": "pooled t",
        "ranksum": "rank-sum",
        "responder_0.2": "responders ≥0.2",
        "no_decline": "no decline",
    }
    curves = []
    for kind, tab in tables.items():
        for j, t in enumerate(tests):
            if f"power_{t}" not in tab:
                continue
            what = "power" if kind == "fixed" else "assurance"
            curves.append(
                {
                    "n_per_arm": tab["n_per_arm"],
                    "power": tab[f"power_{t}"],
                    "low": tab[f"power_{t}_mc_low"],
                    "high": tab[f"power_{t}_mc_high"],
                    "label": f"{what}, {names.get(t, t)} (95% MC band)",
                    "style": kind if j == 0 else "",
                }
            )
    return plot_power_curve_lowlevel(curves, alpha=alpha, assumption=assumption, title=title, ax=ax)


def plot_effect_distribution_lowlevel(
    effect_ln: np.ndarray,
    *,
    fixed_effect_ln: float | None = None,
    assumption: str = "",
    ax=None,
):
    """Histogram of the true effect per replicate trial, shown as % higher (AUC+1).

    effect_ln : (R,) true treatment − control difference of ln(AUC+1) (nmol/L AUC).
    fixed_effect_ln : the fixed-assumption effect, drawn as a vertical line.
    """
    ax = _ax(ax)
    pct = 100 * np.expm1(np.asarray(effect_ln, dtype=float))
    pct = pct[np.isfinite(pct)]
    # every trial can have the same true effect (a fixed effect on the analysis scale): one bar
    same = pct.size > 0 and np.ptp(pct) <= 1e-9 * max(1.0, float(np.abs(pct).max()))
    ax.hist(
        pct,
        bins=1 if same else 40,
        range=(pct[0] - 0.5, pct[0] + 0.5) if same else None,
        color=_COLOURS["assurance"],
        alpha=0.6,
        label=f"assurance draws (R = {pct.size})",
    )
    if fixed_effect_ln is not None and np.isfinite(fixed_effect_ln):
        ax.axvline(
            100 * np.expm1(fixed_effect_ln), color=_COLOURS["fixed"], lw=2, label="fixed assumption"
        )
    ax.axvline(0, color="0.3", lw=0.8, ls=":")
    ax.set_xlabel("true effect: % higher geometric mean of (MMTT AUC C-peptide + 1 nmol/L)")
    ax.set_ylabel("replicate trials")
    _assumption(ax, assumption)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return ax


def plot_effect_vs_phi_lowlevel(phi: np.ndarray, effect_ln: np.ndarray, *, ax=None):
    """Scatter of the true effect (% higher (AUC+1)) against the replicate's φ (log axis).

    phi : (R,) φ of each replicate (dimensionless); effect_ln : (R,) ln(AUC+1) difference.
    """
    ax = _ax(ax)
    phi = np.asarray(phi, dtype=float)
    pct = 100 * np.expm1(np.asarray(effect_ln, dtype=float))
    ok = np.isfinite(phi) & np.isfinite(pct) & (phi > 0)
    ax.scatter(phi[ok], pct[ok], s=6, alpha=0.5, color=_COLOURS["assurance"], linewidths=0)
    ax.set_xscale("log")
    ax.axhline(0, color="0.3", lw=0.8, ls=":")
    ax.set_xlabel("φ of the replicate (potency × homing of infused Tregs, dimensionless)")
    ax.set_ylabel("true effect: % higher (AUC+1)")
    ax.grid(alpha=0.25)
    return ax


def effect_figure(effect_ln, *, phi=None, fixed_effect_ln=None, assumption: str = ""):
    """Effect distribution, plus effect vs φ when the replicates carry different φ values.

    Returns the ``Figure``.
    """
    phi = None if phi is None else np.asarray(phi, dtype=float)
    finite = np.array([]) if phi is None else phi[np.isfinite(phi)]
    varies = finite.size > 1 and finite.max() > finite.min()
    if varies:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
        plot_effect_vs_phi_lowlevel(phi, effect_ln, ax=a2)
    else:
        fig, a1 = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    plot_effect_distribution_lowlevel(
        effect_ln, fixed_effect_ln=fixed_effect_ln, assumption=assumption, ax=a1
    )
    return fig
