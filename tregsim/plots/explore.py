"""Figures for exploration: sensitivity indices, dose × timing sweeps, responders.

Plotting only — every number drawn here was computed upstream (tregsim.explore). Each
``plot_x(result, ax=None)`` calls a ``plot_x_lowlevel(arrays, ax=None)`` and returns the
``Axes``. Every figure carries a footnote with the model variant and φ (the assumption
ledger: φ, the potency × homing of infused Tregs, is the least known number in the model).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    return ax


def add_footnote(fig, text: str) -> None:
    """Write the assumption ledger (model variant, φ …) at the bottom of ``fig``, wrapped to the
    figure width, and keep the axes above it (constrained layout ignores ``fig.text``)."""
    import textwrap

    if not text:
        return
    width_chars = int(fig.get_figwidth() * 72 / 4.2)  # ~4.2 pt per character at 7 pt
    lines = [w for ln in text.splitlines() for w in textwrap.wrap(ln, width_chars) or [""]]
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="0.35", ha="left", va="bottom")
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        frac = min(0.45, (len(lines) * 8.5 + 4) / (fig.get_figheight() * 72))
        engine.set(rect=(0, frac, 1, 1 - frac))


def save(fig, path) -> None:
    """Save ``fig`` atomically as PNG and close it."""
    from tregsim.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- sensitivity indices
def plot_index_bars_lowlevel(
    names: Sequence[str],
    values: dict[str, np.ndarray],
    conf: dict[str, np.ndarray],
    *,
    ylabel: str = "Sobol' index (fraction of variance)",
    title: str = "",
    ax=None,
):
    """Grouped bars: one group per parameter, one bar per index in ``values`` (e.g. S1, ST),
    error bars = ``conf`` half-widths (same keys, arrays of shape ``(n_params,)``)."""
    ax = _ax(ax)
    x = np.arange(len(names))
    k = len(values)
    width = 0.8 / k
    for i, (key, v) in enumerate(values.items()):
        ax.bar(
            x + (i - (k - 1) / 2) * width,
            v,
            width,
            yerr=conf.get(key),
            capsize=3,
            label=key,
        )
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False)
    return ax


def plot_sensitivity_bars(result, output: int = 0, *, ax=None, title: str | None = None):
    """Bars of S1/ST (Sobol') or μ* (Morris) with their bootstrap CIs for one output."""
    o = result.outputs[output]
    names = [p.name for p in result.parameters]
    if result.method == "sobol":
        values = {k: result.indices[k][output] for k in ("S1", "ST")}
        conf = {k: result.indices[k + "_conf"][output] for k in ("S1", "ST")}
        ylabel = "Sobol' index (fraction of variance)"
    else:
        values = {"mu_star": result.indices["mu_star"][output]}
        conf = {"mu_star": result.indices["mu_star_conf"][output]}
        ylabel = f"Morris μ* ({o.unit} per parameter range)"
    t = title if title is not None else f"{result.method}: {o.label}"
    ci = f" — error bars: {result.conf_level:.0%} bootstrap CI"
    return plot_index_bars_lowlevel(names, values, conf, ylabel=ylabel, title=t + ci, ax=ax)


def plot_indices_vs_time_lowlevel(
    months: np.ndarray,
    values: np.ndarray,
    conf: np.ndarray,
    names: Sequence[str],
    *,
    ylabel: str,
    title: str = "",
    ax=None,
):
    """Lines of an index over visit months for each parameter, with CI bands.

    ``months`` (n_months,), ``values`` and ``conf`` (n_months, n_params)."""
    ax = _ax(ax)
    for j, name in enumerate(names):
        (line,) = ax.plot(months, values[:, j], marker="o", ms=3, label=name)
        ax.fill_between(
            months,
            values[:, j] - conf[:, j],
            values[:, j] + conf[:, j],
            color=line.get_color(),
            alpha=0.15,
            lw=0,
        )
    ax.set_xlabel("months after the baseline visit")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8, ncol=2)
    return ax


def plot_indices_vs_time(result, output_name: str, index: str = "ST", *, ax=None):
    """An index (``"S1"``, ``"ST"`` or ``"mu_star"``) of output ``output_name`` over its
    visit months, one line per parameter, band = bootstrap CI."""
    pos = [i for i, o in enumerate(result.outputs) if o.name == output_name and o.month is not None]
    pos.sort(key=lambda i: result.outputs[i].month)
    months = np.array([result.outputs[i].month for i in pos])
    values = result.indices[index][pos]
    conf = result.indices[index + "_conf"][pos]
    unit = result.outputs[pos[0]].unit
    ylabel = {
        "S1": "first-order Sobol' index S1",
        "ST": "total Sobol' index ST",
        "mu_star": f"Morris μ* ({unit} per parameter range)",
    }.get(index, index)
    title = f"{index} of {output_name} ({unit}) over time — bands: {result.conf_level:.0%} CI"
    return plot_indices_vs_time_lowlevel(
        months, values, conf, [p.name for p in result.parameters], ylabel=ylabel, title=title, ax=ax
    )


# ---------------------------------------------------------------- sweeps
def plot_heatmap_lowlevel(
    x: np.ndarray,
    y: np.ndarray,
    Z: np.ndarray,
    *,
    xlabel: str,
    ylabel: str,
    zlabel: str,
    xlog: bool = False,
    title: str = "",
    ax=None,
):
    """Heatmap of ``Z`` (n_y, n_x) over grid values ``x`` (n_x,), ``y`` (n_y,), annotated."""
    ax = _ax(ax)
    im = ax.imshow(Z, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(np.arange(len(x)), [f"{v:.3g}" for v in x], rotation=45, ha="right")
    ax.set_yticks(np.arange(len(y)), [f"{v:.4g}" for v in y])
    ax.set_xlabel(xlabel + (" (log-spaced)" if xlog else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(zlabel)
    if Z.size <= 200:
        lim = np.nanmax(np.abs(Z)) if np.isfinite(Z).any() else 1.0
        for (i, j), v in np.ndenumerate(Z):
            ax.text(
                j,
                i,
                f"{v:.2g}",
                ha="center",
                va="center",
                fontsize=6,
                color="w" if v < 0.5 * lim else "k",
            )
    return ax


def plot_sweep_line_lowlevel(
    x: np.ndarray,
    lines: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
    xlog: bool = False,
    title: str = "",
    ax=None,
):
    """Median lines with 5–95 % bands: ``lines[label] = (median, p05, p95)``, each (n_x,)."""
    ax = _ax(ax)
    for label, (med, lo, hi) in lines.items():
        (ln,) = ax.plot(x, med, marker="o", ms=3, label=label)
        ax.fill_between(x, lo, hi, color=ln.get_color(), alpha=0.15, lw=0)
    if xlog:
        ax.set_xscale("log")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax


# ---------------------------------------------------------------- responders
def plot_partial_dependence_lowlevel(
    panels: Sequence[dict],
    *,
    ylabel: str,
    title: str = "",
    ncols: int = 3,
):
    """One panel per predictor: ``{"name", "label", "center", "median", "p25", "p75", "rho"}``
    (bin centres and the binned outcome summaries, each (n_bins,)). Returns the Figure."""
    n = len(panels)
    ncols = min(ncols, max(n, 1))
    nrows = int(np.ceil(n / ncols)) if n else 1
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.4 * ncols, 2.8 * nrows + 0.6),
        layout="constrained",
        squeeze=False,
    )
    for ax, p in zip(axes.flat, panels):
        ax.plot(p["center"], p["median"], marker="o", ms=3)
        ax.fill_between(p["center"], p["p25"], p["p75"], alpha=0.2, lw=0)
        ax.set_xlabel(p["label"], fontsize=8)
        ax.set_title(f"{p['name']}: Spearman ρ = {p['rho']:+.2f}", fontsize=8)
        if p.get("xlog"):
            ax.set_xscale("log")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_phi_curve_lowlevel(
    phi: np.ndarray,
    preservation_pct: np.ndarray,
    *,
    target_pct: float,
    phi_target: float,
    month: float,
    title: str = "",
    ax=None,
):
    """Mean relative preservation (%) vs φ (log axis), with the target and the φ found."""
    ax = _ax(ax)
    order = np.argsort(phi)
    ax.plot(phi[order], preservation_pct[order], marker="o", ms=3)
    ax.axhline(target_pct, color="C3", ls="--", lw=1, label=f"target {target_pct:g} %")
    if np.isfinite(phi_target):
        ax.axvline(phi_target, color="C3", ls=":", lw=1, label=f"φ needed ≈ {phi_target:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("φ, potency × homing of infused vs endogenous Tregs (–)")
    ax.set_ylabel(f"mean relative C-peptide preservation at {month:g} months (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax


def _ledger_footnote(ledger: Sequence[str]) -> str:
    keep = [ln.lstrip("# ") for ln in ledger if ln.startswith(("# model", "# phi", "# arm"))]
    post = [ln for ln in ledger if ln.startswith("# population parameters") and " from " in ln]
    if post:  # the long CSV line names every parameter; the figure names the file
        src = post[0].split(" from ", 1)[1].split(" (patient", 1)[0]
        keep.insert(1, f"population parameters: posterior draws from {src}")
    return "\n".join(keep)


def _heatmap_axes(result) -> tuple[int, int]:
    names = [a.name for a in result.axes]
    dose = next((i for i, n in enumerate(names) if n in ("dose_per_kg", "dose_total")), None)
    day = next((i for i, n in enumerate(names) if n == "infusion_day"), None)
    if dose is not None and day is not None:
        return dose, day
    return 0, 1


def plot_sweep_heatmap(result, month: float = 12.0, stat: str = "median"):
    """Heatmap of the ``stat`` (median, mean, p05, p95) of ΔC-peptide at ``month`` over the
    dose × timing axes (or the first two axes); further axes become panels.
    Returns the Figure (footnote: model, φ, arm)."""
    ix, iy = _heatmap_axes(result)
    ax_x, ax_y = result.axes[ix], result.axes[iy]
    Z = result.grid_array(f"delta_cpeptide_{month:g}mo_{stat}_nmol_L")
    others = [i for i in range(len(result.axes)) if i not in (ix, iy)]
    Z = np.moveaxis(Z, [iy, ix], [-2, -1])  # (..., n_y, n_x)
    combos = list(np.ndindex(*Z.shape[:-2])) if others else [()]
    ncols = min(len(combos), 3)
    nrows = int(np.ceil(len(combos) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.2 * ncols, 4.6 * nrows + 0.5), layout="constrained", squeeze=False
    )
    for ax, c in zip(axes.flat, combos):
        sub = ", ".join(
            f"{result.axes[o].name} = {result.axes[o].values[k]:g}" for o, k in zip(others, c)
        )
        title = f"{stat} ΔC-peptide {month:g} months after baseline (nmol/L)" + (
            f" — {sub}" if sub else ""
        )
        plot_heatmap_lowlevel(
            ax_x.values,
            ax_y.values,
            Z[c],
            xlabel=f"{ax_x.name} ({result.units[ax_x.name]})",
            ylabel=f"{ax_y.name} ({result.units[ax_y.name]})",
            zlabel=f"{stat} ΔC-peptide, Treg − control (nmol/L)",
            xlog=ax_x.spacing == "log",
            title=title,
            ax=ax,
        )
    for ax in axes.flat[len(combos) :]:
        ax.set_visible(False)
    add_footnote(fig, _ledger_footnote(result.ledger))
    return fig


def plot_sweep_lines(result, axis: int = 0):
    """ΔC-peptide (median, 5–95 % band) vs one swept axis, one line per month (and per value
    of the other axes, if any). Returns the Figure."""
    ax_s = result.axes[axis]
    fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    months = result.outcomes.months
    others = [i for i in range(len(result.axes)) if i != axis]
    lines = {}
    for m in months:
        arrs = [
            np.moveaxis(result.grid_array(f"delta_cpeptide_{m:g}mo_{s}_nmol_L"), axis, -1)
            for s in ("median", "p05", "p95")
        ]
        for c in np.ndindex(*arrs[0].shape[:-1]):
            sub = ", ".join(
                f"{result.axes[o].name}={result.axes[o].values[k]:g}" for o, k in zip(others, c)
            )
            label = f"{m:g} months" + (f" ({sub})" if sub else "")
            lines[label] = tuple(a[c] for a in arrs)
    plot_sweep_line_lowlevel(
        ax_s.values,
        lines,
        xlabel=f"{ax_s.name} ({result.units[ax_s.name]})",
        ylabel="ΔC-peptide, Treg − control (nmol/L)",
        xlog=ax_s.spacing == "log",
        title="median and 5–95 % of the paired difference",
        ax=ax,
    )
    add_footnote(fig, _ledger_footnote(result.ledger))
    return fig


def plot_partial_dependence(ranking, *, ledger: Sequence[str] = (), max_panels: int = 9):
    """Binned ΔC-peptide (median, IQR band) against each predictor, strongest first."""
    panels = []
    for _, row in ranking.table.iterrows():
        b = ranking.bins.get(row["predictor"])
        if b is None or not np.isfinite(row["spearman_rho"]):
            continue
        panels.append(
            {
                "name": row["predictor"],
                "label": f"{row['predictor']} ({row['unit']})",
                "rho": row["spearman_rho"],
                **b,
            }
        )
        if len(panels) == max_panels:
            break
    fig = plot_partial_dependence_lowlevel(
        panels,
        ylabel=f"{ranking.outcome} (median, IQR)",
        title=f"who benefits: paired {ranking.outcome} binned by each predictor "
        f"(n = {ranking.n} virtual patients)",
    )
    add_footnote(fig, _ledger_footnote(ledger))
    return fig


def plot_phi_needed(result, *, ledger: Sequence[str] = ()):
    """Mean relative preservation vs φ with the target and the φ found. Returns the Figure."""
    ax = plot_phi_curve_lowlevel(
        result.curve_phi,
        result.curve_pct,
        target_pct=result.target_pct,
        phi_target=result.phi,
        month=result.month,
        title="what would the product need to do? φ for a target preservation"
        + (f" — {result.note}" if result.note else ""),
    )
    fig = ax.figure
    add_footnote(fig, _ledger_footnote(ledger))
    return fig
