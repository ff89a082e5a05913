"""Structures of individual variability for the natural history, fitted to long-format records.

The per-visit means of the placebo data are easy to fit; what decides a trial's power is how a
patient's later values hang together with the baseline (``tregsim.trial_statistics``). This
module writes down candidate structures on top of the mechanistic model and scores them.

For participant i with baseline age a_i (years) and visits at days d_ij after the baseline
visit (model day ``baseline_day + d_ij``), on the log scale of the MMTT 2-h AUC mean C-peptide
(nmol/L):

* trend level at the baseline visit:  ℓ_i = μ_c + μ_a·log(a_i/10) + s_c·ζ_i,   ζ_i ~ N(0, 1);
* loss hazard:  log λ0_i = log λ_ref − γ_a·log(a_i/10) − β_c·(a_i/10)^(−γ_β)·(ℓ_i − log 0.6)
  − β_lin·(e^ℓ_i − 0.6 nmol/L) + ω_λ·η_i, η_i ~ N(0, 1) (β_c, β_lin > 0: the lower the
  baseline, the faster the proportional loss; γ_β = β_lin = 0 unless a candidate frees them);
* noise-free course: log μ_ij = ℓ_i + log c(d_ij; λ0_i, q) with c the model's curve
  normalised to 1 at the baseline visit (exact: the model output is proportional to cpep0;
  :class:`tregsim.calibrate.likelihood.CurveTable`);
* observation: log y_ij = log μ_ij + b_i(d_ij) + e_ij, with b_i a stationary
  Ornstein–Uhlenbeck deviation (SD σ_bio, correlation time τ_bio days: corr exp(−|Δd|/τ_bio);
  biological visit-to-visit variation that persists between close visits) and e_ij ~ N(0,
  σ_meas²) independent (MMTT test–retest error); optional heteroscedasticity: the deviation
  SD scales as (μ/0.6 nmol/L)^(−κ) (the OU part when σ_bio > 0, else the one residual), and an
  additive assay term σ_add/μ. Values below the LLOQ are left-censored.

The shipped model (σ = 0.29 lumping everything, β_c = 0, σ_bio = 0) is the special case
``CANDIDATES["lumped"]``.

Random effects are integrated by quadrature on uniform grids (ζ on [−4.5, 4.5], η on [−4, 4]);
given (ζ, η) the uncensored visits of a participant are multivariate normal with covariance
σ_meas² I + σ_bio² exp(−|d_j − d_k|/τ_bio) (scaled as above); censored visits contribute
Φ((log LLOQ − log μ)/SD) independently (an approximation: 21 of 599 visits
in the placebo records). Fit: MAP (L-BFGS-B, unconstrained coordinates, weak priors below).
Score: log p(later visits | baseline visit) of each participant under the plug-in MAP — a
proper scoring rule (log predictive density; docs/calibration.md, "Structure of individual
variability").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from tregsim.observe import C_REF_NMOL_L, deviation_scale
from tregsim.units import DAYS_PER_MONTH, LLOQ_NMOL_L

LOG_CREF = float(np.log(C_REF_NMOL_L))
"""Reference baseline for the hazard covariate: ln(0.6 nmol/L)."""
_LOG_SQRT_2PI = 0.5 * float(np.log(2.0 * np.pi))


def depletion_curve(c: np.ndarray, beta_dyn: float, floor: float = 1e-4) -> np.ndarray:
    """The log course c(t) = ln C(t)/C(baseline) when the hazard also scales with the current
    level relative to the baseline, × (C(t)/C_bl)^(−β_dyn) (issue #14, round 18 candidate):
    with u = (C/C_bl)^β_dyn, du/dt = −β_dyn·h(t), so ln C/C_bl = ln(1 + β_dyn·c)/β_dyn
    (β_dyn > 0: the loss accelerates as function falls; complete loss when 1 + β_dyn·c ≤ 0,
    held at ``floor`` of u). With the power-law baseline covariate free this equals a hazard
    × (C(t)/c_ref)^(−β_dyn) with β_c shifted by β_dyn. β_dyn = 0 returns ``c``."""
    if beta_dyn == 0.0:
        return c
    return np.log(np.maximum(1.0 + beta_dyn * c, floor)) / beta_dyn


SIGMA_MEAS_LITERATURE = 0.07
"""MMTT C-peptide test–retest SD on the log scale (≈ 7 % CV). Derived from Greenbaum CJ et al.
Diabetes Care 2008;31:1966-71 (doi:10.2337/dc07-2451): two MMTTs on separate days, test–retest
R² = 0.96 (peak C-peptide); with the between-patient log-SD ≈ 0.5 of new-onset cohorts
(placebo records: 0.46) the within-subject SD is 0.5·√(1 − √0.96) ≈ 0.07."""

# name: (transform, prior) — transform "log", "logit" or "id"; prior a scipy frozen density
# on θ used only as a weak regulariser of the MAP.
PARAMS = {
    "lambda_ref": ("log", stats.lognorm(s=0.5, scale=1.7e-3)),
    "gamma_a": ("id", stats.norm(0.5, 0.3)),
    "omega_lambda": ("log", stats.halfnorm(scale=1.0)),
    "q": ("logit", stats.beta(2.0, 2.0)),
    "beta_c": ("id", stats.norm(0.0, 1.0)),
    "sigma_meas": ("log", stats.halfnorm(scale=0.3)),
    "sigma_add": ("log", stats.halfnorm(scale=0.1)),
    "kappa": ("id", stats.norm(0.0, 1.0)),
    "gamma_beta": ("id", stats.norm(0.0, 1.0)),
    "beta_lin": ("id", stats.norm(0.0, 2.0)),
    "sigma_bio": ("log", stats.halfnorm(scale=0.3)),
    "tau_bio": ("log", stats.lognorm(s=1.0, scale=180.0)),
    "mu_c": ("id", stats.norm(LOG_CREF, 1.0)),
    "mu_a": ("id", stats.norm(0.0, 1.0)),
    "s_c": ("log", stats.halfnorm(scale=1.0)),
    "omega_q": ("log", stats.halfnorm(scale=1.0)),
    "inv_nu": ("log", stats.halfnorm(scale=0.5)),
}
UNITS = {
    "lambda_ref": "1/day",
    "gamma_a": "1",
    "omega_lambda": "1",
    "q": "1",
    "beta_c": "1",
    "sigma_meas": "1 (log scale)",
    "sigma_add": "nmol/L",
    "kappa": "1",
    "gamma_beta": "1",
    "beta_lin": "1/(nmol/L)",
    "sigma_bio": "1 (log scale)",
    "tau_bio": "day",
    "mu_c": "ln(nmol/L)",
    "mu_a": "1",
    "s_c": "ln(nmol/L)",
    "omega_q": "1 (logit scale)",
    "inv_nu": "1 (1/degrees of freedom)",
}
START = {
    "lambda_ref": 2.0e-3,
    "gamma_a": 0.8,
    "omega_lambda": 0.8,
    "q": 0.2,
    "beta_c": 0.0,
    "sigma_meas": 0.2,
    "sigma_add": 0.02,
    "kappa": 0.3,
    "gamma_beta": 0.0,
    "beta_lin": 0.5,
    "sigma_bio": 0.15,
    "tau_bio": 180.0,
    "mu_c": -0.4,
    "mu_a": 0.2,
    "s_c": 0.45,
    "omega_q": 0.5,
    "inv_nu": 0.2,
}

CANDIDATES = {
    # name: (free parameters, fixed values)
    "lumped": (
        ("lambda_ref", "gamma_a", "omega_lambda", "q", "sigma_meas", "mu_c", "mu_a", "s_c"),
        {"beta_c": 0.0, "sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "covariate": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "sigma_meas",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "meas+ou": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "sigma_bio",
            "tau_bio",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"beta_c": 0.0, "sigma_meas": SIGMA_MEAS_LITERATURE},
    ),
    "combined": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "sigma_meas",
            "sigma_add",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"beta_c": 0.0, "sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "covariate+combined": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "sigma_meas",
            "sigma_add",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "covariate+power": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "sigma_meas",
            "kappa",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "agecovariate+power": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "gamma_beta",
            "sigma_meas",
            "kappa",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "lincovariate+power": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "beta_lin",
            "sigma_meas",
            "kappa",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    # a random effect on the deceleration: logit q_i = logit q + ω_q·ξ_i, ξ_i ~ N(0, 1)
    # (needs StructureLikelihood(..., n_xi > 1); docs/calibration.md)
    "lincovariate+power+qre": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "omega_q",
            "beta_c",
            "beta_lin",
            "sigma_meas",
            "kappa",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_bio": 0.0, "tau_bio": 180.0},
    ),
    "covariate+power+ou": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "kappa",
            "sigma_bio",
            "tau_bio",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_meas": SIGMA_MEAS_LITERATURE},
    ),
    "covariate+combined+ou": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "sigma_add",
            "sigma_bio",
            "tau_bio",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_meas": SIGMA_MEAS_LITERATURE},
    ),
    "covariate+meas+ou": (
        (
            "lambda_ref",
            "gamma_a",
            "omega_lambda",
            "q",
            "beta_c",
            "sigma_bio",
            "tau_bio",
            "mu_c",
            "mu_a",
            "s_c",
        ),
        {"sigma_meas": SIGMA_MEAS_LITERATURE},
    ),
}

# the chosen structure with an age-dependent power-law covariate β_c·(age/10)^(−γ_β)
# (round 5: +2.8 log-likelihood, +2.1 nats leave-one-study-out; docs/calibration.md)
_free, _fixed = CANDIDATES["lincovariate+power"]
_k = _free.index("beta_c") + 1
CANDIDATES["lincovariate+age+power"] = ((*_free[:_k], "gamma_beta", *_free[_k:]), _fixed)
# the chosen structure with a Student-t within-patient deviation, ν = 1/inv_nu degrees of
# freedom, scale σ_meas·h(μ) (round 18: +33.1 log-likelihood for one parameter, +41.4 nats
# leave-one-study-out, participant-paired 95 % +7.3 to +86.5; docs/calibration.md, "Round 18")
_k = _free.index("sigma_meas") + 1
CANDIDATES["lincovariate+power+t"] = ((*_free[:_k], "inv_nu", *_free[_k:]), _fixed)


ZETA_FIXED_HALF_WIDTH = 4.5
"""The fixed grid of the baseline-level effect ζ spans ±4.5 (standard normal units)."""
ZETA_ADAPTIVE_HALF_WIDTH = 6.0
"""The adaptive ζ nodes span ±6 conditional SDs around the baseline visit's estimate."""
ETA_FIXED_HALF_WIDTH = 4.0
"""The fixed grid of the hazard's random effect η spans ±4 (standard normal units)."""
ETA_ADAPTIVE_HALF_WIDTH = 6.0
"""The adaptive η nodes span ±6 SDs of η given the participant's visits and the ζ node."""
ETA_MAX_ZOOM = 4
"""At most this many re-centring passes of the adaptive η nodes after the first two."""
ETA_NEGLIGIBLE_NATS = 15.0
"""A ζ node whose mass is this far below the participant's largest is not re-centred."""
ETA_REFINE_NATS = 0.005
"""Adaptive η: a participant whose log-likelihood moves by more than this between the rule
and its half (every other node) is integrated again on 2n − 1 nodes (round 27)."""


@dataclass
class Records:
    """Participants with a baseline (month-0) visit, long format, days from their baseline.

    ids (P,), study (P,), age_years (P,), visit_patient (V,), visit_day (V,) days after the
    participant's own baseline visit, visit_month (V,) nominal month, y (V,) nmol/L.
    """

    ids: np.ndarray
    study: np.ndarray
    age_years: np.ndarray
    visit_patient: np.ndarray
    visit_day: np.ndarray
    visit_month: np.ndarray
    y: np.ndarray

    def subset(self, keep: np.ndarray) -> Records:
        keep = np.asarray(keep, bool)
        new = np.cumsum(keep) - 1
        v = keep[self.visit_patient]
        return Records(
            self.ids[keep],
            self.study[keep],
            self.age_years[keep],
            new[self.visit_patient[v]],
            self.visit_day[v],
            self.visit_month[v],
            self.y[v],
        )

    def with_visits(self, keep: np.ndarray) -> Records:
        """The same participants with only the visits ``keep`` (V,) bool (e.g. the baseline
        visits, or the nominal months a summary uses)."""
        keep = np.asarray(keep, bool)
        return Records(
            self.ids,
            self.study,
            self.age_years,
            self.visit_patient[keep],
            self.visit_day[keep],
            self.visit_month[keep],
            self.y[keep],
        )


def load_records(path, columns: dict | None = None) -> Records:
    """Read long-format records (default columns of ``placebo_cpeptide_individual.csv``).

    Participants without a month-0 visit are left out (the score conditions on it); days are
    counted from each participant's own baseline visit (the study's day 0 is randomisation).
    """
    import pandas as pd

    c = {
        "study": "study",
        "id": "participant_id",
        "age": "age_years",
        "day": "study_day",
        "month": "month",
        "y": "auc_mean_cpeptide_nmol_l",
    } | (columns or {})
    df = pd.read_csv(path)
    df = df[np.isfinite(df[c["y"]])]
    base = df[df[c["month"]] == 0].groupby(c["id"])[c["day"]].min()
    df = df[df[c["id"]].isin(base.index)].copy()
    df["_d"] = df[c["day"]].to_numpy(float) - base.loc[df[c["id"]]].to_numpy(float)
    ids, inv = np.unique(df[c["id"]].to_numpy(), return_inverse=True)
    first = df.assign(_p=inv).sort_values("_d").groupby("_p").first()
    return Records(
        ids=ids,
        study=first[c["study"]].to_numpy() if c["study"] in df else np.full(len(ids), ""),
        age_years=first[c["age"]].to_numpy(float),
        visit_patient=inv,
        visit_day=df["_d"].to_numpy(float),
        visit_month=df[c["month"]].to_numpy(float),
        y=df[c["y"]].to_numpy(float),
    )


def _to_u(name, v):
    t = PARAMS[name][0]
    return np.log(v) if t == "log" else (special.logit(v) if t == "logit" else v)


def _from_u(name, u):
    t = PARAMS[name][0]
    return np.exp(u) if t == "log" else (special.expit(u) if t == "logit" else u)


def _log_jac(name, u):
    t = PARAMS[name][0]
    if t == "log":
        return u
    if t == "logit":
        # log σ(u) + log(1 − σ(u)) = −softplus(−u) − softplus(u): finite for every finite u
        return -(np.logaddexp(0.0, -u) + np.logaddexp(0.0, u))
    return 0.0


class StructureLikelihood:
    """Marginal log-likelihood per participant of a candidate structure on records."""

    def __init__(
        self,
        table,
        records: Records,
        *,
        baseline_day: float = 60.0,
        lloq_nmol_l: float = LLOQ_NMOL_L,
        n_zeta: int = 37,
        n_eta: int = 33,
        n_xi: int = 1,
        adaptive_zeta: bool = False,
        adaptive_eta: bool = False,
        refine_eta: bool = True,
    ):
        self.table = table
        self.adaptive_zeta = bool(adaptive_zeta)
        self.adaptive_eta = bool(adaptive_eta)
        # adaptive η only: participants whose rule and half rule differ by more than
        # ETA_REFINE_NATS are integrated again on 2n − 1 nodes (False: round 26's rule)
        self.refine_eta = bool(refine_eta)
        if self.adaptive_eta and int(n_xi) > 1:
            raise ValueError(
                "adaptive eta nodes are implemented without a random effect on q (n_xi = 1)"
            )
        self.r = records
        self.baseline_day = float(baseline_day)
        self.lloq = float(lloq_nmol_l)
        self.zeta = np.linspace(-ZETA_FIXED_HALF_WIDTH, ZETA_FIXED_HALF_WIDTH, n_zeta)
        self.eta = np.linspace(-ETA_FIXED_HALF_WIDTH, ETA_FIXED_HALF_WIDTH, n_eta)
        # log weights of the fixed grids: the normal density, normalised over each grid
        lw_z = stats.norm.logpdf(self.zeta)
        lw_e = stats.norm.logpdf(self.eta)
        self._lwz = lw_z - special.logsumexp(lw_z)
        self._lwe = lw_e - special.logsumexp(lw_e)
        # random effect on q (ω_q > 0): Gauss–Hermite nodes ξ, K becomes n_zeta·n_eta·n_xi
        self.n_xi = int(n_xi)
        if self.n_xi > 1:
            x, w = np.polynomial.hermite_e.hermegauss(self.n_xi)
            self.xi = x
            self._lwx = np.log(w / w.sum())
        self._prep()

    def _prep(self):
        r = self.r
        t = self.table
        day = self.baseline_day + r.visit_day
        if np.any(day > t.days[-1]):
            raise ValueError(f"visit at model day {day.max():g} beyond the curve table")
        # table at the visit days minus table at the baseline day: (V, L, Q)
        self._logc_v = _table_at(t, day) - _table_at(t, np.array([self.baseline_day]))
        # (Q, V, L) copy: curves_at_q reads two whole q-slices per evaluation
        self._logc_q = np.ascontiguousarray(np.moveaxis(self._logc_v, 2, 0))
        self._cens = r.y < self.lloq
        self._logy = np.log(np.where(self._cens, self.lloq, r.y))
        self._la = np.log(r.age_years / 10.0)
        order = np.argsort(r.visit_patient, kind="stable")
        # visits sorted by participant (V,) and where each participant's run starts (P,)
        self._order = order
        self._starts = np.flatnonzero(np.r_[True, np.diff(r.visit_patient[order]) != 0])
        self._groups = []
        # each participant's uncensored baseline visit (day 0), −1 if none: it centres the
        # adaptive ζ nodes (zeta_nodes)
        self._base_visit = np.full(len(r.ids), -1)
        for p in range(len(r.ids)):
            v = order[r.visit_patient[order] == p]
            unc = v[~self._cens[v]]
            cen = v[self._cens[v]]
            dd = r.visit_day[unc]
            self._groups.append((unc, cen, np.abs(dd[:, None] - dd[None, :])))
            base = unc[dd == 0]
            if base.size:
                self._base_visit[p] = base[0]

    def log_weights(self, th: dict, nodes=None) -> np.ndarray:
        """Log quadrature weight of every participant's nodes: (P, K), K as in :meth:`log_mu`;
        ``nodes``: :meth:`nodes` at ``th`` if already computed."""
        P = len(self.r.ids)
        _, lwz, _, lwe = self.nodes(th) if nodes is None else nodes
        lw = (lwz[:, :, None] + lwe).reshape(P, -1)
        if self.n_xi > 1:
            lw = (lw[:, :, None] + self._lwx[None, None, :]).reshape(P, -1)
        return lw

    def nodes(self, th: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every participant's quadrature nodes at ``th``: ζ and its log weights (P, Z) from
        :meth:`zeta_nodes`, η and its log weights from :meth:`eta_nodes` ((1, 1, E) on the
        fixed grid, (P, Z, E) adaptive)."""
        zeta, lwz = self.zeta_nodes(th)
        return (zeta, lwz, *self.eta_nodes(th, zeta, lwz))

    def eta_nodes(self, th: dict, zeta: np.ndarray, lwz: np.ndarray):
        """Nodes of the hazard's random effect η and their log weights.

        Fixed grid: the same uniform nodes on [−4, 4] for everyone, shape (1, 1, E), weights
        the normal density normalised over the grid. ``adaptive_eta``: for each participant
        and each ζ node (``zeta``, ``lwz``: (P, Z)) its own E uniform nodes on ±6 SD around
        the mean of η given that participant's visits and that ζ (the inner integral of a
        nested rule), shape (P, Z, E), weights φ(η)·spacing. The moments come from the
        compiled likelihood itself: a first pass on a coarse fixed grid ((E + 1)/2 nodes on
        [−4, 4]), then passes on the adaptive nodes, each re-centring and narrowing the
        nodes of the (participant, ζ node) pairs that carry mass and whose SD is below two
        spacings or whose mean lies within 2 SD of the span's edge, at most
        :data:`ETA_MAX_ZOOM` times. Round 25 found the hard SBC datasets to be those where a
        participant's visits pin η more tightly than the fixed grid's spacing of 0.25
        (docs/calibration.md, "Round 26: η nodes that follow each participant"). Then (round
        27, ``refine_eta``) every other node gives each participant an error estimate, and
        those above :data:`ETA_REFINE_NATS` get 2E − 1 nodes: the shape is then
        (P, Z, 2E − 1), the others' midpoints weighted 0."""
        if not self.adaptive_eta:
            return self.eta[None, None, :], self._lwe[None, None, :]
        if th.get("sigma_bio", 0.0) > 0 or th.get("omega_q", 0.0) != 0:
            raise ValueError(
                "adaptive eta nodes are implemented for independent visits (sigma_bio = 0) "
                'without a random effect on q (omega_q = 0): use eta_nodes = "fixed"'
            )
        return self._adaptive_eta(th, zeta, lwz)[:2]

    def _adaptive_eta(self, th: dict, zeta: np.ndarray, lwz: np.ndarray):
        """:meth:`eta_nodes` when adaptive: (eta, lwe, per-participant log-likelihood (P,),
        passes run). With ``refine_eta`` a participant whose rule and half rule differ by more
        than :data:`ETA_REFINE_NATS` is integrated on 2n − 1 nodes on the same span; the
        nodes returned are then (P, Z, 2n − 1) for everyone, the others' midpoints with
        weight 0 (log −inf), so that they are the rule the log-likelihood was taken on."""
        E = self.eta.size
        W = ETA_ADAPTIVE_HALF_WIDTH
        n0 = (E + 1) // 2
        e0 = np.linspace(-ETA_FIXED_HALF_WIDTH, ETA_FIXED_HALF_WIDTH, n0)
        l0 = stats.norm.logpdf(e0)
        l0 = l0 - special.logsumexp(l0)
        _, mom = self.kernel_pass(th, zeta, lwz, e0[None, None, :], l0[None, None, :], True)
        x = np.linspace(-W, W, E)
        dx = x[1] - x[0]
        centre = mom[..., 0]
        width = np.maximum(mom[..., 1], 0.5 * (e0[1] - e0[0]))
        todo = None  # every participant in the first adaptive pass, then the re-centred ones
        passes = 1
        for it in range(ETA_MAX_ZOOM + 1):
            eta = centre[..., None] + width[..., None] * x
            lwe = -0.5 * eta * eta + (np.log(width * dx) - _LOG_SQRT_2PI)[..., None]
            ll_new, mom_new = self.kernel_pass(th, zeta, lwz, eta, lwe, True, todo)
            passes += 1
            if todo is None:
                ll, mom = ll_new, mom_new
            else:
                ll[todo], mom[todo] = ll_new[todo], mom_new[todo]
            if it == ETA_MAX_ZOOM:
                break
            m, s, lz = mom[..., 0], mom[..., 1], mom[..., 2]
            h = width * dx
            carries = lz - lz.max(axis=1, keepdims=True) > -ETA_NEGLIGIBLE_NATS
            off = np.abs(m - centre) > (W - 2.0) * width
            redo = carries & ((s < 2.0 * h) | off)
            if not redo.any():
                break
            centre = np.where(redo, m, centre)
            width = np.where(redo, np.maximum(s, 0.5 * h), width)
            todo = redo.any(axis=1)
        if self.refine_eta and E >= 5:
            # The half rule (every other node, twice the spacing) as an error estimate:
            # integrands with narrow bumps inside a wide SD (censored visits, a t deviation)
            # are the ones two spacings per SD cannot resolve (round 26's sets 51 and 119).
            half, _ = self.kernel_pass(th, zeta, lwz, eta[..., ::2], lwe[..., ::2] + np.log(2.0))
            passes += 1
            fine = np.abs(ll - half) > ETA_REFINE_NATS
            if fine.any():
                x2 = np.linspace(-W, W, 2 * E - 1)
                eta2 = centre[..., None] + width[..., None] * x2
                lwe2 = (
                    -0.5 * eta2 * eta2
                    + (np.log(width * (x2[1] - x2[0])) - _LOG_SQRT_2PI)[..., None]
                )
                ll2, _ = self.kernel_pass(th, zeta, lwz, eta2, lwe2, False, fine)
                passes += 1
                ll = np.where(fine, ll2, ll)
                # the rule as used, on the 2n − 1 nodes: the others keep their n nodes (the
                # even ones, twice the weight) and give the midpoints no weight
                keep = np.full_like(lwe2, -np.inf)
                keep[..., ::2] = lwe2[..., ::2] + np.log(2.0)
                eta, lwe = eta2, np.where(fine[:, None, None], lwe2, keep)
        return eta, lwe, ll, passes

    def kernel_pass(self, th: dict, zeta, lwz, eta, lwe, moments: bool = False, todo=None):
        """The compiled per-participant log-likelihood (P,) on the given nodes
        (:mod:`structure_kernel`; ζ (P, Z), η (1 or P, 1 or Z, E)), and with ``moments`` also
        (P, Z, 3): the mean and SD of η given each ζ node and the log of that node's mass
        (else None). ``todo`` (P,) bool: only those participants (the others NaN).
        Independent visits (σ_bio = 0) without a random effect on q only."""
        from tregsim.calibrate import structure_kernel as SK

        if not hasattr(self, "_kernel_args"):  # the records' constant arrays, made once
            self._kernel_args = (
                self._la[self.r.visit_patient],
                self._logy,
                self._cens,
                np.r_[self._starts, self._order.size].astype(np.int64),
                self._order.astype(np.int64),
            )
        t = self.table
        mom = np.empty((zeta.shape[0], zeta.shape[1], 3) if moments else (0, 0, 3))
        ll = SK.per_patient_kernel(
            self.curves_at_q(th["q"]),
            *self._kernel_args,
            np.ascontiguousarray(zeta),
            np.ascontiguousarray(lwz),
            np.ascontiguousarray(eta),
            np.ascontiguousarray(lwe),
            float(t.loglam[0]),
            float(t.loglam[1] - t.loglam[0]),
            SK.pack(th, self.lloq),
            mom,
            np.zeros(0, bool) if todo is None else np.ascontiguousarray(todo, bool),
        )
        return ll, (mom if moments else None)

    def zeta_nodes(self, th: dict) -> tuple[np.ndarray, np.ndarray]:
        """Nodes of the baseline-level effect ζ for each participant and their log weights,
        both (P, n_zeta).

        Fixed grid: the same uniform nodes on [−4.5, 4.5] for everyone (weights the normal
        density, normalised over the grid). ``adaptive_zeta``: uniform nodes on ±6 SD around
        the mean of ζ given the participant's baseline visit alone (:meth:`baseline_moments`),
        weights φ(ζ)·spacing. The level is pinned by every visit, so with little noise against
        a wide between-patient spread (σ_meas ≪ s_c) ζ's integrand is narrower than the fixed
        grid's spacing and the fixed grid is off by nats; the adaptive nodes follow it
        (docs/calibration.md, "Quadrature of the records likelihood"). Participants without an
        uncensored baseline visit keep ±4.5."""
        P, n = len(self.r.ids), self.zeta.size
        if not self.adaptive_zeta:
            return (np.broadcast_to(self.zeta, (P, n)), np.broadcast_to(self._lwz, (P, n)))
        ok = self._base_visit >= 0
        c, sd = self.baseline_moments(th)
        w = np.where(ok, sd, ZETA_FIXED_HALF_WIDTH / ZETA_ADAPTIVE_HALF_WIDTH)
        c = np.where(ok, c, 0.0)
        x = np.linspace(-ZETA_ADAPTIVE_HALF_WIDTH, ZETA_ADAPTIVE_HALF_WIDTH, n)
        zeta = c[:, None] + w[:, None] * x[None, :]
        # φ(ζ) in closed form: scipy's logpdf costs more than the rest of this method
        lwz = -0.5 * zeta * zeta + (np.log(w * (x[1] - x[0])) - _LOG_SQRT_2PI)[:, None]
        return zeta, lwz

    def baseline_moments(self, th: dict, n_nodes: int = 81, max_zoom: int = 6):
        """Mean and SD of ζ given each participant's baseline visit alone (ln y0 = ℓ + e at
        day 0, no hazard involved), both (P,); NaN where there is no uncensored baseline.

        The density is exact (heteroscedastic SD σ_meas·h(ℓ), optional σ_add; Student-t with
        ν = 1/``inv_nu`` when ``inv_nu`` > 0, whose tails keep a far-off baseline from pinning
        the nodes where the later visits do not put the level), so not Gaussian in ζ when
        κ ≠ 0; its moments are taken on a uniform grid of ``n_nodes`` over
        ζ ∈ [−8, 8], zooming in on the mode (half-width 10 spacings, a quarter of the spacing
        each time, at most ``max_zoom`` times) while the SD is below two spacings."""
        b = self._base_visit
        ok = b >= 0
        logy0 = self._logy[np.where(ok, b, 0)][:, None]
        base = (th["mu_c"] + th["mu_a"] * self._la)[:, None]
        kap, sa, sm, s_c = (
            th.get("kappa", 0.0),
            th.get("sigma_add", 0.0),
            th["sigma_meas"],
            th["s_c"],
        )

        inv_nu = float(th.get("inv_nu", 0.0))

        def logp(z):
            lev = base + s_c * z
            var = (sm * deviation_scale(lev, kap, self.lloq)) ** 2
            if sa:
                var = var + (sa * np.exp(-lev)) ** 2
            if inv_nu > 0:  # a Student-t baseline deviation: its tails keep ζ's range wide
                r2 = (logy0 - lev) ** 2 / var
                return -0.5 * (1.0 + 1.0 / inv_nu) * np.log1p(r2 * inv_nu) - 0.5 * (
                    np.log(var) + z * z
                )
            return -0.5 * ((logy0 - lev) ** 2 / var + np.log(var) + z * z)

        P = logy0.shape[0]
        u = np.linspace(-1.0, 1.0, n_nodes)
        centre, half = np.zeros(P), np.full(P, 8.0)
        mean, sd = np.full(P, np.nan), np.full(P, np.nan)
        todo = np.ones(P, bool)
        with np.errstate(all="ignore"):
            for it in range(max_zoom + 1):
                z = centre[:, None] + half[:, None] * u[None, :]
                f = logp(z)
                f = f - f.max(axis=1, keepdims=True)
                wt = np.exp(f)
                wt /= wt.sum(axis=1, keepdims=True)
                m = (wt * z).sum(axis=1)
                s = np.sqrt(np.maximum((wt * (z - m[:, None]) ** 2).sum(axis=1), 0.0))
                step = 2.0 * half / (n_nodes - 1)
                done = todo & ((s >= 2.0 * step) | (it == max_zoom))
                mean[done], sd[done] = m[done], np.maximum(s[done], 1e-12)
                todo &= ~done
                if not todo.any():
                    break
                centre = np.where(todo, z[np.arange(P), f.argmax(axis=1)], centre)
                half = np.where(todo, 10.0 * step, half)
        return np.where(ok, mean, np.nan), np.where(ok, sd, np.nan)

    def log_mu(self, th: dict, nodes=None) -> np.ndarray:
        """log noise-free C-peptide at every visit and node: (V, K), K = n_zeta·n_eta
        (·n_xi with a random effect on q, ``th["omega_q"]``); ``nodes``: :meth:`nodes`
        at ``th`` if already computed."""
        zeta, _, eta, _ = self.nodes(th) if nodes is None else nodes
        vp = self.r.visit_patient
        zeta = zeta[vp]
        eta = eta[vp] if eta.shape[0] > 1 else eta  # (V or 1, Z or 1, E)
        om_q = th.get("omega_q", 0.0)
        if self.n_xi > 1:
            lq = special.logit(th["q"])
            parts = [
                self._log_mu_one(th | {"q": float(special.expit(lq + om_q * x))}, zeta, eta)
                for x in self.xi
            ]
            return np.stack(parts, axis=-1).reshape(parts[0].shape[0], -1)
        if om_q != 0:
            raise ValueError("omega_q > 0 needs StructureLikelihood(..., n_xi > 1)")
        return self._log_mu_one(th, zeta, eta)

    def curves_at_q(self, q: float) -> np.ndarray:
        """log c(visit day) − log c(baseline day) of the curve table at deceleration ``q``
        (linear in q, clipped to its grid), at every visit and ln λ node: (V, L)."""
        t = self.table
        fq = (np.clip(q, t.q[0], t.q[-1]) - t.q[0]) / (t.q[1] - t.q[0])
        j = min(int(fq), len(t.q) - 2)
        bq = fq - j
        return (1 - bq) * self._logc_q[j] + bq * self._logc_q[j + 1]

    def _log_mu_one(self, th: dict, zeta: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """:meth:`log_mu` at one q; ``zeta`` (V, Z) and ``eta`` (V or 1, Z or 1, E) the nodes
        of each visit's participant."""
        t = self.table
        r = self.r
        lc = self.curves_at_q(th["q"])  # (V, L)
        la = self._la[r.visit_patient]  # (V,)
        lev = th["mu_c"] + th["mu_a"] * la[:, None] + th["s_c"] * zeta  # (V, Z)
        loglam = (
            np.log(th["lambda_ref"])
            - th["gamma_a"] * la[:, None, None]
            - th["beta_c"]
            * np.exp(-th.get("gamma_beta", 0.0) * la)[:, None, None]
            * (lev[:, :, None] - LOG_CREF)
            - th.get("beta_lin", 0.0) * (np.exp(lev[:, :, None]) - np.exp(LOG_CREF))
            + th["omega_lambda"] * eta
        )  # (V, Z, E)
        f = (np.clip(loglam, t.loglam[0], t.loglam[-1]) - t.loglam[0]) / (t.loglam[1] - t.loglam[0])
        i = np.minimum(f.astype(int), len(t.loglam) - 2)
        a = f - i
        rows = np.arange(lc.shape[0])[:, None, None]
        c = (1 - a) * lc[rows, i] + a * lc[rows, i + 1]
        c = depletion_curve(c, th.get("beta_dyn", 0.0))
        return (lev[:, :, None] + c).reshape(lc.shape[0], -1)

    def per_patient(self, th: dict, visits: np.ndarray | None = None) -> np.ndarray:
        """Log marginal likelihood of each participant, (P,); ``visits`` (V,) bool restricts
        the visits used (e.g. the baseline only).

        Residual covariance of a participant's uncensored visits at node k:
        D_k (σ_bio² exp(−|Δd|/τ_bio)) D_k + diag(σ_meas²·h² + (σ_add/μ)²), where
        h = (μ / 0.6 nmol/L)^(−κ) scales the biological deviation (D_k = diag(h)) when
        σ_bio > 0, else the one residual σ_meas. Normal deviations only: a Student-t one
        (``inv_nu`` > 0) is :func:`tregsim.calibrate.structure_run.independent_log_lik`'s.
        """
        if th.get("inv_nu", 0.0) > 0:
            raise ValueError(
                "per_patient is the normal deviation's likelihood; for inv_nu > 0 use "
                "tregsim.calibrate.structure_run.independent_log_lik"
            )
        nodes = self.nodes(th)
        lm = self.log_mu(th, nodes)
        res = self._logy[:, None] - lm  # (V, K)
        sm2, sb2, tau = th["sigma_meas"] ** 2, th["sigma_bio"] ** 2, th["tau_bio"]
        sa = th.get("sigma_add", 0.0)
        kap = th.get("kappa", 0.0)
        h2 = deviation_scale(lm, kap, self.lloq) ** 2 if kap != 0 else np.ones_like(lm)
        var_e = sm2 * (h2 if sb2 == 0 else 1.0) + (sa * np.exp(-lm)) ** 2  # (V, K)
        var_b = sb2 * h2 if sb2 > 0 else np.zeros_like(lm)  # (V, K)
        simple = sa == 0 and kap == 0  # covariance the same at every node
        logw = self.log_weights(th, nodes)
        out = np.empty(len(self._groups))
        for p, (unc, cen, dd) in enumerate(self._groups):
            if visits is not None:
                ku, kc = visits[unc], visits[cen]
                unc_p, cen_p, dd_p = unc[ku], cen[kc], dd[np.ix_(ku, ku)]
            else:
                unc_p, cen_p, dd_p = unc, cen, dd
            ll = logw[p].copy()
            n = unc_p.size
            if n:
                Rc = np.exp(-dd_p / tau)
                if simple:
                    L = np.linalg.cholesky(sb2 * Rc + sm2 * np.eye(n))
                    z = np.linalg.solve(L, res[unc_p])
                    logdet = 2 * np.sum(np.log(np.diag(L)))
                    quad = np.sum(z * z, axis=0)
                elif n == 1 or sb2 == 0:
                    v = var_e[unc_p] + var_b[unc_p]
                    logdet = np.sum(np.log(v), axis=0)
                    quad = np.sum(res[unc_p] ** 2 / v, axis=0)
                else:
                    sdb = np.sqrt(var_b[unc_p]).T  # (K, n)
                    cov = Rc[None] * sdb[:, :, None] * sdb[:, None, :]
                    cov = cov + np.eye(n)[None] * var_e[unc_p].T[:, :, None]
                    L = np.linalg.cholesky(cov)
                    z = np.linalg.solve(L, res[unc_p].T[:, :, None])[..., 0]
                    logdet = 2 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
                    quad = np.sum(z * z, axis=1)
                ll += (
                    -0.5 * quad
                    - 0.5 * logdet
                    - 0.5 * n * np.log(2 * np.pi)
                    - np.sum(self._logy[unc_p])  # density of y, not log y
                )
            if cen_p.size:
                sd = np.sqrt(var_e[cen_p] + var_b[cen_p])
                ll += special.log_ndtr(res[cen_p] / sd).sum(axis=0)
            out[p] = special.logsumexp(ll)
        return out


def _table_at(t, day: np.ndarray) -> np.ndarray:
    f = (np.clip(day, t.days[0], t.days[-1]) - t.days[0]) / (t.days[1] - t.days[0])
    k = np.minimum(f.astype(int), len(t.days) - 2)
    c = (f - k)[:, None, None]
    return (1 - c) * np.moveaxis(t.logc[:, :, k], 2, 0) + c * np.moveaxis(t.logc[:, :, k + 1], 2, 0)


@dataclass
class StructureFit:
    candidate: str
    theta: dict
    log_post: float
    log_lik: float
    n_params: int
    success: bool
    message: str = ""
    extra: dict = field(default_factory=dict)


def fit_structure(
    like: StructureLikelihood,
    candidate: str,
    *,
    start: dict | None = None,
    maxiter: int = 400,
) -> StructureFit:
    """MAP of a candidate's free parameters (weak priors, unconstrained coordinates)."""
    free, fixed = CANDIDATES[candidate]
    s = START | (start or {})
    u0 = np.array([_to_u(n, s[n]) for n in free], float)

    def theta(u):
        return {n: float(_from_u(n, u[k])) for k, n in enumerate(free)} | fixed

    def neg(u):
        th = theta(u)
        with np.errstate(all="ignore"):
            ll = like.per_patient(th).sum()
        lp = sum(PARAMS[n][1].logpdf(th[n]) + _log_jac(n, u[k]) for k, n in enumerate(free))
        v = -(ll + lp)
        return v if np.isfinite(v) else 1e12

    res = optimize.minimize(neg, u0, method="L-BFGS-B", options={"maxiter": maxiter})
    # a Nelder-Mead polish: the tabulated likelihood is piecewise smooth
    res2 = optimize.minimize(
        neg, res.x, method="Nelder-Mead", options={"maxiter": 1500, "xatol": 1e-3, "fatol": 1e-3}
    )
    best = res2 if res2.fun <= res.fun else res
    th = theta(best.x)
    return StructureFit(
        candidate=candidate,
        theta=th,
        log_post=-float(best.fun),
        log_lik=float(like.per_patient(th).sum()),
        n_params=len(free),
        success=bool(res.success or res2.success),
        message=str(best.message),
    )


def conditional_score(like: StructureLikelihood, th: dict) -> np.ndarray:
    """log p(later visits | baseline visit) per participant (nats), (P,)."""
    base = like.r.visit_month == 0
    return like.per_patient(th) - like.per_patient(th, visits=base)


# ------------------------------------------------------------------------- simulation
def _deviations(rng: np.random.Generator, shape: tuple, th: dict) -> np.ndarray:
    """Standardised within-patient deviations: Student-t with ν = 1/``th["inv_nu"]`` degrees of
    freedom (round 18 candidate); a contaminated normal (N(0, 1), scale ``mix_k`` with
    probability ``mix_p``; round 20 candidate); standard normal (the same stream as before)
    without them."""
    if th.get("mix_p", 0.0) > 0:  # benchmarks/structure_extension_loso.py's scale_mixture
        z = rng.standard_normal(shape)
        return z * np.where(rng.random(shape) < th["mix_p"], th["mix_k"], 1.0)
    inv_nu = th.get("inv_nu", 0.0)
    return rng.standard_t(1.0 / inv_nu, shape) if inv_nu > 0 else rng.standard_normal(shape)


def simulate_observed(
    table,
    th: dict,
    age_years: np.ndarray,
    months: np.ndarray,
    rng: np.random.Generator,
    *,
    n_rep: int = 1,
    baseline_day: float = 60.0,
    lloq_nmol_l: float = LLOQ_NMOL_L,
    below_lloq: str = "half_lloq",
    treated_factor: np.ndarray | None = None,
) -> np.ndarray:
    """Observed C-peptide (nmol/L) of ``n_rep`` virtual cohorts with these ages, at the
    nominal ``months`` after each patient's baseline visit: (n_rep, P, T). The structure's
    draws (ζ, η, the OU path, the assay error) are as in the module docstring."""
    age = np.asarray(age_years, float)
    P, T = age.size, len(months)
    la = np.log(age / 10.0)
    zeta = rng.standard_normal((n_rep, P))
    eta = rng.standard_normal((n_rep, P))
    lev = th["mu_c"] + th["mu_a"] * la + th["s_c"] * zeta
    loglam = (
        np.log(th["lambda_ref"])
        - th["gamma_a"] * la
        - th["beta_c"] * np.exp(-th.get("gamma_beta", 0.0) * la) * (lev - LOG_CREF)
        - th.get("beta_lin", 0.0) * (np.exp(lev) - np.exp(LOG_CREF))
        + th["omega_lambda"] * eta
    )
    d = np.asarray(months, float) * DAYS_PER_MONTH
    logc = table(
        loglam[..., None], np.full_like(loglam[..., None], th["q"]), baseline_day + d
    ) - table(loglam[..., None], np.full_like(loglam[..., None], th["q"]), np.array([baseline_day]))
    b = ou_paths(rng, (n_rep, P), d, th["sigma_bio"], th["tau_bio"])
    logmu = lev[..., None] + logc
    if treated_factor is not None:  # (P,) multiplies every visit after the baseline
        logmu[..., 1:] += np.log(np.asarray(treated_factor, float))[:, None]
    het = deviation_scale(logmu, th.get("kappa", 0.0), lloq_nmol_l)
    if th["sigma_bio"] > 0:
        b = b * het  # κ scales the biological deviation
        het = 1.0
    sd_e = np.sqrt((th["sigma_meas"] * het) ** 2 + (th.get("sigma_add", 0.0) * np.exp(-logmu)) ** 2)
    y = np.exp(logmu + b + sd_e * _deviations(rng, (n_rep, P, T), th))
    if below_lloq == "half_lloq":
        y = np.where(y < lloq_nmol_l, lloq_nmol_l / 2, y)
    return y


def simulate_records(
    table,
    th: dict,
    records: Records,
    rng: np.random.Generator,
    *,
    n_rep: int = 1,
    baseline_day: float = 60.0,
    lloq_nmol_l: float = LLOQ_NMOL_L,
    below_lloq: str = "half_lloq",
) -> np.ndarray:
    """Observed C-peptide (nmol/L) of the records' own participants (ages) at their own visit
    days (days after each one's baseline visit), under structure ``th``: (n_rep, V) in the
    order of ``records.y``. Draws as :func:`simulate_observed` (ζ, η per participant; the OU
    deviation along each participant's visits; independent assay error); with
    ``below_lloq = "half_lloq"`` values below the LLOQ are coded LLOQ/2 as in the records."""
    r = records
    P, V = len(r.ids), r.y.size
    la = np.log(np.asarray(r.age_years, float) / 10.0)
    zeta = rng.standard_normal((n_rep, P))
    eta = rng.standard_normal((n_rep, P))
    lev = th["mu_c"] + th["mu_a"] * la + th["s_c"] * zeta
    loglam = (
        np.log(th["lambda_ref"])
        - th["gamma_a"] * la
        - th["beta_c"] * np.exp(-th.get("gamma_beta", 0.0) * la) * (lev - LOG_CREF)
        - th.get("beta_lin", 0.0) * (np.exp(lev) - np.exp(LOG_CREF))
        + th["omega_lambda"] * eta
    )  # (n_rep, P)
    vp = r.visit_patient
    lv = loglam[:, vp]  # (n_rep, V)
    qv = np.full_like(lv, th["q"])
    logmu = lev[:, vp] + depletion_curve(
        table(lv, qv, baseline_day + r.visit_day[None, :])
        - table(lv, qv, np.full_like(lv, baseline_day)),
        th.get("beta_dyn", 0.0),
    )
    # OU deviation along each participant's visits in day order (exact AR(1) transitions)
    z = rng.standard_normal((n_rep, V))
    b = np.zeros((n_rep, V))
    if th.get("sigma_bio", 0.0) > 0:
        sd, tau = th["sigma_bio"], th["tau_bio"]
        order = np.lexsort((r.visit_day, vp))
        prev = -1
        for k in order:
            if prev >= 0 and vp[prev] == vp[k]:
                rho = np.exp(-(r.visit_day[k] - r.visit_day[prev]) / tau)
                b[:, k] = rho * b[:, prev] + sd * np.sqrt(1 - rho**2) * z[:, k]
            else:
                b[:, k] = sd * z[:, k]
            prev = k
    het = deviation_scale(logmu, th.get("kappa", 0.0), lloq_nmol_l)
    if th.get("sigma_bio", 0.0) > 0:
        b = b * het
        het = 1.0
    sd_e = np.sqrt((th["sigma_meas"] * het) ** 2 + (th.get("sigma_add", 0.0) * np.exp(-logmu)) ** 2)
    y = np.exp(logmu + b + sd_e * _deviations(rng, (n_rep, V), th))
    if below_lloq == "half_lloq":
        y = np.where(y < lloq_nmol_l, lloq_nmol_l / 2, y)
    return y


def ou_paths(rng, shape: tuple, days: np.ndarray, sd: float, tau_days: float) -> np.ndarray:
    """Stationary OU deviations at ``days`` (increasing): shape + (len(days),); exact AR(1)
    transitions corr = exp(−Δd/τ)."""
    days = np.asarray(days, float)
    z = rng.standard_normal((*shape, days.size))
    out = np.empty_like(z)
    if sd == 0:
        return np.zeros_like(z)
    out[..., 0] = sd * z[..., 0]
    for k in range(1, days.size):
        rho = np.exp(-(days[k] - days[k - 1]) / tau_days)
        out[..., k] = rho * out[..., k - 1] + sd * np.sqrt(1 - rho**2) * z[..., k]
    return out


# ------------------------------------------------------------------ model-based power
def simulate_two_arm_trials(
    table,
    th: dict | list[dict],
    age_pool: np.ndarray,
    n_per_arm: int,
    relative_effect: float,
    rng: np.random.Generator,
    *,
    month: int = 12,
    n_trials: int = 1000,
    baseline_day: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The virtual trials of :func:`ancova_power_by_simulation` at one N per arm: observed
    AUC (nmol/L) at baseline and ``month``, shape (n_trials, 2·n_per_arm, 2), and the
    patients' ages (years), (n_trials, 2·n_per_arm); the first n_per_arm patients of each
    trial are the control arm, the rest treated (noise-free C-peptide at ``month`` times
    1 + ``relative_effect``). Trial r takes structure r mod len(``th``)."""
    thetas = [th] if isinstance(th, dict) else list(th)
    if not thetas:
        raise ValueError("simulate_two_arm_trials: th is an empty list of structures")
    n = int(n_per_arm)
    ages = rng.choice(np.asarray(age_pool, float), size=(n_trials, 2 * n))
    y = np.empty((n_trials, 2 * n, 2))
    for r in range(n_trials):
        y[r] = simulate_observed(
            table,
            thetas[r % len(thetas)],
            ages[r],
            np.array([0, month]),
            rng,
            n_rep=1,
            baseline_day=baseline_day,
            treated_factor=np.r_[np.ones(n), np.full(n, 1 + relative_effect)],
        )[0]
    return y, ages


def ancova_power_by_simulation(
    table,
    th: dict | list[dict],
    age_pool: np.ndarray,
    n_per_arm: np.ndarray,
    relative_effect: float,
    rng: np.random.Generator,
    *,
    month: int = 12,
    n_trials: int = 1000,
    alpha: float = 0.05,
    baseline_day: float = 60.0,
) -> np.ndarray:
    """Power of the TrialNet ANCOVA (ln(y_m+1) ~ arm + ln(y_0+1) + age, two-sided t-test of
    the arm coefficient) in virtual two-arm trials, for each N per arm.

    Patients' ages are drawn from ``age_pool`` (years); the treated arm's noise-free C-peptide
    at ``month`` is (1 + ``relative_effect``) times what it would have been (the treatment
    effect acts on β-cell function, before the observation model); baseline untouched.
    ``th``: one structure for every trial, or a list (e.g. posterior draws) of which trial r
    takes item r mod its length, so the power averages over the parameters' uncertainty.
    """
    out = []
    for n in np.atleast_1d(n_per_arm):
        n = int(n)
        y, ages = simulate_two_arm_trials(
            table,
            th,
            age_pool,
            n,
            relative_effect,
            rng,
            month=month,
            n_trials=n_trials,
            baseline_day=baseline_day,
        )
        arm = np.r_[np.zeros(n), np.ones(n)]
        x0 = np.log1p(y[:, :, 0])
        xm = np.log1p(y[:, :, 1])
        X = np.stack([np.ones_like(x0), np.broadcast_to(arm, x0.shape), x0, ages], axis=2)
        XtX = np.einsum("rpi,rpj->rij", X, X)
        beta = np.linalg.solve(XtX, np.einsum("rpi,rp->ri", X, xm)[..., None])[..., 0]
        res = xm - np.einsum("rpi,ri->rp", X, beta)
        df = 2 * n - 4
        s2 = np.sum(res**2, axis=1) / df
        se = np.sqrt(s2 * np.linalg.inv(XtX)[:, 1, 1])
        t = beta[:, 1] / se
        out.append(float(np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, df))))
    return np.asarray(out)


# ------------------------------------------------------------------ the acceptance table
def structure_check(
    records_path,
    theta: dict,
    *,
    seed: int = 20261205,
    n_rep: int = 400,
    n_boot: int = 2000,
    table=None,
    months=(0, 6, 12, 18, 24),
) -> list[dict]:
    """Observed vs simulated trial statistics (rows of ``trial_statistics.csv``).

    Observed: the records' statistics with participant-bootstrap 95 % intervals. Simulated:
    ``n_rep`` virtual cohorts with the records' ages and visit pattern, observed visits from
    the structure ``theta`` (mean and central 95 % over cohorts).
    """
    import pandas as pd

    from tregsim.trial_statistics import (
        cohort_statistics,
        comparison_rows,
        to_wide,
        trial_statistics,
    )

    if table is None:
        import tregsim
        from tregsim.calibrate.likelihood import CurveTable

        table = CurveTable(
            tregsim.load_model("treg_t1d"),
            fixed={"s0": 0.41, "k_re": 0.02},
            n_loglam=121,
            n_q=21,
            max_day=1250.0,
            day_step=5.0,
        )
    d = pd.read_csv(records_path)
    _, wide, age = to_wide(
        d.participant_id, d.month, d.auc_mean_cpeptide_nmol_l, d.age_years, months=months
    )
    obs = trial_statistics(
        d.participant_id, d.age_years, d.month, d.auc_mean_cpeptide_nmol_l, n_boot=n_boot, seed=seed
    )
    y = simulate_observed(
        table, theta, age, np.array(months), np.random.default_rng(seed), n_rep=n_rep
    )
    sim = cohort_statistics(y, age, months=months, present=np.isfinite(wide))
    return comparison_rows(obs, sim)
