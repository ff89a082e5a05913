"""Mechanistic digital twins: each participant's predicted routine-care course, conditioned on
their own pre-randomization measurements.

For participant i with age a_i (years), baseline visit on day t_i after diagnosis and
pre-randomization measurements (MMTT 2-h AUC mean C-peptide in nmol/L on days d_ij ≤ t_i,
optionally a fasting C-peptide in pmol/L at baseline), the twin is the posterior predictive
distribution of ln(AUC + 1) observed at the visits t_i + m·DAYS_PER_MONTH under routine care.

How it is computed (docs/twin.md):

* K joint draws θ_k of the population parameters (a posterior, e.g. the shipped
  ``natural_history.nc``) and K individual random effects η_k ~ N(0, 1) on the loss hazard
  (f_lambda = exp(ω_λ,k η_k)); the same K pairs serve every participant, so a twin is a
  deterministic function of the baseline record for a given seed.
* One batched ``simulate_arrays`` call per chunk of participants runs the routine-care course of
  every (participant, draw) pair from diagnosis with cpep0 = 1 and the participant's own age,
  and normalises it at the participant's own baseline day: c_ik(t) = C(t)/C(t_i). The model
  output is exactly proportional to cpep0 (docs/calibration.md), so the noise-free course is
  b_i·c_ik(t) with b_i the participant's noise-free C-peptide at the baseline visit.
* b_i has a log-normal prior (``mu_log_cpep0``/``sd_log_cpep0`` of the draw when the posterior
  has them, as the records likelihood does; otherwise the experiment's baseline distribution
  for the participant's age group). Each measurement is log y = log b + log c(d) + σ ε
  (the model observable's log-normal noise); a fasting value is
  log f = log(1000·ratio) − s²/2 + log b + s ε (the experiment's ``[population.cpep_fasting]``).
  Given draw k the posterior of log b is Gaussian and its marginal likelihood closed-form; that
  likelihood is the importance weight of draw k (self-normalised; the effective sample size
  per participant is reported and flagged when small). Measurements below the LLOQ enter as
  P(y < LLOQ), integrated by Gauss–Hermite, with a moment-matched Gaussian for log b.
* Given draw k, log y at a visit is Gaussian (mean log b̂ + log c, variance var(log b) + σ²);
  values below the LLOQ are recorded as LLOQ/2 as in the placebo records and the virtual
  trials. Mean and SD of ln(y + 1) are Gauss–Hermite integrals; quantiles are those of the
  weighted mixture (ln(y + 1) is monotone in log y).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special, stats

from tregsim import rng as _rng
from tregsim.errors import ArgumentError, DataFileError
from tregsim.observe import log1p_recorded, student_t_from_normal
from tregsim.results import SHIPPED
from tregsim.units import DAYS_PER_MONTH

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Levels of the predictive quantiles written by :meth:`TwinPrediction.save`."""

DEFAULT_MONTHS = (0.0, 3.0, 6.0, 12.0, 18.0, 24.0)
"""Visit months after the baseline visit (the TrialNet new-onset schedule)."""

MIN_ESS = 50.0
"""Participants whose effective sample size is below this are flagged (``ess_low``)."""

CONFLICT_P = 0.01
"""Participants whose baseline MMTT has a two-sided prior predictive p below this are flagged
(``baseline_conflict``; records-structure twin)."""

_BASELINE_NAMES = ("mu_log_cpep0", "sd_log_cpep0")
_N_GH = 32
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(_N_GH)
_GH_W = _GH_W / np.sqrt(2 * np.pi)

PREDICTION_FILE = "twin_predictions.csv"
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class TwinRecords:
    """Pre-randomization records of P participants.

    Attributes
    ----------
    ids : (P,) participant ids (text).
    age_years : (P,) age, years.
    baseline_day : (P,) days from diagnosis to the baseline visit (the latest MMTT); visit
        months are counted from it.
    mmtt_participant : (J,) int index into ``ids`` of each MMTT measurement.
    mmtt_day : (J,) days since diagnosis of each measurement (≤ the participant's baseline day).
    mmtt_nmol_l : (J,) MMTT 2-h AUC mean C-peptide, nmol/L (the LLOQ where censored).
    mmtt_censored : (J,) bool, below the LLOQ.
    fasting_pmol_l : (P,) fasting C-peptide at baseline, pmol/L (NaN = not measured).
    """

    ids: np.ndarray
    age_years: np.ndarray
    baseline_day: np.ndarray
    mmtt_participant: np.ndarray
    mmtt_day: np.ndarray
    mmtt_nmol_l: np.ndarray
    mmtt_censored: np.ndarray
    fasting_pmol_l: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @property
    def baseline_nmol_l(self) -> np.ndarray:
        """(P,) the MMTT at each participant's baseline visit, nmol/L."""
        out = np.full(self.n, np.nan)
        at = np.isclose(self.mmtt_day, self.baseline_day[self.mmtt_participant])
        out[self.mmtt_participant[at]] = self.mmtt_nmol_l[at]
        return out

    @classmethod
    def from_baseline(
        cls,
        baseline_nmol_l,
        age_years,
        baseline_day,
        *,
        ids=None,
        fasting_pmol_l=None,
        screening_nmol_l=None,
        screening_day=None,
        lloq_nmol_l: float | None = None,
    ) -> TwinRecords:
        """Records from arrays, one entry per participant (all (P,)).

        baseline_nmol_l : MMTT at the baseline visit, nmol/L (> 0; below ``lloq_nmol_l`` it is
            taken as censored). age_years : years. baseline_day : days after diagnosis.
        screening_nmol_l, screening_day : an optional earlier MMTT (NaN = none), nmol/L, days.
        fasting_pmol_l : optional fasting C-peptide at baseline, pmol/L (NaN = none).
        """
        from tregsim.units import LLOQ_NMOL_L

        lloq = LLOQ_NMOL_L if lloq_nmol_l is None else float(lloq_nmol_l)
        y0 = np.atleast_1d(np.asarray(baseline_nmol_l, float))
        P = y0.size
        age = np.broadcast_to(np.asarray(age_years, float), (P,)).copy()
        tb = np.broadcast_to(np.asarray(baseline_day, float), (P,)).copy()
        part = [np.arange(P)]
        day = [tb]
        val = [y0]
        if screening_nmol_l is not None:
            ys = np.broadcast_to(np.asarray(screening_nmol_l, float), (P,))
            ds = np.broadcast_to(np.asarray(screening_day, float), (P,))
            ok = np.isfinite(ys) & np.isfinite(ds)
            part.append(np.flatnonzero(ok))
            day.append(ds[ok])
            val.append(ys[ok])
        part = np.concatenate(part)
        day = np.concatenate(day)
        val = np.concatenate(val)
        order = np.lexsort((day, part))
        fasting = (
            np.full(P, np.nan)
            if fasting_pmol_l is None
            else np.broadcast_to(np.asarray(fasting_pmol_l, float), (P,)).copy()
        )
        rec = cls(
            ids=np.asarray(ids if ids is not None else np.arange(P)).astype(str),
            age_years=age,
            baseline_day=tb,
            mmtt_participant=part[order],
            mmtt_day=day[order],
            mmtt_nmol_l=np.maximum(val[order], lloq * (val[order] < lloq)),
            mmtt_censored=val[order] < lloq,
            fasting_pmol_l=fasting,
        )
        rec.check()
        return rec

    def check(self, file=None) -> None:
        """Raise :class:`ArgumentError` (or ``DataFileError`` with ``file``) on bad values."""

        def fail(problem, fld, fix):
            if file is not None:
                return DataFileError(problem, file=file, field=fld, fix=fix)
            return ArgumentError(problem, field=fld, fix=fix)

        if self.n == 0:
            raise fail("no participants", "ids", "give at least one participant")
        if not np.all(np.isfinite(self.age_years) & (self.age_years > 0)):
            raise fail("age must be > 0 years", "age_years", "give every participant's age")
        if not np.all(np.isfinite(self.baseline_day) & (self.baseline_day >= 0)):
            raise fail(
                "baseline day must be ≥ 0 days since diagnosis",
                "baseline_day",
                "give days from diagnosis to the baseline visit",
            )
        v = self.mmtt_nmol_l
        if not np.all(np.isfinite(v) & (v > 0)):
            raise fail(
                "MMTT C-peptide must be > 0 nmol/L",
                "baseline_nmol_l",
                "give the MMTT AUC mean in nmol/L (below the LLOQ: the LLOQ, censored)",
            )
        if np.setdiff1d(np.arange(self.n), self.mmtt_participant).size:
            raise fail(
                "a participant has no MMTT C-peptide",
                "baseline_nmol_l",
                "give every participant a baseline MMTT",
            )
        f = self.fasting_pmol_l
        if np.any(np.isfinite(f) & (f <= 0)):
            raise fail(
                "fasting C-peptide must be > 0 pmol/L",
                "fasting_pmol_l",
                "leave it empty when not measured",
            )


# --------------------------------------------------------------------------- priors
@dataclass(frozen=True)
class BaselinePrior:
    """Log-normal prior of the noise-free MMTT at the baseline visit, by age group.

    mu_log, sd_log : per group, ln(nmol/L); groups split at ``age_breaks_years``.
    """

    age_breaks_years: tuple[float, ...]
    mu_log: tuple[float, ...]
    sd_log: tuple[float, ...]
    measured: bool = False

    @classmethod
    def from_experiment(cls, exp) -> BaselinePrior:
        """The experiment's ``[population.cpep_baseline]``. When ``measured`` (the default)
        it is the law of the *measured* baseline: :meth:`noise_free` narrows it by an
        observation model (:class:`StructureTwinGrid` does, as the virtual patients are drawn);
        :class:`Twin` uses it as it is, a weakly informative prior of the noise-free value."""
        c = exp.population.cpep_baseline
        mu, sd = c.log_params()
        return cls(tuple(c.age_breaks_years), tuple(mu), tuple(sd), bool(c.measured))

    def noise_free(self, noise_var, inv_nu: float = 0.0) -> BaselinePrior:
        """The law of the noise-free value whose measurement has this (measured) law: log-SD
        :func:`tregsim.observe.deconvolved_sd` (sd_log, √v, ``inv_nu``) per group (√(sd_log² −
        v) for a normal deviation), v = ``noise_var(mu_log)`` the variance of ln(measured /
        noise-free) at the group's median level, or a Student-t deviation's squared scale (as
        :meth:`tregsim.population.distributions.LogNormalByAge.noise_free` draws the virtual
        patients). Itself when not ``measured``."""
        from tregsim.observe import deconvolved_sd

        if not self.measured:
            return self
        mu, sd = np.asarray(self.mu_log, float), np.asarray(self.sd_log, float)
        v = np.asarray(noise_var(mu), float)
        s = deconvolved_sd(sd, np.sqrt(v), inv_nu)
        if np.any(v >= sd**2) or not np.all(np.isfinite(s)):
            raise ArgumentError(
                "the baseline MMTT's log-SD is no wider than the observation error alone",
                field="population.cpep_baseline.sd_nmol_L",
                fix="give the SD of measured baseline MMTTs, or set measured = false",
            )
        return BaselinePrior(self.age_breaks_years, tuple(mu), tuple(s))

    def __call__(self, age_years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.searchsorted(np.asarray(self.age_breaks_years), age_years, side="right")
        return np.asarray(self.mu_log)[g], np.asarray(self.sd_log)[g]


@dataclass(frozen=True)
class FastingModel:
    """fasting (pmol/L) = ratio · 1000 · AUC (nmol/L) · exp(sd_log·z − sd_log²/2)."""

    ratio: float
    sd_log: float

    @classmethod
    def from_experiment(cls, exp) -> FastingModel:
        p = exp.population
        return cls(float(p.fasting_ratio), float(p.fasting_sd_log))


# --------------------------------------------------------------------------- result
@dataclass
class TwinPrediction:
    """Per participant × visit predictive distribution of observed ln(AUC + 1).

    ids : (P,); months : (V,) visit months after baseline; days : (P, V) days since diagnosis;
    mean, sd : (P, V) of ln(AUC + 1) (AUC in nmol/L; one observed MMTT, LLOQ/2 below the
    LLOQ); quantiles : (P, V, len(levels)); ess : (P,) effective sample size of the K draws;
    info : settings (n_draws, seed, posterior, …); baseline_p : (P,) two-sided prior
    predictive p of the baseline MMTT under the population law (records-structure twin only;
    below :data:`CONFLICT_P` a prior–data conflict, column ``baseline_conflict``).
    """

    ids: np.ndarray
    months: np.ndarray
    days: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    quantiles: np.ndarray
    levels: tuple[float, ...]
    ess: np.ndarray
    min_ess: float = MIN_ESS
    info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    baseline_p: np.ndarray | None = None

    @property
    def ess_low(self) -> np.ndarray:
        return self.ess < self.min_ess

    @property
    def baseline_conflict(self) -> np.ndarray:
        """(P,) bool: the baseline MMTT lies in the outer :data:`CONFLICT_P` of the population
        law (all False without ``baseline_p``)."""
        if self.baseline_p is None:
            return np.zeros(self.ids.size, bool)
        return self.baseline_p < CONFLICT_P

    def at_month(self, month: float) -> np.ndarray:
        """(P,) predictive mean of ln(AUC + 1) at a visit month."""
        hit = np.flatnonzero(np.isclose(self.months, month))
        if hit.size == 0:
            raise ArgumentError(
                f"month {month:g} is not a predicted visit",
                field="month",
                fix=f"use one of {[float(m) for m in self.months]}",
            )
        return self.mean[:, hit[0]]

    def table(self):
        """Long-format DataFrame: one row per participant × visit, units in column names."""
        import pandas as pd

        P, V = self.mean.shape
        cols = {
            "participant": np.repeat(self.ids, V),
            "month": np.tile(self.months, P),
            "days_since_diagnosis": self.days.ravel(),
            "pred_mean_ln_auc_plus_1": self.mean.ravel(),
            "pred_sd_ln_auc_plus_1": self.sd.ravel(),
        }
        for j, q in enumerate(self.levels):
            cols[f"pred_q{round(100 * q):02d}_ln_auc_plus_1"] = self.quantiles[:, :, j].ravel()
        cols["ess"] = np.repeat(self.ess, V)
        cols["ess_low"] = np.repeat(self.ess_low, V)
        if self.baseline_p is not None:
            cols["baseline_prior_p"] = np.repeat(self.baseline_p, V)
            cols["baseline_conflict"] = np.repeat(self.baseline_conflict, V)
        return pd.DataFrame(cols)

    def save(self, out_dir) -> Path:
        """Write ``twin_predictions.csv`` and then ``manifest.json`` (when the result has one,
        e.g. from :func:`twin_study`) into ``out_dir``, atomically."""
        from tregsim.io import atomic_path
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        with atomic_path(out / PREDICTION_FILE) as tmp:
            self.table().to_csv(tmp, index=False, float_format="%.10g")
        man = dict(self.manifest) if self.manifest else {"command": "twin"}
        man["twin"] = {
            "schema_version": SCHEMA_VERSION,
            "levels": list(self.levels),
            "min_ess": self.min_ess,
            **{k: v for k, v in self.info.items() if isinstance(v, str | int | float | list)},
        }
        man["results"] = {
            "n_participants": int(self.ids.size),
            "n_ess_low": int(self.ess_low.sum()),
            "median_ess": float(np.median(self.ess)),
        }
        if self.baseline_p is not None:
            man["results"]["n_baseline_conflict"] = int(self.baseline_conflict.sum())
        write_manifest(out, man)
        return out

    def report_lines(self, n_show: int = 5) -> list[str]:
        """A short summary: the last visit of the first participants, ESS, flags."""
        last = len(self.months) - 1
        lines = []
        for i in range(min(self.ids.size, n_show)):
            q = self.quantiles[i, last]
            lines.append(
                f"{self.ids[i]}: month {self.months[last]:g} ln(AUC+1) {self.mean[i, last]:.3f} "
                f"(90 % {q[0]:.3f}–{q[-1]:.3f}; median AUC {np.expm1(q[len(q) // 2]):.3f} "
                f"nmol/L), ESS {self.ess[i]:.0f}"
            )
        if self.ids.size > n_show:
            lines.append(f"... {self.ids.size - n_show} more participants")
        n_low = int(self.ess_low.sum())
        lines.append(
            f"{self.ids.size} participants, {self.info.get('n_draws')} draws each, median ESS "
            f"{np.median(self.ess):.0f}"
            + (
                f"; {n_low} with ESS < {self.min_ess:g} (column ess_low: a baseline unusual "
                "under the posterior; use more draws)"
                if n_low
                else ""
            )
        )
        n_conf = int(self.baseline_conflict.sum())
        if n_conf:
            lines.append(
                f"{n_conf} with a baseline MMTT in the outer {CONFLICT_P:.0%} of the population "
                "law (column baseline_conflict): the twin reads it partly as an outlier of the "
                "Student-t deviation and leans on the population law; docs/twin.md"
            )
        return lines


def load_twin_prediction(out_dir) -> TwinPrediction:
    """Read a folder written by :meth:`TwinPrediction.save`."""
    import json

    import pandas as pd

    out = Path(out_dir)
    path = out / PREDICTION_FILE
    if not path.is_file():
        raise DataFileError(
            "no twin predictions here", file=path, fix="run tregsim twin ... --out DIR first"
        )
    df = pd.read_csv(path, dtype={"participant": str})
    man = (
        json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    )
    settings = man.get("twin", {})
    ids = pd.unique(df["participant"])
    months = np.asarray(pd.unique(df["month"]), float)
    P, V = ids.size, months.size
    qcols = [c for c in df.columns if c.startswith("pred_q")]
    levels = tuple(int(c[6:8]) / 100 for c in qcols)
    return TwinPrediction(
        ids=np.asarray(ids, str),
        months=months,
        days=df["days_since_diagnosis"].to_numpy(float).reshape(P, V),
        mean=df["pred_mean_ln_auc_plus_1"].to_numpy(float).reshape(P, V),
        sd=df["pred_sd_ln_auc_plus_1"].to_numpy(float).reshape(P, V),
        quantiles=df[qcols].to_numpy(float).reshape(P, V, len(qcols)),
        levels=levels,
        ess=df["ess"].to_numpy(float).reshape(P, V)[:, 0],
        min_ess=float(settings.get("min_ess", MIN_ESS)),
        info={k: v for k, v in settings.items() if k not in ("levels", "min_ess")},
        manifest=man,
        baseline_p=(
            df["baseline_prior_p"].to_numpy(float).reshape(P, V)[:, 0]
            if "baseline_prior_p" in df
            else None
        ),
    )


def _visit_months(months) -> np.ndarray:
    """``months`` after baseline as a (V,) float array; one line (field, fix) when not ≥ 0."""
    months = np.asarray(months, float)
    if months.ndim != 1 or months.size == 0 or np.any(months < 0):
        raise ArgumentError(
            f"months must be ≥ 0, got {months}", field="months", fix="e.g. [6, 12, 24]"
        )
    return months


# --------------------------------------------------------------------------- the twin
class Twin:
    """K posterior × individual draws, ready to predict any participant's routine-care course.

    Parameters
    ----------
    model : compiled model (routine care = no doses).
    theta_draws : name → (n,) posterior draws (chains flattened); model population parameters
        and optionally ``mu_log_cpep0``/``sd_log_cpep0`` (ln nmol/L, the baseline prior).
    n_draws : K joint draws taken from ``theta_draws`` (stream ``twin.theta``) with K individual
        η (stream ``twin.eta``).
    seed : master seed.
    baseline_prior : :class:`BaselinePrior`, used when the draws carry no baseline prior.
    fasting : :class:`FastingModel` for fasting C-peptide measurements (else they are ignored).
    rtol, atol : solver tolerances.
    """

    def __init__(
        self,
        model,
        theta_draws: dict,
        *,
        n_draws: int = 512,
        seed: int = 0,
        baseline_prior: BaselinePrior | None = None,
        fasting: FastingModel | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-9,
    ):
        if n_draws < 2:
            raise ArgumentError(
                f"n_draws must be ≥ 2, got {n_draws}", field="n_draws", fix="use e.g. 512"
            )
        obs = model.spec.observables["cpeptide"]
        if obs.noise != "lognormal":
            raise ArgumentError(
                f"the twin needs the log-normal observation model, the model has {obs.noise!r}",
                field="model",
                fix="use a model whose cpeptide observable has noise = 'lognormal'",
            )
        has_base = all(k in theta_draws for k in _BASELINE_NAMES)
        if not has_base and baseline_prior is None:
            raise ArgumentError(
                "no prior for the baseline C-peptide: the draws carry no mu_log_cpep0/"
                "sd_log_cpep0 and no baseline_prior was given",
                field="baseline_prior",
                fix="pass BaselinePrior.from_experiment(exp) or a records posterior",
            )
        names = set(model.parameter_names)
        bad = [k for k in theta_draws if k not in names and k not in _BASELINE_NAMES]
        if bad:
            raise ArgumentError(
                f"theta_draws has unknown parameters {bad}",
                field="theta_draws",
                fix="use population parameter names of the model",
            )
        self.model = model
        self.n_draws = int(n_draws)
        self.seed = int(seed)
        n_post = len(next(iter(theta_draws.values())))
        # joint draws with replacement (correlations kept), stream "twin.theta"
        pick = _rng.draw(
            self.seed, "twin.theta", 0, self.n_draws, lambda g, k: g.integers(0, n_post, size=k)
        )
        th = {k: np.asarray(v, float)[pick] for k, v in theta_draws.items()}
        self.theta = {k: v for k, v in th.items() if k in names}
        self.baseline_draws = {k: th[k] for k in _BASELINE_NAMES} if has_base else None
        self.baseline_prior = baseline_prior
        self.fasting = fasting
        d = model.defaults()
        self.sigma = np.asarray(self.theta.get(obs.sigma, np.full(self.n_draws, d[obs.sigma])))
        self.lloq = float(d[obs.lloq]) if obs.lloq else 0.0
        om = np.asarray(self.theta.get("omega_lambda", np.full(self.n_draws, d["omega_lambda"])))
        self.eta = _rng.draw(
            self.seed, "twin.eta", 0, self.n_draws, lambda g, n: g.standard_normal(n)
        )
        self.f_lambda = np.exp(om * self.eta)
        self.rtol, self.atol = rtol, atol

    # ---- curves
    def log_curves(self, age_years, baseline_day, days, *, max_solves: int = 8192) -> np.ndarray:
        """log c_ik(d) = log C(d)/C(baseline_day_i) for every participant i and draw k.

        age_years, baseline_day : (P,); days : (P, D) days since diagnosis.
        Returns (P, K, D). Participants with the same days share ``simulate_arrays`` calls
        (batches of at most ``max_solves`` solves) whose output times are exactly those days,
        so a participant's curves depend on its own record only, never on the batch.
        """
        from tregsim.solve import simulate_arrays

        age = np.asarray(age_years, float)
        tb = np.asarray(baseline_day, float)
        days = np.asarray(days, float)
        P, D = days.shape
        K = self.n_draws
        out = np.full((P, K, D), np.nan)
        need = np.concatenate([days, tb[:, None]], axis=1)  # (P, D+1)
        grids, group = np.unique(np.sort(need, axis=1), axis=0, return_inverse=True)
        per = max(1, max_solves // K)
        for gi, grid in enumerate(grids):
            members = np.flatnonzero(group.ravel() == gi)
            grid = np.unique(grid)
            for lo in range(0, members.size, per):
                sel = members[lo : lo + per]
                n = sel.size
                params = self.model.parameters(
                    n * K,
                    **{k: np.tile(v, n) for k, v in self.theta.items()},
                    f_lambda=np.tile(self.f_lambda, n),
                    age=np.repeat(age[sel], K),
                    cpep0=1.0,
                )
                res = simulate_arrays(
                    self.model, params, None, grid, rtol=self.rtol, atol=self.atol
                )
                c = res.observables["cpeptide"].reshape(n, K, grid.size)
                idx = np.searchsorted(grid, need[sel])  # (n, D+1), exact hits
                with np.errstate(divide="ignore", invalid="ignore"):
                    lc = np.log(
                        np.take_along_axis(c, np.broadcast_to(idx[:, None, :], (n, K, D + 1)), 2)
                    )
                out[sel] = lc[:, :, :D] - lc[:, :, D:]
        return out

    # ---- prediction
    def predict(
        self,
        records: TwinRecords,
        *,
        months=DEFAULT_MONTHS,
        levels=QUANTILES,
        min_ess: float = MIN_ESS,
        max_solves: int = 8192,
    ) -> TwinPrediction:
        """The twin of every participant in ``records`` at ``months`` after their baseline."""
        months = _visit_months(months)
        P = records.n
        V = months.size
        vis_days = records.baseline_day[:, None] + months[None, :] * DAYS_PER_MONTH
        # every participant's own pre-randomization days, padded with the baseline day
        cnt = np.bincount(records.mmtt_participant, minlength=P)
        J = int(cnt.max())
        slot = np.arange(records.mmtt_participant.size) - np.repeat(
            np.r_[0, np.cumsum(cnt)[:-1]], cnt
        )
        pre_day = np.repeat(records.baseline_day[:, None], J, axis=1)
        pre_day[records.mmtt_participant, slot] = records.mmtt_day
        lc = self.log_curves(
            records.age_years,
            records.baseline_day,
            np.concatenate([vis_days, pre_day], axis=1),
            max_solves=max_solves,
        )
        lc_vis, lc_pre = lc[:, :, :V], lc[:, :, V:]
        pre = np.zeros((P, J), bool)
        pre[records.mmtt_participant, slot] = True
        obs_log = np.zeros((P, J))
        obs_log[records.mmtt_participant, slot] = np.log(records.mmtt_nmol_l)
        cens = np.zeros((P, J), bool)
        cens[records.mmtt_participant, slot] = records.mmtt_censored
        m_b, v_b, logw = self._posterior_log_b(records, lc_pre, obs_log, pre, cens)
        w = np.exp(logw - special.logsumexp(logw, axis=1, keepdims=True))  # (P, K)
        ess = 1.0 / np.sum(w**2, axis=1)
        mean, sd, q = _mixture_summary(
            m_b[:, :, None] + lc_vis,
            np.sqrt(v_b[:, :, None] + self.sigma[None, :, None] ** 2),
            w,
            self.lloq,
            np.asarray(levels, float),
        )
        return TwinPrediction(
            ids=records.ids,
            months=months,
            days=vis_days,
            mean=mean,
            sd=sd,
            quantiles=q,
            levels=tuple(float(x) for x in levels),
            ess=ess,
            min_ess=float(min_ess),
            info={"n_draws": self.n_draws, "seed": self.seed},
        )

    def _posterior_log_b(self, records, lc_pre, obs_log, pre, cens):
        """Gaussian posterior of log b per (participant, draw) and the log weights.

        lc_pre : (P, K, J) log c at the measurement days; obs_log, pre, cens : (P, J).
        Returns mean, variance (P, K) and log marginal likelihood (P, K).
        """
        P, K = records.n, self.n_draws
        if self.baseline_draws is not None:
            mu0 = np.broadcast_to(self.baseline_draws["mu_log_cpep0"][None, :], (P, K))
            sd0 = np.broadcast_to(self.baseline_draws["sd_log_cpep0"][None, :], (P, K))
        else:
            mu_g, sd_g = self.baseline_prior(records.age_years)
            mu0 = np.broadcast_to(mu_g[:, None], (P, K))
            sd0 = np.broadcast_to(sd_g[:, None], (P, K))
        s2 = self.sigma[None, :, None] ** 2  # (1, K, 1)
        unc = (pre & ~cens)[:, None, :]
        o = obs_log[:, None, :] - lc_pre  # (P, K, J) measurement of log b
        prec = 1.0 / sd0**2 + np.sum(unc / s2, axis=2)
        num = mu0 / sd0**2 + np.sum(np.where(unc, o / s2, 0.0), axis=2)
        ll = -0.5 * np.sum(np.where(unc, np.log(2 * np.pi * s2) + o**2 / s2, 0.0), axis=2)
        if self.fasting is not None:
            f = records.fasting_pmol_l
            has = np.isfinite(f)
            if has.any():
                s_f = self.fasting.sd_log
                of = np.log(np.where(has, f, 1.0)) - np.log(1000.0 * self.fasting.ratio)
                of = (of + s_f**2 / 2)[:, None]
                hf = has[:, None]
                prec = prec + hf / s_f**2
                num = num + np.where(hf, of / s_f**2, 0.0)
                ll = ll - 0.5 * np.where(hf, np.log(2 * np.pi * s_f**2) + of**2 / s_f**2, 0.0)
        mean = num / prec
        ll = ll - 0.5 * np.log(sd0**2 * prec) + 0.5 * mean**2 * prec - 0.5 * mu0**2 / sd0**2
        var = 1.0 / prec
        cen = (pre & cens)[:, None, :]
        if cen.any():
            # P(log y < log LLOQ) for each censored measurement, integrated over log b by
            # Gauss–Hermite; log b's posterior is then moment-matched.
            xb = mean[..., None] + np.sqrt(var)[..., None] * _GH_X  # (P, K, G)
            arg = (obs_log[:, None, :, None] - lc_pre[..., None] - xb[:, :, None, :]) / np.sqrt(s2)[
                ..., None
            ]
            lp = np.sum(np.where(cen[..., None], special.log_ndtr(arg), 0.0), axis=2)  # (P,K,G)
            lw = lp + np.log(_GH_W)
            z = special.logsumexp(lw, axis=2)
            ll = ll + z
            wg = np.exp(lw - z[..., None])
            m1 = np.sum(wg * xb, axis=2)
            var = np.maximum(np.sum(wg * xb**2, axis=2) - m1**2, 1e-12)
            mean = m1
        return mean, var, ll


class TwinGrid:
    """A twin's predictive mean as a fast function of (baseline MMTT, age, fasting value) for
    participants who share one baseline day and one MMTT each (virtual trials).

    The curves are tabulated once on ``ages_years`` (K draws each) and interpolated linearly in
    log age (λ0 is a power of age, so log c is smooth in log age); the rest is
    :meth:`Twin.predict`'s algebra. Accuracy against the exact per-participant twin is checked
    in the tests.
    """

    def __init__(self, twin: Twin, ages_years, baseline_day: float, months):
        self.twin = twin
        self.ages = np.sort(np.asarray(ages_years, float))
        self.baseline_day = float(baseline_day)
        self.months = np.asarray(months, float)
        A = self.ages.size
        days = self.baseline_day + np.broadcast_to(
            self.months * DAYS_PER_MONTH, (A, self.months.size)
        )
        self.log_c = twin.log_curves(self.ages, np.full(A, self.baseline_day), days)  # (A, K, V)

    def mean(self, baseline_nmol_l, age_years, fasting_pmol_l=None) -> np.ndarray:
        """(P, V) predictive mean of observed ln(AUC + 1) at ``months``.

        baseline_nmol_l : (P,) observed baseline MMTT (nmol/L; below the LLOQ = censored);
        age_years : (P,) inside the grid's range; fasting_pmol_l : (P,) or None (NaN = none).
        """
        age = np.asarray(age_years, float)
        y0 = np.asarray(baseline_nmol_l, float)
        ok = np.isfinite(y0) & (y0 > 0) & np.isfinite(age)
        if not ok.all():  # a failed solve or missing baseline: no prediction (NaN)
            out = np.full((age.size, self.months.size), np.nan)
            if ok.any():
                f = None if fasting_pmol_l is None else np.asarray(fasting_pmol_l, float)[ok]
                out[ok] = self.mean(y0[ok], age[ok], f)
            return out
        per = max(1, 2_000_000 // (self.twin.n_draws * self.months.size))
        if age.size > per:  # bounded memory: blocks of participants
            f = None if fasting_pmol_l is None else np.asarray(fasting_pmol_l, float)
            return np.concatenate(
                [
                    self.mean(
                        y0[i : i + per], age[i : i + per], None if f is None else f[i : i + per]
                    )
                    for i in range(0, age.size, per)
                ]
            )
        if np.any(age < self.ages[0]) or np.any(age > self.ages[-1]):
            raise ArgumentError(
                f"ages {age.min():g}–{age.max():g} y outside the twin grid "
                f"{self.ages[0]:g}–{self.ages[-1]:g} y",
                field="age_years",
                fix="build the TwinGrid over the population's age range",
            )
        la = np.log(self.ages)
        j = np.clip(np.searchsorted(la, np.log(age), side="right") - 1, 0, la.size - 2)
        w = ((np.log(age) - la[j]) / (la[j + 1] - la[j]))[:, None, None]
        lc = (1 - w) * self.log_c[j] + w * self.log_c[j + 1]  # (P, K, V)
        tw = self.twin
        rec = TwinRecords.from_baseline(
            baseline_nmol_l,
            age,
            self.baseline_day,
            fasting_pmol_l=fasting_pmol_l,
            lloq_nmol_l=tw.lloq or None,
        )
        P = rec.n
        obs = np.log(rec.mmtt_nmol_l)[:, None]  # one MMTT each, at the baseline (log c = 0)
        m_b, v_b, logw = tw._posterior_log_b(
            rec,
            np.zeros((P, tw.n_draws, 1)),
            obs,
            np.ones((P, 1), bool),
            rec.mmtt_censored[:, None],
        )
        wn = np.exp(logw - special.logsumexp(logw, axis=1, keepdims=True))
        mean, _, _ = _mixture_summary(
            m_b[:, :, None] + lc,
            np.sqrt(v_b[:, :, None] + tw.sigma[None, :, None] ** 2),
            wn,
            tw.lloq,
            None,
        )
        return mean


class StructureTwinGrid:
    """The twin under the records structure of individual variability (issue #14; used by
    ``ancova_prognostic`` in virtual trials when the structure is ``records``): the predictive
    mean of observed ln(AUC + 1) at ``months`` given one observed baseline MMTT y₀ and age.

    Plug-in values ``theta`` (the study's posterior medians / the structure file's values):
    the latent noise-free baseline μ₀ has the experiment's noise-free law (``baseline_prior``,
    the population's ``[population.cpep_baseline]``, narrowed by this observation model at each
    group's median when it is a measured law: :meth:`BaselinePrior.noise_free`) and is
    observed as log y₀ = log μ₀ + e,
    e ~ N(0, s²), s² = σ_meas²·h² + σ_bio²·h², h = (μ₀/0.6 nmol/L)^−κ, or e = s·t_ν with
    ν = 1/``inv_nu`` when ``inv_nu`` > 0 (the Student-t deviation; censored below the LLOQ); the loss hazard λ0 = λ_ref·(age/10)^−γ_a·(μ₀/0.6)^−β_c·exp(−β_lin(μ₀ − 0.6))·e^(ω_λ η),
    η ~ N(0, 1); log μ_m = log μ₀ + log c(m; λ0, q); y_m = μ_m·exp(e_m) with the same SD law
    at μ_m. The within-patient OU correlation between baseline and month m (τ_bio ≈ 85 days
    in the model file, zero when σ_bio = 0 as in the structure file) is ignored. Integrals by
    quadrature (μ₀ grid, Gauss–Hermite for η and e_m, a t's e_m through the quantile map of
    the Gauss–Hermite nodes); tabulated once on (age, y₀) and
    interpolated (bilinear in log age, log y₀). Checked against Monte Carlo in the tests.
    """

    N_LOGLAM = 600
    N_LEVEL = 81
    N_ETA = 16
    N_OBS = 10
    N_OBS_T = 40
    N_AGES = 21
    N_Y0 = 121

    def __init__(self, model, theta: dict, baseline_prior: BaselinePrior, ages_years,
                 baseline_day: float, months, *, lloq_nmol_l: float | None = None):  # fmt: skip
        from tregsim.observe import C_REF_NMOL_L
        from tregsim.solve import simulate_arrays

        d = model.defaults()
        th = {k: float(np.median(np.asarray(v, float))) for k, v in theta.items() if k in d}
        g = {k: th.get(k, float(d[k])) for k in d}
        self.theta = g
        self.months = np.asarray(months, float)
        self.baseline_day = float(baseline_day)
        self.lloq = float(d["LLOQ"]) if lloq_nmol_l is None else float(lloq_nmol_l)
        # the virtual patients' noise-free baseline law, when the experiment's is a measured one
        self.prior = baseline_prior.noise_free(lambda m: self._scale(m) ** 2, self._inv_nu)
        self._log_cref = float(np.log(C_REF_NMOL_L))
        # log c(m)/c(baseline) as a function of log λ0 (q, s0, k_re … at theta): one batch
        self.loglam = np.linspace(np.log(1e-6), np.log(0.1), self.N_LOGLAM)
        n = self.loglam.size
        over = {k: v for k, v in g.items() if model.spec.parameters[k].role != "individual"}
        over.update(lambda_ref=np.exp(self.loglam), gamma_a=0.0, beta_c=0.0, beta_lin=0.0,
                    age=10.0, cpep_bl=C_REF_NMOL_L, cpep0=1.0, f_lambda=1.0)  # fmt: skip
        params = model.parameters(n, **over)
        days = self.baseline_day + DAYS_PER_MONTH * np.concatenate([[0.0], self.months])
        r = simulate_arrays(model, params, None, days, rtol=1e-8, atol=1e-12)
        c = np.asarray(r.observables["cpeptide"], float)
        self.log_c = np.log(c[:, 1:]) - np.log(c[:, :1])  # (N_LOGLAM, V)
        a = np.asarray(ages_years, float)
        self.ages = np.geomspace(a.min(), a.max(), self.N_AGES)  # smooth in log age
        self.log_y0 = np.linspace(np.log(self.lloq), np.log(6.0), self.N_Y0)
        self.table = self._tabulate()

    def _sd(self, log_mu):
        """SD of ln(observed) about ``log_mu`` at one visit: the observation model's own
        (:func:`tregsim.observe.visit_variance_log`, as virtual trials draw it)."""
        from tregsim.observe import visit_variance_log

        g = self.theta
        return np.sqrt(
            visit_variance_log(
                log_mu, g["sigma_meas"], g["sigma_bio"], g["kappa"], self.lloq, self._inv_nu
            )
        )

    def _scale(self, log_mu):
        """Scale of the deviation at ``log_mu``: :meth:`_sd` for the normal, the Student-t's
        scale σ_meas·h (not its SD) when ``inv_nu`` > 0."""
        from tregsim.observe import visit_variance_log

        g = self.theta
        return np.sqrt(
            visit_variance_log(log_mu, g["sigma_meas"], g["sigma_bio"], g["kappa"], self.lloq)
        )

    @property
    def _inv_nu(self) -> float:
        return float(self.theta.get("inv_nu", 0.0))

    def _log_density(self, z, scale, censored):
        """log density of the baseline observation's standardised deviation ``z`` (minus
        ln ``scale``), or its log CDF where ``censored``: normal or Student-t."""
        if self._inv_nu > 0:
            nu = 1.0 / self._inv_nu
            return np.where(censored, stats.t.logcdf(z, nu), stats.t.logpdf(z, nu) - np.log(scale))
        return np.where(censored, special.log_ndtr(z), -0.5 * z**2 - np.log(scale))

    def exact(self, log_y0: np.ndarray, age: np.ndarray, censored: np.ndarray) -> np.ndarray:
        """(P, V) predictive mean by quadrature (no tabulation)."""
        g = self.theta
        mu_p, sd_p = self.prior(age)
        u = np.linspace(-5.0, 5.0, self.N_LEVEL)
        # latent level grid around the observation, wide enough for the prior when censored
        width = np.where(censored, 4.0 * sd_p, 5.0 * self._sd(log_y0))
        centre = np.where(censored, np.minimum(mu_p, log_y0), log_y0)
        lev = centre[:, None] + (width / 5.0)[:, None] * u[None, :]  # (P, L)
        s0 = self._scale(lev)
        z0 = (log_y0[:, None] - lev) / s0
        logw = -0.5 * ((lev - mu_p[:, None]) / sd_p[:, None]) ** 2 + self._log_density(
            z0, s0, censored[:, None]
        )
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        xe, we = np.polynomial.hermite_e.hermegauss(self.N_ETA)
        # a t deviation through the quantile map of the normal nodes: heavier tails need more
        xo, wo = np.polynomial.hermite_e.hermegauss(
            self.N_OBS if self._inv_nu == 0 else self.N_OBS_T
        )
        xo = student_t_from_normal(xo, self._inv_nu)
        we, wo = we / we.sum(), wo / wo.sum()
        la = np.log(age / 10.0)
        loglam = (
            np.log(g["lambda_ref"]) - g["gamma_a"] * la[:, None, None]
            - g["beta_c"] * (lev[:, :, None] - self._log_cref)
            - g["beta_lin"] * (np.exp(lev[:, :, None]) - np.exp(self._log_cref))
            + g["omega_lambda"] * xe[None, None, :]
        )  # fmt: skip
        out = np.empty((age.size, self.months.size))
        for v in range(self.months.size):
            lc = np.interp(loglam, self.loglam, self.log_c[:, v])  # (P, L, E)
            log_mu = lev[:, :, None] + lc
            sd = self._scale(log_mu)
            # ln(1 + y) as logaddexp: a far t node must not overflow exp
            m = (np.logaddexp(0.0, log_mu[..., None] + sd[..., None] * xo) * wo).sum(-1) @ we
            out[:, v] = (w * m).sum(axis=1)
        return out

    def _tabulate(self) -> np.ndarray:
        A, Y = self.ages.size, self.log_y0.size
        age = np.repeat(self.ages, Y + 1)
        ly = np.tile(np.concatenate([self.log_y0[:1], self.log_y0]), A)
        cens = np.tile(np.r_[True, np.zeros(Y, bool)], A)
        out = np.concatenate(
            [
                self.exact(ly[i : i + 256], age[i : i + 256], cens[i : i + 256])
                for i in range(0, age.size, 256)
            ]
        )
        return out.reshape(A, Y + 1, self.months.size)  # [:, 0] censored, [:, 1:] on log_y0

    def mean(self, baseline_nmol_l, age_years, fasting_pmol_l=None) -> np.ndarray:
        """(P, V) predictive mean of observed ln(AUC + 1) at ``months`` (NaN where the
        baseline is missing). ``fasting_pmol_l`` is not used by this twin."""
        y0 = np.asarray(baseline_nmol_l, float)
        age = np.asarray(age_years, float)
        out = np.full((age.size, self.months.size), np.nan)
        ok = np.isfinite(y0) & (y0 > 0) & np.isfinite(age)
        if not ok.any():
            return out
        la = np.log(self.ages)
        x = np.clip(np.log(age[ok]), la[0], la[-1])
        j = np.clip(np.searchsorted(la, x, side="right") - 1, 0, la.size - 2)
        wa = ((x - la[j]) / (la[j + 1] - la[j]))[:, None]
        cens = y0[ok] < self.lloq
        ly = np.clip(np.log(np.maximum(y0[ok], self.lloq)), self.log_y0[0], self.log_y0[-1])
        k = np.clip(np.searchsorted(self.log_y0, ly, side="right") - 1, 0, self.log_y0.size - 2)
        wy = ((ly - self.log_y0[k]) / (self.log_y0[k + 1] - self.log_y0[k]))[:, None]
        t = self.table

        def at(jj):
            inner = (1 - wy) * t[jj, k + 1] + wy * t[jj, k + 2]
            return np.where(cens[:, None], t[jj, 0], inner)

        out[ok] = (1 - wa) * at(j) + wa * at(j + 1)
        return out


def _mixture_summary(mu, sd, w, lloq, levels, *, max_elements: int = 4_000_000):
    """Blocks of participants through :func:`_mixture_block` (bounded memory)."""
    P, K, V = mu.shape
    per = max(1, max_elements // (K * V * max(_N_GH, 1)))
    parts = [
        _mixture_block(mu[i : i + per], sd[i : i + per], w[i : i + per], lloq, levels)
        for i in range(0, P, per)
    ]
    m1 = np.concatenate([p[0] for p in parts])
    sdv = np.concatenate([p[1] for p in parts])
    q = None if levels is None else np.concatenate([p[2] for p in parts])
    return m1, sdv, q


def _mixture_block(mu, sd, w, lloq, levels):
    """Mean, SD and quantiles of ln(y + 1) where log y | k ~ N(mu_k, sd_k²), weights w_k.

    mu, sd : (P, K, V); w : (P, K). y below ``lloq`` is recorded as lloq/2.
    Returns mean, sd (P, V) and quantiles (P, V, L) (None when ``levels`` is None).
    """
    x = mu[..., None] + sd[..., None] * _GH_X  # (P, K, V, G)
    g = log1p_recorded(x, lloq)
    e1 = np.einsum("pkvg,g->pkv", g, _GH_W)
    e2 = np.einsum("pkvg,g->pkv", g * g, _GH_W)
    m1 = np.einsum("pkv,pk->pv", e1, w)
    m2 = np.einsum("pkv,pk->pv", e2, w)
    sdv = np.sqrt(np.maximum(m2 - m1**2, 0.0))
    if levels is None:
        return m1, sdv, None
    # quantiles of the mixture of log y: bisection on its CDF, then the monotone map g
    lo = np.min(mu - 9 * sd, axis=1)
    hi = np.max(mu + 9 * sd, axis=1)
    L = len(levels)
    a = np.repeat(lo[..., None], L, axis=2)
    b = np.repeat(hi[..., None], L, axis=2)
    for _ in range(60):
        c = 0.5 * (a + b)
        F = np.einsum("pkvl,pk->pvl", special.ndtr((c[:, None] - mu[..., None]) / sd[..., None]), w)
        below = F < levels
        a = np.where(below, c, a)
        b = np.where(below, b, c)
    q = log1p_recorded(0.5 * (a + b), lloq)
    return m1, sdv, q


def predict_twin(
    records: TwinRecords,
    model,
    theta_draws: dict,
    *,
    months=DEFAULT_MONTHS,
    n_draws: int = 512,
    seed: int = 0,
    baseline_prior: BaselinePrior | None = None,
    fasting: FastingModel | None = None,
    min_ess: float = MIN_ESS,
) -> TwinPrediction:
    """Each participant's twin: see the module docstring. One-call form of :class:`Twin`."""
    twin = Twin(
        model,
        theta_draws,
        n_draws=n_draws,
        seed=seed,
        baseline_prior=baseline_prior,
        fasting=fasting,
    )
    return twin.predict(records, months=months, min_ess=min_ess)


def predict_structure_twin(
    twin,
    records: TwinRecords,
    *,
    months=DEFAULT_MONTHS,
    levels=QUANTILES,
    min_ess: float = MIN_ESS,
    progress: bool = False,
) -> TwinPrediction:
    """The records-structure twin (:class:`tregsim.twin_structure.StructureTwin`) of every
    participant in ``records`` at ``months`` after their own baseline visit."""
    months = _visit_months(months)
    days, mean, sd, q, ess, base_p = twin.predict_arrays(
        records, months=months, levels=levels, progress=progress
    )
    return TwinPrediction(
        ids=records.ids,
        months=months,
        days=days,
        mean=mean,
        sd=sd,
        quantiles=q,
        levels=tuple(float(x) for x in levels),
        ess=ess,
        min_ess=float(min_ess),
        info={"n_draws": twin.n_draws, "seed": twin.seed, "structure": "records"},
        baseline_p=base_p,
    )


def posterior_draws(posterior, model) -> tuple[dict, Path | None]:
    """Population draws for a twin: the model's population / fixed parameters and, when the
    file has them, the baseline prior ``mu_log_cpep0``/``sd_log_cpep0`` (records likelihood).

    posterior : :data:`tregsim.results.SHIPPED`, a netCDF path, or ``None`` (refused: a twin
    needs a posterior).
    """
    from tregsim.posterior import load_posterior

    path = _posterior_file(posterior)
    return _model_draws(load_posterior(path), model), path


def _posterior_file(posterior) -> Path:
    """The posterior file a twin reads (``None`` refused: a twin needs population draws)."""
    from tregsim.results import posterior_path

    path = posterior_path(posterior)
    if path is None:
        raise ArgumentError(
            "the twin needs a population posterior",
            field="posterior",
            fix="give a posterior.nc (default: the shipped natural-history posterior)",
        )
    return path


def _model_draws(raw: dict, model) -> dict:
    """``raw`` posterior draws restricted to the lumped twin's: the model's population / fixed
    parameters, and the baseline prior when the file has both of its names."""
    spec = model.spec.parameters
    keep = {
        k: v
        for k, v in raw.items()
        if k in _BASELINE_NAMES or (k in spec and spec[k].role in ("population", "fixed"))
    }
    if not all(k in keep for k in _BASELINE_NAMES):
        keep = {k: v for k, v in keep.items() if k not in _BASELINE_NAMES}
    return keep


def twin_study(
    exp,
    records,
    *,
    posterior=SHIPPED,
    n_draws: int | None = None,
    seed: int = 0,
    months=None,
    argv: list[str] | None = None,
    progress: bool = False,
) -> TwinPrediction:
    """Each participant's twin in an experiment's frame: its model, baseline distribution and
    fasting model, visits at its months (or ``months``) after each participant's baseline.

    records : :class:`TwinRecords` or a data file (:func:`read_twin_records`).
    posterior : :data:`tregsim.results.SHIPPED` (default) or a netCDF path; ``None`` is refused
        (a twin needs population draws). A records-likelihood posterior (the shipped one: it
        carries the structure's hazard covariate, Student-t deviation and baseline law) gives
        the records-structure twin (:class:`tregsim.twin_structure.StructureTwin`, K = 256
        posterior draws by default); any other gives the lumped :class:`Twin` (512 posterior ×
        individual draws by default).
    argv : the command line that asked for it (``None``: the call is recorded).
    progress : a bar over participants on stderr (records-structure twin).
    The result carries its manifest (inputs with hashes, the call, settings).
    """
    from tregsim.cohort import start_analysis
    from tregsim.posterior import load_posterior
    from tregsim.twin_structure import StructureTwin, has_structure

    extra = {}
    if not isinstance(records, TwinRecords):
        extra["data"] = Path(records)
        records = read_twin_records(records)
    post_file = _posterior_file(posterior)
    raw = load_posterior(post_file)  # read once: the structure's variables, or the model's
    structure = "records" if has_structure(raw) else "lumped"
    if n_draws is None:
        n_draws = 256 if structure == "records" else 512
    extra["posterior"] = post_file
    months = exp.visit_months if months is None else np.asarray(months, float)
    settings = {"n_draws": int(n_draws), "months": [float(m) for m in months]}
    st = start_analysis(
        exp,
        command="twin",
        function="tregsim.twin.twin_study",
        seed=seed,
        arguments=dict(settings),
        settings=settings | {"structure": structure},
        use_posterior=False,
        extra_inputs=extra,
        argv=argv,
        population_check=False,  # the twin conditions on real records, not the population
    )
    fasting = FastingModel.from_experiment(exp)
    if structure == "records":
        twin = StructureTwin(exp.model, raw, n_draws=n_draws, seed=seed, fasting=fasting)
        pred = predict_structure_twin(twin, records, months=months, progress=progress)
    else:
        pred = predict_twin(
            records,
            exp.model,
            _model_draws(raw, exp.model),
            months=months,
            n_draws=n_draws,
            seed=seed,
            baseline_prior=BaselinePrior.from_experiment(exp),
            fasting=fasting,
        )
    pred.info.update({"posterior": post_file.name, "structure": structure})
    pred.manifest = st.finish(n_participants=records.n)
    return pred


# --------------------------------------------------------------------------- data files
TWIN_LONG_OPTIONAL = ("censored", "fasting_cpeptide_pmol_l", "weight", "sex", "cpep0")
"""Optional long-format columns of a twin data file (weight, sex, cpep0 are read and unused)."""

TWIN_NONMEM_EXTRA = ("FCPEP",)
"""NONMEM-style column for fasting C-peptide, pmol/L (optional)."""


def read_twin_records(path, *, lloq_nmol_l: float | None = None) -> TwinRecords:
    """Pre-randomization records from a CSV in the long format or NONMEM style.

    Long format: one row per participant and pre-randomization MMTT, columns ``id``, ``day``
    (days since diagnosis), ``cpeptide_nmol_l`` (MMTT 2-h AUC mean, nmol/L), ``age`` (years);
    optional ``censored`` (0/1, value given as the LLOQ) and ``fasting_cpeptide_pmol_l``
    (fasting C-peptide at the baseline visit, pmol/L). NONMEM style: ``ID, TIME, DV, MDV,
    EVID, AMT`` with ``AGE`` (optional ``BLQ``/``CENS``, ``FCPEP`` in pmol/L); observation rows
    only. Each participant's latest MMTT is the baseline visit; visit months count from it.

    Raises :class:`DataFileError` naming the file, the line, the column and the fix.
    """
    from tregsim import long_format as lf
    from tregsim.interop import nonmem as nm
    from tregsim.units import LLOQ_NMOL_L

    path = Path(path)
    raw = lf.read_csv_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    cols = list(raw.columns)
    if {"ID", "TIME", "DV"} <= set(cols):
        allowed = set(nm.REQUIRED) | set(nm.OPTIONAL) | set(nm.CENSOR_ALIASES)
        allowed |= set(nm.COVARIATES) | set(TWIN_NONMEM_EXTRA)
        _unknown_columns(path, cols, allowed, "NONMEM-style")
        if "AGE" not in cols:
            raise DataFileError(
                "missing column AGE", file=path, field="header", fix="add AGE (years) per record"
            )
        df = nm.validate_nonmem(raw, file=path)
        dose = np.flatnonzero((df["EVID"] == 1).to_numpy())
        if dose.size:
            raise DataFileError(
                "dose record in a twin file (the twin predicts routine care from "
                "pre-randomization records)",
                file=path,
                field=f"line {lf.data_line(dose[0])}, column EVID",
                fix="keep only the pre-randomization observation rows (EVID 0)",
            )
        _missing_rows(path, df, "AGE", "age (years)")
        long = nm.nonmem_to_long(df)
        fast = (
            lf.numeric_column(df, "FCPEP", path)[(df["MDV"] == 0).to_numpy()].to_numpy(float)
            if "FCPEP" in df.columns
            else np.full(len(long), np.nan)
        )
        long["fasting_cpeptide_pmol_l"] = fast
        lines = np.flatnonzero((df["MDV"] == 0).to_numpy())
        fcol = "FCPEP"
    else:
        allowed = set(lf.LONG_COLUMNS) | set(TWIN_LONG_OPTIONAL)
        _unknown_columns(path, cols, allowed, "long-format")
        missing = [c for c in ("id", "day", "cpeptide_nmol_l", "age") if c not in cols]
        if missing:
            raise DataFileError(
                f"missing column(s) {missing}",
                file=path,
                field="header",
                fix="a twin file needs id, day (days since diagnosis), cpeptide_nmol_l, age "
                "(years); optional censored, fasting_cpeptide_pmol_l",
            )
        _missing_rows(path, raw, "cpeptide_nmol_l", "baseline MMTT C-peptide (nmol/L)")
        _missing_rows(path, raw, "age", "age (years)")
        long = lf.validate_long(raw, file=path)
        if "fasting_cpeptide_pmol_l" in long.columns:
            long["fasting_cpeptide_pmol_l"] = lf.numeric_column(
                long, "fasting_cpeptide_pmol_l", path
            )
        else:
            long["fasting_cpeptide_pmol_l"] = np.nan
        lines = np.arange(len(long))
        fcol = "fasting_cpeptide_pmol_l"
    f = long["fasting_cpeptide_pmol_l"].to_numpy(float)
    bad = np.flatnonzero(np.isfinite(f) & (f <= 0))
    if bad.size:
        raise DataFileError(
            f"fasting C-peptide must be > 0 pmol/L, got {f[bad[0]]!r}",
            file=path,
            field=f"line {lf.data_line(lines[bad[0]])}, column {fcol}",
            fix="give the fasting C-peptide in pmol/L, or leave it empty when not measured",
        )
    y = long["cpeptide_nmol_l"].to_numpy(float)
    zero = np.flatnonzero((y <= 0) & (long["censored"].to_numpy() == 0))
    if zero.size:
        raise DataFileError(
            "C-peptide 0 nmol/L is not a measurement",
            file=path,
            field=f"line {lf.data_line(lines[zero[0]])}, column {'DV' if fcol == 'FCPEP' else 'cpeptide_nmol_l'}",
            fix="below the LLOQ give the LLOQ (0.017 nmol/L) with censored = 1",
        )
    ids, first = np.unique(long["id"].to_numpy(str), return_index=True)
    order = np.argsort(first)  # participants in file order
    ids = ids[order]
    pos = {k: i for i, k in enumerate(ids)}
    part = long["id"].map(pos).to_numpy(int)
    day = long["day"].to_numpy(float)
    age = long.groupby(part)["age"].first().to_numpy(float)
    tb = long.groupby(part)["day"].max().to_numpy(float)
    fast = long.assign(_f=f).groupby(part)["_f"].last().to_numpy(float)
    lloq = LLOQ_NMOL_L if lloq_nmol_l is None else float(lloq_nmol_l)
    cens = long["censored"].to_numpy(int).astype(bool) | (y < lloq)
    o = np.lexsort((day, part))
    rec = TwinRecords(
        ids=ids.astype(str),
        age_years=age,
        baseline_day=tb,
        mmtt_participant=part[o],
        mmtt_day=day[o],
        mmtt_nmol_l=np.where(cens, np.maximum(y, lloq), y)[o],
        mmtt_censored=cens[o],
        fasting_pmol_l=fast,
    )
    rec.check(file=path)
    return rec


def _unknown_columns(path, cols, allowed, kind):
    extra = [c for c in cols if c not in allowed]
    if extra:
        i = cols.index(extra[0])
        raise DataFileError(
            f"unknown column {extra[0]!r} (column {i + 1}) in a {kind} twin file",
            file=path,
            field=f"line 1, column {extra[0]}",
            fix=f"rename or remove it; known columns: {', '.join(sorted(allowed))}",
        )


def _missing_rows(path, df, col, what):
    from tregsim.long_format import data_line

    if col not in df.columns:
        return
    v = df[col]
    obs = (df["MDV"] == 0).to_numpy() if "MDV" in df.columns else np.ones(len(df), bool)
    miss = np.flatnonzero(v.isna().to_numpy() & obs)
    if miss.size:
        raise DataFileError(
            f"missing {what}",
            file=path,
            field=f"line {data_line(miss[0])}, column {col}",
            fix=f"fill in the {what} on every row, or remove the row",
        )
