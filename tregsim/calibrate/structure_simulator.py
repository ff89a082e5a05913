"""Records-like virtual cohorts under the records' structure of individual variability, for NPE.

The simulator of ``[method] kind = "npe_structure"`` (:mod:`tregsim.calibrate.structure_config`;
docs/calibration.md, "NPE on within-patient statistics"). For each θ draw it simulates the
records' own participants (those with a month-0 visit): their ages, their visits at their own
days after their baseline visit, the structure "lincovariate+power" (or
"lincovariate+age+power", whose covariate β_c is β_c·(a_i/10)^(−γ_β)) of
:mod:`tregsim.calibrate.variability`:

* trend level at the baseline visit ℓ_i = μ_c + μ_a·log(a_i/10) + s_c·ζ_i;
* hazard log λ0_i = log λ_ref − γ_a·log(a_i/10) − β_c·(a_i/10)^(−γ_β)·(ℓ_i − log 0.6)
  − β_lin·(e^ℓ_i − 0.6 nmol/L) + ω_λ·η_i;
* noise-free course log μ_ij = ℓ_i + log c(b + d_ij; λ0_i, q) − log c(b; λ0_i, q) from the
  :class:`~tregsim.calibrate.likelihood.CurveTable` (b = ``baseline_day``; s0, k_re fixed in
  the table), exactly as the likelihood path evaluates it;
* observation log y_ij = log μ_ij + σ_meas·(μ_ij/0.6 nmol/L)^(−κ)·ε_ij, values below the LLOQ
  coded as the records code them (``below_lloq``; the records carry LLOQ/2). log y is capped
  at ln(1000 nmol/L) so that absurd prior draws (large κ at tiny μ) stay finite.

The cohort is reduced to summaries by :class:`~tregsim.calibrate.structure_statistics.
StatisticsPlan` (per-visit mean/SD of ln(x+1), ANCOVA slope/residual SD/corr with baseline,
visit-to-visit correlations, individual slopes), the same code that computes the observed
summaries from the records. A correlation or slope that a degenerate cohort cannot form (no
spread, e.g. every value at the LLOQ) is set to 0, so no prior draw is dropped.

Random numbers: :mod:`tregsim.rng` streams indexed by the θ item, so item i is identical
whatever the chunking. No ODE is solved per θ: the only solve is the curve table, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim import rng as trng
from tregsim.calibrate.simulator import Problem
from tregsim.calibrate.structure_config import StructureConfig
from tregsim.calibrate.structure_statistics import StatisticsPlan, bootstrap
from tregsim.calibrate.variability import LOG_CREF, load_records
from tregsim.observe import deviation_scale, student_t_from_normal
from tregsim.trial_statistics import VISIT_MONTHS, age_group_mask

COHORT_STREAM = "calibrate.structure.cohort"
LOG_Y_MAX = float(np.log(1000.0))
"""Cap of simulated log C-peptide (ln nmol/L)."""
UNITS = {
    "lambda_ref": "1/day",
    "gamma_a": "1",
    "omega_lambda": "1",
    "q": "1",
    "beta_c": "1",
    "gamma_beta": "1",
    "beta_lin": "1/(nmol/L)",
    "sigma_meas": "1",
    "inv_nu": "1",
    "kappa": "1",
    "mu_c": "ln(nmol/L)",
    "mu_a": "1",
    "s_c": "ln(nmol/L)",
    "s0": "1",
    "k_re": "1/day",
}


@dataclass(frozen=True)
class RecordsDesign:
    """The records' design and observed summaries.

    months (S,) nominal months of the wide table; age_years (P,); present (P, S);
    values_nmol_l (P, S) observed (NaN where absent); visit_patient, visit_slot, visit_day (V,)
    the visits that fill ``present`` (days after the participant's baseline visit) and
    visit_record (V,) their indices in the records' visits (:func:`variability.load_records`
    order), so values simulated at every record visit fill the same table;
    feature_names (F,), observed (F,).
    """

    months: tuple[int, ...]
    age_years: np.ndarray
    present: np.ndarray
    values_nmol_l: np.ndarray
    visit_patient: np.ndarray
    visit_slot: np.ndarray
    visit_day: np.ndarray
    visit_record: np.ndarray
    feature_names: tuple[str, ...]
    observed: np.ndarray


def load_design(config: StructureConfig) -> tuple[RecordsDesign, StatisticsPlan]:
    """Read the records (participants with a month-0 visit) into the wide design and the plan;
    the observed summaries come from the plan, as the simulated ones."""
    rec = load_records(config.records_path, config.columns)
    s = config.summaries
    months = tuple(sorted(set(s["mean_months"]) | set(s["targets"]) | set(VISIT_MONTHS) | {0}))
    P, S = len(rec.ids), len(months)
    slot = {m: k for k, m in enumerate(months)}
    vals = np.full((P, S), np.nan)
    vp, vs, vd, vr = [], [], [], []
    best = np.full((P, S), np.inf)
    pick = {}
    # nominal-month rule of tregsim.trial_statistics.to_wide (tolerance 0, first on ties)
    for v in range(len(rec.y)):
        m = rec.visit_month[v]
        if m in slot and np.isfinite(rec.y[v]):
            p, k = rec.visit_patient[v], slot[m]
            if best[p, k] > 0:
                best[p, k] = 0
                pick[(p, k)] = v
    for (p, k), v in sorted(pick.items()):
        vals[p, k] = rec.y[v]
        vp.append(p)
        vs.append(k)
        vd.append(rec.visit_day[v])
        vr.append(v)
    present = np.isfinite(vals)
    plan = StatisticsPlan(
        present,
        rec.age_years,
        months,
        mean_months=s["mean_months"],
        targets=s["targets"],
        visit_months=VISIT_MONTHS,
        by_age_group=s["by_age_group"],
        min_group_n=s["min_group_n"],
        structure=s["structure_statistics"],
        log_scale=s["log_scale_statistics"],
        lloq_nmol_l=config.lloq_nmol_l,
        exclude=s["exclude"],
    )
    design = RecordsDesign(
        months=months,
        age_years=rec.age_years,
        present=present,
        values_nmol_l=vals,
        visit_patient=np.asarray(vp, int),
        visit_slot=np.asarray(vs, int),
        visit_day=np.asarray(vd, float),
        visit_record=np.asarray(vr, int),
        feature_names=plan.feature_names,
        observed=_finite(plan(vals))[0],
    )
    return design, plan


@dataclass(frozen=True)
class StructureProblem:
    """Everything the records-structure simulator needs (the pipeline's ``Problem`` role)."""

    config: StructureConfig
    model: object
    names: tuple[str, ...]
    priors: tuple
    data: RecordsDesign
    plan: StatisticsPlan = field(repr=False)
    table: object = field(repr=False)

    theta_from_z = Problem.theta_from_z
    z_from_theta = Problem.z_from_theta
    prior_z = Problem.prior_z

    @property
    def units(self) -> dict[str, str]:
        return {n: UNITS[n] for n in (*self.names, "s0", "k_re")}

    def constant_draws(self, n: int) -> dict[str, np.ndarray]:
        """s0 and k_re at the curve table's values (the contract's constant draws)."""
        t = self.config.curve_table
        return {"s0": np.full(n, t["s0"]), "k_re": np.full(n, t["k_re"])}

    def simulate_summaries(self, theta: np.ndarray, seed: int, start: int) -> np.ndarray:
        return simulate_summaries(self, theta, seed, start)

    def predictive_check(self, theta: np.ndarray, seed: int, start: int):
        return predictive_check(self, theta, seed, start)


def build_problem(config: StructureConfig) -> StructureProblem:
    """Model, priors, the records' design and the curve table (one ODE solve over its grid)."""
    from tregsim.calibrate.likelihood import CurveTable
    from tregsim.model import load_model
    from tregsim.model.priors import parse_prior

    model = load_model(config.model)
    priors = tuple(
        parse_prior(config.prior_overrides[n], file=config.path, key=f"parameters.priors.{n}")
        if n in config.prior_overrides
        else model.spec.parameters[n].prior
        for n in config.calibrate
    )
    design, plan = load_design(config)
    t = config.curve_table
    step = float(t["day_step"])
    max_day = step * np.ceil((config.baseline_day + design.visit_day.max()) / step + 2)
    table = CurveTable(
        model,
        fixed={"s0": t["s0"], "k_re": t["k_re"]},
        n_loglam=int(t["n_loglam"]),
        n_q=int(t["n_q"]),
        max_day=float(max_day),
        day_step=step,
    )
    return StructureProblem(
        config=config,
        model=model,
        names=tuple(config.calibrate),
        priors=priors,
        data=design,
        plan=plan,
        table=table,
    )


def full_theta(problem: StructureProblem, theta: np.ndarray) -> dict[str, np.ndarray]:
    """Every parameter (n,) of the config's candidate from the calibrated columns and the fixed
    values; ``gamma_beta`` is 0 (no age dependence of β_c) for "lincovariate+power",
    ``inv_nu`` 0 (a normal deviation) for a candidate without the Student-t deviation."""
    theta = np.atleast_2d(np.asarray(theta, float))
    out = {n: theta[:, j] for j, n in enumerate(problem.names)}
    out.setdefault("gamma_beta", np.zeros(theta.shape[0]))
    out.setdefault("inv_nu", np.zeros(theta.shape[0]))  # the normal deviation
    for n in problem.config.structure_names:
        if n not in out:
            out[n] = np.full(theta.shape[0], problem.config.fixed[n])
    return out


def _draws(problem: StructureProblem, seed: int, start: int, stop: int) -> dict:
    P, V = problem.data.age_years.size, problem.data.visit_day.size
    return trng.draw(
        seed,
        COHORT_STREAM,
        start,
        stop,
        lambda g, n: {
            "zeta": g.standard_normal((n, P)),
            "eta": g.standard_normal((n, P)),
            "eps": g.standard_normal((n, V)),
        },
    )


def simulate_wide(
    problem: StructureProblem, theta: np.ndarray, seed: int, start: int
) -> np.ndarray:
    """Observed C-peptide (nmol/L) of the cohorts of θ items [start, start+n): (n, P, S), the
    records' visit pattern (NaN where the records have no visit)."""
    d = problem.data
    cfg = problem.config
    th = full_theta(problem, theta)
    n = th["q"].size
    rnd = _draws(problem, seed, start, start + n)
    la = np.log(d.age_years / 10.0)[None, :]
    col = {k: v[:, None] for k, v in th.items()}
    lev = col["mu_c"] + col["mu_a"] * la + col["s_c"] * rnd["zeta"]  # (n, P)
    loglam = (
        np.log(col["lambda_ref"])
        - col["gamma_a"] * la
        - col["beta_c"] * np.exp(-col["gamma_beta"] * la) * (lev - LOG_CREF)
        - col["beta_lin"] * (np.exp(lev) - np.exp(LOG_CREF))
        + col["omega_lambda"] * rnd["eta"]
    )
    vp = d.visit_patient
    q = col["q"]
    logc = problem.table(loglam[:, vp], q, cfg.baseline_day + d.visit_day[None, :])
    logc0 = problem.table(loglam, q, np.array([cfg.baseline_day]))
    logmu = lev[:, vp] + logc - logc0[:, vp]  # (n, V)
    sd = col["sigma_meas"] * deviation_scale(logmu, col["kappa"], cfg.lloq_nmol_l)
    eps = student_t_from_normal(rnd["eps"], col["inv_nu"])  # rnd["eps"] itself when normal
    logy = np.minimum(logmu + sd * eps, LOG_Y_MAX)
    y = np.exp(logy)
    lloq = cfg.lloq_nmol_l
    if cfg.below_lloq == "half_lloq":
        y = np.where(y < lloq, lloq / 2, y)
    elif cfg.below_lloq == "lloq":
        y = np.where(y < lloq, lloq, y)
    out = np.full((n, d.age_years.size, len(d.months)), np.nan)
    out[:, vp, d.visit_slot] = y
    return out


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def simulate_summaries(
    problem: StructureProblem, theta: np.ndarray, seed: int, start: int
) -> np.ndarray:
    """Summaries (n, F) of the cohorts of θ items [start, start+n) (feature order of
    ``problem.data.feature_names``)."""
    return _finite(problem.plan(simulate_wide(problem, theta, seed, start)))


def predictive_check(problem: StructureProblem, theta: np.ndarray, seed: int, start: int):
    """Posterior-predictive check of every summary and of the per-visit mean C-peptide (nmol/L).

    One cohort per posterior draw (θ items from ``start``). Columns: statistic, age_group,
    month, observed, observed_lo, observed_hi (participant bootstrap, 95 %), predicted_median,
    predicted_q2.5, predicted_q97.5, inside (observed within the predictive interval),
    predictive_p (two-sided: 2·min(P(sim ≤ obs), P(sim ≥ obs)), capped at 1).
    """
    import pandas as pd

    d = problem.data
    y = simulate_wide(problem, theta, seed, start)
    names, obs, sim = list(d.feature_names), list(d.observed), [_finite(problem.plan(y))]
    # per-visit mean in nmol/L, same cells as the ln(x+1) means
    mean_cells = []
    col = {m: k for k, m in enumerate(d.months)}
    for f in d.feature_names:
        stat, g, m = f.split("|")
        if stat == "mean_ln_x_plus_1":
            rows = d.present[:, col[int(m)]] & age_group_mask(d.age_years, g)
            mean_cells.append((f"mean_nmol_l|{g}|{m}", rows, col[int(m)]))
    names += [c[0] for c in mean_cells]
    obs += [float(d.values_nmol_l[r, k].mean()) for _, r, k in mean_cells]
    sim.append(np.stack([y[:, r, k].mean(axis=1) for _, r, k in mean_cells], axis=1))
    sim = np.concatenate(sim, axis=1)
    obs = np.asarray(obs)
    s = problem.config.summaries
    lo, hi = bootstrap(
        d.values_nmol_l,
        d.present,
        d.age_years,
        d.months,
        d.feature_names,
        n_boot=int(problem.config.method["n_boot"]),
        seed=int(problem.config.seed),
        mean_months=s["mean_months"],
        targets=s["targets"],
        by_age_group=s["by_age_group"],
        min_group_n=s["min_group_n"],
        structure=s["structure_statistics"],
        log_scale=s["log_scale_statistics"],
        lloq_nmol_l=problem.config.lloq_nmol_l,
        exclude=s["exclude"],
    )
    nb = len(names) - len(lo)
    lo = np.r_[lo, np.full(nb, np.nan)]
    hi = np.r_[hi, np.full(nb, np.nan)]
    qlo, med, qhi = np.quantile(sim, [0.025, 0.5, 0.975], axis=0)
    p = np.minimum(1.0, 2 * np.minimum((sim <= obs).mean(0), (sim >= obs).mean(0)))
    rows = []
    for k, f in enumerate(names):
        stat, g, m = f.split("|")
        rows.append(
            {
                "statistic": stat,
                "age_group": g,
                "month": int(m),
                "observed": obs[k],
                "observed_lo": lo[k],
                "observed_hi": hi[k],
                "predicted_median": med[k],
                "predicted_q2.5": qlo[k],
                "predicted_q97.5": qhi[k],
                "inside": bool(qlo[k] <= obs[k] <= qhi[k]),
                "predictive_p": p[k],
            }
        )
    return pd.DataFrame(rows)
