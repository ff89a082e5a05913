"""Virtual cohorts: the same virtual patients simulated in every arm of an experiment.

Every arm sees the same patients (same covariates and individual parameters), so
treatment − control differences are paired. A cohort of N patients runs in chunks through
:func:`tregsim.parallel.run_chunks`; memory stays bounded whatever N because only per-visit
summaries are kept:

* exact moments — per-block sums (blocks of :data:`tregsim.rng.BLOCK` patients; chunk sizes are
  rounded up to a multiple of it so a block never straddles two chunks) folded in block order at
  the end, so every number is bitwise identical whatever the chunk size or worker count;
* exact minimum / maximum per arm × visit;
* quantiles from fixed fine histograms (:data:`EDGES_NMOL_L`, bins of 0.0005 nmol/L; differences
  on :data:`DIFF_EDGES_NMOL_L`), linearly interpolated inside the bin and clipped to the exact
  min/max: absolute error ≤ 0.0005 nmol/L within [0, 10] nmol/L.

Per-patient results (covariates, individual parameters, C-peptide at each visit) are kept for the
first ``keep`` patients (default :data:`KEEP_DEFAULT`; ``keep=None`` keeps everyone, which grows
memory with N by about 0.2 kB per patient).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError
from tregsim.posterior import load_posterior_draws, posterior_rows
from tregsim.results import SHIPPED
from tregsim.units import RESPONDER_THRESHOLD_NMOL_L

EDGES_NMOL_L = np.linspace(0.0, 10.0, 20001)
DIFF_EDGES_NMOL_L = np.linspace(-5.0, 5.0, 20001)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
THRESHOLD_NMOL_L = RESPONDER_THRESHOLD_NMOL_L

CALIBRATED_AGES_YEARS = (8.0, 45.0)
"""Ages (years) the natural-history posterior was calibrated on. Upper: the oldest eligible
age of the five placebo trials behind the records, TN05's 45 y (abatacept, 6–45 y; Orban et
al. Lancet 2011;378:412; TN02 rituximab 8–40 y, Pescovitz et al. NEJM 2009;361:2143; T1DAL
alefacept 12–35 y, Rigby et al. Lancet Diabetes Endocrinol 2013;1:284). Lower: no records
participant is younger than 8 y (TN05 admitted 6-year-olds, but none is in the records).
Outside it the hazard's age power law is extrapolated: too fast below 8 y against Haller
2011's children (docs/calibration.md, "Out of sample: very young children"), unchecked above
45 y."""
KEEP_DEFAULT = 100_000
SPAGHETTI_N = 50


class CohortArms(dict):
    """arm name → ``(n, n_visits)`` noise-free MMTT C-peptide (nmol/L); NaN where the solve
    failed. ``.status``: arm → ``(n,)`` int8 solver status (0 = ok); ``.times``: ``(n_visits,)``
    days since diagnosis, or ``(n, n_visits)`` when patients have their own baseline day."""

    status: dict
    times: np.ndarray


def baseline_offsets(exp, pop) -> np.ndarray | None:
    """Each patient's enrolment shift, days: ``t_baseline_i − exp.baseline_day`` (``(n,)``),
    or ``None`` when every patient's baseline is the experiment's ``baseline_day`` (or the
    population has no ``t_baseline``) — then one common time grid is used, as before.

    The experiment's visit and dose days are written for a patient whose baseline visit is
    ``baseline_day`` after diagnosis; patient i's visits and doses move by this shift
    (docs/experiments.md, ``t_baseline``)."""
    tb = pop.covariates.get("t_baseline")
    if tb is None or pop.n == 0:
        return None
    off = np.asarray(tb, dtype=float) - float(exp.baseline_day)
    return None if not np.any(off) else off


def shift_doses(doses, offset: np.ndarray | None):
    """``doses`` (``None``, one :class:`tregsim.Doses` or a list) with every patient's dose
    times moved by ``offset`` (``(n,)`` days; ``None``: unchanged)."""
    if doses is None or offset is None:
        return doses
    from tregsim.solve import Doses

    def one(d):
        t = np.asarray(d.time, dtype=float)
        a = np.asarray(d.amount, dtype=float)
        if t.ndim == 1:
            t = np.broadcast_to(t, (offset.size, t.size))
            a = np.broadcast_to(a, (offset.size, a.size))
        return Doses(time=t + offset[:, None], amount=a.copy(), target=d.target)

    return [one(d) for d in doses] if isinstance(doses, list) else one(doses)


def simulate_arms(
    exp, pop, *, arms: dict | None = None, times=None, shift_times: bool = True, **solver_kw
) -> CohortArms:
    """Simulate the same patients in every arm, each at their own enrolment day.

    Parameters
    ----------
    exp : loaded experiment.
    pop : :class:`~tregsim.population.Population` of ``n`` patients.
    arms : name → :class:`~tregsim.experiment.Arm` (default: ``exp.arms``).
    times : output times, days since diagnosis of the experiment's schedule (baseline visit at
        ``exp.baseline_day``; default: ``exp.visits_days``).
    shift_times : move each patient's output times by their enrolment shift
        (:func:`baseline_offsets`); ``False`` keeps ``times`` as absolute days since diagnosis
        for everyone (e.g. a plotting grid). Doses always follow the patient's own baseline.
    solver_kw : passed to :func:`tregsim.solve.simulate_arrays` (rtol, atol, ...).

    Returns
    -------
    :class:`CohortArms`: arm → ``(n, n_times)`` C-peptide, nmol/L, plus ``.status``.
    """
    from tregsim.solve import simulate_arrays

    arms = exp.arms if arms is None else arms
    times = exp.visits_days if times is None else np.asarray(times, dtype=float)
    offset = baseline_offsets(exp, pop)
    if offset is not None and shift_times:
        times = times[None, :] + offset[:, None]  # the solver's per-patient output times
    out = CohortArms()
    out.status, out.times = {}, times
    for name, arm in arms.items():
        r = simulate_arrays(
            exp.model,
            pop.params,
            doses=shift_doses(arm.regimen.doses(pop), offset),
            times=times,
            **solver_kw,
        )
        c = np.asarray(r.observables["cpeptide"], dtype=float)
        bad = r.status != 0
        if bad.any():
            c = c.copy()
            c[bad] = np.nan
        out[name] = c
        out.status[name] = np.asarray(r.status, dtype=np.int8)
    return out


# ------------------------------------------------------------------------- chunk work
def _hist(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of finite ``x`` in ``len(edges)-1`` bins plus underflow (first) / overflow (last)."""
    x = x[np.isfinite(x)]
    idx = np.searchsorted(edges, x, side="right")  # 0 = below, len(edges) = at/above top
    idx = np.where(x == edges[-1], len(edges) - 1, idx)
    return np.bincount(idx, minlength=len(edges) + 1)


def _block_moments(v: np.ndarray, blocks: np.ndarray, n_blocks: int) -> dict:
    """Per-block moments of ``v`` (n, a, t) → arrays (n_blocks, a, t); NaN = missing."""
    ok = np.isfinite(v)
    z = np.where(ok, v, 0.0)
    out = {"n": np.zeros((n_blocks, *v.shape[1:]), np.int64)}
    for k in ("sum", "sumsq", "sumlog"):
        out[k] = np.zeros((n_blocks, *v.shape[1:]))
    out["ge"] = np.zeros((n_blocks, *v.shape[1:]), np.int64)
    out["min"] = np.full((n_blocks, *v.shape[1:]), np.inf)
    out["max"] = np.full((n_blocks, *v.shape[1:]), -np.inf)
    for b in range(n_blocks):
        sel = blocks == b
        zb, okb = z[sel], ok[sel]
        out["n"][b] = okb.sum(axis=0)
        out["sum"][b] = zb.sum(axis=0)
        out["sumsq"][b] = (zb * zb).sum(axis=0)
        out["sumlog"][b] = np.log1p(zb).sum(axis=0)
        out["ge"][b] = (okb & (zb >= THRESHOLD_NMOL_L)).sum(axis=0)
        if okb.any():
            out["min"][b] = np.where(okb, zb, np.inf).min(axis=0)
            out["max"][b] = np.where(okb, zb, -np.inf).max(axis=0)
    return out


def cohort_chunk(
    start: int, stop: int, exp, seed: int, posterior: dict | None, keep: int | None
) -> dict:
    """Chunk function for :func:`tregsim.parallel.run_chunks`: patients ``[start, stop)``.

    Returns per-block summaries, histograms and (for patients ``< keep``) per-patient rows.
    ``start`` must be a multiple of :data:`tregsim.rng.BLOCK` (see the module docstring).
    """
    from tregsim.population.sampling import sample_population

    n = stop - start
    arm_names = list(exp.arms)
    treat = exp.treatment_arms
    theta = posterior_rows(posterior, start, stop)
    pop = sample_population(exp, n, seed, start=start, theta=theta)
    res = simulate_arms(exp, pop)
    c = np.stack([res[a] for a in arm_names], axis=1)  # (n, arms, visits)
    d = (
        np.stack([res[a] - res[exp.control_arm] for a in treat], axis=1)
        if treat
        else np.zeros((n, 0, c.shape[2]))
    )
    b_first = start // _rng.BLOCK
    blocks = np.arange(start, stop) // _rng.BLOCK - b_first
    nb = int(blocks[-1]) + 1 if n else 0
    out = {"block_index": np.arange(b_first, b_first + nb, dtype=np.int64)}
    for k, v in _block_moments(c, blocks, nb).items():
        out[f"m_{k}"] = v
    for k, v in _block_moments(d, blocks, nb).items():
        out[f"d_{k}"] = v
    out["hist"] = np.stack(
        [
            np.stack([_hist(c[:, a, t], EDGES_NMOL_L) for t in range(c.shape[2])])
            for a in range(c.shape[1])
        ]
    )
    out["hist_diff"] = (
        np.stack(
            [
                np.stack([_hist(d[:, a, t], DIFF_EDGES_NMOL_L) for t in range(d.shape[2])])
                for a in range(d.shape[1])
            ]
        )
        if treat
        else np.zeros((0, c.shape[2], len(DIFF_EDGES_NMOL_L) + 1), np.int64)
    )
    out["n_failed"] = np.array([(res.status[a] != 0).sum() for a in arm_names], np.int64)
    age = np.asarray(pop.covariates["age"])
    lo, hi = CALIBRATED_AGES_YEARS
    out["n_age_outside"] = np.array([(age < lo).sum(), (age > hi).sum()], np.int64)
    m = n if keep is None else int(np.clip(keep - start, 0, n))
    out["keep_patient"] = pop.patient_index[:m]
    out["keep_cpeptide"] = c[:m]
    out["keep_cpeptide_observed"] = _observed_visits(exp, pop, c, res.times, seed, start)[:m]
    out["keep_status"] = np.stack([res.status[a] for a in arm_names], axis=1)[:m]
    for k, v in pop.covariates.items():
        out[f"keep_cov_{k}"] = np.asarray(v)[:m]
    for k, v in pop.individual.items():
        out[f"keep_ind_{k}"] = np.asarray(v)[:m]
    if theta:
        for k, v in theta.items():
            out[f"keep_theta_{k}"] = v[:m]
    return out


OBSERVED_STREAM = "cohort.observed"


def _observed_visits(exp, pop, c: np.ndarray, times, seed: int, start: int) -> np.ndarray:
    """One measurement per patient, arm and visit from the observation model of issue #14
    (:func:`tregsim.observe.observe_visits`: MMTT test–retest error ``sigma_meas``,
    heteroscedastic OU biological deviation ``sigma_bio``, ``tau_bio`` days, ``kappa``,
    Student-t error of ``inv_nu`` = 1/ν;
    censored values reported at the LLOQ). Normals from stream :data:`OBSERVED_STREAM` by
    absolute patient number: chunk-independent. Models without these parameters fall back to
    the one residual ``sigma`` (log-normal)."""
    from tregsim.observe import observe_visits

    n, n_arms, n_t = c.shape
    z = _rng.draw(
        seed, OBSERVED_STREAM, start, start + n, lambda g, k: g.standard_normal((k, n_arms, 2, n_t))
    )
    names = exp.model.parameter_names

    def par(name, default):
        return np.asarray(pop.params[name], float) if name in names else default

    sigma_meas = par("sigma_meas", None)
    inv_nu = 0.0
    if sigma_meas is None:
        sigma_meas, sigma_bio, tau_bio, kappa = par("sigma", 0.0), 0.0, 1.0, 0.0
    else:
        sigma_bio, tau_bio, kappa = par("sigma_bio", 0.0), par("tau_bio", 1.0), par("kappa", 0.0)
        inv_nu = par("inv_nu", 0.0)
    lloq = float(np.asarray(pop.params["LLOQ"]).ravel()[0]) if "LLOQ" in names else None
    out = np.empty_like(c)
    for a in range(n_arms):
        mu = np.where(np.isfinite(c[:, a]), c[:, a], 1.0)
        kw = {"lloq": lloq} if lloq is not None else {}
        y, _ = observe_visits(
            mu,
            np.asarray(times, float),
            z[:, a],
            sigma_meas=sigma_meas,
            sigma_bio=sigma_bio,
            tau_bio=tau_bio,
            kappa=kappa,
            inv_nu=inv_nu,
            **kw,
        )
        out[:, a] = np.where(np.isfinite(c[:, a]), y, np.nan)
    return out


def combine_cohort(acc: dict, part: dict) -> dict:
    """``combine`` hook: add histograms and counts; concatenate block and per-patient rows."""
    out = {}
    for k in acc:
        if k in ("hist", "hist_diff", "n_failed", "n_age_outside"):
            out[k] = acc[k] + part[k]
        else:
            out[k] = np.concatenate([acc[k], part[k]])
    return out


# ---------------------------------------------------------------------------- summary
def hist_quantiles(counts: np.ndarray, edges: np.ndarray, qs, lo: float, hi: float) -> np.ndarray:
    """Quantiles from histogram ``counts`` (with under/overflow bins) on ``edges``, linearly
    interpolated within the bin and clipped to the exact ``[lo, hi]`` of the data."""
    inner = counts[1:-1].astype(float)
    total = counts.sum()
    out = np.full(len(qs), np.nan)
    if total == 0:
        return out
    cum = np.concatenate([[counts[0]], counts[0] + np.cumsum(inner)])  # count ≤ edges[i]
    for j, q in enumerate(qs):
        target = q * total
        i = int(np.searchsorted(cum, target, side="left"))
        if i == 0:
            v = edges[0]
        elif i >= len(cum):
            v = edges[-1]
        else:
            frac = (target - cum[i - 1]) / max(inner[i - 1], 1.0)
            v = edges[i - 1] + frac * (edges[i] - edges[i - 1])
        out[j] = min(max(v, lo), hi)
    return out


def _fold(acc: dict, prefix: str) -> dict:
    order = np.argsort(acc["block_index"], kind="stable")
    r = {k: acc[f"{prefix}_{k}"][order] for k in ("n", "sum", "sumsq", "sumlog", "ge")}
    r = {k: v.sum(axis=0) for k, v in r.items()}  # same block array → same result, any chunking
    r["min"] = acc[f"{prefix}_min"].min(axis=0) if len(order) else None
    r["max"] = acc[f"{prefix}_max"].max(axis=0) if len(order) else None
    return r


def summarize(acc: dict, exp) -> list[dict]:
    """Rows (per arm × visit) of the cohort summary from folded chunk results."""
    arm_names = list(exp.arms)
    m, d = _fold(acc, "m"), _fold(acc, "d")
    rows = []
    for a, arm in enumerate(arm_names):
        for t, month in enumerate(exp.visit_months):
            n = int(m["n"][a, t])
            mean = m["sum"][a, t] / n if n else np.nan
            var = ((m["sumsq"][a, t] - n * mean * mean) / (n - 1)) if n > 1 else np.nan
            q = (
                hist_quantiles(
                    acc["hist"][a, t], EDGES_NMOL_L, QUANTILES, m["min"][a, t], m["max"][a, t]
                )
                if n
                else np.full(5, np.nan)
            )
            row = {
                "arm": arm,
                "visit_month": float(month),
                "visit_day": float(exp.visits_days[t]),
                "n_patients": n,
                "n_failed": int(acc["n_failed"][a]),
                "mean_nmol_L": mean,
                "sd_nmol_L": float(np.sqrt(max(var, 0.0))),
                "median_nmol_L": q[2],
                "q05_nmol_L": q[0],
                "q25_nmol_L": q[1],
                "q75_nmol_L": q[3],
                "q95_nmol_L": q[4],
                "min_nmol_L": m["min"][a, t] if n else np.nan,
                "max_nmol_L": m["max"][a, t] if n else np.nan,
                "frac_ge_0_2_nmol_L": m["ge"][a, t] / n if n else np.nan,
                "mean_ln_x_plus_1": m["sumlog"][a, t] / n if n else np.nan,
            }
            diff = {
                k: np.nan
                for k in (
                    "diff_n",
                    "diff_mean_nmol_L",
                    "diff_sd_nmol_L",
                    "diff_ci95_low_nmol_L",
                    "diff_ci95_high_nmol_L",
                    "diff_q05_nmol_L",
                    "diff_median_nmol_L",
                    "diff_q95_nmol_L",
                )
            }
            if arm in exp.treatment_arms:
                j = exp.treatment_arms.index(arm)
                nd = int(d["n"][j, t])
                dm = d["sum"][j, t] / nd if nd else np.nan
                dv = (d["sumsq"][j, t] - nd * dm * dm) / (nd - 1) if nd > 1 else np.nan
                dsd = float(np.sqrt(max(dv, 0.0)))
                half = 1.959963984540054 * dsd / np.sqrt(nd) if nd else np.nan
                dq = hist_quantiles(
                    acc["hist_diff"][j, t],
                    DIFF_EDGES_NMOL_L,
                    QUANTILES,
                    d["min"][j, t],
                    d["max"][j, t],
                )
                diff = {
                    "diff_n": nd,
                    "diff_mean_nmol_L": dm,
                    "diff_sd_nmol_L": dsd,
                    "diff_ci95_low_nmol_L": dm - half,
                    "diff_ci95_high_nmol_L": dm + half,
                    "diff_q05_nmol_L": dq[0],
                    "diff_median_nmol_L": dq[2],
                    "diff_q95_nmol_L": dq[4],
                }
            row.update(diff)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------ results
@dataclass
class CohortResult:
    """A virtual cohort: summary rows, kept per-patient data, spaghetti trajectories.

    summary : list of dicts, one per arm × visit (columns documented in ``docs/experiments.md``).
    patients : dict of per-patient arrays for the first ``n_kept`` patients
        (``cpeptide`` (n_kept, n_arms, n_visits) nmol/L, ``status``, ``cov_*``, ``ind_*``).
    spaghetti : arm → (n_spaghetti, n_grid) C-peptide nmol/L on ``spaghetti_days``.
    """

    exp: object
    n: int
    seed: int
    summary: list
    patients: dict
    acceptance_rate: float
    spaghetti: dict = field(default_factory=dict)
    spaghetti_days: np.ndarray | None = None
    manifest: dict = field(default_factory=dict)
    ages_outside: tuple[float, float] = (0.0, 0.0)
    """Fractions of the patients younger / older than :data:`CALIBRATED_AGES_YEARS`."""

    def age_warning(self) -> str | None:
        """One sentence when some patients' ages lie outside the calibrated range, else None."""
        below, above = self.ages_outside
        if below == 0 and above == 0:
            return None
        lo, hi = CALIBRATED_AGES_YEARS
        parts = [f"{below:.1%} younger than {lo:g} y"] * (below > 0)
        parts += [f"{above:.1%} older than {hi:g} y"] * (above > 0)
        return (
            f"{' and '.join(parts)}: outside the ages of the placebo trials the natural history "
            f"was calibrated on ({lo:g}–{hi:g} y), so their age effect on the hazard is "
            "extrapolated"
        )

    def summary_frame(self):
        import pandas as pd

        df = pd.DataFrame(self.summary)
        df["diff_n"] = df["diff_n"].astype("Int64")  # empty (not NaN-float) for control rows
        return df

    def to_dataset(self):
        """Per-patient results as an ``xarray.Dataset`` (dims patient, arm, visit)."""
        import xarray as xr

        p = self.patients
        arms = list(self.exp.arms)
        data = {
            "cpeptide": (
                ("patient", "arm", "visit"),
                p["cpeptide"],
                {
                    "units": "nmol/L",
                    "long_name": "MMTT 2-h AUC mean C-peptide (noise-free model value)",
                },
            ),
            "status": (("patient", "arm"), p["status"], {"long_name": "solver status, 0 = ok"}),
        }
        if "cpeptide_observed" in p:
            data["cpeptide_observed"] = (
                ("patient", "arm", "visit"),
                p["cpeptide_observed"],
                {
                    "units": "nmol/L",
                    "long_name": "MMTT 2-h AUC mean C-peptide, one simulated measurement per "
                    "visit (observation model of docs/calibration.md; values below the LLOQ "
                    "reported at the LLOQ)",
                    "comment": "with a Student-t within-patient deviation (inv_nu > 0, the "
                    "shipped posterior: nu about 3) a few values lie far off their patient's "
                    "course and a mean in nmol/L has no finite expectation: summarise with "
                    "medians or quantiles, or on ln(x + 1) (docs/calibration.md, 'Means on "
                    "the nmol/L scale'); for the same reason an ANCOVA over the whole "
                    "cohort is flatter than a trial-sized one: analyse trial-sized subsets "
                    "(docs/calibration.md, 'Sample size (item 4)', round 21)",
                },
            )
        from tregsim.population.distributions import COVARIATE_UNITS

        for k, v in p.items():
            if k.startswith("cov_"):
                name = k[4:]
                data[name] = (("patient",), v, {"units": COVARIATE_UNITS.get(name, "")})
            elif k.startswith("ind_") or k.startswith("theta_"):
                name = k.split("_", 1)[1]
                unit = self.exp.model.spec.parameters[name].unit
                data[name] = (("patient",), v, {"units": unit})
        ds = xr.Dataset(
            data,
            coords={
                "patient": p["patient"],
                "arm": arms,
                "visit_month": (
                    "visit",
                    self.exp.visit_months,
                    {"units": "month", "long_name": "months after the baseline visit"},
                ),
                "visit_day": (
                    "visit",
                    self.exp.visits_days,
                    {"units": "day", "long_name": "days since diagnosis"},
                ),
            },
        )
        ds.attrs.update(
            schema_version=1,
            experiment=self.exp.name,
            seed=self.seed,
            n_total_patients=self.n,
            n_patients_in_file=int(p["patient"].size),
            control_arm=self.exp.control_arm,
            acceptance_rate=self.acceptance_rate,
            fraction_younger_than_calibrated=self.ages_outside[0],
            fraction_older_than_calibrated=self.ages_outside[1],
            calibrated_ages_years=list(CALIBRATED_AGES_YEARS),
        )
        return ds

    def save(self, out_dir) -> list:
        """Write ``summary.csv``, ``cohort.nc``, ``cpeptide_by_arm.png`` (with spaghetti
        trajectories) and, when the result has one, ``manifest.json`` (last) into ``out_dir``."""
        from tregsim import io
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        paths = [io.write_text(out / "summary.csv", self.summary_frame().to_csv(index=False))]
        ds = self.to_dataset()
        with io.atomic_path(out / "cohort.nc") as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
        paths.append(out / "cohort.nc")
        if self.spaghetti:
            from tregsim.plots.cohort import plot_cohort, save

            save(plot_cohort(self), out / "cpeptide_by_arm.png")
            paths.append(out / "cpeptide_by_arm.png")
        if self.manifest:
            self.manifest["results"] = {
                "acceptance_rate": self.acceptance_rate,
                "fraction_younger_than_calibrated": self.ages_outside[0],
                "fraction_older_than_calibrated": self.ages_outside[1],
                "n_failed": {r["arm"]: r["n_failed"] for r in self.summary},
                "n_patients_in_cohort_nc": int(self.patients["patient"].size),
            }
            paths.append(write_manifest(out, self.manifest))
        return paths

    def report_lines(self) -> list[str]:
        """What ``tregsim cohort`` prints: each arm at the last visit."""
        exp = self.exp
        lines = []
        for r in (r for r in self.summary if r["visit_month"] == exp.visit_months[-1]):
            d = (
                ""
                if r["arm"] == exp.control_arm
                else f", paired Δ vs {exp.control_arm} {r['diff_mean_nmol_L']:+.4f} "
                f"[{r['diff_ci95_low_nmol_L']:+.4f}, {r['diff_ci95_high_nmol_L']:+.4f}]"
            )
            lines.append(
                f"{r['arm']}: month {r['visit_month']:g} mean {r['mean_nmol_L']:.3f} nmol/L, "
                f"≥0.2 nmol/L {r['frac_ge_0_2_nmol_L']:.1%}{d}"
            )
        return lines


def load_cohort(out_dir, exp) -> CohortResult:
    """A cohort saved by :meth:`CohortResult.save`: summary rows from ``summary.csv``,
    per-patient arrays from ``cohort.nc``, the manifest (no spaghetti trajectories)."""
    from pathlib import Path

    import pandas as pd
    import xarray as xr

    from tregsim.results import read_manifest

    out = Path(out_dir)
    man = read_manifest(out)
    rows = pd.read_csv(out / "summary.csv").to_dict("records")
    with xr.open_dataset(out / "cohort.nc", engine="h5netcdf") as ds:
        patients = {"patient": ds["patient"].values, "cpeptide": ds["cpeptide"].values,
                    "status": ds["status"].values}  # fmt: skip
        n, seed, acc = (
            int(ds.attrs["n_total_patients"]),
            int(ds.attrs["seed"]),
            float(ds.attrs["acceptance_rate"]),
        )
        outside = (
            float(ds.attrs.get("fraction_younger_than_calibrated", 0.0)),
            float(ds.attrs.get("fraction_older_than_calibrated", 0.0)),
        )
    return CohortResult(exp, n, seed, rows, patients, acc, manifest=man, ages_outside=outside)


def resolve_posterior(posterior, model) -> tuple[dict | None, Path | None]:
    """(name → ``(n_draws,)`` draws of population parameters, file) of a ``posterior``
    argument (:data:`~tregsim.results.SHIPPED`, a path, or ``None``); ``(None, None)`` for the
    model file's values."""
    from tregsim.results import posterior_path

    path = posterior_path(posterior)
    if path is None:
        return None, None
    return load_posterior_draws(path, model), path


def run_cohort(
    exp,
    n: int,
    seed: int,
    *,
    chunk_size: int = 4096,
    keep: int | None = KEEP_DEFAULT,
    posterior: dict | None = None,
    out_dir=None,
    workers=None,
    scheduler=None,
    progress: bool = True,
    spaghetti_n: int = SPAGHETTI_N,
) -> CohortResult:
    """Simulate ``n`` eligible patients in every arm, streamed in chunks.

    Parameters
    ----------
    exp : loaded experiment.
    n : number of patients (≥ 1).
    seed : master seed.
    chunk_size : patients per chunk; rounded up to a multiple of :data:`tregsim.rng.BLOCK`
        so that summaries are bitwise chunk-invariant.
    keep : per-patient rows kept for patients ``< keep`` (``None``: all).
    posterior : name → ``(n_draws,)`` population-parameter draws; patient i uses draw
        ``i mod n_draws`` (so uncertainty in θ propagates into the cohort).
    out_dir : a folder prepared by :func:`tregsim.checkpoint.prepare_output_dir` for
        checkpoint / resume, or ``None``.
    workers, scheduler : see :func:`tregsim.parallel.run_chunks`.
    """
    from tregsim.parallel import run_chunks
    from tregsim.population.sampling import acceptance_rate, sample_population

    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ArgumentError(
            f"n must be an integer ≥ 1, got {n!r}",
            field="n",
            fix="pass the number of virtual patients, e.g. --n 1000",
        )
    if chunk_size < 1:
        raise ArgumentError(
            f"chunk_size must be ≥ 1, got {chunk_size}",
            field="chunk_size",
            fix="pass a positive chunk size",
        )
    cs = int(-(-chunk_size // _rng.BLOCK) * _rng.BLOCK)
    acc = run_chunks(
        cohort_chunk,
        int(n),
        chunk_size=cs,
        args=(exp, int(seed), posterior, keep),
        out_dir=out_dir,
        workers=workers,
        scheduler=scheduler,
        combine=combine_cohort,
        stage="cohort",
        progress=progress,
        desc="cohort",
    )
    rows = summarize(acc, exp)
    patients = {k[5:]: v for k, v in acc.items() if k.startswith("keep_")}
    res = CohortResult(exp, int(n), int(seed), rows, patients, acceptance_rate(exp, seed, n))
    below, above = acc["n_age_outside"] / int(n)
    res.ages_outside = (float(below), float(above))
    m = min(spaghetti_n, int(n))
    if m:
        pop = sample_population(exp, m, seed, start=0, theta=posterior_rows(posterior, 0, m))
        grid = np.unique(
            np.concatenate([np.arange(0.0, exp.horizon_days + 1e-9, 7.0), exp.visits_days])
        )
        res.spaghetti = dict(simulate_arms(exp, pop, times=grid, shift_times=False))
        res.spaghetti_days = grid
    return res


@dataclass
class AnalysisStart:
    """What :func:`start_analysis` prepared: population-parameter draws (name →
    ``(n_draws,)``, after the structure of individual variability is resolved) and the
    posterior file (``None``: model file values), the ledger label of the draws, the manifest,
    the checkpoint folder (``None`` without ``out_dir``) and the resolved
    :class:`~tregsim.population.structure.VariabilityStructure` (``None`` when the analysis
    does not take one)."""

    draws: dict | None
    posterior: Path | None
    label: str | None
    manifest: dict
    out: Path | None
    structure: Any = None  # tregsim.population.structure.VariabilityStructure or None
    started: float = field(default_factory=time.perf_counter)

    def finish(self, **runtime) -> dict:
        """Record the seconds since the start (and ``runtime`` facts, e.g. counts) in the
        manifest's ``settings_runtime``; returns the manifest."""
        self.manifest["settings_runtime"] = {
            "seconds": round(time.perf_counter() - self.started, 2),
            **runtime,
        }
        return self.manifest


PREFLIGHT_PATIENTS = 256


def preflight_population(exp, draws: dict | None, seed: int) -> None:
    """Sample the first :data:`PREFLIGHT_PATIENTS` patients of ``exp`` (no solves) with the
    population parameters ``draws`` the analysis will use, so that an input the population
    refuses, e.g. a measured baseline SD no wider than the observation error, stops the
    analysis before its output folder exists (:func:`start_analysis`,
    :func:`tregsim.report.run.run_experiment`)."""
    from tregsim.population.sampling import sample_population

    if getattr(exp, "population", None) is None:
        return
    m = PREFLIGHT_PATIENTS
    sample_population(exp, m, seed, theta=posterior_rows(draws, 0, m), baseline_cpep0=False)


def start_analysis(
    exp,
    *,
    command: str,
    function: str,
    seed: int,
    arguments: dict,
    settings: dict,
    posterior=SHIPPED,
    use_posterior: bool = True,
    variability: str | None = None,
    structure: bool = False,
    extra_inputs: dict | None = None,
    argv: list[str] | None = None,
    out_dir=None,
    overwrite: bool = False,
    population_check: bool = True,
) -> AnalysisStart:
    """What every analysis over an experiment does first: check the seed, resolve the
    population posterior (:data:`~tregsim.results.SHIPPED` by default), build the manifest
    (inputs with hashes, settings with ``population_parameters`` and
    ``parameter_overrides``, the call) and prepare ``out_dir`` for checkpoints.

    ``exp`` ``None``: an analysis without an experiment (no inputs, no posterior).
    ``structure`` True: also resolve the structure of individual variability
    (:func:`tregsim.population.structure.resolve_structure` of ``variability``, ``None`` = the
    default ``"records"``): the returned ``draws`` carry it, the manifest records it
    (``variability_structure``, and the structure file among the inputs when its values are
    used).
    ``population_check`` (default True): sample a few patients of the experiment with those
    draws before the output folder is prepared (:func:`preflight_population`); False for an
    analysis that does not sample the experiment's population (the twin of real records).
    """
    from tregsim.results import display_path, open_output, posterior_note, result_manifest

    if seed < 0:
        raise ArgumentError(
            f"seed must be ≥ 0, got {seed}", field="seed", fix="give a whole number ≥ 0"
        )
    draws, post_file = (None, None)
    if exp is not None and use_posterior:
        draws, post_file = resolve_posterior(posterior, exp.model)
    inputs = {**(exp.input_files() if exp is not None else {}), **(extra_inputs or {})}
    settings = dict(settings)
    arguments = {"exp": None if exp is None else display_path(exp.path), **arguments}
    arguments["seed"] = seed
    label = None
    if exp is not None:
        if use_posterior:
            settings["population_parameters"] = posterior_note(post_file)
            arguments["posterior"] = None if post_file is None else display_path(post_file)
        settings["parameter_overrides"] = dict(getattr(exp, "parameter_overrides", {}) or {})
    if post_file is not None and draws:
        inputs["posterior"] = post_file
        label = f"posterior draws of {', '.join(draws)} from {post_file.name}"
    resolved = None
    if exp is not None and structure:
        from tregsim.population.structure import resolve_structure
        from tregsim.resources import shipped_path

        resolved = resolve_structure(
            variability, draws if use_posterior else None, post_file, exp.model
        )
        draws = resolved.draws
        settings["variability"] = resolved.variability
        arguments["variability"] = variability
        if resolved.structure is not None:
            inputs["variability_structure"] = shipped_path(resolved.structure["file"])
    if exp is not None and population_check:
        preflight_population(exp, draws, seed)
    manifest = result_manifest(
        command=command,
        function=function,
        arguments=arguments,
        seed=seed,
        inputs=inputs,
        settings=settings,
        argv=argv,
    )
    if resolved is not None:
        manifest["variability_structure"] = resolved.manifest()
    return AnalysisStart(
        draws, post_file, label, manifest, open_output(out_dir, manifest, overwrite), resolved
    )


def cohort_study(
    exp,
    *,
    n: int,
    seed: int = 0,
    posterior=SHIPPED,
    variability: str | None = None,
    keep: int | None = KEEP_DEFAULT,
    posterior_draw: int | None = None,
    out_dir=None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 4096,
    argv: list[str] | None = None,
    progress: bool = True,
) -> CohortResult:
    """:func:`run_cohort` with the default posterior and a manifest: the analysis behind
    ``tregsim cohort`` and the report's cohort section.

    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path, or ``None`` for
        the model file's values.
    posterior_draw : ``None`` (default): patient i takes posterior draw i mod n_draws, so the
        cohort carries the posterior's uncertainty (a predictive population). An index k
        (0 ≤ k < n_draws): every patient takes draw k, as every patient of one real trial
        shares one true θ — the cohort to analyse like a trial's data (a draw per patient
        adds the posterior's spread to the between-patient spread: a VPC of an ANCOVA on
        ``cpeptide_observed`` would see a wider residual SD than any one trial has). Several
        such cohorts with different k are the replicates of a VPC.
    variability : structure of individual variability (:mod:`tregsim.population.structure`):
        ``None`` = the default ``"records"`` (hazard covariate on each patient's baseline
        C-peptide; ``cpeptide_observed`` from the structure's observation model, per draw of a
        records-structure posterior or the structure file's point values), or ``"lumped"``
        (the pre-#14 cohort: no hazard covariate, ``cpeptide_observed`` from the model file's
        observation parameters).
    out_dir, overwrite : checkpoint folder (prepared here) and whether to replace another run.
    argv : the command line that asked for it (``None``: the call is recorded).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ArgumentError(
            f"n must be an integer ≥ 1, got {n!r}",
            field="n",
            fix="give the number of virtual patients, e.g. 1000",
        )
    if posterior_draw is not None:
        check_posterior_draw(posterior_draw, posterior, exp)
    one = {} if posterior_draw is None else {"posterior_draw": int(posterior_draw)}
    st = start_analysis(
        exp,
        command="cohort",
        function="tregsim.cohort.cohort_study",
        seed=seed,
        arguments={"n": int(n), "keep": keep, **one},
        settings={"n": int(n), "keep": keep, **one},
        posterior=posterior,
        variability=variability,
        structure=True,
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    draws = st.draws if posterior_draw is None else one_draw(st.draws, int(posterior_draw))
    res = run_cohort(
        exp,
        int(n),
        seed,
        keep=keep,
        posterior=draws,
        out_dir=st.out,
        workers=workers,
        scheduler=scheduler,
        chunk_size=chunk_size,
        progress=progress,
    )
    res.manifest = st.manifest
    return res


def check_posterior_draw(k, posterior, exp) -> None:
    """:class:`ArgumentError` unless ``k`` indexes a draw of ``posterior`` (resolved as the
    analysis will resolve it), before any output folder is prepared."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ArgumentError(
            f"posterior_draw must be an integer draw index, got {k!r}",
            field="posterior_draw",
            fix="give 0 ≤ k < the posterior's number of draws, e.g. 0",
        )
    draws, path = resolve_posterior(posterior, exp.model)
    if not draws:
        raise ArgumentError(
            "posterior_draw needs a posterior (the model file's values are one θ already)",
            field="posterior_draw",
            fix="drop --posterior-draw, or give a posterior file with --posterior",
        )
    n_draws = len(next(iter(draws.values())))
    if not 0 <= int(k) < n_draws:
        raise ArgumentError(
            f"posterior_draw {k} is outside the {n_draws} draws of {path.name}",
            field="posterior_draw",
            fix=f"give 0 ≤ k ≤ {n_draws - 1}",
        )


def one_draw(draws: dict | None, k: int) -> dict | None:
    """``draws`` (name → ``(n_draws,)``) reduced to draw ``k`` for every patient: each
    variable becomes ``(1,)``, which :func:`~tregsim.posterior.posterior_rows` repeats."""
    if not draws:
        return draws
    out = {}
    for name, v in draws.items():
        v = np.asarray(v, dtype=float)
        out[name] = v if v.ndim == 0 else v[[k % len(v)]]
    return out
