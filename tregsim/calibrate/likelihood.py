"""Individual-level (hierarchical) calibration on long-format patient data.

Model for participant i, visit j (day t_ij, MMTT AUC mean y_ij in nmol/L):

* log λ0_i = log λ_ref − γ_a·log(age_i / 10) + ω_λ·η_i,  η_i ~ N(0, 1)   (f_lambda = e^{ω η})
* log cpep0_i = μ_c + s_c·ζ_i,  ζ_i ~ N(0, 1)                             (sets M₀)
* log y_ij = log cpep0_i + log c(t_ij; λ0_i, q) + σ·ε_ij; values below the LLOQ
  (0.017 nmol/L) are left-censored: they contribute P(y < LLOQ).

``c`` is the model's C-peptide curve normalised to 1 at the baseline visit: with
``baseline_day`` b (days from diagnosis to the visit at data day 0, as in the experiment files
and the NPE config), c(d) = C(b + d)/C(b) for data day d, and ``cpep0_i`` is the patient's
noise-free C-peptide at that visit (at diagnosis when b = 0). It is exact that the model
output is proportional to ``cpep0`` (all β-cell equations are homogeneous in B, S and the
effector drive sees (B+S)/M₀), and ``age``/``f_lambda`` enter only through λ0; so ``c`` is a
function of (log λ0, q, t) only, tabulated once with ``simulate_arrays`` and interpolated
(:class:`CurveTable`; checked against direct solves in the tests). The random effects are
integrated out (log λ0 on the table grid, ζ in closed form with Gauss–Hermite for censored
visits), giving the marginal likelihood of the
population parameters θ = (λ_ref, γ_a, ω_λ, q, σ, μ_c, s_c).

Inference is in the prior's standard-normal coordinates z = Φ⁻¹(F(θ)): MAP by
``scipy.optimize.minimize`` (L-BFGS-B, multi-start from prior draws) and the posterior by
**emcee** (affine-invariant ensemble sampler): gradient-free (the tabulated likelihood has
no cheap gradient), robust in this 7-dimensional, correlated problem, vectorised over
walkers (one batched likelihood call per step), pure numpy, maintained and widely used.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from tregsim import rng as trng
from tregsim.calibrate.data import PatientData
from tregsim.model.priors import Prior
from tregsim.units import LLOQ_NMOL_L

POP_NAMES = ("lambda_ref", "gamma_a", "omega_lambda", "q", "sigma")
BASELINE_NAMES = ("mu_log_cpep0", "sd_log_cpep0")
BASELINE_PRIORS = (
    Prior("normal", {"mean": float(np.log(0.6)), "sd": 1.0}),
    Prior("halfnormal", {"scale": 1.0}),
)
BASELINE_UNITS = {"mu_log_cpep0": "ln(nmol/L)", "sd_log_cpep0": "ln(nmol/L)"}
_U = 1e-12


class CurveTable:
    """log c(t; λ0, q): model C-peptide / cpep0 on a grid, trilinear interpolation.

    Grids: log λ0 (1/day) uniform in [log 1e-5, log 3e-2], q uniform in [0, 1], days uniform
    in [0, max_day]. Built with ONE ``simulate_arrays`` call over all (λ0, q) nodes.
    """

    def __init__(
        self,
        model,
        *,
        fixed: dict | None = None,
        n_loglam: int = 321,
        n_q: int = 41,
        max_day: float = 1250.0,
        day_step: float = 5.0,
        rtol: float = 1e-6,
        atol: float = 1e-9,
    ):
        from tregsim.solve import simulate_arrays

        self.loglam = np.linspace(np.log(1e-5), np.log(3e-2), n_loglam)
        self.q = np.linspace(0.0, 1.0, n_q)
        self.days = np.arange(0.0, max_day + day_step / 2, day_step)
        L, Q = np.meshgrid(self.loglam, self.q, indexing="ij")
        n = L.size
        over = {
            "lambda_ref": np.exp(L.ravel()),
            "q": Q.ravel(),
            "gamma_a": 0.0,
            "age": 10.0,
            "f_lambda": 1.0,
            "cpep0": 1.0,
            **(fixed or {}),
        }
        res = simulate_arrays(
            model, model.parameters(n, **over), times=self.days, rtol=rtol, atol=atol
        )
        c = res.observables["cpeptide"].reshape(n_loglam, n_q, len(self.days))
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise RuntimeError("curve table: solver failed on the grid")
        self.logc = np.log(c)

    def __call__(self, loglam: np.ndarray, q: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Interpolated log c; arrays broadcast together. Values outside grids are clipped."""

        def frac(x, grid):
            f = (np.clip(x, grid[0], grid[-1]) - grid[0]) / (grid[1] - grid[0])
            i = np.minimum(f.astype(int), len(grid) - 2)
            return i, f - i

        i, a = frac(np.asarray(loglam, float), self.loglam)
        j, b = frac(np.asarray(q, float), self.q)
        k, c = frac(np.asarray(day, float), self.days)
        T = self.logc
        out = 0.0
        for di, wa in ((0, 1 - a), (1, a)):
            for dj, wb in ((0, 1 - b), (1, b)):
                for dk, wc in ((0, 1 - c), (1, c)):
                    out = out + wa * wb * wc * T[i + di, j + dj, k + dk]
        return out


@dataclass
class HierarchicalLikelihood:
    """Marginal log-likelihood of θ (W, 7) for long-format data, batched over W.

    The individual log λ0 is integrated on the table's log λ0 grid (trapezoid; weights are
    the normal density N(log λ0; base_i, ω_λ) normalised over the grid), which resolves the
    narrow per-patient likelihood far better than Gauss–Hermite around the prior; ω_λ
    smaller than about two grid steps (≈ 0.1) is resolved only to the nearest grid node.
    Given log λ0, the uncensored visits times φ(ζ) are Gaussian in ζ and integrate in closed
    form; censored visits are integrated against that Gaussian by Gauss–Hermite.
    """

    table: CurveTable
    data: PatientData
    lloq_nmol_l: float = LLOQ_NMOL_L
    n_zeta: int = 16
    baseline_day: float = 0.0

    def __post_init__(self):
        d = self.data
        order = np.argsort(d.visit_patient, kind="stable")
        p = d.visit_patient[order]
        self._p = p
        day = d.visit_day[order]
        y = d.cpeptide_nmol_l[order]
        cens = y < self.lloq_nmol_l
        self._cens = cens
        self._logy = np.log(np.where(cens, self.lloq_nmol_l, y))
        self._unc_mask = (~cens).astype(float)
        n_p = len(d.ids)
        self._starts = np.r_[0, np.flatnonzero(np.diff(p)) + 1]
        if len(self._starts) != n_p:
            raise ValueError("every participant needs at least one visit")
        self._n_unc = np.add.reduceat(self._unc_mask, self._starts)  # (P,)
        self._sum_logy = np.add.reduceat(self._logy * self._unc_mask, self._starts)
        self._cen = np.flatnonzero(cens)
        self._logage = np.log(d.age_years / 10.0)
        self._n_p = n_p
        # table at the visit days: (V, L, Q)
        self._logc_v = self._table_at(self.baseline_day + day) - self._table_at(
            np.array([self.baseline_day])
        )
        xz, wz = np.polynomial.hermite_e.hermegauss(self.n_zeta)
        self._zeta, self._logw_zeta = xz, np.log(wz / np.sqrt(2 * np.pi))

    def _table_at(self, day: np.ndarray) -> np.ndarray:
        """log c on the (log λ0, q) grid at model days ``day`` (V,) → (V, L, Q), linear in t."""
        t = self.table
        if np.any(day > t.days[-1] + 1e-9):
            raise ValueError(
                f"visit at model day {day.max():g} is beyond the curve table ({t.days[-1]:g} d); "
                "build the CurveTable with a larger max_day"
            )
        f = (np.clip(day, t.days[0], t.days[-1]) - t.days[0]) / (t.days[1] - t.days[0])
        k = np.minimum(f.astype(int), len(t.days) - 2)
        c = (f - k)[:, None, None]
        return (1 - c) * np.moveaxis(t.logc[:, :, k], 2, 0) + c * np.moveaxis(
            t.logc[:, :, k + 1], 2, 0
        )

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        lam, gam, om, q, sig, mu, sc = (theta[:, k] for k in range(7))
        t = self.table
        # q interpolation of the per-visit table → log c (W, V, L)
        fq = (np.clip(q, t.q[0], t.q[-1]) - t.q[0]) / (t.q[1] - t.q[0])
        j = np.minimum(fq.astype(int), len(t.q) - 2)
        bq = (fq - j)[:, None, None]
        logc = (1 - bq) * np.moveaxis(self._logc_v[:, :, j], 2, 0) + bq * np.moveaxis(
            self._logc_v[:, :, j + 1], 2, 0
        )
        # log-normal weights of each patient's log λ0 over the grid (W, P, L)
        base = np.log(lam)[:, None] - gam[:, None] * self._logage[None, :]
        zl = (t.loglam[None, None, :] - base[:, :, None]) / om[:, None, None]
        lw = -0.5 * zl**2
        lw -= special.logsumexp(lw, axis=2, keepdims=True)
        # closed-form ζ integral over the uncensored visits
        r = self._logy[None, :, None] - logc - mu[:, None, None]  # (W, V, L)
        ru = r * self._unc_mask[None, :, None]
        sum_r = np.add.reduceat(ru, self._starts, axis=1)  # (W, P, L)
        sum_r2 = np.add.reduceat(ru * ru, self._starts, axis=1)
        s2 = (sig**2)[:, None, None]
        n = self._n_unc[None, :, None]
        scb = sc[:, None, None]
        a = 1.0 + n * scb**2 / s2
        b = scb * sum_r / s2
        logA = (
            -0.5 * n * np.log(2 * np.pi * s2)
            - sum_r2 / (2 * s2)
            + b**2 / (2 * a)
            - 0.5 * np.log(a)
            - self._sum_logy[None, :, None]
        )
        if self._cen.size:
            pc = self._p[self._cen]
            m = (b / a)[:, pc]  # (W, C, L): conditional mean of ζ
            sd = (1.0 / np.sqrt(a))[:, pc]
            zeta = m[..., None] + sd[..., None] * self._zeta  # (W, C, L, Kz)
            arg = (r[:, self._cen][..., None] - scb[..., None] * zeta) / sig[:, None, None, None]
            lc = special.log_ndtr(arg)
            has, inv = np.unique(pc, return_inverse=True)
            tot = np.zeros((lc.shape[0], len(has), lc.shape[2], lc.shape[3]))
            np.add.at(tot, (slice(None), inv), lc)
            logA[:, has] += special.logsumexp(tot + self._logw_zeta, axis=3)
        marg = special.logsumexp(logA + lw, axis=2)  # (W, P)
        return marg.sum(axis=1)


@dataclass
class IndividualPosterior:
    names: tuple[str, ...]
    map_theta: np.ndarray
    map_logpost: float
    chains: np.ndarray  # (n_walkers, n_kept, 7) θ
    acceptance: float
    autocorr_steps: np.ndarray
    starts_logpost: np.ndarray

    def draws(self) -> dict[str, np.ndarray]:
        """name → (chain, draw) arrays for :func:`tregsim.posterior.save_posterior`."""
        return {n: self.chains[:, :, k] for k, n in enumerate(self.names)}


@contextlib.contextmanager
def quiet_emcee_autocorr():
    """emcee warns (logging) when a chain is short for its autocorrelation estimate; the
    runner reports that ratio itself (computed after burn-in), so mute the logger here."""
    log = logging.getLogger("emcee.autocorr")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def ess_floor_steps(n_steps: int, burn: int, max_steps: int | None, min_block: int = 1):
    """(cap, block) of an ESS floor shared by the record likelihoods: the chain runs on in
    blocks of ``n_steps − burn`` steps (at least ``min_block``) up to ``max_steps`` steps
    (default 4 × ``n_steps``, never fewer than ``n_steps``)."""
    cap = 4 * n_steps if max_steps is None else max(int(max_steps), n_steps)
    return cap, max(n_steps - burn, min_block)


def ensemble_ess(chain: np.ndarray) -> float:
    """Effective sample size of an emcee ensemble's kept steps ``chain`` (steps, walkers, d):
    walkers × steps / the largest coordinate's integrated autocorrelation time (emcee's
    estimator, ``quiet``: a short chain gives a lower bound on τ, not an error); 0 when τ
    is not finite."""
    import emcee

    if chain.shape[0] < 2:
        return 0.0
    with quiet_emcee_autocorr():
        tau = emcee.autocorr.integrated_time(chain, quiet=True)
    if not np.all(np.isfinite(tau)):
        return 0.0
    return float(chain.shape[0] * chain.shape[1] / np.max(tau))


class IndividualCalibration:
    """MAP (multi-start) and emcee posterior of θ given long-format data."""

    def __init__(
        self,
        model,
        data: PatientData,
        *,
        priors=None,
        lloq_nmol_l: float = LLOQ_NMOL_L,
        table: CurveTable | None = None,
        n_zeta: int = 16,
        baseline_day: float = 0.0,
    ):
        self.names = POP_NAMES + BASELINE_NAMES
        self.priors = (
            tuple(priors)
            if priors is not None
            else tuple(model.spec.parameters[n].prior for n in POP_NAMES) + BASELINE_PRIORS
        )
        self.table = table if table is not None else CurveTable(model)
        self.baseline_day = float(baseline_day)
        self.loglik = HierarchicalLikelihood(self.table, data, lloq_nmol_l, n_zeta, baseline_day)

    def theta_from_z(self, z):
        u = np.clip(special.ndtr(np.asarray(z, float)), _U, 1 - _U)
        return np.stack([p.ppf(u[..., k]) for k, p in enumerate(self.priors)], axis=-1)

    def log_post_z(self, z: np.ndarray) -> np.ndarray:
        """Log posterior density in z coordinates (W, 7) → (W,)."""
        z = np.atleast_2d(z)
        th = self.theta_from_z(z)
        lp = -0.5 * np.sum(z**2, axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            ll = self.loglik(th)
        return np.where(np.isfinite(ll), ll + lp, -np.inf)

    def find_map(self, seed: int, n_starts: int = 8) -> tuple[np.ndarray, float, np.ndarray]:
        """Multi-start L-BFGS-B in z space from prior draws; returns (z_map, logpost, all)."""
        d = len(self.names)
        starts = trng.draw(
            seed, "calibrate.map_starts", 0, n_starts, lambda g, n: g.standard_normal((n, d))
        )
        best, vals = None, []
        for z0 in starts:
            r = optimize.minimize(
                lambda z: -float(self.log_post_z(z)[0]), z0, method="L-BFGS-B", bounds=[(-6, 6)] * d
            )
            vals.append(-r.fun)
            if best is None or r.fun < best.fun:
                best = r
        return best.x, -best.fun, np.asarray(vals)

    def sample(
        self,
        seed: int,
        *,
        n_walkers: int = 32,
        n_steps: int = 1500,
        burn: int = 500,
        thin: int = 5,
        n_starts: int = 8,
        progress: bool = True,
        min_ess: float = 0.0,
        max_steps: int | None = None,
        keep_burn: bool = False,
    ) -> IndividualPosterior:
        """MAP from ``n_starts`` prior draws, then emcee's stretch move from a small ball
        around it. ``chains`` holds the steps after ``burn``, every ``thin``-th (with
        ``keep_burn`` every step from the first, for a trace figure).

        ``min_ess`` > 0: after ``n_steps`` the sampler runs on, in blocks of ``n_steps −
        burn`` steps, until the ensemble's effective sample size n_walkers × (steps after
        ``burn``) / τ_max reaches ``min_ess`` or the chain has ``max_steps`` steps (default
        4 × ``n_steps``). τ is emcee's integrated autocorrelation time of the ensemble
        (Goodman & Weare 2010; Foreman-Mackey et al. 2013): the stretch move's walkers are
        not independent chains, so the per-walker rank ESS of the structure path does not
        apply. The stopping rule reads the chain only; the move never changes."""
        import emcee

        z_map, lp_map, all_lp = self.find_map(seed, n_starts)
        d = len(self.names)
        g = trng.block_generator(seed, "calibrate.emcee", 0)
        p0 = z_map + 1e-2 * g.standard_normal((n_walkers, d))
        sampler = emcee.EnsembleSampler(n_walkers, d, self.log_post_z, vectorize=True)
        sampler.random_state = np.random.RandomState(int(g.integers(2**31))).get_state()
        sampler.run_mcmc(p0, n_steps, progress=progress)
        if min_ess > 0:
            cap, block = ess_floor_steps(n_steps, burn, max_steps)
            while (
                sampler.iteration < cap and ensemble_ess(sampler.get_chain(discard=burn)) < min_ess
            ):
                sampler.run_mcmc(None, min(block, cap - sampler.iteration), progress=progress)
        discard, step = (0, 1) if keep_burn else (burn, thin)
        z = sampler.get_chain(discard=discard, thin=step)  # (steps, walkers, d)
        chains = self.theta_from_z(np.swapaxes(z, 0, 1))
        tau = sampler.get_autocorr_time(discard=burn, quiet=True)
        return IndividualPosterior(
            names=self.names,
            map_theta=self.theta_from_z(z_map),
            map_logpost=lp_map,
            chains=chains,
            acceptance=float(np.mean(sampler.acceptance_fraction)),
            autocorr_steps=tau,
            starts_logpost=all_lp,
        )
