"""The sections of ``tregsim run``: which analysis each one calls and how its result reads.

Each section calls one library analysis (:func:`tregsim.cohort.cohort_study`,
:func:`tregsim.placebo.natural_history_check`, :func:`tregsim.trial.study.power_study`,
:func:`tregsim.explore.sweep.sweep_study`, :func:`tregsim.explore.sensitivity.sensitivity_study`)
with arguments from the run budget, saves the result object into its folder, then turns the
result object (not its files) into a report :class:`~tregsim.report.html.Section` and lines of
the summary box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tregsim.report.html import Figure, KeyNumber, Section, SummaryItem, Table
from tregsim.report.plan import RunPlan


@dataclass(frozen=True)
class SectionSpec:
    """How to compute and present one section.

    ``compute(plan, folder, exp)`` calls the library analysis (checkpoints in ``folder``),
    saves its result object into ``folder`` and returns it; ``present(plan, folder, exp,
    result)`` returns the report section and summary lines from the result object.
    """

    name: str
    title: str
    compute: Callable[[RunPlan, Path, Any], Any]
    present: Callable[[RunPlan, Path, Any, Any], tuple[Section, list[SummaryItem]]]


def _analysis_kwargs(
    plan: RunPlan,
    folder: Path,
    *,
    posterior: bool = True,
    workers: bool = True,
    variability: bool = False,
) -> dict[str, Any]:
    """What every section passes its analysis: the run's seed, posterior, overwrite and
    workers (and, for the analyses that take one, the structure of individual variability);
    ``folder`` for checkpoints (the call, not `tregsim run`, goes in its manifest)."""
    kw: dict[str, Any] = {"seed": plan.seed, "out_dir": folder, "overwrite": plan.overwrite}
    if posterior:
        kw["posterior"] = plan.posterior
    if variability:
        kw["variability"] = plan.variability
    if workers:
        kw["workers"] = plan.workers
    return kw


def fmt_list(xs) -> str:
    return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in xs)


TITLES = {
    "cohort": "Virtual cohort per arm",
    "natural_history": "Natural history check against placebo data",
    "power": "Power, assurance and sample size",
    "sweep": "Dose × timing sweep",
    "sensitivity": "What drives the 12-month effect (sensitivity)",
    "treatment_effect": "What the Treg trials say about the treatment effect",
}

SUMMARY_ORDER = (
    "Predicted C-peptide by arm",
    "Treatment effect",
    "Power and sample size",
    "Evidence for the treatment effect",
    "Natural history",
    "Dose and timing",
    "What drives the result",
)

SWEEP_MAX_PATIENTS = 1000
"""Patients per sweep grid point: ``min(n_patients, 1000)`` (the paired difference needs far
fewer patients than an arm summary; keeps the 30-point default sweep within budget)."""

SENSITIVITY_PATIENTS = 16
"""Fixed virtual patients per sensitivity design point (``tregsim sensitivity`` default)."""


def _endpoint_months(exp) -> list[float]:
    months = [float(m) for m in exp.visit_months]
    chosen = [m for m in (12.0, 24.0) if m in months]
    return chosen or [months[-1]]


def _arm_label(exp, arm: str) -> str:
    return exp.arms[arm].label if arm in exp.arms else arm


def _phi_text(exp) -> str:
    p = exp.model.spec.parameters.get("phi")
    if p is None:
        return "its model value"
    prior = f" (prior {p.prior.describe()})" if p.prior is not None else ""
    overrides = getattr(exp, "parameter_overrides", None) or {}
    if "phi" in overrides:
        return f"{overrides['phi']:g} (overridden; model default {p.value:g}{prior})"
    return f"the model default {p.value:g}{prior}"


def _unit(u: object) -> str:
    return "dimensionless" if str(u) in ("", "1", "-", "nan") else str(u)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


# --------------------------------------------------------------------------------------------
# cohort
# --------------------------------------------------------------------------------------------
def _cohort_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.cohort import cohort_study

    res = cohort_study(
        exp,
        n=plan.n_patients,
        **_analysis_kwargs(plan, folder, variability=True),
    )
    res.save(folder)
    return res


def _cohort_present(plan: RunPlan, folder: Path, exp, res):
    df = res.summary_frame()
    months = _endpoint_months(exp)
    ctrl = exp.control_arm
    numbers, arm_txt, eff_txt = [], [], []
    for m in months:
        rows = df[df["visit_month"] == m]
        parts = []
        for _, r in rows.iterrows():
            label = _arm_label(exp, r["arm"])
            numbers.append(
                KeyNumber(
                    f"mean C-peptide at {m:g} months, {label}",
                    float(r["mean_nmol_L"]),
                    "nmol/L",
                    (float(r["q05_nmol_L"]), float(r["q95_nmol_L"])),
                    "5th to 95th percentile of patients",
                )
            )
            parts.append(
                f"{label} {r['mean_nmol_L']:.3f} nmol/L (90 % of patients "
                f"{r['q05_nmol_L']:.2f}–{r['q95_nmol_L']:.2f})"
            )
        arm_txt.append(f"at {m:g} months: " + "; ".join(parts))
        for _, r in rows[rows["arm"] != ctrl].iterrows():
            label = _arm_label(exp, r["arm"])
            ctrl_mean = float(rows.loc[rows["arm"] == ctrl, "mean_nmol_L"].iloc[0])
            d = float(r["diff_mean_nmol_L"])
            numbers.append(
                KeyNumber(
                    f"paired Δ C-peptide at {m:g} months, {label} − {_arm_label(exp, ctrl)}",
                    d,
                    "nmol/L",
                    (float(r["diff_q05_nmol_L"]), float(r["diff_q95_nmol_L"])),
                    "5th to 95th percentile of patients",
                )
            )
            eff_txt.append(
                f"{m:g} months: {d:+.3g} nmol/L ({100 * d / ctrl_mean:+.2f} % of the routine-care "
                f"mean; 95 % CI of the mean {r['diff_ci95_low_nmol_L']:+.3g} to "
                f"{r['diff_ci95_high_nmol_L']:+.3g}; 90 % of patients between "
                f"{r['diff_q05_nmol_L']:+.3g} and {r['diff_q95_nmol_L']:+.3g})"
            )
    keep = {
        "arm": "arm",
        "visit_month": "visit (months after baseline)",
        "n_patients": "patients (n)",
        "n_failed": "failed solves (n)",
        "mean_nmol_L": "mean (nmol/L)",
        "q05_nmol_L": "5th percentile (nmol/L)",
        "median_nmol_L": "median (nmol/L)",
        "q95_nmol_L": "95th percentile (nmol/L)",
        "frac_ge_0_2_nmol_L": "fraction ≥ 0.2 nmol/L",
        "diff_mean_nmol_L": "paired Δ vs control, mean (nmol/L)",
        "diff_q05_nmol_L": "paired Δ, 5th percentile (nmol/L)",
        "diff_q95_nmol_L": "paired Δ, 95th percentile (nmol/L)",
    }
    tab = df[list(keep)].rename(columns=keep)
    acc = res.acceptance_rate
    notes = (
        []
        if acc is None
        else [f"Eligibility acceptance rate of the sampled population: {acc:.1%}."]
    )
    if (warning := res.age_warning()) is not None:
        notes.append(f"Ages: {warning}.")
    section = Section(
        TITLES["cohort"],
        f"{plan.n_patients:,} virtual patients, each simulated in every arm (the same patient "
        "under routine care and under Tregs, so the difference is paired). Values are the MMTT "
        "2-h AUC mean C-peptide predicted by the model without assay noise.",
        numbers=numbers,
        tables=[
            Table.from_frame(tab, "C-peptide by arm and visit", source="summary.csv", max_rows=60)
        ],
        figures=[Figure(folder / "cpeptide_by_arm.png", "C-peptide over time by arm")],
        notes=notes,
    )
    summary = [
        SummaryItem("Predicted C-peptide by arm", "; ".join(arm_txt)),
        SummaryItem(
            "Treatment effect",
            "Paired difference, Tregs − routine care, at "
            + "; ".join(eff_txt)
            + f". φ (potency × homing of the infused cells) is fixed at {_phi_text(exp)}: "
            "the size of this effect is an assumption, not a measurement.",
        ),
    ]
    return section, summary


# --------------------------------------------------------------------------------------------
# natural history
# --------------------------------------------------------------------------------------------
def _nh_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.placebo import natural_history_check

    nh = natural_history_check(
        exp, **_analysis_kwargs(plan, folder, workers=False, variability=True)
    )
    nh.save(folder, exp)
    return nh


def _nh_present(plan: RunPlan, folder: Path, exp, nh):
    df = nh.frame()
    # the table's "all" rows when every age group is compared, else each compared group's
    shown = ["all"] if (df["age_group"] == "all").any() else list(nh.age_groups)
    numbers, txt = [], []
    for g, m in ((g, m) for g in shown for m in _endpoint_months(exp)):
        r = df[(df["age_group"] == g) & (df["month"] == m)]
        if r.empty:
            continue
        r = r.iloc[0]
        who = "" if g == "all" else f" ({g} y)"
        numbers.append(
            KeyNumber(
                f"simulated routine-care mean at {m:g} months{who}",
                float(r["sim_mean_nmol_L"]),
                "nmol/L",
            )
        )
        numbers.append(
            KeyNumber(
                f"observed placebo mean at {m:g} months{who} (n = {int(r['obs_n'])})",
                float(r["obs_mean_nmol_L"]),
                "nmol/L",
            )
        )
        z = float(r["z_mean"])
        verdict = "within" if abs(z) <= 2 else "outside"
        txt.append(
            f"{m:g} months{who}: simulated {r['sim_mean_nmol_L']:.3f} vs observed "
            f"{r['obs_mean_nmol_L']:.3f} nmol/L (z = {z:+.1f}, {verdict} 2 standard errors)"
        )
    keep = {
        "age_group": "age group (years)",
        "month": "month after baseline",
        "obs_n": "observed (n)",
        "obs_mean_nmol_L": "observed mean (nmol/L)",
        "sim_mean_nmol_L": "simulated mean (nmol/L)",
        "obs_median_nmol_L": "observed median (nmol/L)",
        "sim_median_nmol_L": "simulated median (nmol/L)",
        "obs_frac_ge_0_2": "observed fraction ≥ 0.2 nmol/L",
        "sim_frac_ge_0_2": "simulated fraction ≥ 0.2 nmol/L",
        "z_mean": "z of the mean difference (1)",
    }
    tab = df[[c for c in keep if c in df.columns]].rename(columns=keep)
    tables = [
        Table.from_frame(
            tab,
            "Simulated vs observed, by age group and month",
            source="natural_history.csv",
            max_rows=60,
        )
    ]
    if getattr(nh, "trial_statistics", None):
        import pandas as pd

        from tregsim.trial_statistics import (
            BY_AGE_COLUMNS,
            COMPARISON_COLUMNS,
            outside_summary,
            split_overall,
        )

        names = {
            "group": "age group at baseline (years)",
            "n": "participants",
            "month": "month after baseline",
            "statistic": "statistic of ln(AUC+1)",
            "observed": "observed",
            "observed_lo": "observed 95 % lo",
            "observed_hi": "observed 95 % hi",
            "simulated": "simulated",
            "simulated_lo": "simulated 95 % lo",
            "simulated_hi": "simulated 95 % hi",
        }
        overall, by_age = split_overall(nh.trial_statistics)
        for rows, columns, caption, source, max_rows in (
            (
                overall,
                COMPARISON_COLUMNS,
                "Within-patient statistics that drive power (ANCOVA on baseline and age): "
                f"placebo records vs simulated observed visits; {outside_summary(overall)}",
                "trial_statistics.csv",
                20,
            ),
            (
                by_age,
                BY_AGE_COLUMNS,
                "The same by age group at baseline (cells of ≥ 20 participants; "
                f"children's intervals are wide); {outside_summary(by_age)}",
                "trial_statistics_by_age.csv",
                40,
            ),
        ):
            if rows:
                frame = pd.DataFrame(rows, columns=list(columns)).rename(columns=names)
                tables.append(Table.from_frame(frame, caption, source=source, max_rows=max_rows))
    section = Section(
        TITLES["natural_history"],
        "Does the routine-care arm decline like the placebo arms of five new-onset trials "
        "(AbATE, START, T1DAL, TN02, TN05; Dufort et al. 2019)? The simulated cohort is matched "
        "to the observed month-0 age mix; z compares the means in units of their standard "
        "error.",
        numbers=numbers,
        tables=tables,
        figures=[
            Figure(
                folder / "natural_history_vpc.png",
                "Visual predictive check: routine-care arm vs placebo data",
            )
        ],
    )
    return section, [SummaryItem("Natural history", "Routine-care arm vs placebo data at "
                                 + "; ".join(txt) + ".")]  # fmt: skip


# --------------------------------------------------------------------------------------------
# power
# --------------------------------------------------------------------------------------------
def _planned_n(exp) -> int | None:
    n = exp.trial.get("n_per_arm") if isinstance(exp.trial, dict) else None
    if isinstance(n, dict) and exp.treatment_arms and exp.treatment_arms[0] in n:
        return int(n[exp.treatment_arms[0]])
    if isinstance(n, int):
        return n
    return None


def _power_grid(plan: RunPlan, exp) -> list[int]:
    grid = set(plan.n_per_arm)
    planned = _planned_n(exp)
    if planned is not None:
        grid.add(planned)
    return sorted(grid)


def _power_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.trial.study import power_study

    study = power_study(
        exp,
        n_per_arm=_power_grid(plan, exp),
        trials=plan.n_trials,
        effect_phi=plan.effect_phi,
        phi=plan.phi,
        # the twin's prognostic covariate beside the primary ANCOVA (docs/twin.md)
        tests=("ancova", "ancova_prognostic", "welch", "ranksum", "responder_0.2"),
        **_analysis_kwargs(plan, folder, variability=True),
    )
    study.save(folder)
    return study


def _power_present(plan: RunPlan, folder: Path, exp, study):
    df = study.frame()
    test = study.primary_test
    planned = _planned_n(exp) or int(df["n_per_arm"].min())
    grid_max = int(df["n_per_arm"].max())
    numbers, txt = [], []
    for curve, what in (("fixed", "power"), ("assurance", "assurance")):
        sub = df[df["curve"] == curve]
        if sub.empty:
            continue
        r = sub[sub["n_per_arm"] == planned].iloc[0]
        p, lo, hi = (
            float(r[f"power_{test}"]),
            float(r[f"power_{test}_mc_low"]),
            float(r[f"power_{test}_mc_high"]),
        )
        numbers.append(
            KeyNumber(
                f"{what} at {planned} per arm ({test}; {r['effect_assumption']})",
                100 * p,
                "%",
                (100 * lo, 100 * hi),
                "95 % Monte-Carlo interval",
            )
        )
        n80 = study.summary.get(curve, {}).get("n_per_arm_for_80pct")
        numbers.append(
            KeyNumber(
                f"N per arm for 80 % {what}",
                n80 if n80 is not None else f"more than {grid_max} (not reached)",
                "participants per arm",
            )
        )
        n80_txt = f"{n80} per arm" if n80 is not None else f"not reached by {grid_max} per arm"
        eff = float(r["mean_true_effect_percent_auc_plus_1"])
        txt.append(
            f"{what} at {planned} per arm {_pct(p)} (Monte-Carlo 95 % "
            f"{_pct(lo)}–{_pct(hi)}; {r['effect_assumption']}, mean true effect "
            f"{eff:+.2g} % of AUC+1); N for 80 % {what}: {n80_txt}"
        )
    keep = {
        "curve": "curve",
        "n_per_arm": "participants per arm (n)",
        "n_trials": "simulated trials (n)",
        f"power_{test}": f"power, {test} (fraction)",
        f"power_{test}_mc_low": "Monte-Carlo 95 % low (fraction)",
        f"power_{test}_mc_high": "Monte-Carlo 95 % high (fraction)",
        "mean_true_effect_percent_auc_plus_1": "mean true effect (% of AUC+1)",
    }
    for t in study.tests[1:]:
        keep[f"power_{t}"] = f"power, {t} (fraction)"
    tab = df[[c for c in keep if c in df.columns]].rename(columns=keep)
    endpoint = str(df["endpoint"].iloc[0])
    alloc = str(df["allocation"].iloc[0])
    section = Section(
        TITLES["power"],
        f"How often would a trial like this one detect the effect? {plan.n_trials:,} simulated "
        f"trials per sample size, each analysed as the real trial would be ({test} on "
        f"ln(AUC + 1), two-sided α = {df['alpha'].iloc[0]:g}). Power assumes φ fixed at its "
        "default; assurance draws φ from its prior for every simulated trial, so it includes "
        "the uncertainty about whether the cells work at all.",
        notes=[f"Endpoint: {endpoint}. Allocation: {alloc}."],
        numbers=numbers,
        tables=[Table.from_frame(tab, "Power by sample size", source="power.csv", max_rows=60)],
        figures=[
            Figure(folder / "power_curve.png", "Power and assurance vs participants per arm"),
            Figure(
                folder / "effect_distribution.png",
                "Distribution of the true effect across simulated trials",
            ),
        ],
    )
    return section, [SummaryItem("Power and sample size", "; ".join(txt) + ".")]


# --------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------
def _sweep_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.explore.sweep import sweep_study

    res = sweep_study(
        exp,
        ["dose_per_kg=" + fmt_list(plan.sweep_doses), "infusion_day=" + fmt_list(plan.sweep_days)],
        n=min(plan.n_patients, SWEEP_MAX_PATIENTS),
        **_analysis_kwargs(plan, folder),
    )
    res.save(folder)
    return res


def _sweep_present(plan: RunPlan, folder: Path, exp, res):
    df = res.table
    col = "delta_cpeptide_12mo_median_nmol_L"
    best = df.loc[df[col].idxmax()]
    worst = df.loc[df[col].idxmin()]
    numbers = [
        KeyNumber(
            f"largest median paired Δ at 12 months: {best['dose_per_kg_cells_per_kg']:.3g} "
            f"cells/kg on day {best['infusion_day_days']:g}",
            float(best[col]),
            "nmol/L",
            (
                float(best["delta_cpeptide_12mo_p05_nmol_L"]),
                float(best["delta_cpeptide_12mo_p95_nmol_L"]),
            ),
            "5th to 95th percentile of patients",
        ),
        KeyNumber(
            f"smallest: {worst['dose_per_kg_cells_per_kg']:.3g} cells/kg on day "
            f"{worst['infusion_day_days']:g}",
            float(worst[col]),
            "nmol/L",
        ),
    ]
    keep = {
        "dose_per_kg_cells_per_kg": "dose (cells/kg)",
        "infusion_day_days": "infusion day (days since diagnosis)",
        col: "median paired Δ at 12 months (nmol/L)",
        "delta_cpeptide_12mo_p05_nmol_L": "5th percentile Δ at 12 months (nmol/L)",
        "delta_cpeptide_12mo_p95_nmol_L": "95th percentile Δ at 12 months (nmol/L)",
        "rel_preservation_12mo_pct": "relative preservation at 12 months (%)",
        "responder_fraction_12mo": "responder fraction at 12 months (fraction)",
        "delta_cpeptide_24mo_median_nmol_L": "median paired Δ at 24 months (nmol/L)",
        "n_failed": "failed solves (n)",
    }
    tab = df[[c for c in keep if c in df.columns]].rename(columns=keep)
    figs = [Figure(p, "Median paired ΔC-peptide at 12 months over dose × infusion day")
            for p in sorted(folder.glob("*.png"))]  # fmt: skip
    n = min(plan.n_patients, SWEEP_MAX_PATIENTS)
    section = Section(
        TITLES["sweep"],
        f"The same {n:,} virtual patients receive every combination of dose and infusion day; "
        "each is compared with themselves under routine care. This shows which regimen the "
        "model favours; the absolute size still rests on φ.",
        numbers=numbers,
        tables=[
            Table.from_frame(
                tab, "Paired effect by dose and infusion day", source="sweep.csv", max_rows=60
            )
        ],
        figures=figs,
    )
    text = (
        f"Of {len(df)} dose × day combinations, the largest median 12-month gain is "
        f"{best[col]:+.3g} nmol/L at {best['dose_per_kg_cells_per_kg']:.3g} cells/kg on day "
        f"{best['infusion_day_days']:g}; the smallest {worst[col]:+.3g} nmol/L at "
        f"{worst['dose_per_kg_cells_per_kg']:.3g} cells/kg on day {worst['infusion_day_days']:g}."
    )
    return section, [SummaryItem("Dose and timing", text)]


# --------------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------------
def _sens_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.explore.sensitivity import sensitivity_study

    res = sensitivity_study(
        exp,
        n=plan.sensitivity_n,
        patients=SENSITIVITY_PATIENTS,
        **_analysis_kwargs(plan, folder, posterior=False),
    )
    res.save(folder)
    return res


def _sens_present(plan: RunPlan, folder: Path, exp, res):
    df = res.to_frame()
    index = "ST" if "ST" in df.columns else "mu_star"
    sub = df[(df["output"] == "delta_cpeptide") & (df["month"] == 12)]
    if sub.empty:  # no 12-month visit: the last month
        last = df.loc[df["output"] == "delta_cpeptide", "month"].max()
        sub = df[(df["output"] == "delta_cpeptide") & (df["month"] == last)]
    sub = sub.sort_values(index, ascending=False)
    month = float(sub["month"].iloc[0])
    top = sub.head(3)
    numbers = [
        KeyNumber(
            f"{'total Sobol index' if index == 'ST' else 'Morris μ*'} of {r['parameter']} "
            f"({r['low']:.3g}–{r['high']:.3g} {_unit(r['parameter_unit'])})",
            float(r[index]),
            "dimensionless" if index == "ST" else "nmol/L",
            (float(r[index] - r[f"{index}_conf"]), float(r[index] + r[f"{index}_conf"]))
            if f"{index}_conf" in r
            else None,
            "bootstrap 95 % interval",
        )
        for _, r in top.iterrows()
    ]
    keep = {
        "parameter": "parameter",
        "parameter_unit": "parameter unit",
        "low": "range low (parameter unit)",
        "high": "range high (parameter unit)",
        "scale": "sampling scale",
    }
    for c in ("S1", "S1_conf", "ST", "ST_conf", "mu_star", "mu_star_conf", "sigma"):
        if c in sub.columns:
            keep[c] = f"{c} (dimensionless)" if c.startswith("S") else f"{c} (nmol/L)"
    tab = sub[[c for c in keep if c in sub.columns]].rename(columns=keep)
    tab["parameter unit"] = tab["parameter unit"].map(_unit)
    figs = [Figure(p, "") for p in sorted(folder.glob("bars_delta*.png"))]
    figs += [Figure(p, "") for p in sorted(folder.glob("time_delta*.png"))]
    figs += [Figure(p, "") for p in sorted(folder.glob("*.png")) if "delta" not in p.name]
    names = ", ".join(f"{r['parameter']} ({r[index]:.2f})" for _, r in top.iterrows())
    phi_note = (
        " φ is prior-driven (see the assumption ledger)." if "phi" in set(top["parameter"]) else ""
    )
    section = Section(
        TITLES["sensitivity"],
        f"Which uncertain inputs move the paired 12-month effect most, each varied over its "
        f"prior range together with the others ({'Sobol' if index == 'ST' else 'Morris'}; "
        f"{plan.sensitivity_n} base samples × {SENSITIVITY_PATIENTS} patients). A total index "
        "near 1 means that parameter alone accounts for most of the spread.",
        numbers=numbers,
        tables=[
            Table.from_frame(
                tab,
                f"Sensitivity of paired ΔC-peptide at {month:g} months",
                source="indices.csv",
                max_rows=60,
            )
        ],
        figures=figs,
    )
    text = (
        f"The {month:g}-month effect is driven most by {names} "
        f"({'total Sobol index' if index == 'ST' else 'Morris μ*'}).{phi_note}"
    )
    return section, [SummaryItem("What drives the result", text)]


def _te_compute(plan: RunPlan, folder: Path, exp):
    from tregsim.calibrate.treatment_effect.check import effect_under_posterior

    res = effect_under_posterior(
        exp,
        natural_history=plan.posterior,
        n_draws=150 if plan.quick else 400,
        n_patients=100 if plan.quick else 200,
        seed=plan.seed,
    )
    res.save(folder)
    return res


def _te_present(plan: RunPlan, folder: Path, exp, res):
    m12 = next((r for r in res.rows if r["month"] == 12.0), res.rows[-1])
    numbers = [
        KeyNumber(
            f"true effect at {m12['month']:g} months, Treg vs control (mean MMTT C-peptide)",
            m12["effect_pct_median"],
            "%",
            (m12["effect_pct_q05"], m12["effect_pct_q95"]),
            "90 % posterior interval (a new trial's φ)",
        ),
        KeyNumber(f"P(effect at {m12['month']:g} months > +10 %)", m12["p_effect_gt_10pct"], ""),
        KeyNumber(f"P(effect at {m12['month']:g} months > +20 %)", m12["p_effect_gt_20pct"], ""),
    ]
    tables = [
        Table(
            ("month", "effect median (%)", "q05 (%)", "q95 (%)", "P(> +10 %)", "P(> +20 %)"),
            [
                (
                    r["month"],
                    r["effect_pct_median"],
                    r["effect_pct_q05"],
                    r["effect_pct_q95"],
                    r["p_effect_gt_10pct"],
                    r["p_effect_gt_20pct"],
                )
                for r in res.rows
            ],
            f"Predicted true effect in {exp.name} as designed",
            source="treatment_effect.csv",
        ),
        Table(
            ("N per arm", "assurance (ANCOVA, 12 months)"),
            [(a["n_per_arm"], a["assurance"]) for a in res.assurance],
            "Assurance under the treatment-effect posterior",
            source="treatment_effect.csv",
        ),
    ]
    figures = [Figure(folder / "phi_prior_posterior.png", "φ: prior vs posterior")]
    cal = res.calibration
    if cal is not None:
        tables.append(
            Table(
                (
                    "evidence",
                    "12-month effect median (%)",
                    "q05 (%)",
                    "q95 (%)",
                    "P(> +10 %)",
                    "P(> +20 %)",
                    "shift of the median vs all (points)",
                ),
                [
                    (
                        r["evidence"],
                        r["effect_12m_pct_median"],
                        r["effect_12m_pct_q05"],
                        r["effect_12m_pct_q95"],
                        r["p_effect_12m_gt_10pct"],
                        r["p_effect_12m_gt_20pct"],
                        r.get("shift_of_median_12m_pct_vs_all", 0.0),
                    )
                    for r in cal.predictions
                ],
                "Calibration: the same prediction with each trial left out",
                source="calibration/treatment_effect.csv",
            )
        )
        tables.append(
            Table(
                ("reported result", "probability of a result at least as extreme"),
                [(r["term"], r["p"]) for r in cal.predictive_checks],
                "Posterior predictive check of each reported result",
                source="calibration/treatment_effect.csv",
            )
        )
        tables.append(
            Table(
                (
                    "parameter",
                    "prior median",
                    "prior q05",
                    "prior q95",
                    "posterior median",
                    "posterior q05",
                    "posterior q95",
                    "contraction",
                ),
                [
                    (
                        r["parameter"],
                        r["prior_median"],
                        r["prior_q05"],
                        r["prior_q95"],
                        r["posterior_median"],
                        r["posterior_q05"],
                        r["posterior_q95"],
                        r["contraction"],
                    )
                    for r in cal.posterior_summary
                ],
                "Posterior of the hierarchy (μ, τ on log φ) and the kinetics",
                source="calibration/treatment_effect.csv",
            )
        )
        figures.append(
            Figure(folder / "assurance.png", "Assurance and the φ each N needs (calibration)")
        )
    section = Section(
        TITLES["treatment_effect"],
        "φ (potency × homing of the infused cells) is calibrated on what four Treg trials "
        "reported about their treated arms (T-Rex, Gdansk 2012, PolTREG, TILT) and the "
        "persistence of infused cells (Bluestone 2015), each result a likelihood term on that "
        "trial's own design, with a trial-specific φ drawn around a common mean "
        "(docs/treatment_effect.md). Here a new trial's φ is drawn from that posterior.",
        numbers=numbers,
        tables=tables,
        figures=figures,
        notes=tuple(res.notes),
    )
    text = (
        f"With φ from the Treg trials' evidence the predicted {m12['month']:g}-month effect is "
        f"{m12['effect_pct_median']:+.1f} % (90 % {m12['effect_pct_q05']:+.1f} to "
        f"{m12['effect_pct_q95']:+.1f} %); P(> +10 %) = {m12['p_effect_gt_10pct']:.2f}."
    )
    return section, [SummaryItem("Evidence for the treatment effect", text)]


SECTIONS: dict[str, SectionSpec] = {
    "cohort": SectionSpec("cohort", TITLES["cohort"], _cohort_compute, _cohort_present),
    "natural_history": SectionSpec(
        "natural_history", TITLES["natural_history"], _nh_compute, _nh_present
    ),
    "power": SectionSpec("power", TITLES["power"], _power_compute, _power_present),
    "sweep": SectionSpec("sweep", TITLES["sweep"], _sweep_compute, _sweep_present),
    "sensitivity": SectionSpec("sensitivity", TITLES["sensitivity"], _sens_compute, _sens_present),
    "treatment_effect": SectionSpec(
        "treatment_effect", TITLES["treatment_effect"], _te_compute, _te_present
    ),
}
"""Every section ``tregsim run`` knows, by name (report order: :data:`SECTION_ORDER`)."""
