"""Figures for virtual cohorts and the natural-history check (plotting only).

Every number drawn here was computed in :mod:`tregsim.cohort`. ``plot_x(result, ax=None)``
calls ``plot_x_lowlevel(arrays, ax=None)`` and returns the Axes (or the Figure for multi-panel
figures).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_COLORS = ("tab:blue", "tab:gray", "tab:orange", "tab:green", "tab:purple", "tab:red")


def _add_footnote(fig, text: str) -> None:
    if text:
        engine = fig.get_layout_engine()
        if engine is not None and hasattr(engine, "set"):
            engine.set(rect=(0, 0.04, 1, 0.96))  # leave room below the x labels
        fig.text(0.01, 0.005, text, fontsize=7, color="0.35", ha="left", va="bottom")


def _footnote(exp) -> str:
    try:
        phi = exp.model.defaults().get("phi")
    except AttributeError:
        phi = None
    s = f"model {getattr(exp.model, 'name', exp.model_ref)}"
    if phi is not None:
        s += (
            f"; φ (potency × homing of infused Tregs, the least known number) = {phi:g} "
            "(prior median unless a posterior was given)"
        )
    return s


def plot_cohort_lowlevel(
    days,
    spaghetti: dict,
    visit_days,
    bands: dict,
    labels: dict,
    ax=None,
    footnote: str = "",
    infusions: dict | None = None,
):
    """Spaghetti + median and 50 %/90 % bands per arm.

    days : (n_grid,) days since diagnosis of the spaghetti trajectories.
    spaghetti : arm → (n_patients, n_grid) C-peptide, nmol/L.
    visit_days : (n_visits,) days since diagnosis.
    bands : arm → dict with q05, q25, median, q75, q95 arrays (n_visits,), nmol/L.
    labels : arm → legend label.
    infusions : arm → infusion days (days since diagnosis), drawn as dashed lines.
    """
    if ax is None:
        fig, axes = plt.subplots(
            1,
            len(bands),
            figsize=(5.2 * len(bands), 4.3),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        axes = axes[0]
    else:
        axes = [ax] * len(bands)
    for i, (arm, b) in enumerate(bands.items()):
        a = axes[i]
        col = _COLORS[i % len(_COLORS)]
        if arm in spaghetti and days is not None:
            lines = a.plot(days, spaghetti[arm].T, color=col, alpha=0.18, lw=0.7)
            if lines:
                lines[0].set_label(f"{len(lines)} individual patients")
        for k, d in enumerate((infusions or {}).get(arm, ())):
            a.axvline(
                d, color="tab:red", ls="--", lw=0.9, label="Treg infusion" if k == 0 else None
            )
        a.fill_between(
            visit_days, b["q05"], b["q95"], color=col, alpha=0.15, label="90 % of patients"
        )
        a.fill_between(
            visit_days, b["q25"], b["q75"], color=col, alpha=0.3, label="50 % of patients"
        )
        a.plot(visit_days, b["median"], "o-", color=col, lw=2, label="median")
        a.axhline(0.2, color="k", ls=":", lw=0.8, label="0.2 nmol/L")
        a.set_title(labels.get(arm, arm))
        a.set_xlabel("time since diagnosis (days)")
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
    axes[0].set_ylabel("MMTT 2-h AUC mean C-peptide (nmol/L)")
    axes[0].legend(fontsize=8, loc="upper right")
    fig = axes[0].figure
    _add_footnote(fig, footnote)
    return fig


def plot_cohort(result, ax=None):
    """Figure of a :class:`tregsim.cohort.CohortResult` (spaghetti of the first patients)."""
    exp = result.exp
    bands = {}
    for arm in exp.arms:
        rows = [r for r in result.summary if r["arm"] == arm]
        bands[arm] = {
            k: np.array([r[f"{k}_nmol_L"] for r in rows])
            for k in ("q05", "q25", "median", "q75", "q95")
        }
    labels = {a: f"{exp.arms[a].label} (N = {result.n:,})" for a in exp.arms}
    infusions = {a: getattr(arm.regimen, "times_days", ()) for a, arm in exp.arms.items()}
    return plot_cohort_lowlevel(
        result.spaghetti_days,
        result.spaghetti,
        exp.visits_days,
        bands,
        labels,
        ax=ax,
        footnote=_footnote(exp),
        infusions=infusions,
    )


def plot_natural_history_lowlevel(rows: list, groups, footnote: str = ""):
    """VPC: observed mean ± SD and quartiles vs simulated median, 50 % band and mean.

    rows : dicts with age_group, month, obs_* and sim_* columns (nmol/L).
    groups : age groups to draw, one panel each.
    """
    fig, axes = plt.subplots(
        1,
        len(groups),
        figsize=(4.6 * len(groups), 4.2),
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    for a, g in zip(axes[0], groups):
        rs = sorted((r for r in rows if r["age_group"] == g), key=lambda r: r["month"])
        m = np.array([r["month"] for r in rs])
        get = lambda k, rs=rs: np.array([r[k] for r in rs], dtype=float)  # noqa: E731
        a.fill_between(
            m,
            get("sim_q25_nmol_L"),
            get("sim_q75_nmol_L"),
            color="tab:blue",
            alpha=0.25,
            label="simulated 25–75 %",
        )
        a.plot(m, get("sim_median_nmol_L"), "-", color="tab:blue", label="simulated median")
        a.plot(m, get("sim_mean_nmol_L"), "--", color="tab:blue", label="simulated mean")
        a.errorbar(
            m,
            get("obs_mean_nmol_L"),
            yerr=get("obs_sd_nmol_L"),
            fmt="s",
            color="k",
            ms=4,
            capsize=2,
            label="observed mean ± SD",
        )
        a.plot(m, get("obs_median_nmol_L"), "x", color="tab:red", label="observed median")
        a.vlines(
            m,
            get("obs_q25_nmol_L"),
            get("obs_q75_nmol_L"),
            color="tab:red",
            lw=3,
            alpha=0.4,
            label="observed 25–75 %",
        )
        for mi, n in zip(m, get("obs_n")):
            a.annotate(
                f"{int(n)}",
                (mi, 0),
                textcoords="offset points",
                xytext=(0, 2),
                ha="center",
                fontsize=6,
                color="0.4",
            )
        a.set_title(f"age {g} y")
        a.set_xlabel("months after baseline visit")
        a.grid(alpha=0.3)
        a.set_ylim(bottom=0)
    axes[0][0].set_ylabel("MMTT 2-h AUC mean C-peptide (nmol/L)")
    axes[0][0].legend(fontsize=7)
    _add_footnote(fig, footnote + "; small numbers: observed n" if footnote else "")
    return fig


def plot_natural_history(nh, exp):
    """VPC figure of a :class:`tregsim.cohort.NaturalHistory`."""
    return plot_natural_history_lowlevel(
        nh.rows,
        list(nh.age_groups),
        footnote=_footnote(exp) + "; placebo arms of AbATE, START, T1DAL, TN02, TN05 (Dufort 2019)",
    )


def plot_published_course(rows: list, footnote: str = ""):
    """Published per-visit medians (IQR) vs the simulated cohorts' medians: (a) nmol/L with
    the central 95 % of cohort medians and the typical simulated quartiles; (b) the median
    as a fraction of the baseline median.

    rows : :attr:`tregsim.published_course.PublishedCourse.rows`.
    """
    rs = sorted(rows, key=lambda r: r["month"])
    m = np.array([r["month"] for r in rs])
    get = lambda k: np.array([r[k] for r in rs], dtype=float)  # noqa: E731
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    a.fill_between(
        m,
        get("sim_median_lo_nmol_L"),
        get("sim_median_hi_nmol_L"),
        color="tab:blue",
        alpha=0.25,
        label="simulated cohort median, central 95 %",
    )
    a.plot(m, get("sim_median_nmol_L"), "-", color="tab:blue", label="simulated median")
    a.plot(m, get("sim_q25_nmol_L"), ":", color="tab:blue", label="simulated 25 % / 75 %")
    a.plot(m, get("sim_q75_nmol_L"), ":", color="tab:blue")
    a.errorbar(
        m,
        get("obs_median_nmol_L"),
        yerr=[
            get("obs_median_nmol_L") - get("obs_q25_nmol_L"),
            get("obs_q75_nmol_L") - get("obs_median_nmol_L"),
        ],
        fmt="s",
        color="k",
        ms=4,
        capsize=2,
        label="published median (IQR)",
    )
    a.set_xlabel("months after baseline visit")
    a.set_ylabel("MMTT C-peptide AUC mean (nmol/L)")
    a.set_title("(a) per-visit medians")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b.fill_between(
        m,
        get("sim_ratio_lo"),
        get("sim_ratio_hi"),
        color="tab:blue",
        alpha=0.25,
        label="simulated, central 95 %",
    )
    b.plot(m, get("sim_ratio"), "-", color="tab:blue", label="simulated (median over cohorts)")
    b.plot(m, get("obs_ratio"), "s", color="k", ms=4, label="published")
    b.set_xlabel("months after baseline visit")
    b.set_ylabel("median / baseline median (1)")
    b.set_title("(b) relative to baseline")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    if footnote:
        _add_footnote(fig, footnote)
    return fig


def save(fig, path) -> None:
    """Save ``fig`` atomically as PNG and close it."""
    from tregsim.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
