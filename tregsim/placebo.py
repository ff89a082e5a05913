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
from tregsim.units import DAYS_PER_MONTH

DATA_NAME = "placebo_cpeptide_by_age_month.csv"
AGE_GROUPS = {"<13": (0.0, 13.0), "13-17": (13.0, 18.0), ">=18": (18.0, 121.0)}


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
        if exp is not None:
            from tregsim.plots.cohort import plot_natural_history, save

            save(plot_natural_history(self, exp), out / "natural_history_vpc.png")
        write_manifest(out, self.manifest)
        return out

    def report_lines(self) -> list[str]:
        """What ``tregsim check natural-history`` prints (all ages, months 0, 12, 24)."""
        return [
            f"month {r['month']:g}: simulated mean {r['sim_mean_nmol_L']:.3f} vs observed "
            f"{r['obs_mean_nmol_L']:.3f} nmol/L (z = {r['z_mean']:+.1f}); ≥0.2: "
            f"{r['sim_frac_ge_0_2']:.0%} vs {r['obs_frac_ge_0_2']:.0%}"
            for r in self.rows
            if r["age_group"] == "all" and r["month"] in (0, 12, 24)
        ]


def load_natural_history(out_dir: str | os.PathLike) -> NaturalHistory:
    """A check saved by :meth:`NaturalHistory.save` (rows and manifest; no simulated arrays)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    df = pd.read_csv(out / "natural_history.csv")
    return NaturalHistory(
        df.to_dict("records"), {}, np.array(sorted(df["month"].unique())), [], read_manifest(out)
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
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    argv: list[str] | None = None,
) -> NaturalHistory:
    """The routine-care arm of ``exp`` against the placebo table (:func:`natural_history`)
    with its manifest: the analysis behind ``tregsim check natural-history``.

    data : the placebo table (default :func:`default_data_path`).
    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path or ``None``.
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
    read_placebo_table(path)  # validate the table before anything is simulated
    st = start_analysis(
        exp,
        command="check natural-history",
        function="tregsim.placebo.natural_history_check",
        seed=seed,
        arguments={"data": display_path(path), "scale": scale},
        settings={"scale": scale},
        posterior=posterior,
        extra_inputs={"data": path},
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    nh = natural_history(exp, path, seed, scale=scale, posterior=st.draws)
    nh.manifest = st.manifest
    return nh


def natural_history(
    exp,
    data_path,
    seed: int,
    *,
    scale: int = 10,
    noise: bool = True,
    progress: bool = False,
    posterior: dict | None = None,
) -> NaturalHistory:
    """Simulate the control arm for the placebo data's age mix and compare by age group.

    The month-0 ``n`` of each age group (<13, 13–17, ≥18 y) times ``scale`` patients are drawn
    from the experiment's eligible population (stratified by age group: the first patients of
    each group in the global patient sequence) and simulated under the control regimen at
    ``baseline_day + DAYS_PER_MONTH · month`` for the table's months. With ``noise`` the model's
    log-normal residual (parameter ``sigma``) is added, so spreads compare with data spreads.
    With ``posterior`` (name → ``(n_draws,)``, e.g. :func:`load_posterior_draws`), candidate
    patient i uses draw ``i mod n_draws`` of the population parameters: a posterior predictive
    check.
    """
    from tregsim.population.sampling import sample_population

    obs = read_placebo_table(data_path)
    months = np.array(sorted({r["month"] for r in obs}))
    n0 = {r["age_group"]: r["n"] for r in obs if r["month"] == 0 and r["age_group"] in AGE_GROUPS}
    if set(n0) != set(AGE_GROUPS):
        raise DataFileError(
            f"month-0 rows for age groups {sorted(AGE_GROUPS)} needed, found {sorted(n0)}",
            file=data_path,
            field="age_group",
            fix="use the curated table from ../shared/data/",
        )
    want = {g: n0[g] * scale for g in AGE_GROUPS}
    # enough candidates to fill every group; grow until filled
    pool = max(sum(want.values()) * 4, 4096)
    while True:
        theta = posterior_rows(posterior, 0, pool)
        base: Any = sample_population(exp, pool, seed, start=0, theta=theta)
        age = base.covariates["age"]
        idx = {
            g: np.flatnonzero((age >= lo) & (age < hi))[: want[g]]
            for g, (lo, hi) in AGE_GROUPS.items()
        }
        if all(len(idx[g]) == want[g] for g in AGE_GROUPS):
            break
        if pool > 2_000_000:
            short = [g for g in AGE_GROUPS if len(idx[g]) < want[g]]
            raise DataFileError(
                f"the experiment's population has (almost) no patients in age group(s) {short}",
                file=exp.path,
                field="population.age",
                fix="use an experiment whose ages cover 8–65 y",
            )
        pool *= 4
    sel = np.concatenate([idx[g] for g in AGE_GROUPS])
    group_of = np.concatenate([[g] * want[g] for g in AGE_GROUPS])
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
    if noise:
        from tregsim.observe import add_noise, draw_standard_normals

        z = draw_standard_normals(seed, "check.natural_history.residual", 0, len(c), c.shape[1:])
        c = add_noise(c, z, np.asarray(sub.params["sigma"])[:, None])
    sim = {g: c[group_of == g] for g in AGE_GROUPS}
    rows = []
    for r in obs:
        g = r["age_group"]
        if g == "all":
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
    return NaturalHistory(rows, sim, months, obs)
