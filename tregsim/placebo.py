"""Natural-history check: the routine-care arm of an experiment against placebo data.

The placebo table (``placebo_cpeptide_by_age_month.csv``: MMTT C-peptide of the placebo arms
of five new-onset trials by age group × month, n ≥ 5 per cell) is read by
:func:`read_placebo_table`; :func:`natural_history` simulates the control arm for the table's
age mix and months and compares them; :func:`natural_history_check` adds the default posterior
and the manifest (the analysis of ``tregsim check natural-history`` and the report's section).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tregsim.cohort import THRESHOLD_NMOL_L, posterior_rows, simulate_arms
from tregsim.errors import ArgumentError, DataFileError
from tregsim.results import SHIPPED, PosteriorArg
from tregsim.trial_statistics import AGE_GROUPS, age_group_mask
from tregsim.units import DAYS_PER_MONTH

DATA_NAME = "placebo_cpeptide_by_age_month.csv"


def read_placebo_table(path) -> list[dict[str, Any]]:
    """Rows of ``placebo_cpeptide_by_age_month.csv`` (per age group × month)."""
    import csv
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise DataFileError(
            "not found",
            file=path,
            field="data",
            fix="pass the path of placebo_cpeptide_by_age_month.csv (../shared/data/)",
        )
    need = (
        "age_group",
        "month",
        "n",
        "mean",
        "sd",
        "median",
        "q25",
        "q75",
        "frac_above_0_2",
        "mean_ln_x_plus_1",
    )
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(k not in rows[0] for k in need):
        raise DataFileError(
            f"missing columns; need {', '.join(need)}",
            file=path,
            field="header",
            fix="use the curated table from ../shared/data/",
        )
    out = []
    for r in rows:

        def num(k, r=r):
            return float(r[k]) if r[k] not in ("", "NA") else np.nan

        out.append(
            {
                "age_group": r["age_group"],
                "month": num("month"),
                "n": int(num("n")),
                "mean": num("mean"),
                "sd": num("sd"),
                "median": num("median"),
                "q25": num("q25"),
                "q75": num("q75"),
                "frac_ge_0_2": num("frac_above_0_2"),
                "mean_ln_x_plus_1": num("mean_ln_x_plus_1"),
            }
        )
    return out


@dataclass
class NaturalHistory:
    """Simulated routine-care arm beside the placebo table (result of :func:`natural_history`).

    rows : per age group × month: observed and simulated n, mean, SD, median, quartiles,
        fraction ≥ 0.2 nmol/L, mean ln(x+1) (nmol/L).
    sim : age group → (n_g, n_months) simulated observed C-peptide (nmol/L, with residual noise).
    months : (n_months,) months after baseline.
    """

    rows: list
    sim: dict
    months: np.ndarray
    obs: list
    manifest: dict = field(default_factory=dict)
    trial_statistics: list = field(default_factory=list)
    """Rows of ``trial_statistics.csv`` (:func:`tregsim.trial_statistics.comparison_rows`):
    ANCOVA slope, residual SD and baseline correlation at 6/12/24 months, observed (records,
    participant bootstrap) vs simulated observed visits; empty when the individual records
    are not available."""
    age_groups: tuple = tuple(AGE_GROUPS)
    """Age groups compared: those the experiment's population covers and the placebo table
    has a month-0 row for (an experiment of children only is compared with the children's
    rows and records; the table's "all" rows, a mixture of every group, only when all are
    compared)."""

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def save(self, out_dir: str | os.PathLike, exp: Any = None) -> Path:
        """Write ``natural_history.csv``, ``natural_history_vpc.png`` (needs ``exp``) and
        ``manifest.json`` (last) into ``out_dir``."""
        from tregsim import io
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        io.write_text(out / "natural_history.csv", self.frame().to_csv(index=False))
        if self.trial_statistics:
            from tregsim.trial_statistics import (
                BY_AGE_COLUMNS,
                split_overall,
                write_comparison_csv,
            )

            overall, by_age = split_overall(self.trial_statistics)
            write_comparison_csv(out / "trial_statistics.csv", overall)
            if by_age:
                write_comparison_csv(out / "trial_statistics_by_age.csv", by_age, BY_AGE_COLUMNS)
        if exp is not None:
            from tregsim.plots.cohort import plot_natural_history, save

            save(plot_natural_history(self, exp), out / "natural_history_vpc.png")
        write_manifest(out, self.manifest)
        return out

    def report_lines(self) -> list[str]:
        """What ``tregsim check natural-history`` prints (all ages, months 0, 12, 24; then
        which trial statistics fall outside the observed intervals, overall and by age)."""
        shown = ("all",) if len(self.age_groups) == len(AGE_GROUPS) else self.age_groups
        lines = []
        if shown != ("all",):
            lines.append(
                f"age groups compared: {', '.join(self.age_groups)} (not "
                f"{', '.join(g for g in AGE_GROUPS if g not in self.age_groups)}: the "
                "experiment's population or the placebo table has none)"
            )
        lines += [
            ("" if g == "all" else f"{g} y, ")
            + f"month {r['month']:g}: simulated mean {r['sim_mean_nmol_L']:.3f} vs observed "
            f"{r['obs_mean_nmol_L']:.3f} nmol/L (z = {r['z_mean']:+.1f}), SD "
            f"{r['sim_sd_nmol_L']:.3f} vs {r['obs_sd_nmol_L']:.3f} nmol/L; ≥0.2: "
            f"{r['sim_frac_ge_0_2']:.0%} vs {r['obs_frac_ge_0_2']:.0%}"
            for g in shown
            for r in self.rows
            if r["age_group"] == g and r["month"] in (0, 12, 24)
        ]
        if self.trial_statistics:
            from tregsim.trial_statistics import outside_summary, split_overall

            overall, by_age = split_overall(self.trial_statistics)
            who = "all ages" if shown == ("all",) else f"age groups {', '.join(self.age_groups)}"
            lines.append(f"trial statistics, {who}: {outside_summary(overall)}")
            if by_age:
                lines.append(f"trial statistics by age group: {outside_summary(by_age)}")
        return lines


def load_natural_history(out_dir: str | os.PathLike) -> NaturalHistory:
    """A check saved by :meth:`NaturalHistory.save` (rows and manifest; no simulated arrays)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    df = pd.read_csv(out / "natural_history.csv")
    ts = [
        pd.read_csv(f).to_dict("records")
        for f in (out / "trial_statistics.csv", out / "trial_statistics_by_age.csv")
        if f.exists()
    ]
    groups = tuple(g for g in AGE_GROUPS if g in set(df["age_group"]))
    return NaturalHistory(
        df.to_dict("records"),
        {},
        np.array(sorted(df["month"].unique())),
        [],
        read_manifest(out),
        [r for rows in ts for r in rows],
        groups,
    )


def default_data_path() -> Path | None:
    """``../shared/data/placebo_cpeptide_by_age_month.csv`` beside the working folder or the
    source tree, whichever exists first (``None`` if neither)."""
    import tregsim

    for base in (Path.cwd().parent, Path(tregsim.__file__).resolve().parents[2]):
        p = base / "shared" / "data" / DATA_NAME
        if p.exists():
            return p
    return None


def natural_history_check(
    exp: Any,
    *,
    data: str | os.PathLike | None = None,
    seed: int = 0,
    scale: int = 10,
    posterior: PosteriorArg = SHIPPED,
    variability: str | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    argv: list[str] | None = None,
) -> NaturalHistory:
    """The routine-care arm of ``exp`` against the placebo table (:func:`natural_history`)
    with its manifest: the analysis behind ``tregsim check natural-history``; with the
    individual records beside the table also ``trial_statistics``
    (:func:`cohort_trial_statistics`, from the experiment's own virtual cohort).

    data : the placebo table (default :func:`default_data_path`).
    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path or ``None``.
    variability : structure of individual variability (:mod:`tregsim.population.structure`;
        ``None`` = the default ``"records"``, or ``"lumped"``).
    out_dir, overwrite : the output folder (checked against another run here) and whether to
        replace another run.
    argv : the command line that asked for it (``None``: the call is recorded).
    """
    from tregsim.cohort import start_analysis
    from tregsim.results import display_path

    if scale < 1:
        raise ArgumentError(
            f"scale must be ≥ 1, got {scale}", field="scale", fix="give a whole number ≥ 1"
        )
    path = Path(data) if data is not None else default_data_path()
    if path is None or not path.exists():
        raise DataFileError(
            "placebo table not found",
            file=path or DATA_NAME,
            field="data",
            fix=f"pass the path of {DATA_NAME}",
        )
    read_placebo_table(path)  # validate the table (and the records) before anything is simulated
    if (path.parent / RECORDS_NAME).exists():
        read_placebo_records(path.parent / RECORDS_NAME)
    st = start_analysis(
        exp,
        command="check natural-history",
        function="tregsim.placebo.natural_history_check",
        seed=seed,
        arguments={"data": display_path(path), "scale": scale},
        settings={"scale": scale},
        posterior=posterior,
        variability=variability,
        structure=True,
        extra_inputs={"data": path},
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    observed = st.structure.observed
    nh = natural_history(exp, path, seed, scale=scale, posterior=st.draws, observed=observed)
    nh.trial_statistics = cohort_trial_statistics(
        exp,
        path.parent / RECORDS_NAME,
        seed,
        posterior=st.draws,
        observed=observed,
        age_groups=nh.age_groups,
    )
    if len(nh.age_groups) < len(AGE_GROUPS):
        st.manifest["settings"]["age_groups_compared"] = list(nh.age_groups)
    if nh.trial_statistics:
        st.manifest["settings"]["trial_statistics"] = {
            "simulated": f"{TRIAL_STATISTICS_REPLICATES} virtual cohorts of the experiment's "
            "population restricted to the records' age mix (same whole year of age), control "
            f"arm at months {list(TRIAL_STATISTICS_MONTHS)}, observed measurements; "
            + st.structure.describe(),
            "observed": f"{RECORDS_NAME}, 2000 participant-bootstrap resamples",
        }
    nh.manifest = st.manifest
    return nh


RECORDS_NAME = "placebo_cpeptide_individual.csv"
RECORDS_COLUMNS = {
    "participant_id": "participant identifier",
    "age_years": "age at baseline, years",
    "month": "nominal visit month after baseline (0 = baseline)",
    "auc_mean_cpeptide_nmol_l": "MMTT 2-h AUC mean C-peptide, nmol/L",
}
"""Columns ``tregsim check natural-history`` reads from individual placebo records (the
schema of ``../shared/data/placebo_cpeptide_individual.csv``; other columns are ignored)."""


def read_placebo_records(path):
    """Individual placebo records (long format, one row per participant and visit) with the
    columns of :data:`RECORDS_COLUMNS`, numbers checked; :class:`DataFileError` naming the
    file, the column (and line) and the fix otherwise."""
    from tregsim.long_format import data_line, numeric_column, read_csv_table

    path = Path(path)
    d = read_csv_table(path, id_columns=("participant_id",))
    missing = [c for c in RECORDS_COLUMNS if c not in d.columns]
    if missing:
        raise DataFileError(
            f"missing column(s) {', '.join(missing)}",
            file=path,
            field="header",
            fix="give one row per participant and visit with columns "
            + ", ".join(f"{c} ({what})" for c, what in RECORDS_COLUMNS.items()),
        )
    for c in ("age_years", "month", "auc_mean_cpeptide_nmol_l"):
        d[c] = numeric_column(d, c, path)
    for c, ok, fix in (
        ("age_years", d["age_years"] > 0, "give the age at baseline in years"),
        ("month", d["month"] >= 0, "give the nominal visit month after baseline, 0 = baseline"),
        (
            "auc_mean_cpeptide_nmol_l",
            d["auc_mean_cpeptide_nmol_l"] >= 0,
            "give C-peptide in nmol/L (values below the LLOQ as the LLOQ/2, not negative)",
        ),
    ):
        bad = np.flatnonzero(~ok.to_numpy() & d[c].notna().to_numpy())
        if bad.size:
            raise DataFileError(
                f"{float(d[c].iloc[bad[0]]):g} is out of range",
                file=path,
                field=f"line {data_line(bad[0])}, column {c}",
                fix=fix,
            )
    return d


TRIAL_STATISTICS_MONTHS = (0, 6, 12, 24)
"""Nominal visit months of the virtual cohorts behind ``trial_statistics.csv``."""
TRIAL_STATISTICS_REPLICATES = 400
OBSERVED_STREAM = "check.natural_history.observed"


def cohort_trial_statistics(
    exp,
    records: Path,
    seed: int,
    *,
    posterior: dict | None = None,
    observed: bool = True,
    n_rep: int = TRIAL_STATISTICS_REPLICATES,
    n_boot: int = 2000,
    age_groups: tuple | None = None,
) -> list:
    """The within-patient statistics that drive power (rows of ``trial_statistics.csv``,
    ``group`` "all", then those of ``trial_statistics_by_age.csv``: each age group at baseline
    where the records have ≥ 20 participants at that month), if the individual records sit
    beside the placebo table (``[]`` otherwise).

    Observed: the records' ANCOVA slope, residual SD and baseline correlation at 6/12/24
    months with participant-bootstrap 95 % intervals (``n_boot`` resamples).

    Simulated: ``n_rep`` virtual cohorts of the **experiment's own population** (its
    covariates, eligibility, enrolment days; cohort r takes ``posterior`` draw r mod n_draws
    for all its patients, as a real trial has one true θ) **restricted to the records' age
    mix**: for every records participant, each cohort takes the next eligible virtual patient
    of its own pool block whose age falls in the same whole year of age (the nearest year
    with enough patients if none). Each patient is simulated in the control arm at
    the records' nominal months 0/6/12/24 after their own baseline visit, one *observed*
    measurement per visit (``observed``: the records structure's
    :func:`tregsim.observe.observe_visits` with each patient's own ``sigma_meas``, ``kappa``,
    ``sigma_bio``, ``tau_bio``; else the lumped log-normal ``sigma``), and the records' visit
    pattern is imposed (a visit missing in the records is missing in the virtual participant).
    Values: the median and central 95 % over the cohorts. ``age_groups`` (default: all of
    :data:`AGE_GROUPS`): only the records' participants whose baseline age falls in these
    groups take part (the groups the experiment's population covers).
    """

    from tregsim.population.sampling import complete_baseline, sample_population
    from tregsim.trial_statistics import (
        by_age_rows,
        cohort_statistics,
        comparison_rows,
        to_wide,
        trial_statistics,
    )

    if not Path(records).exists():
        return []
    months = TRIAL_STATISTICS_MONTHS
    d = read_placebo_records(records)
    if age_groups is not None and len(age_groups) < len(AGE_GROUPS):
        a = d["age_years"].to_numpy(float)
        d = d[np.logical_or.reduce([age_group_mask(a, g) for g in age_groups])]
    _, wide, age_rec = to_wide(
        d.participant_id, d.month, d.auc_mean_cpeptide_nmol_l, d.age_years, months=months
    )
    obs = trial_statistics(
        d.participant_id,
        d.age_years,
        d.month,
        d.auc_mean_cpeptide_nmol_l,
        months=months,
        n_boot=n_boot,
        seed=seed,
    )
    P = age_rec.size
    year = np.floor(age_rec).astype(int)
    years = np.unique(year)
    count = {int(y): int((year == y).sum()) for y in years}
    # cohort r draws its patients from block r of the pool, and every patient of block r
    # takes posterior draw r: one parameter set per cohort, as one real trial has one true θ
    # (a draw per patient would add posterior uncertainty to the between-patient spread and
    # inflate the residual SD the statistics measure)
    block = max(1024, 8 * P)
    blk = np.arange(n_rep * block) // block
    theta = None
    if posterior:
        theta = {k: np.asarray(v, float)[blk % len(v)] for k, v in posterior.items()}
    pool: Any = sample_population(
        exp, n_rep * block, seed, start=0, theta=theta, baseline_cpep0=False
    )
    pyear = np.floor(np.asarray(pool.covariates["age"], float)).astype(int)
    pick = np.empty((n_rep, P), dtype=np.int64)
    for r in range(n_rep):
        lo = r * block
        yr = pyear[lo : lo + block]
        have = {int(y): np.flatnonzero(yr == y) + lo for y in np.unique(yr)}
        full = np.array(sorted(y for y, v in have.items() if v.size), dtype=int)
        if full.size == 0:
            raise ArgumentError(
                "no eligible virtual patient to match the records' ages",
                field="exp",
                fix="check the experiment's eligibility and age distribution",
            )
        for y in years:
            src = int(y)
            if have.get(src, np.array([])).size < count[int(y)]:  # nearest year with enough
                ok = np.array([v for v in full if have[int(v)].size >= count[int(y)]], dtype=int)
                cand_years = ok if ok.size else full
                src = int(cand_years[np.argmin(np.abs(cand_years - y))])
            cand = have[src]
            pick[r, year == y] = cand[np.arange(count[int(y)]) % cand.size]
    sub = complete_baseline(exp, pool.subset(pick.ravel()))
    times = exp.baseline_day + DAYS_PER_MONTH * np.asarray(months, float)
    ctl = exp.control_arm
    c = simulate_arms(exp, sub, arms={ctl: exp.arms[ctl]}, times=times)[ctl]
    y_obs = observe_cohort(exp, sub, c, times, seed, observed, OBSERVED_STREAM)
    age_sim = np.asarray(sub.covariates["age"], float).reshape(n_rep, P)
    sim = cohort_statistics(
        y_obs.reshape(n_rep, P, len(months)), age_sim, months=months, present=np.isfinite(wide)
    )
    return comparison_rows(obs, sim) + by_age_rows(obs, sim)


def observe_cohort(exp, pop, c: np.ndarray, times, seed: int, observed: bool, stream: str):
    """One observed measurement per patient and visit of the noise-free ``c`` (n, T), nmol/L:
    the records structure's observation model with each patient's own parameters
    (``observed``), else the lumped log-normal residual ``sigma``. Normals from ``stream`` by
    patient; failed solves stay NaN."""
    from tregsim.observe import add_noise, draw_standard_normals, observe_visits, visit_normals
    from tregsim.population.structure import observation_parameters

    ok = np.isfinite(c)
    mu = np.where(ok, c, 1.0)
    if observed:
        lloq = float(np.asarray(pop.params["LLOQ"]).ravel()[0])
        z = visit_normals(seed, stream, 0, len(c), c.shape[1])
        y, _ = observe_visits(
            mu, np.asarray(times, float), z, lloq=lloq, **observation_parameters(pop.params)
        )
    else:
        z = draw_standard_normals(seed, "check.natural_history.residual", 0, len(c), c.shape[1:])
        y = add_noise(mu, z, np.asarray(pop.params["sigma"])[:, None])
    return np.where(ok, y, np.nan)


def natural_history(
    exp,
    data_path,
    seed: int,
    *,
    scale: int = 10,
    noise: bool = True,
    progress: bool = False,
    posterior: dict | None = None,
    observed: bool = False,
) -> NaturalHistory:
    """Simulate the control arm for the placebo data's age mix and compare by age group.

    The month-0 ``n`` of each compared age group (<13, 13–17, ≥18 y: those the table has and
    the experiment's population covers, :func:`covered_age_groups`) times ``scale`` patients are drawn
    from the experiment's eligible population (stratified by age group: the first patients of
    each group in the global patient sequence) and simulated under the control regimen at
    ``baseline_day + DAYS_PER_MONTH · month`` for the table's months (after each patient's own
    baseline visit). With ``noise`` one observed measurement per visit, so spreads compare
    with data spreads: ``observed`` True = the records structure's observation model
    (:func:`tregsim.observe.observe_visits`, each patient's own parameters), False = the
    model's lumped log-normal residual (parameter ``sigma``).
    With ``posterior`` (name → ``(n_draws,)``, e.g. :func:`load_posterior_draws`), candidate
    patient i uses draw ``i mod n_draws`` of the population parameters: a posterior predictive
    check.
    """
    from tregsim.population.sampling import sample_population

    obs = read_placebo_table(data_path)
    months = np.array(sorted({r["month"] for r in obs}))
    n0 = {r["age_group"]: r["n"] for r in obs if r["month"] == 0 and r["age_group"] in AGE_GROUPS}
    covered = covered_age_groups(exp, seed, posterior)
    # the groups both the table (a month-0 row) and the experiment's population have
    groups = tuple(g for g in covered if g in n0)
    if not groups:
        raise DataFileError(
            f"no month-0 row for the age group(s) the experiment covers ({', '.join(covered)}); "
            f"the table has {sorted(n0) or 'none of ' + str(list(AGE_GROUPS))}",
            file=data_path,
            field="age_group",
            fix=f"give month-0 rows per age group ({', '.join(AGE_GROUPS)}) as in the curated "
            "table of ../shared/data/",
        )
    want = {g: n0[g] * scale for g in groups}
    # enough candidates to fill every compared group; grow until filled
    pool = max(sum(want.values()) * 4, 4096)
    while True:
        theta = posterior_rows(posterior, 0, pool)
        base: Any = sample_population(exp, pool, seed, start=0, theta=theta)
        age = base.covariates["age"]
        idx = {g: np.flatnonzero(age_group_mask(age, g))[: want[g]] for g in groups}
        if all(len(idx[g]) == want[g] for g in groups):
            break
        pool *= 4
    sel = np.concatenate([idx[g] for g in groups])
    group_of = np.concatenate([[g] * want[g] for g in groups])
    from tregsim.population.sampling import Population

    sub: Any = Population(
        {k: v[sel] for k, v in base.covariates.items()},
        exp.model.parameters(len(sel), **{k: np.asarray(v)[sel] for k, v in base.params.items()}),
        {k: v[sel] for k, v in base.individual.items()},
        base.candidate_index[sel],
        base.acceptance_rate,
        0,
        seed,
    )
    times = exp.baseline_day + DAYS_PER_MONTH * months
    control = {exp.control_arm: exp.arms[exp.control_arm]}
    c = simulate_arms(exp, sub, arms=control, times=times)[exp.control_arm]
    if noise and not observed:  # the lumped residual, exactly as before issue #14
        from tregsim.observe import add_noise, draw_standard_normals

        z = draw_standard_normals(seed, "check.natural_history.residual", 0, len(c), c.shape[1:])
        c = add_noise(c, z, np.asarray(sub.params["sigma"])[:, None])
    elif noise:
        c = observe_cohort(exp, sub, c, times, seed, True, "check.natural_history.visits")
    sim = {g: c[group_of == g] for g in groups}
    rows = []
    for r in obs:
        g = r["age_group"]
        if g == "all":
            if len(groups) < len(AGE_GROUPS):  # the table's "all" mixes every group
                continue
            x = c[:, months == r["month"]][:, 0]
        elif g in sim:
            x = sim[g][:, months == r["month"]][:, 0]
        else:
            continue
        x = x[np.isfinite(x)]
        q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75]) if x.size else (np.nan,) * 3
        sd_obs = r["sd"]
        rows.append(
            {
                "age_group": g,
                "month": r["month"],
                "obs_n": r["n"],
                "obs_mean_nmol_L": r["mean"],
                "obs_sd_nmol_L": sd_obs,
                "obs_median_nmol_L": r["median"],
                "obs_q25_nmol_L": r["q25"],
                "obs_q75_nmol_L": r["q75"],
                "obs_frac_ge_0_2": r["frac_ge_0_2"],
                "obs_mean_ln_x_plus_1": r["mean_ln_x_plus_1"],
                "sim_n": int(x.size),
                "sim_mean_nmol_L": float(x.mean()) if x.size else np.nan,
                "sim_sd_nmol_L": float(x.std(ddof=1)) if x.size > 1 else np.nan,
                "sim_median_nmol_L": med,
                "sim_q25_nmol_L": q25,
                "sim_q75_nmol_L": q75,
                "sim_frac_ge_0_2": float((x >= THRESHOLD_NMOL_L).mean()) if x.size else np.nan,
                "sim_mean_ln_x_plus_1": float(np.log1p(x).mean()) if x.size else np.nan,
                # how many standard errors of the observed mean the simulated mean is away
                "z_mean": (
                    (x.mean() - r["mean"]) / (sd_obs / np.sqrt(r["n"]))
                    if x.size and r["n"] > 1 and sd_obs > 0
                    else np.nan
                ),
            }
        )
    return NaturalHistory(rows, sim, months, obs, age_groups=groups)


COVERAGE_POOL = 16384
"""Eligible virtual patients sampled to find the age groups an experiment covers."""
COVERAGE_SHARE = 0.01
"""An age group is compared when at least this share of the eligible population falls in it
(a smaller one would need a pool of hundreds of times the group's n to fill it)."""


def covered_age_groups(exp, seed: int, posterior: dict | None = None) -> tuple:
    """The age groups of :data:`AGE_GROUPS` that hold at least :data:`COVERAGE_SHARE` of
    :data:`COVERAGE_POOL` sampled eligible patients, in order; :class:`DataFileError` when
    none."""
    from tregsim.population.sampling import sample_population

    m = COVERAGE_POOL
    age = sample_population(
        exp, m, seed, theta=posterior_rows(posterior, 0, m), baseline_cpep0=False
    ).covariates["age"]
    groups = tuple(g for g in AGE_GROUPS if np.mean(age_group_mask(age, g)) >= COVERAGE_SHARE)
    if not groups:
        raise DataFileError(
            f"the experiment's population has (almost) no patients in any age group "
            f"{list(AGE_GROUPS)}",
            file=exp.path,
            field="population.age",
            fix="use an experiment whose ages overlap 8–65 y",
        )
    return groups
