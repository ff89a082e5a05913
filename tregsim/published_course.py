"""Check the routine-care arm against a published course of per-visit medians (IQR).

Papers often report C-peptide only as the median and interquartile range per visit, e.g.
Haller 2011's very young children (``../shared/data/young_children_cpeptide_haller2011.csv``),
whose ages lie below every participant of the placebo records the model is calibrated on.
:func:`published_course` simulates a virtual cohort of the published size many times (one
posterior draw per cohort, as one real study has one true θ), takes each cohort's median of
simulated *observed* measurements per visit, and places the published medians in that
predictive distribution: as ratios to the baseline median (unit-free, so robust to the assay
and to how the paper labels its AUC) and in nmol/L. :func:`published_course_check` adds the
default posterior and the manifest (``tregsim check published-course``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tregsim.errors import ArgumentError, DataFileError
from tregsim.results import SHIPPED, PosteriorArg
from tregsim.units import DAYS_PER_MONTH

NMOL_L_PER_NG_ML = 1.0 / 3.0203
"""C-peptide: 1 ng/mL = 1/3.0203 nmol/L (molar mass 3020.3 g/mol)."""

COLUMNS = ("month", "n", "median_nmol_L", "q25_nmol_L", "q75_nmol_L")
"""The generic layout of a published course (one row per visit; months after baseline)."""

HALLER_COLUMNS = ("time_months", "n_auc", "auc_median_nmol_l_converted", "auc_iqr_ng_ml")
"""The layout of ``young_children_cpeptide_haller2011.csv`` (IQR as "lo-hi" in ng/mL)."""

STREAM = "check.published_course.visits"
N_REPLICATES = 2000


def read_course_table(path: str | os.PathLike):
    """A published course as a DataFrame with :data:`COLUMNS` (nmol/L), sorted by month.

    Accepts the generic layout (:data:`COLUMNS`) or the curated Haller 2011 layout
    (:data:`HALLER_COLUMNS`; its IQR ``"lo-hi"`` in ng/mL is converted with
    :data:`NMOL_L_PER_NG_ML`). Month 0 (the baseline visit) must be present, and every row
    must describe at least 5 people.
    """
    import pandas as pd

    path = Path(path)
    fix = (
        f"give a CSV with columns {', '.join(COLUMNS)} (months after baseline, nmol/L) "
        f"or the curated layout of ../shared/data/young_children_cpeptide_haller2011.csv"
    )
    if not path.exists():
        raise DataFileError("not found", file=path, field="data", fix=fix)
    d = pd.read_csv(path)
    if all(c in d.columns for c in COLUMNS):
        t = d[list(COLUMNS)].astype(float)
    elif all(c in d.columns for c in HALLER_COLUMNS):
        iqr = d["auc_iqr_ng_ml"].astype(str).str.split("-", n=1, expand=True)
        if iqr.shape[1] != 2 or iqr.isna().any().any():
            raise DataFileError(
                "IQR not of the form 'lo-hi'", file=path, field="auc_iqr_ng_ml", fix=fix
            )
        t = pd.DataFrame(
            {
                "month": d["time_months"].astype(float),
                "n": d["n_auc"].astype(float),
                "median_nmol_L": d["auc_median_nmol_l_converted"].astype(float),
                "q25_nmol_L": iqr[0].astype(float) * NMOL_L_PER_NG_ML,
                "q75_nmol_L": iqr[1].astype(float) * NMOL_L_PER_NG_ML,
            }
        )
    else:
        raise DataFileError(
            f"unrecognised columns {list(d.columns)}", file=path, field="header", fix=fix
        )
    t = t.sort_values("month").reset_index(drop=True)
    if t["month"].iloc[0] != 0:
        raise DataFileError("no month-0 (baseline) row", file=path, field="month", fix=fix)
    if (t["n"] < 5).any() or t.isna().any().any():
        raise DataFileError(
            "every row needs n ≥ 5 and a median and quartiles",
            file=path,
            field="n",
            fix="drop rows from fewer than 5 people (they identify individuals)",
        )
    t["n"] = t["n"].astype(int)
    return t


@dataclass
class PublishedCourse:
    """Result of :func:`published_course`.

    rows : per visit: the published n, median and quartiles (nmol/L); the simulated cohorts'
        median (nmol/L) with its central 95 % over cohorts; the ratio of the median to the
        baseline median, published vs simulated (95 %); ``p_ratio`` = P(simulated ratio ≤
        published ratio); ``inside`` = the published ratio lies in the simulated 95 %.
        A published median below the LLOQ is compared as "at or below the LLOQ" (simulated
        censored values equal the LLOQ).
    score : Dawid–Sebastiani score (lower is better; proper for the predictive mean and
        covariance) of the published log ratios at the months whose published median is
        above the LLOQ, under the simulated cohorts' log ratios.
    ratios : (n_rep, n_months) simulated cohort ratios.
    """

    rows: list
    score: float
    score_months: list
    ratios: np.ndarray
    manifest: dict = field(default_factory=dict)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def save(self, out_dir: str | os.PathLike, footnote: str = "") -> Path:
        """Write ``published_course.csv``, ``published_course.png`` and ``manifest.json``
        (last) into ``out_dir``."""
        from tregsim import io
        from tregsim.plots.cohort import plot_published_course, save
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        io.write_text(out / "published_course.csv", self.frame().to_csv(index=False))
        save(plot_published_course(self.rows, footnote), out / "published_course.png")
        self.manifest.setdefault("results", {})["dawid_sebastiani_score"] = {
            "value": self.score,
            "months": self.score_months,
        }
        write_manifest(out, self.manifest)
        return out

    def report_lines(self) -> list[str]:
        """What ``tregsim check published-course`` prints: one line per visit after baseline."""
        lines = []
        for r in self.rows:
            if r["month"] == 0:
                continue
            lines.append(
                f"month {r['month']:g}: median / baseline median {r['obs_ratio']:.3f} published"
                f" vs {r['sim_ratio']:.3f} [{r['sim_ratio_lo']:.3f}, {r['sim_ratio_hi']:.3f}]"
                f" simulated (P(sim ≤ published) {r['p_ratio']:.3f})"
                + (
                    " (published median below the LLOQ: compared at the LLOQ)"
                    if r["obs_below_lloq"]
                    else ""
                )
                + ("" if r["inside"] else "  OUTSIDE")
            )
        months = ", ".join(f"{m:g}" for m in self.score_months)
        lines.append(f"Dawid–Sebastiani score, log ratios at months {months}: {self.score:.3f}")
        return lines


def load_published_course(out_dir: str | os.PathLike) -> PublishedCourse:
    """A check saved by :meth:`PublishedCourse.save` (rows, score and manifest; no simulated
    ratios)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    manifest = read_manifest(out)
    score = manifest.get("results", {}).get("dawid_sebastiani_score", {})
    return PublishedCourse(
        pd.read_csv(out / "published_course.csv").to_dict("records"),
        float(score.get("value", np.nan)),
        list(score.get("months", [])),
        np.empty((0, 0)),
        manifest=manifest,
    )


def published_course(
    exp,
    table,
    seed: int,
    *,
    posterior: dict | None = None,
    n_rep: int = N_REPLICATES,
    age_floor: float | None = None,
    observed: bool = True,
) -> PublishedCourse:
    """Simulated per-visit medians of ``n_rep`` virtual cohorts vs a published course.

    exp : experiment whose population and control arm describe the published cohort (e.g.
        ``experiments/haller2011.toml``); each patient's visits follow their own baseline.
    table : :func:`read_course_table` frame (months after baseline, nmol/L).
    posterior : name → ``(n_draws,)``; cohort r takes draw ``r mod n_draws`` for all its
        patients. ``None``: the model file's values.
    n_rep : virtual cohorts; each has ``max(n)`` patients, and visit j's median uses the
        first ``n_j`` of them (the published numbers per visit).
    age_floor : years; the hazard's age (the model parameter ``age``) is raised to at least
        this value, i.e. the age effect is not extrapolated below it (e.g. 8 y, the
        records have no participant younger). ``None``: the model as calibrated.
    observed : one measurement per visit from the records structure's observation model
        (each patient's own parameters); ``False``: the lumped log-normal residual ``sigma``
        (:func:`tregsim.placebo.observe_cohort`).
    """
    from tregsim.cohort import simulate_arms
    from tregsim.placebo import observe_cohort
    from tregsim.population.sampling import complete_baseline, sample_population

    if n_rep < 20:
        raise ArgumentError(
            f"n_rep must be ≥ 20, got {n_rep}", field="n_rep", fix="give 20 or more cohorts"
        )
    months = table["month"].to_numpy(float)
    n_vis = table["n"].to_numpy(int)
    P = int(n_vis.max())
    cohort = np.arange(n_rep * P) // P
    theta = None
    if posterior:
        theta = {k: np.asarray(v, float)[cohort % len(v)] for k, v in posterior.items()}
    pop: Any = sample_population(exp, n_rep * P, seed, start=0, theta=theta, baseline_cpep0=False)
    if age_floor is not None:
        if "age" not in pop.params:
            raise ArgumentError(
                "age_floor needs a model with an 'age' parameter",
                field="age_floor",
                fix="leave age_floor unset for this model",
            )
        pop.params["age"] = np.maximum(np.asarray(pop.params["age"], float), float(age_floor))
    pop = complete_baseline(exp, pop)
    times = exp.baseline_day + DAYS_PER_MONTH * months
    ctl = exp.control_arm
    c = simulate_arms(exp, pop, arms={ctl: exp.arms[ctl]}, times=times)[ctl]
    lloq = float(np.asarray(pop.params["LLOQ"]).ravel()[0])
    y = observe_cohort(exp, pop, c, times, seed, observed, STREAM).reshape(n_rep, P, len(months))
    present = np.arange(P)[:, None] < n_vis[None, :]  # (P, T): visit j keeps the first n_j
    y = np.where(present[None], y, np.nan)
    med = np.nanmedian(y, axis=1)  # (n_rep, T)
    q25 = np.nanquantile(y, 0.25, axis=1)
    q75 = np.nanquantile(y, 0.75, axis=1)
    ratio = med / med[:, [0]]
    obs_med = table["median_nmol_L"].to_numpy(float)
    obs_ratio = obs_med / obs_med[0]
    rows = []
    for j, m in enumerate(months):
        below = obs_med[j] < lloq
        # a published median below our LLOQ is "at or below the LLOQ": simulated censored
        # values equal the LLOQ, so compare at the LLOQ
        cmp = (lloq / obs_med[0]) if below else obs_ratio[j]
        lo, mid, hi = np.quantile(ratio[:, j], [0.025, 0.5, 0.975])
        p = float(np.mean(ratio[:, j] <= cmp + 1e-12))
        mlo, mmid, mhi = np.quantile(med[:, j], [0.025, 0.5, 0.975])
        rows.append(
            {
                "month": float(m),
                "n": int(n_vis[j]),
                "obs_median_nmol_L": float(obs_med[j]),
                "obs_q25_nmol_L": float(table["q25_nmol_L"].iloc[j]),
                "obs_q75_nmol_L": float(table["q75_nmol_L"].iloc[j]),
                "obs_below_lloq": bool(below),
                "sim_median_nmol_L": float(mmid),
                "sim_median_lo_nmol_L": float(mlo),
                "sim_median_hi_nmol_L": float(mhi),
                "sim_q25_nmol_L": float(np.median(q25[:, j])),
                "sim_q75_nmol_L": float(np.median(q75[:, j])),
                "obs_ratio": float(obs_ratio[j]),
                "sim_ratio": float(mid),
                "sim_ratio_lo": float(lo),
                "sim_ratio_hi": float(hi),
                "p_ratio": p,
                "inside": bool(lo - 1e-12 <= cmp <= hi + 1e-12),
            }
        )
    keep = (months > 0) & (obs_med >= lloq)
    score = dawid_sebastiani(np.log(ratio[:, keep]), np.log(obs_ratio[keep]))
    return PublishedCourse(
        rows,
        score,
        [float(m) for m in months[keep]],
        ratio,
    )


def dawid_sebastiani(samples: np.ndarray, y: np.ndarray) -> float:
    """Dawid–Sebastiani score ln det Σ + (y − μ)ᵀ Σ⁻¹ (y − μ) of ``y`` (k,) under the mean μ
    and covariance Σ of ``samples`` (n, k); lower is better (Dawid & Sebastiani 1999, Ann Stat
    27:65; proper for the first two moments, Gneiting & Raftery 2007, JASA 102:359)."""
    s = np.asarray(samples, float)
    s = s[np.all(np.isfinite(s), axis=1)]
    mu = s.mean(axis=0)
    cov = np.atleast_2d(np.cov(s, rowvar=False))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ArgumentError(
            "the simulated log ratios have a singular covariance",
            field="n_rep",
            fix="simulate more cohorts",
        )
    d = np.asarray(y, float) - mu
    return float(logdet + d @ np.linalg.solve(cov, d))


def published_course_check(
    exp: Any,
    data: str | os.PathLike,
    *,
    seed: int = 0,
    n_rep: int = N_REPLICATES,
    age_floor: float | None = None,
    posterior: PosteriorArg = SHIPPED,
    variability: str | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    argv: list[str] | None = None,
) -> PublishedCourse:
    """:func:`published_course` with the default posterior and a manifest: the analysis
    behind ``tregsim check published-course``.

    data : the published course (:func:`read_course_table`).
    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path or ``None``.
    variability : structure of individual variability (``None`` = the default ``"records"``).
    """
    from tregsim.cohort import start_analysis
    from tregsim.results import display_path

    table = read_course_table(data)
    settings = {"n_rep": n_rep, "age_floor_years": age_floor}
    st = start_analysis(
        exp,
        command="check published-course",
        function="tregsim.published_course.published_course_check",
        seed=seed,
        arguments={"data": display_path(data), **settings},
        settings=settings,
        posterior=posterior,
        variability=variability,
        structure=True,
        extra_inputs={"data": Path(data)},
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    res = published_course(
        exp,
        table,
        seed,
        posterior=st.draws,
        n_rep=n_rep,
        age_floor=age_floor,
        observed=st.structure.observed,
    )
    res.manifest = st.manifest
    return res
