"""The twin of real participants under the records structure of individual variability: what
``tregsim twin`` computes with a records posterior (the shipped ``natural_history.nc``).

The lumped :class:`tregsim.twin.Twin` treats a participant's course as proportional to a
latent baseline b with a log-normal error. The records structure (docs/calibration.md,
"Structure of individual variability") is not of that form: the loss hazard depends on the
noise-free baseline level itself and the visit deviation is a heteroscedastic Student-t. For
participant i (age a) and posterior draw θ_k:

* latent noise-free level on the structure's reference day t_ref after diagnosis (60 days:
  where the records likelihood put every participant's month-0 visit, so that the posterior's
  baseline law is the law of this level) ℓ = ln μ₀ ~ N(μ_c + μ_a ln(a/10), s_c²) (ln nmol/L),
  hazard random effect η ~ N(0, 1);
* λ0 = λ_ref (a/10)^−γ_a (μ₀/0.6)^−β_c exp(−β_lin (μ₀ − 0.6)) e^(ω_λ η) (1/day), and
  ln μ(d) = ℓ + ln c(d; λ0, q) − ln c(t_ref; λ0, q) on day d after diagnosis (the
  participant's own MMTT days, before or after t_ref, and visits counted from their own
  baseline visit), from the structure's curve table
  (:class:`tregsim.calibrate.likelihood.CurveTable`, s₀ and k_re as the posterior fixed them);
* each MMTT y (nmol/L) is ln y = ln μ(d) + σ_meas h(μ) T, T ~ t_ν (ν = 1/inv_nu; normal when
  0), h = (max(μ, LLOQ)/0.6)^−κ; below the LLOQ it enters as P(y < LLOQ). A fasting value
  enters through the experiment's fasting model, as in the lumped twin.

The posterior over (k, ℓ, η) is a grid: K draws (equal prior weight), ``n_level`` nodes of ℓ
over ±6 prior SDs of each draw (trapezoid), ``n_eta`` Gauss–Hermite nodes. The predictive
distribution of observed ln(AUC + 1) at a visit (LLOQ/2 recorded below the LLOQ, as the records
and the virtual trials do) is the weighted mixture over those nodes: its mean and SD by
Gauss–Hermite nodes mapped to the t (:func:`tregsim.observe.student_t_from_normal`; tabulated
per draw in ln μ once), its
quantiles by bisection on the mixture's CDF over ``n_mixture`` nodes drawn from the weights
by systematic resampling (no random numbers). Checked against Monte Carlo through the model
solver and :func:`tregsim.observe.observe_visits` (``tests/test_twin_structure.py``).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import special, stats

from tregsim import rng as _rng
from tregsim.calibrate import variability as V
from tregsim.errors import ArgumentError
from tregsim.observe import (
    C_REF_NMOL_L,
    deviation_scale,
    log1p_recorded,
    student_t_from_normal,
)
from tregsim.units import DAYS_PER_MONTH

STRUCTURE_NAMES = tuple(n for n in V.CANDIDATES["lincovariate+power+t"][0] if n != "inv_nu")
"""Posterior variables a records-structure twin needs (``inv_nu`` optional: 0 = normal)."""

_LOG_CREF = float(np.log(C_REF_NMOL_L))
_N_T = 40  # Gauss–Hermite nodes of a visit's deviation, mapped to the t (as StructureTwinGrid)
_TRIM = 1e-7  # grid mass left out of the predictive mixture (its mean moves by ≲ 1e-7)
# E[g] and E[g²] of a visit as functions of ln μ, per draw, tabulated once: ln(1e-4) to
# ln(20 nmol/L) by 0.011 (linear interpolation error ≲ 1e-5 on these smooth convolutions)
_M_GRID = np.linspace(np.log(1e-4), np.log(20.0), 1200)


def has_structure(draws: dict) -> bool:
    """Whether posterior ``draws`` carry the records structure (:data:`STRUCTURE_NAMES`)."""
    return all(k in draws for k in STRUCTURE_NAMES)


class StructureTwin:
    """K posterior draws of the records structure, ready to predict participants' courses.

    Parameters
    ----------
    model : compiled model (its curve table is built from it).
    theta_draws : name → (n,) posterior draws (chains flattened): :data:`STRUCTURE_NAMES`,
        optionally ``inv_nu``, ``s0``, ``k_re`` (their medians fix the curve table; default the
        structure's 0.41 and 0.02/day).
    n_draws : K joint draws taken with replacement (stream ``twin.theta``, as :class:`Twin`);
        ``None``: every draw of ``theta_draws`` once, in order.
    seed : master seed.
    lloq_nmol_l : MMTT LLOQ (default: the model's).
    fasting : :class:`tregsim.twin.FastingModel` for fasting C-peptide (else ignored).
    n_level, n_eta : grid nodes of the latent level and of the hazard's random effect.
    n_mixture : nodes resampled for the quantiles.
    reference_day : t_ref, days after diagnosis of the level the baseline law describes (the
        records config's ``[cohort] baseline_day``).
    """

    def __init__(
        self,
        model,
        theta_draws: dict,
        *,
        n_draws: int | None = 256,
        seed: int = 0,
        lloq_nmol_l: float | None = None,
        fasting=None,
        n_level: int = 81,
        n_eta: int = 12,
        n_mixture: int = 1000,
        reference_day: float = 60.0,
    ):
        missing = [k for k in STRUCTURE_NAMES if k not in theta_draws]
        if missing:
            raise ArgumentError(
                f"the posterior has no records structure: {missing} missing",
                field="posterior",
                fix="give a records-likelihood posterior (the shipped natural_history.nc)",
            )
        n_post = len(np.asarray(theta_draws["lambda_ref"]))
        all_draws = n_draws is None
        n_draws = n_post if all_draws else int(n_draws)
        if n_draws < 1 or n_level < 11 or n_eta < 1 or n_mixture < 10:
            raise ArgumentError(
                f"n_draws {n_draws}, n_level {n_level}, n_eta {n_eta}, n_mixture {n_mixture}",
                field="n_draws",
                fix="use n_draws ≥ 1, n_level ≥ 11, n_eta ≥ 1, n_mixture ≥ 10",
            )
        self.model = model
        self.n_draws, self.seed = n_draws, int(seed)
        pick = (
            np.arange(n_post)
            if all_draws
            else _rng.draw(
                self.seed, "twin.theta", 0, n_draws, lambda g, k: g.integers(0, n_post, size=k)
            )
        )
        th = {k: np.asarray(v, float)[pick] for k, v in theta_draws.items()}
        th.setdefault("inv_nu", np.zeros(self.n_draws))
        self.theta = th
        self.fixed = {
            "s0": float(np.median(theta_draws.get("s0", [0.41]))),
            "k_re": float(np.median(theta_draws.get("k_re", [0.02]))),
        }
        d = model.defaults()
        self.lloq = float(d["LLOQ"]) if lloq_nmol_l is None else float(lloq_nmol_l)
        self.fasting = fasting
        # latent level: u = (ℓ − m_k)/s_k on ±6, trapezoid weights times the prior density
        self.u = np.linspace(-6.0, 6.0, int(n_level))
        lw_u = -0.5 * self.u**2 + np.log(np.gradient(self.u))
        lw_u[[0, -1]] -= np.log(2.0)
        xe, we = np.polynomial.hermite_e.hermegauss(int(n_eta))
        self.eta = xe
        # (L, E) log prior weight of each grid node, the same for every draw
        self.log_w0 = lw_u[:, None] + np.log(we / we.sum())[None, :]
        self.n_mixture = int(n_mixture)
        self.reference_day = float(reference_day)
        self._table = None
        self._k = np.arange(self.n_draws)[:, None, None]  # draw index of the (K, L, E) grid
        self._moments = self._visit_moments()

    def _visit_moments(self) -> np.ndarray:
        """(2, K, M) E[g] and E[g²] of one observed visit, g = ln(y + 1) (LLOQ/2 below the
        LLOQ), at ln μ = :data:`_M_GRID`, under each draw's deviation: Gauss–Hermite nodes
        mapped to its t (as :class:`tregsim.twin.StructureTwinGrid`)."""
        t = self.theta
        xo, wo = np.polynomial.hermite_e.hermegauss(_N_T)
        wo = wo / wo.sum()
        tq = student_t_from_normal(xo[None, :], t["inv_nu"][:, None])  # (K, G)
        out = np.empty((2, self.n_draws, _M_GRID.size))
        for k in range(self.n_draws):
            sc = self._scale(_M_GRID, k)
            g = log1p_recorded(_M_GRID[:, None] + sc[:, None] * tq[k], self.lloq)  # (M, G)
            out[0, k], out[1, k] = g @ wo, (g * g) @ wo
        return out

    # ---- curves
    def table(self, max_day: float):
        """The structure's curve table up to ``max_day`` (days since diagnosis), built once
        and rebuilt only for a longer horizon."""
        from tregsim.calibrate.likelihood import CurveTable

        if self._table is None or self._table.days[-1] < max_day:
            step = 5.0
            self._table = CurveTable(
                self.model, fixed=self.fixed, max_day=step * np.ceil(max_day / step + 1)
            )
        return self._table

    def _log_lambda(self, age: float, lev: np.ndarray) -> np.ndarray:
        """(K, L, E) ln λ0 (1/day) at latent levels ``lev`` (K, L)."""
        t = self.theta
        la = np.log(age / 10.0)
        base = np.log(t["lambda_ref"]) - t["gamma_a"] * la
        cov = -t["beta_c"][:, None] * (lev - _LOG_CREF) - t["beta_lin"][:, None] * (
            np.exp(lev) - C_REF_NMOL_L
        )
        return (base[:, None] + cov)[..., None] + t["omega_lambda"][:, None, None] * self.eta

    def _scale(self, log_mu: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Scale of the deviation of ln(observed) about ``log_mu``, σ_meas·h(μ), of draws
        ``k`` (an index array broadcast with ``log_mu``)."""
        t = self.theta
        return t["sigma_meas"][k] * deviation_scale(log_mu, t["kappa"][k], self.lloq)

    def _log_obs(self, z: np.ndarray, censored: bool) -> np.ndarray:
        """log density (uncensored, without −ln scale) or log CDF (censored) of the
        standardised deviation ``z`` (K, ...) under each draw's t (normal where inv_nu = 0)."""
        v = self.theta["inv_nu"].reshape((-1,) + (1,) * (z.ndim - 1))
        nu = 1.0 / np.where(v > 0, v, 1.0)
        if censored:
            return np.where(v > 0, stats.t.logcdf(z, nu), stats.norm.logcdf(z))
        return np.where(v > 0, stats.t.logpdf(z, nu), stats.norm.logpdf(z))

    # ---- prediction
    def predict_arrays(self, records, *, months, levels, progress: bool = False):
        """The twin of every participant in ``records`` (:class:`tregsim.twin.TwinRecords`) at
        ``months`` (≥ 0, checked by the caller) after their own baseline visit, as arrays:
        visit days since diagnosis,
        mean and SD of observed ln(AUC + 1) (P, V), its quantiles at ``levels`` (P, V, Q) and
        the effective number of the K draws (their marginal weights) (P,), and the
        two-sided prior predictive p of each baseline MMTT (P,) (:meth:`_baseline_p`).
        :func:`tregsim.twin.predict_structure_twin` wraps them in a ``TwinPrediction``.
        ``progress``: a bar over participants on stderr (≈ 0.3–0.6 s each at K = 256)."""
        months = np.asarray(months, float)
        levels = np.asarray(levels, float)
        P, V = records.n, months.size
        vis_days = records.baseline_day[:, None] + months[None, :] * DAYS_PER_MONTH
        table = self.table(float(max(vis_days.max(), self.reference_day)))
        mean = np.empty((P, V))
        sd = np.empty((P, V))
        q = np.empty((P, V, levels.size))
        ess = np.empty(P)
        base_p = np.empty(P)
        rows = range(P)
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc="twin", unit="participant", file=sys.stderr)
        for i in rows:
            mean[i], sd[i], q[i], ess[i], base_p[i] = self._one(
                records, i, vis_days[i], table, levels
            )
        return vis_days, mean, sd, q, ess, base_p

    def _one(self, records, i: int, vis_days: np.ndarray, table, levels):
        t = self.theta
        age = float(records.age_years[i])
        mine = records.mmtt_participant == i
        m_days = records.mmtt_day[mine]
        m_logy = np.log(records.mmtt_nmol_l[mine])
        m_cens = records.mmtt_censored[mine]
        centre = t["mu_c"] + t["mu_a"] * np.log(age / 10.0)
        lev = centre[:, None] + t["s_c"][:, None] * self.u[None, :]  # (K, L)
        loglam = self._log_lambda(age, lev)  # (K, L, E)
        qk = t["q"][:, None, None]
        lc_ref = table(loglam, qk, self.reference_day)

        def log_mu(day):
            return lev[..., None] + table(loglam, qk, day) - lc_ref

        j_base = int(np.argmax(m_days))  # the baseline visit: the latest MMTT
        logw = np.broadcast_to(self.log_w0, loglam.shape).copy()
        for j, (d, ly, cen) in enumerate(zip(m_days, m_logy, m_cens, strict=True)):
            lm = log_mu(d)
            s = self._scale(lm, self._k)
            z = (ly - lm) / s
            if j == j_base:
                base_p = self._baseline_p(z)
            logw += self._log_obs(z, bool(cen)) - (0.0 if cen else np.log(s))
        f = records.fasting_pmol_l[i]
        if self.fasting is not None and np.isfinite(f):
            s_f = self.fasting.sd_log
            r = np.log(f) - np.log(1000.0 * self.fasting.ratio) + 0.5 * s_f**2 - lev
            logw += (-0.5 * (r / s_f) ** 2)[..., None]
        w = np.exp(logw - special.logsumexp(logw))
        w_k = w.reshape(self.n_draws, -1).sum(axis=1)
        ess = 1.0 / np.sum(w_k**2)
        # the nodes that carry the mass, then every visit's mixture over them
        flat = w.ravel()
        order = np.argsort(flat)[::-1]
        keep = order[: int(np.searchsorted(np.cumsum(flat[order]), 1.0 - _TRIM)) + 1]
        wk = flat[keep] / flat[keep].sum()
        k_of = keep // (loglam.shape[1] * loglam.shape[2])
        m0, dm = _M_GRID[0], _M_GRID[1] - _M_GRID[0]
        # systematic resampling for the quantiles: n_mixture nodes at equal weight
        pos = (np.arange(self.n_mixture) + 0.5) / self.n_mixture
        pick = np.minimum(np.searchsorted(np.cumsum(wk), pos), wk.size - 1)
        V = vis_days.size
        mean, sdv, qv = np.empty(V), np.empty(V), np.empty((V, levels.size))
        for v in range(V):
            lm = log_mu(vis_days[v]).ravel()[keep]
            s = self._scale(lm, k_of)
            f = np.clip((lm - m0) / dm, 0.0, _M_GRID.size - 1.000001)
            j = f.astype(int)
            f -= j
            e = (1.0 - f) * self._moments[:, k_of, j] + f * self._moments[:, k_of, j + 1]
            mean[v] = wk @ e[0]
            sdv[v] = np.sqrt(max(wk @ e[1] - mean[v] ** 2, 0.0))
            qv[v] = _mixture_quantiles(
                lm[pick], s[pick], t["inv_nu"][k_of[pick]], levels, self.lloq
            )
        return mean, sdv, qv, ess, base_p

    def _baseline_p(self, z: np.ndarray) -> float:
        """Two-sided prior predictive p of the participant's baseline MMTT from its
        standardised deviation ``z`` (K, L, E) at every grid node: 2·min(F, 1 − F),
        F = P(y ≤ y_obs) under the population law alone (the K draws, the level's and η's grid
        before any data; below the LLOQ y_obs is the LLOQ, so F = P(y < LLOQ)). A small p is a
        prior–data conflict (Evans & Moshonov 2006, *Bayesian Analysis* 1:893): under the t
        deviation the twin then reads the measurement partly as an outlier and leans on the
        population law (docs/twin.md, "A baseline far from the records' law")."""
        F_node = np.exp(self._log_obs(z, censored=True))  # the deviation's CDF at each node
        w0 = np.exp(self.log_w0 - special.logsumexp(self.log_w0))
        F = float(np.mean(np.sum(F_node * w0[None], axis=(1, 2))))
        return float(min(1.0, 2.0 * min(F, 1.0 - F)))


def _mixture_quantiles(mu, scale, inv_nu, levels, lloq) -> np.ndarray:
    """Quantiles of ln(y + 1) (LLOQ/2 below the LLOQ) of an equal-weight mixture of
    ln y ~ mu + scale·t_ν (normal where inv_nu = 0): bisection on the CDF of ln y, then the
    monotone map. mu, scale, inv_nu : (N,); levels : (Q,). Returns (Q,)."""
    nu = 1.0 / np.where(inv_nu > 0, inv_nu, 1.0)
    lo = np.full(levels.size, float(np.min(mu - 60.0 * scale)))
    hi = np.full(levels.size, float(np.max(mu + 60.0 * scale)))
    for _ in range(45):  # 120 scales / 2⁴⁵: far below the quantiles' own accuracy
        c = 0.5 * (lo + hi)
        z = (c[:, None] - mu[None, :]) / scale[None, :]
        F = np.where(inv_nu > 0, special.stdtr(nu, z), special.ndtr(z)).mean(axis=1)
        below = F < levels
        lo = np.where(below, c, lo)
        hi = np.where(below, hi, c)
    return log1p_recorded(0.5 * (lo + hi), lloq)
