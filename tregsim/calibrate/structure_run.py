"""``tregsim calibrate`` with ``[method] kind = "structure_likelihood"``: the posterior of a
structure of individual variability (:mod:`tregsim.calibrate.variability`) on long-format
records, by emcee on the quadrature marginal likelihood, started around the MAP.

Output folder (``tregsim calibrate CONFIG --out DIR``):

* ``posterior.nc``: kept emcee draws (chain = walker, draw = kept step) of the structure's
  free parameters, named as in the model file (``lambda_ref`` … ``kappa``, plus the baseline
  nuisance ``mu_c``, ``mu_a``, ``s_c``), and the curve table's ``s0``, ``k_re`` as constant
  draws; ArviZ-readable (:mod:`tregsim.posterior`);
* ``summary.csv``: per parameter unit, MAP, posterior mean / SD / 5, 50, 95 % quantiles, the
  prior's 5 / 95 % quantiles, contraction, R-hat, bulk and tail ESS (ArviZ, walkers as
  chains) and the integrated autocorrelation time (emcee steps);
* ``contraction.csv`` (prior vs posterior), ``predictive_check.csv`` (per-visit means of
  ln(x + 1) and the trial statistics of :mod:`tregsim.trial_statistics`: observed with
  participant-bootstrap 95 % interval, predictive median and 95 % interval over posterior
  draws, each draw one virtual copy of the records' own participants at their own visit days;
  predictive p-value P(simulated ≥ observed)); only aggregates of ≥ 5 participants
  (age groups: ≥ 20);
* ``figures/trace.png``, ``figures/prior_posterior.png``; ``manifest.json`` (written last;
  ``results.predictive_omnibus``: whether the predictive check's misses are more than a
  dataset of the model shows, over every statistic and per age group,
  :func:`predictive_omnibus`).

Sampling coordinates are the unconstrained ones of :data:`variability.PARAMS` (log, logit or
identity); the log posterior adds the log-Jacobian so the priors of the config are priors on
the natural scale. docs/calibration.md, "Hierarchical likelihood of the chosen structure".
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize, special

from tregsim import rng as trng
from tregsim.calibrate import variability as V
from tregsim.io import atomic_path, build_manifest, file_sha256, write_json
from tregsim.observe import deviation_scale
from tregsim.results import display_path

METHOD = (
    "hierarchical likelihood of a structure of individual variability "
    "(quadrature marginal likelihood; MAP, Laplace start, emcee)"
)
PREDICTIVE_MONTHS = (0, 3, 6, 12, 18, 24)
"""Nominal visit months of the per-visit-mean predictive check (months after baseline)."""
MIN_GROUP_N = 20
UNITS = V.UNITS | {"sigma_meas": "1 (log scale, at 0.6 nmol/L)", "s0": "1", "k_re": "1/day"}


# ------------------------------------------------------------------------- the posterior
def likelihood_for(config, table, records: V.Records, **grid) -> V.StructureLikelihood:
    """The records likelihood of a ``structure_likelihood`` config: its baseline day, LLOQ and
    quadrature (``grid``: ``n_zeta``, ``n_eta``, ``n_xi``, ``adaptive_zeta`` override the
    config's)."""
    meth = config.method
    nodes = {
        "n_zeta": meth["n_zeta"],
        "n_eta": meth["n_eta"],
        "n_xi": meth.get("n_xi", 1),
        "adaptive_zeta": meth.get("zeta_nodes", "fixed") == "adaptive",
        "adaptive_eta": meth.get("eta_nodes", "fixed") == "adaptive",
    }
    return V.StructureLikelihood(
        table,
        records,
        baseline_day=config.baseline_day,
        lloq_nmol_l=config.lloq_nmol_l,
        **(nodes | grid),
    )


QUADRATURE_SPREAD_NATS = 0.5  # warn above: see quadrature_check
QUADRATURE_CHECK_DRAWS = 20


def quadrature_check(config, table, records: V.Records, post, us: np.ndarray) -> dict:
    """The records log-likelihood's quadrature error (nats) at points ``us`` (n, d) of the
    sampling coordinates (the MAP first, then posterior draws): the config's nodes against a
    refinement with 2n − 1 nodes on each axis (the config's nodes and the midpoints).

    A constant error does not change the posterior; one that varies across it does, and an
    optimiser finds the places where it is most favourable. Round 14's SBC dataset 8 of seed
    20261213 (ω_λ ≈ 1.1 at the MAP) had +1.9 nats at the MAP and +0.2 at θ* with 33 η nodes,
    while on the placebo records the error is ≤ 0.05 nats at every one of 200 posterior draws
    (docs/calibration.md, "Round 14"; that was the normal structure: the shipped t structure's
    spread is 0.25 nats on the fixed η grid, 0.01 on adaptive η nodes, round 26). With
    adaptive η nodes the refinement is 2n − 1 adaptive nodes. Returns ``refined_nodes``,
    ``error_map_nats``, ``error_spread_nats`` (max − min over all points), ``n_points`` and ``ok`` (spread ≤
    :data:`QUADRATURE_SPREAD_NATS`). When not ok, also ``error_spread_zeta_nats`` and
    ``error_spread_eta_nats``: the spread against refining that axis alone, and ``axis``, the
    one with the larger (round 25: on the hard SBC datasets it is η, the hazard's random
    effect, whose fixed grid a participant's many visits can pin more tightly than its
    spacing)."""
    like = post.like
    nz, ne = like.zeta.size, like.eta.size
    own = np.array([float(independent_log_lik(like, post.theta(u)).sum()) for u in us])

    def spread_against(**grid):
        fine = likelihood_for(config, table, records, **grid)
        ref = np.array([float(independent_log_lik(fine, post.theta(u)).sum()) for u in us])
        err = own - ref
        return fine, err, float(err.max() - err.min())

    fine, err, spread = spread_against(n_zeta=2 * nz - 1, n_eta=2 * ne - 1)
    out = {
        "refined_nodes": f"{fine.zeta.size} x {fine.eta.size}",
        "error_map_nats": float(err[0]),
        "error_spread_nats": spread,
        "n_points": int(err.size),
        "ok": bool(spread <= QUADRATURE_SPREAD_NATS),
    }
    if not out["ok"]:
        out["error_spread_zeta_nats"] = spread_against(n_zeta=2 * nz - 1)[2]
        out["error_spread_eta_nats"] = spread_against(n_eta=2 * ne - 1)[2]
        eta = out["error_spread_eta_nats"] >= out["error_spread_zeta_nats"]
        out["axis"] = "eta" if eta else "zeta"
    return out


def independent_log_lik(like: V.StructureLikelihood, th: dict) -> np.ndarray:
    """Per-participant log marginal likelihood (P,) when the visits are independent given the
    random effects (σ_bio = 0): the same value as ``like.per_patient(th)`` (checked in the
    tests), summed over visits in one compiled pass (:mod:`structure_kernel`), or with a random
    effect on q by :func:`array_log_lik`. ``inv_nu`` = 1/ν > 0: a Student-t deviation (σ_bio = 0
    only)."""
    if th.get("sigma_bio", 0.0) > 0:
        if th.get("inv_nu", 0.0) > 0:
            raise ValueError(
                "a Student-t deviation (inv_nu > 0) is defined only for independent visits "
                "(sigma_bio = 0)"
            )
        return like.per_patient(th)
    if like.n_xi == 1 and th.get("omega_q", 0.0) == 0:
        return _kernel_log_lik(like, th)
    return array_log_lik(like, th)


def _visit_order(like: V.StructureLikelihood) -> tuple[np.ndarray, np.ndarray]:
    """Visits sorted by participant (V,) and where each participant's run starts (P,)."""
    return like._order, like._starts


def array_log_lik(like: V.StructureLikelihood, th: dict) -> np.ndarray:
    """:func:`independent_log_lik` with numpy arrays of (visits × quadrature nodes), summed per
    participant by one ``np.add.reduceat`` (σ_bio = 0; any random effect on q). The compiled
    kernel's reference in ``benchmarks/bench_structure_likelihood.py``. ``inv_nu`` = 1/ν > 0: the
    deviation (ln y − ln μ)/(σ_meas·h(μ)) is Student-t with ν degrees of freedom (σ_add = 0)."""
    order, starts = _visit_order(like)
    nodes = like.nodes(th)
    lm = like.log_mu(th, nodes)  # (V, K)
    res = like._logy[:, None] - lm
    kap = th.get("kappa", 0.0)
    sa = th.get("sigma_add", 0.0)
    var = th["sigma_meas"] ** 2 * deviation_scale(lm, kap, like.lloq) ** 2
    if sa:
        var = var + (sa * np.exp(-lm)) ** 2
    c = like._cens
    inv_nu = th.get("inv_nu", 0.0)
    if inv_nu > 0:
        from scipy import stats

        if sa:
            raise ValueError(
                "a Student-t deviation (inv_nu > 0) is defined only without an additive error "
                "(sigma_add = 0)"
            )
        nu = 1.0 / inv_nu
        sd = th["sigma_meas"] * deviation_scale(lm, kap, like.lloq)
        ll = stats.t.logpdf(res / sd, df=nu) - np.log(sd) - like._logy[:, None]
        if c.any():
            ll[c] = stats.t.logcdf(res[c] / sd[c], df=nu)
    else:
        ll = -0.5 * (res * res / var + np.log(var) + np.log(2 * np.pi)) - like._logy[:, None]
        if c.any():
            ll[c] = special.log_ndtr(res[c] / np.sqrt(var[c]))
    tot = np.add.reduceat(ll[order], starts, axis=0)  # (P, K)
    return special.logsumexp(tot + like.log_weights(th, nodes), axis=1)


def _kernel_log_lik(like: V.StructureLikelihood, th: dict) -> np.ndarray:
    zeta, lwz = like.zeta_nodes(th)
    if like.adaptive_eta:  # the last pass that placed the nodes computed the likelihood
        return like._adaptive_eta(th, zeta, lwz)[2]
    return like.kernel_pass(th, zeta, lwz, *like.eta_nodes(th, zeta, lwz))[0]


class StructurePosterior:
    """log posterior of a candidate's free parameters in unconstrained coordinates u.

    ``priors``: name → :class:`~tregsim.model.priors.Prior` on the natural scale, for every
    free parameter of ``candidate``; the transforms are those of :data:`variability.PARAMS`.
    """

    def __init__(self, like: V.StructureLikelihood, candidate: str, priors: dict):
        self.like = like
        self.candidate = candidate
        self.free, self.fixed = V.CANDIDATES[candidate]
        self._logpdf = [priors[n].scalar_logpdf() for n in self.free]

    @property
    def dim(self) -> int:
        return len(self.free)

    def theta(self, u) -> dict:
        return {n: float(V._from_u(n, u[k])) for k, n in enumerate(self.free)} | self.fixed

    def u_of(self, theta: dict) -> np.ndarray:
        return np.array([V._to_u(n, theta[n]) for n in self.free], float)

    def log_prior(self, u) -> float:
        th = self.theta(u)
        return float(
            sum(
                f(th[n]) + V._log_jac(n, u[k])
                for k, (n, f) in enumerate(zip(self.free, self._logpdf))
            )
        )

    def __call__(self, u) -> float:
        lp = self.log_prior(u)
        if not np.isfinite(lp):
            return -np.inf
        with np.errstate(all="ignore"):
            ll = float(independent_log_lik(self.like, self.theta(u)).sum())
        v = ll + lp
        return v if np.isfinite(v) else -np.inf


def map_estimate(post: StructurePosterior, start: dict | None = None, maxiter: int = 400):
    """MAP in u (L-BFGS-B, then a Nelder-Mead polish: the tabulated likelihood is piecewise
    smooth), as :func:`variability.fit_structure` but under ``post``'s priors.
    Returns (u_map (d,), log posterior)."""
    s = V.START | (start or {})
    u0 = np.array([V._to_u(n, s[n]) for n in post.free], float)

    def neg(u):
        v = -post(u)
        return v if np.isfinite(v) else 1e12

    r1 = optimize.minimize(neg, u0, method="L-BFGS-B", options={"maxiter": maxiter})
    r2 = optimize.minimize(
        neg, r1.x, method="Nelder-Mead", options={"maxiter": 1500, "xatol": 1e-3, "fatol": 1e-3}
    )
    best = r2 if r2.fun <= r1.fun else r1
    return np.asarray(best.x, float), -float(best.fun)


def _fd_hessian(f, u: np.ndarray, h: float) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``u`` (step ``h`` in every coordinate), (d, d)."""
    d = u.size
    f0 = f(u)
    H = np.empty((d, d))
    e = np.eye(d) * h
    fp = np.array([f(u + e[i]) for i in range(d)])
    fm = np.array([f(u - e[i]) for i in range(d)])
    for i in range(d):
        H[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        for j in range(i):
            # mixed derivative from the diagonal points: f(+i+j) + f(-i-j) - f(+i) - f(-i)
            # - f(+j) - f(-j) + 2 f0 = 2 h² ∂²f/∂i∂j
            fpp = f(u + e[i] + e[j])
            fmm = f(u - e[i] - e[j])
            H[i, j] = H[j, i] = (fpp + fmm - fp[i] - fm[i] - fp[j] - fm[j] + 2 * f0) / (2 * h**2)
    return H


def laplace_covariance(post: StructurePosterior, u: np.ndarray, h: float = 0.02) -> np.ndarray:
    """Laplace covariance at ``u``: inverse of the central-difference Hessian of −log posterior
    (step ``h`` in u; not smaller: the likelihood is interpolated from a table).

    The likelihood's and the prior's curvature are taken apart: the likelihood part is projected
    onto the positive semi-definite matrices (a table kink or a flat ridge can make a
    finite-difference eigenvalue ≤ 0) and the prior's curvature is added back, so the
    approximation is never wider than the prior in any direction. (Flooring the eigenvalues of
    the sum instead gave directions of variance 100 in u on prior-drawn datasets, and an
    independence proposal that accepted ≤ 6 %: docs/calibration.md.)"""
    for step in (h, h / 4, h / 16):  # a neighbour outside the finite region: a smaller step
        H = -_fd_hessian(post, u, step)
        if np.all(np.isfinite(H)):
            break
    Hp = -_fd_hessian(post.log_prior, u, step)
    if not np.all(np.isfinite(H)):  # no finite curvature: the prior's alone
        H = Hp
    w, Q = np.linalg.eigh(H - Hp)
    wp, Qp = np.linalg.eigh(Hp)
    Hn = (Q * np.maximum(w, 0.0)) @ Q.T + (Qp * np.maximum(wp, 1e-3)) @ Qp.T
    w, Q = np.linalg.eigh(Hn)
    return (Q / np.maximum(w, 1e-3)) @ Q.T


PROPOSAL_DF = 5.0
"""Degrees of freedom of the independence proposal (multivariate t: heavier tails than the
Laplace approximation, so the chain does not stick in the tails)."""
PROPOSAL_SCALE = 1.2
"""Scale of the independence proposal relative to the Laplace standard deviations (the
posterior of q is ≈ 1.3× wider than its Laplace approximation on the placebo records)."""


ADAPT_DEFENSIVE = 0.1
"""Weight of the Laplace proposals in the adapted independence proposal (a defensive mixture:
the adapted t can be narrower than the posterior's tails)."""

WIDE_STEP = 0.4
"""Finite-difference step (in u) of the second Laplace approximation in the independence
proposal. The likelihood is interpolated from a curve table, so its curvature at the default
step (0.02) can reflect the table's local roughness: on one SBC dataset the Hessian there
gave β_c an SD of 0.31 in u where the profile posterior's is ≈ 1.0; at 0.4 it gives 1.0. On
the placebo records the two steps' SDs differ by ≤ 26 % (σ_meas and κ wider at 0.4, β_c 12 %
narrower); the mixture then costs a little acceptance, not correctness."""


LOW_ACCEPTANCE = 0.2
"""Acceptance of the independence move below which its posterior can be too narrow: on the
SBC datasets that accept less, logit q's posterior SD came out at about half the ensemble
slice sampler's (docs/calibration.md, "Round 24: ensemble slice sampling")."""

TAIL_DROP = 2.0
"""Nats: a coordinate's tail is scanned out from the MAP (doubling steps from
:data:`TAIL_START` conditional Laplace SDs) until the log posterior has fallen this far; half
that distance is the tail's SD (a Gaussian falls 2 nats at 2 SDs)."""
TAIL_START = 3.0
"""Conditional Laplace SDs at which the tail scan starts. A direction whose log posterior has
fallen :data:`TAIL_DROP` by then is no more than 1.5× wider than the Laplace approximation,
which the t proposal's scale and tails already cover."""
TAIL_MAX = 96.0
"""Conditional Laplace SDs at which the tail scan stops (an improper or prior-free direction)."""
TAIL_WEIGHT = 0.1
"""Weight of each tail component in the independence proposal after the burn-in."""


def tail_components(post, u_map: np.ndarray, lp_map: float, cov: np.ndarray) -> list:
    """Extra independence-proposal components for coordinates whose posterior reaches much
    further from the MAP than the Laplace approximation says, as (location (d,), scale
    matrix (d, d)) pairs.

    Along each coordinate (the others at the MAP) the log posterior is scanned outwards on both
    sides. Where the data say nothing beyond some point, the posterior's tail there is the
    prior's (deceleration q below ≈ 0.02 on SBC datasets with θ* q ≈ 10⁻³: the likelihood of
    logit q is flat below −5, while the Laplace SD at the MAP is 0.4–1.2 and the prior's
    1.8), and an independence proposal built from the curvature at the MAP visits it too
    rarely: the chain's tail mass comes out at 0.4–0.9 of the truth (docs/calibration.md,
    "Round 13: q's left tail"). Such a coordinate gets one component: the Laplace scale matrix
    with that coordinate's row and column replaced by the tail's SD² (no correlations), at the
    MAP. A direction with nothing to add costs ≤ 2 log-posterior evaluations."""
    d = u_map.size
    sd_cond = 1.0 / np.sqrt(np.diag(np.linalg.inv(cov)))
    comps = []
    for i in range(d):
        sd_tail = 0.0
        for sign in (-1.0, 1.0):
            t = TAIL_START
            while True:
                u = u_map.copy()
                u[i] += sign * t * sd_cond[i]
                lp = post(u)
                if not (np.isfinite(lp) and lp_map - lp < TAIL_DROP) or t >= TAIL_MAX:
                    break
                t *= 2
            if t > TAIL_START:  # still above lp_map − TAIL_DROP at TAIL_START SDs
                sd_tail = max(sd_tail, t * sd_cond[i] / 2)
        if sd_tail > 0:
            c = cov.copy()
            c[i, :] = c[:, i] = 0.0
            c[i, i] = sd_tail**2
            comps.append((u_map, c))
    return comps


def sample_posterior(
    post: StructurePosterior,
    *,
    n_walkers: int,
    n_steps: int,
    seed: int,
    progress: bool = False,
    start: dict | None = None,
    move: str = "stretch",
    burn: int = 0,
    thin: int = 1,
    min_ess: float = 0.0,
    max_steps: int | None = None,
    _decide_below: float | None = None,
):
    """MAP, Laplace covariance, then emcee with walkers drawn from N(MAP, Laplace covariance)
    in u. ``move``: ``"stretch"`` (emcee's default affine-invariant ensemble move) or
    ``"independence"`` (:func:`independence_move`, t with :data:`PROPOSAL_DF` degrees of
    freedom, scale :data:`PROPOSAL_SCALE`).

    The independence proposal starts as an equal mixture of two Laplace approximations (the
    Hessian at the default step and at :data:`WIDE_STEP`: the table-interpolated likelihood can
    look too curved at a small step) and one component per coordinate whose posterior reaches
    much further than they say (:func:`tail_components`). With ``burn`` ≥ 8 it adapts during
    the burn-in only: after the first half of the burn-in its location and scale matrix are
    refitted to the walkers' positions over that half, and again at the end of the burn-in to
    the second half's; after the burn-in it is fixed (the refitted t, the two Laplace
    approximations with :data:`ADAPT_DEFENSIVE` between them and each tail component with
    :data:`TAIL_WEIGHT`), so the kept steps are a Metropolis–Hastings chain with a fixed
    kernel. On the records the
    Laplace approximation is already close (acceptance ≈ 0.4); on datasets drawn from the
    prior it can be far off, and the adaptation is what lets the chain mix there
    (docs/calibration.md, "SBC of the likelihood path").

    ``min_ess`` > 0: after ``n_steps`` the chain runs on with the same (fixed) kernel, in
    blocks of ``n_steps − burn`` steps, until every coordinate's bulk and tail ESS over the
    kept draws (after ``burn``, every ``thin``-th step, the walkers as chains) reach
    ``min_ess`` or the chain has ``max_steps`` steps (default 4 × ``n_steps``);
    :func:`chain_ess` measures it. The stopping rule looks at the chain only, not at θ, and the
    kernel never changes after the burn-in (docs/calibration.md, "Run until the ESS floor").

    ``"slice"``: ensemble slice sampling (:func:`_sample_slice`). ``"auto"``: the independence
    move; when its acceptance after the burn-in (over the first ``n_steps``, before any
    ESS-floor extension) is below :data:`LOW_ACCEPTANCE`, that chain is discarded and the
    posterior is sampled again by ensemble slice sampling from the same MAP, with max(2·d,
    ``n_walkers`` rounded up to even) walkers (the chain is then the one ``move = "slice"``
    gives with those walkers). ``timings["switched_to_slice"]`` is 1 or 0,
    ``timings["independence_acceptance"]`` the acceptance that decided.

    Returns (u_map (d,), MAP log posterior, chain (n_run, walkers, d) in u with n_run ≥
    n_steps, mean acceptance fraction after the burn-in, timings dict)."""
    if move not in ("independence", "stretch", "slice", "auto"):
        raise ValueError(f"move must be 'stretch', 'independence', 'slice' or 'auto', got {move!r}")
    kw = dict(seed=seed, progress=progress, start=start, burn=burn, thin=thin)
    floor = dict(min_ess=min_ess, max_steps=max_steps)
    if move == "auto":
        # the acceptance decides after n_steps, before any ESS-floor extension
        res = sample_posterior(
            post,
            n_walkers=n_walkers,
            n_steps=n_steps,
            move="independence",
            _decide_below=LOW_ACCEPTANCE,
            **kw,
            **floor,
        )
        acc = res[4].pop("decision_acceptance")
        t = {"independence_acceptance": acc, "switched_to_slice": float(acc < LOW_ACCEPTANCE)}
        if acc >= LOW_ACCEPTANCE:
            return (*res[:4], res[4] | t)
        walkers = max(2 * post.dim, n_walkers + n_walkers % 2)
        if progress:
            print(
                f"the independence move accepted {acc:.2f} < {LOW_ACCEPTANCE}: its spread can "
                f"be too narrow; sampling again by ensemble slice sampling, {walkers} walkers",
                file=sys.stderr,
            )
        out = _sample_slice(post, n_walkers=walkers, n_steps=n_steps, map_=res[:2], **kw, **floor)
        t |= {f"independence_{k}": v for k, v in res[4].items()}
        return (*out[:4], out[4] | t)
    if move == "slice":
        return _sample_slice(post, n_walkers=n_walkers, n_steps=n_steps, **kw, **floor)
    import emcee

    from tregsim.calibrate.likelihood import ess_floor_steps

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    u_map, lp_map = map_estimate(post, start)
    cov = laplace_covariance(post, u_map)
    # the curvature over a wider step as a second proposal component: the tabulated
    # likelihood is only piecewise smooth, and on some datasets the Hessian at the small step
    # sees the table's local roughness instead of the posterior's width (docs/calibration.md,
    # "Round 12: the Laplace step and the SBC's tail failures")
    cov_wide = laplace_covariance(post, u_map, h=WIDE_STEP) if move == "independence" else cov
    t["map_s"] = time.perf_counter() - t0
    g = trng.block_generator(seed, "calibrate.structure.emcee", 0)
    p0 = _laplace_walkers(post, u_map, cov, n_walkers, g)
    state = np.random.RandomState(int(g.integers(2**31))).get_state()
    laplace = [(u_map, cov * PROPOSAL_SCALE**2), (u_map, cov_wide * PROPOSAL_SCALE**2)]
    t0 = time.perf_counter()
    tails = tail_components(post, u_map, lp_map, cov_wide) if move == "independence" else []
    t["tail_scan_s"] = time.perf_counter() - t0
    if progress:
        for _, c in tails:
            i = int(np.argmax(np.abs(np.diag(c) - np.diag(cov_wide))))
            print(
                f"independence proposal: tail component for {post.free[i]} (SD {np.sqrt(c[i, i]):.3g}"
                f" in u; Laplace {np.sqrt(cov_wide[i, i]):.3g})",
                file=sys.stderr,
            )
    tails = [(m, c * PROPOSAL_SCALE**2) for m, c in tails]
    adapt = move == "independence" and burn >= 8
    # (number of steps, proposal components) per stage
    stages = (
        [(burn // 2, laplace + tails), (burn - burn // 2, None), (n_steps - burn, None)]
        if adapt
        else [(n_steps, laplace + tails)]
    )
    chains = []
    t0 = time.perf_counter()
    prev = None
    for n, comps in stages:
        k = len(laplace) + len(tails)
        wts = [1.0 / k] * k
        if comps is None:  # refit to the previous stage's positions (pooled over walkers)
            x = prev.reshape(-1, post.dim)
            c = np.cov(x, rowvar=False) + 1e-8 * np.eye(post.dim)
            comps = [(x.mean(axis=0), c * PROPOSAL_SCALE**2), *laplace, *tails]
            defensive = [ADAPT_DEFENSIVE / len(laplace)] * len(laplace) + [TAIL_WEIGHT] * len(tails)
            wts = [1 - sum(defensive), *defensive]
        if n == 0:
            continue
        moves = None
        if move == "independence":
            moves = [(independence_move(comps, PROPOSAL_DF, weights=wts), 1.0)]
        sampler = emcee.EnsembleSampler(n_walkers, post.dim, post, moves=moves)
        sampler.random_state = state
        sampler.run_mcmc(p0, n, progress=progress)
        state = sampler.random_state
        prev = sampler.get_chain()
        p0 = prev[-1]
        chains.append(prev)
        acc = float(np.mean(sampler.acceptance_fraction))  # of the last stage
    if _decide_below is not None:  # move = "auto" decides on the first n_steps
        t["decision_acceptance"] = acc
    if min_ess > 0 and not (_decide_below is not None and acc < _decide_below):
        cap, block = ess_floor_steps(n_steps, burn, max_steps, thin)
        n_run = n_steps
        while n_run < cap:
            full = np.concatenate(chains)
            if np.min(chain_ess(full[burn + thin - 1 :: thin])) >= min_ess:
                break
            n = min(block, cap - n_run)
            sampler.run_mcmc(None, n, progress=progress)  # the last stage's kernel, continued
            chains[-1] = sampler.get_chain()
            n_run += n
        acc = float(np.mean(sampler.acceptance_fraction))
    t["sampling_s"] = time.perf_counter() - t0
    return u_map, lp_map, np.concatenate(chains), acc, t


def _sampler_name(move: str) -> str:
    return "ensemble slice sampling" if move == "slice" else f"emcee ({move} move)"


def _laplace_walkers(post, u_map, cov, n_walkers: int, g) -> np.ndarray:
    """Starting walkers (n_walkers, d) from N(MAP, Laplace covariance), each redrawn until
    its log posterior is finite; ``g`` a Generator, consumed in walker order."""
    L = np.linalg.cholesky(cov)
    p0 = np.empty((n_walkers, post.dim))
    for w in range(n_walkers):
        while True:
            p = u_map + L @ g.standard_normal(post.dim)
            if np.isfinite(post(p)):
                p0[w] = p
                break
    return p0


def _sample_slice(
    post, *, n_walkers, n_steps, seed, progress, start, burn, thin, min_ess, max_steps, map_=None
):
    """:func:`sample_posterior` with ``move = "slice"``: MAP, Laplace covariance, walkers from
    N(MAP, Laplace covariance), then ensemble slice sampling
    (:class:`~tregsim.calibrate.slice_ensemble.SliceEnsemble`), μ tuned during the burn-in
    only. The ESS floor takes the smaller of the walkers-as-chains rank ESS
    (:func:`chain_ess`) and the ensemble's autocorrelation ESS
    (:func:`~tregsim.calibrate.likelihood.ensemble_ess`): the walkers of an ensemble move
    are not independent chains. The acceptance returned is 1 (a slice step always moves);
    ``timings["evals_per_walker_step"]`` is its cost. ``map_``: (u_map, log posterior) when
    already found (the MAP is deterministic, so the chain is the same)."""
    from tqdm.auto import tqdm

    from tregsim.calibrate.likelihood import ensemble_ess, ess_floor_steps
    from tregsim.calibrate.slice_ensemble import SliceEnsemble

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    u_map, lp_map = map_estimate(post, start) if map_ is None else map_
    cov = laplace_covariance(post, u_map)
    t["map_s"] = time.perf_counter() - t0
    g = trng.block_generator(seed, "calibrate.structure.slice", 0)
    p0 = _laplace_walkers(post, u_map, cov, n_walkers, g)
    t0 = time.perf_counter()
    ens = SliceEnsemble(post, p0, g)
    bar = tqdm(total=n_steps, disable=not progress, desc="slice sampling", leave=False)
    for n, tune in ((burn, True), (n_steps - burn, False)):
        for _ in range(n):
            ens.run(1, tune=tune)
            bar.update(1)
    if min_ess > 0:
        cap, block = ess_floor_steps(n_steps, burn, max_steps, thin)
        while len(ens.chain) < cap:
            kept = ens.get_chain()[burn + thin - 1 :: thin]
            if min(np.min(chain_ess(kept)), ensemble_ess(kept)) >= min_ess:
                break
            n = min(block, cap - len(ens.chain))
            bar.total = (bar.total or 0) + n
            for _ in range(n):
                ens.run(1)
                bar.update(1)
    bar.close()
    t["sampling_s"] = time.perf_counter() - t0
    t["evals_per_walker_step"] = ens.n_evals / max(1, len(ens.chain) * n_walkers)
    return u_map, lp_map, ens.get_chain(), 1.0, t


def chain_ess(kept: np.ndarray) -> np.ndarray:
    """The smaller of the rank-normalised bulk and tail ESS (Vehtari et al. 2021, arviz) of
    each coordinate of ``kept`` (draws, chains, d), the chains being emcee's walkers: (d,)."""
    import arviz as az

    x = np.moveaxis(kept, 0, 1)  # (chains, draws, d)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", UserWarning)  # "more chains than draws" when short
        out = [
            min(float(az.ess(x[:, :, k], method="bulk")), float(az.ess(x[:, :, k], method="tail")))
            for k in range(x.shape[2])
        ]
    return np.nan_to_num(np.array(out), nan=0.0)


def independence_move(components, df: float = 5.0, weights=None):
    """An emcee Metropolis–Hastings move that proposes independently of the current point
    from a mixture of multivariate t (``df`` degrees of freedom; ``components``: list of
    (location (d,), scale matrix (d, d)), ``weights`` their probabilities, default equal):
    every walker is then its own Markov chain (R-hat across walkers is meaningful) and, when
    the proposal is close to the posterior, successive draws are nearly independent."""
    from emcee.moves import MHMove
    from scipy import special, stats

    w = np.full(len(components), 1.0 / len(components)) if weights is None else np.asarray(weights)
    dists = [stats.multivariate_t(loc=m, shape=c, df=df) for m, c in components]
    chol = [np.linalg.cholesky(c) for _, c in components]
    locs = [np.asarray(m, float) for m, _ in components]
    logw = np.log(w / w.sum())

    def logq(x):
        return special.logsumexp([lw + d.logpdf(x) for lw, d in zip(logw, dists)], axis=0)

    def proposal(x, random):
        n, d = x.shape
        k = random.choice(len(components), size=n, p=np.exp(logw))
        z = random.standard_normal((n, d))
        s = np.sqrt(df / random.chisquare(df, size=n))
        new = np.empty_like(x)
        for j in range(len(components)):
            m = k == j
            new[m] = locs[j] + (z[m] @ chol[j].T) * s[m, None]
        return new, np.atleast_1d(logq(x) - logq(new))

    return MHMove(proposal, ndim=locs[0].size)


@dataclass
class StructureRunResult:
    """What :func:`calibrate_structure` produced (also written to the output folder)."""

    out: Path
    names: tuple[str, ...]
    table: object  # pandas DataFrame, the content of summary.csv
    predictive: object  # pandas DataFrame, the content of predictive_check.csv
    omnibus: dict  # predictive_omnibus: the misses against the model's own datasets
    acceptance: float
    map_logpost: float
    n_participants: int
    n_visits: int
    n_censored: int
    kept_steps_per_tau: float
    timings_s: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)
    quadrature: dict = field(default_factory=dict)  # :func:`quadrature_check`
    n_steps_run: int = 0  # steps per walker run (> n_steps when the ESS floor extended them)


def _curve_table(config, model, max_visit_day: float):
    from tregsim.calibrate.likelihood import CurveTable

    tab = config.method["table"]
    step = float(tab["day_step"])
    last = config.baseline_day + max_visit_day
    return CurveTable(
        model,
        fixed=config.fixed or None,
        n_loglam=tab["n_loglam"],
        n_q=tab["n_q"],
        max_day=step * max(1.0, np.ceil(last / step)),
        day_step=step,
    )


def load_structure_records(config) -> V.Records:
    """The config's records (:func:`variability.load_records`, its column mapping)."""
    import pandas as pd

    from tregsim.errors import DataFileError

    cols = dict(config.columns)
    if "cpeptide_nmol_l" in cols:
        cols["y"] = cols.pop("cpeptide_nmol_l")
    default = {"id": "participant_id", "age": "age_years", "day": "study_day", "month": "month"}
    default |= {"y": "auc_mean_cpeptide_nmol_l"}
    have = set(pd.read_csv(config.records_path, nrows=0).columns)
    for key, col in (default | cols).items():
        if col not in have:
            raise DataFileError(
                f"no column {col!r} ({key}); columns: {sorted(have)}",
                file=config.records_path,
                field=col,
                fix="name the CSV's column in [data.columns] of the config",
            )
    return V.load_records(config.records_path, cols)


def calibrate_structure(
    config,
    out,
    *,
    seed: int | None = None,
    progress: bool = True,
    command_line: list[str] | None = None,
) -> StructureRunResult:
    """Run the structure posterior of ``config`` (:class:`~tregsim.calibrate.config.
    StructureConfig`) into folder ``out``."""
    import emcee
    import pandas as pd

    from tregsim.calibrate import diagnostics as diag
    from tregsim.calibrate.individual_run import trace_plot
    from tregsim.calibrate.likelihood import quiet_emcee_autocorr
    from tregsim.errors import DataFileError, OutputFolderError
    from tregsim.model import load_model
    from tregsim.posterior import save_posterior

    out = Path(out)
    seed = config.seed if seed is None else int(seed)
    meth = config.method
    n_walkers, n_steps, burn, thin = (meth[k] for k in ("n_walkers", "n_steps", "burn", "thin"))
    timings: dict[str, float] = {}

    # ---- inputs (every check before anything is written) --------------------------------
    model = load_model(config.model)
    rec = load_structure_records(config)
    if len(rec.ids) < 5:
        raise DataFileError(
            f"{len(rec.ids)} participant(s) with a month-0 visit",
            file=config.records_path,
            field=config.columns.get("month", "month"),
            fix="give records of at least five participants with a baseline (month 0) visit",
        )
    inputs = {"config": config.path, "data": config.records_path}
    if getattr(model.spec, "path", None):
        inputs["model"] = model.spec.path
    manifest = build_manifest(
        command="calibrate", seed=seed, inputs=inputs, settings=config.settings(), argv=command_line
    )
    # no absolute paths in the manifest: inputs relative to the working folder
    for v in manifest["inputs"].values():
        v["path"] = os.path.relpath(v["path"])
    old = out / "manifest.json"
    if old.is_file():
        prev = json.loads(old.read_text())
        prev_kind = (prev.get("settings") or {}).get("method", {}).get("kind", "npe")
        if prev.get("command") != "calibrate" or prev_kind != config.kind:
            raise OutputFolderError(
                f"folder holds results of `{prev.get('command')}` ({prev_kind})",
                file=out,
                fix="choose another --out folder",
            )

    # ---- likelihood, MAP, Laplace start, emcee ---------------------------------------------
    t0 = time.perf_counter()
    table = _curve_table(config, model, float(rec.visit_day.max()))
    like = likelihood_for(config, table, rec)
    post = StructurePosterior(like, config.candidate, config.priors)
    timings["table_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    u_eval = post.u_of(V.START | {})
    for _ in range(5):
        post(u_eval)
    timings["one_evaluation_s"] = (time.perf_counter() - t0) / 5
    if progress:
        print(
            f"{len(rec.ids)} participants, {rec.y.size} visits; quadrature "
            f"{like.zeta.size} x {like.eta.size} nodes (zeta "
            f"{'adaptive' if like.adaptive_zeta else 'fixed'}, eta "
            f"{'adaptive' if like.adaptive_eta else 'fixed'}); one likelihood evaluation "
            f"{timings['one_evaluation_s']:.3f} s; MAP, then emcee ({n_walkers} walkers x "
            f"{n_steps} steps)",
            file=sys.stderr,
        )
    u_map, lp_map, chain_u, acceptance, t_s = sample_posterior(
        post,
        n_walkers=n_walkers,
        n_steps=n_steps,
        seed=seed,
        progress=progress,
        move=meth.get("move", "stretch"),
        burn=burn,
        thin=thin,
        min_ess=float(meth["min_ess"]),
        max_steps=int(meth["max_steps"]) or None,
    )
    timings |= t_s
    n_walkers = chain_u.shape[1]  # move = "auto" may have switched to the slice's walkers
    move_used = "slice" if t_s.get("switched_to_slice") else meth.get("move", "stretch")
    n_run = chain_u.shape[0]  # n_steps, or more when the ESS floor extended the chain
    t0 = time.perf_counter()
    flat_u = chain_u[burn:].reshape(-1, post.dim)
    pick_u = np.linspace(0, len(flat_u) - 1, QUADRATURE_CHECK_DRAWS).round().astype(int)
    quad = quadrature_check(config, table, rec, post, np.vstack([u_map, flat_u[pick_u]]))
    timings["quadrature_check_s"] = time.perf_counter() - t0
    if not quad["ok"]:
        key = f"n_{quad['axis']}"
        alone = quad[f"error_spread_{quad['axis']}_nats"]
        fix = f"raise {key} (e.g. to {2 * meth[key] - 1})"
        if quad["axis"] == "eta" and not like.adaptive_eta:  # round 26: the nodes, not more
            fix = f'set eta_nodes = "adaptive" (or {fix})'
        print(
            f"warning: the likelihood's quadrature error varies by {quad['error_spread_nats']:.2f}"
            f" nats across the posterior (MAP and {QUADRATURE_CHECK_DRAWS} draws, against "
            f"{quad['refined_nodes']} nodes; {alone:.2f} from {key} alone): the posterior "
            f"leans on it; fix: {fix} in [method] of {config.path.name}",
            file=sys.stderr,
        )
    with quiet_emcee_autocorr(), np.errstate(invalid="ignore"):  # a walker that never moved
        tau = emcee.autocorr.integrated_time(chain_u[burn:], quiet=True)
    names = post.free
    full = np.empty((n_walkers, n_run, post.dim))  # natural scale, every step
    for k, n in enumerate(names):
        full[:, :, k] = V._from_u(n, chain_u[:, :, k].T)
    kept = full[:, burn + thin - 1 :: thin]  # == emcee get_chain(discard=burn, thin=thin)
    theta_map = post.theta(u_map)
    ratio = float((n_run - burn) / np.max(tau)) if np.all(np.isfinite(tau)) else float("nan")

    # ---- summaries -------------------------------------------------------------------------
    import arviz as az

    with warnings.catch_warnings():  # "more chains than draws" in short test runs
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_dict(posterior={n: kept[:, :, k] for k, n in enumerate(names)})
    rhat = az.rhat(idata)
    ess_b = az.ess(idata, method="bulk")
    ess_t = az.ess(idata, method="tail")
    g_prior = trng.block_generator(seed, "calibrate.structure.prior", 0)
    prior_draws = np.stack(
        [config.priors[n].sample(g_prior, 4000) for n in names], axis=1
    )  # (4000, d)
    flat = kept.reshape(-1, len(names))
    units = {n: UNITS[n] for n in names} | {n: UNITS[n] for n in config.fixed}
    contraction = diag.contraction_table(names, prior_draws, flat, units)
    pq05, pq95 = np.quantile(prior_draws, [0.05, 0.95], axis=0)
    q05, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
    summary = pd.DataFrame(
        {
            "parameter": list(names),
            "unit": [units[n] for n in names],
            "map": [theta_map[n] for n in names],
            "posterior_mean": flat.mean(axis=0),
            "posterior_sd": flat.std(axis=0, ddof=1),
            "q05": q05,
            "q50": q50,
            "q95": q95,
            "prior_q05": pq05,
            "prior_q95": pq95,
            "contraction": contraction["contraction"].to_numpy(),
            "rhat": [float(rhat[n]) for n in names],
            "ess_bulk": [float(ess_b[n]) for n in names],
            "ess_tail": [float(ess_t[n]) for n in names],
            "autocorr_time_steps": tau,
        }
    )

    floor = float(meth["min_ess"])
    ess_min = float(np.minimum(summary["ess_bulk"], summary["ess_tail"]).min())
    if floor > 0 and ess_min < floor:
        worst = summary["parameter"][
            np.argmin(np.minimum(summary["ess_bulk"], summary["ess_tail"]))
        ]
        # round 24: on the SBC's low-acceptance datasets the independence move's spread is
        # too narrow (logit q's SD half the slice sampler's) and more steps barely help
        slice_fix = (
            f'set move = "auto" (or "slice" with n_walkers = {2 * post.dim}; ensemble slice '
            "sampling, docs/calibration.md, round 24), or "
            if meth.get("move") == "independence" and acceptance < LOW_ACCEPTANCE
            else ""
        )
        print(
            f"warning: ESS {ess_min:.0f} for {worst} after {n_run} steps, below min_ess = "
            f"{floor:g}: the posterior's quantiles are less certain than the floor asks; fix: "
            f"{slice_fix}raise max_steps (or n_steps) in [method] of {config.path.name}",
            file=sys.stderr,
        )
    elif progress and n_run > n_steps:
        print(
            f"ESS floor {floor:g} reached after {n_run} steps (min ESS {ess_min:.0f})",
            file=sys.stderr,
        )

    # ---- posterior predictive checks ---------------------------------------------------------
    t0 = time.perf_counter()
    n_pred = min(int(meth["n_predictive_draws"]), flat.shape[0])
    pick = np.linspace(0, flat.shape[0] - 1, n_pred).round().astype(int)
    thetas = [dict(zip(names, flat[i])) | post.fixed for i in pick]
    if progress:
        print(f"posterior predictive checks ({n_pred} draws)", file=sys.stderr)
    ppc, ppc_draws = predictive_check(
        table,
        rec,
        thetas,
        seed=seed,
        n_boot=int(meth["n_bootstrap"]),
        baseline_day=config.baseline_day,
        lloq_nmol_l=config.lloq_nmol_l,
        return_draws=True,
    )
    omnibus = predictive_omnibus(ppc, ppc_draws)
    timings["predictive_s"] = time.perf_counter() - t0

    # ---- files -----------------------------------------------------------------------------
    n_cens = int(np.sum(rec.y < config.lloq_nmol_l))
    data_sha = file_sha256(config.records_path)
    out.mkdir(parents=True, exist_ok=True)
    draws = {n: kept[:, :, k] for k, n in enumerate(names)}
    draws |= {n: np.full(kept.shape[:2], v) for n, v in config.fixed.items()}
    save_posterior(
        out / "posterior.nc",
        draws,
        units=units,
        attrs={
            "model": config.model,
            "method": METHOD,
            "structure": config.candidate,
            "structure_fixed": json.dumps(post.fixed, sort_keys=True),
            "config": config.path.read_text(encoding="utf-8"),
            "config_name": config.name,
            "settings": json.dumps(config.settings(), sort_keys=True, default=str),
            "data_sha256": data_sha,
            "data_file": config.records_path.name,
            "seed": seed,
            "n_walkers": n_walkers,
            "n_steps": n_steps,
            "n_steps_run": n_run,
            "burn": burn,
            "thin": thin,
            "move": meth.get("move", "stretch"),
            "move_used": move_used,
            "baseline_day": config.baseline_day,
            "lloq_nmol_l": config.lloq_nmol_l,
            "n_participants": len(rec.ids),
            "n_visits": int(rec.y.size),
            "acceptance": acceptance,
            "map_logpost": lp_map,
        },
    )
    with atomic_path(out / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out / "contraction.csv") as tmp:
        contraction.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out / "predictive_check.csv") as tmp:
        ppc.to_csv(tmp, index=False, float_format="%.5g")
    shown = min(n_walkers, 8)  # a readable (and small) figure: the first 8 walkers
    trace_plot(
        full[:shown],
        names,
        units,
        out / "figures" / "trace.png",
        burn=burn,
        map_theta=[theta_map[n] for n in names],
        title=f"{config.name}: {_sampler_name(move_used)}, {n_walkers} walkers "
        f"x {n_run} steps ({shown} shown), acceptance {acceptance:.2f}",
        dpi=80,
    )
    prior_posterior_plot(config.priors, names, flat, units, out / "figures" / "prior_posterior.png")
    manifest["results"] = {
        "timings_s": timings,
        "acceptance": acceptance,
        "map_logpost": lp_map,
        "map": {n: theta_map[n] for n in names},
        "autocorr_time_steps": dict(zip(names, tau.tolist())),
        "kept_steps_per_max_autocorr_time": ratio,
        "rhat_max": float(summary["rhat"].max()),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "ess_tail_min": float(summary["ess_tail"].min()),
        "min_ess": floor,
        "n_steps_run": n_run,
        "n_participants": len(rec.ids),
        "n_visits": int(rec.y.size),
        "n_below_lloq": n_cens,
        "predictive_inside_95": f"{int(ppc['inside_95'].sum())}/{len(ppc)}",
        "predictive_omnibus": omnibus,
        "quadrature_check": quad,
    }
    write_json(out / "manifest.json", manifest)
    return StructureRunResult(
        out=out,
        names=tuple(names),
        table=summary,
        predictive=ppc,
        omnibus=omnibus,
        acceptance=acceptance,
        map_logpost=lp_map,
        n_participants=len(rec.ids),
        n_visits=int(rec.y.size),
        n_censored=n_cens,
        kept_steps_per_tau=ratio,
        timings_s=timings,
        n_steps_run=n_run,
        method=dict(meth) | {"n_walkers": n_walkers, "move_used": move_used},
        quadrature=quad,
    )


# --------------------------------------------------------------- posterior predictive checks
def _wide_index(rec: V.Records, months) -> np.ndarray:
    """(P, T) index of the record used as participant × nominal month (−1: no visit), by the
    rule of :func:`tregsim.trial_statistics.to_wide` (nominal month equal, first record)."""
    from tregsim.trial_statistics import to_wide

    _, idx, _ = to_wide(
        rec.visit_patient,
        rec.visit_month,
        np.arange(rec.y.size, dtype=float),
        rec.age_years[rec.visit_patient],
        months=months,
    )
    return np.where(np.isfinite(idx), idx, -1).astype(int)


def _visit_means(x: np.ndarray, groups: dict) -> dict:
    """mean of x (P, T) over participants with a visit, per group → key → ((T,), (T,) n)."""
    ok = np.isfinite(x)
    out = {}
    for g, m in groups.items():
        n = ok[m].sum(axis=0)
        with np.errstate(invalid="ignore"):
            out[g] = (np.nansum(np.where(ok[m], x[m], 0.0), axis=0) / n, n)
    return out


def predictive_check(
    table,
    rec: V.Records,
    thetas: list[dict],
    *,
    seed: int,
    n_boot: int = 2000,
    baseline_day: float = 60.0,
    lloq_nmol_l: float = 0.017,
    months=PREDICTIVE_MONTHS,
    min_group_n: int = MIN_GROUP_N,
    simulate=None,
    return_draws: bool = False,
):
    """Posterior predictive check on the records' own participants (pandas DataFrame).

    For each θ of ``thetas`` one virtual copy of the records (same participants, ages and visit
    days; :func:`variability.simulate_records`, values below the LLOQ coded LLOQ/2 as in the
    records). Statistics: ``mean_ln_x_plus_1`` (mean of ln(x + 1), x in nmol/L) per nominal
    month of ``months``, overall and by age group at baseline; and every statistic of
    :func:`tregsim.trial_statistics.wide_statistics` (months 0, 6, 12, 18, 24). Rows only
    where n ≥ 5 (overall) or n ≥ ``min_group_n`` (age groups). Columns: statistic, unit,
    group, month, n_participants, observed, observed_lo, observed_hi (participant bootstrap
    95 %), predicted_median, predicted_lo, predicted_hi (central 95 % over draws),
    predictive_p (P(simulated ≥ observed)), inside_95 (observed within the predictive 95 %).
    ``simulate(θ, rng) → (V,)`` replaces the copy's simulation (default: the structure's own,
    :func:`variability.simulate_records`), e.g. for a candidate structure outside it.
    ``return_draws``: also return every row's statistic in every simulated copy, (K, S) for K
    draws and S rows (NaN where a copy's statistic is undefined), for
    :func:`predictive_omnibus`.
    """
    import pandas as pd

    from tregsim.trial_statistics import (
        VISIT_MONTHS,
        _groups,
        cohort_statistics,
        wide_statistics,
    )

    months = tuple(months)
    idx = _wide_index(rec, months)
    present = idx >= 0
    age = np.asarray(rec.age_years, float)
    x_obs = np.where(present, np.log1p(rec.y[np.maximum(idx, 0)]), np.nan)
    groups = _groups(age)
    obs_means = _visit_means(x_obs, groups)
    # participant bootstrap of the observed means
    gb = trng.block_generator(seed, "calibrate.structure.bootstrap", 0)
    P = len(age)
    boot = {g: np.empty((n_boot, len(months))) for g in groups}
    for b in range(n_boot):
        r = gb.integers(0, P, P)
        mb = _visit_means(x_obs[r], _groups(age[r]))
        for g in groups:
            boot[g][b] = mb[g][0]
    # simulated copies of the records, one per θ
    tm = [months.index(m) for m in VISIT_MONTHS]
    sim_means = {g: np.empty((len(thetas), len(months))) for g in groups}
    y_wide = np.empty((len(thetas), P, len(VISIT_MONTHS)))
    for k, th in enumerate(thetas):
        gk = trng.block_generator(seed, "calibrate.structure.predictive", k)
        if simulate is None:
            y = V.simulate_records(
                table, th, rec, gk, baseline_day=baseline_day, lloq_nmol_l=lloq_nmol_l
            )[0]
        else:
            y = simulate(th, gk)
        w = np.where(present, y[np.maximum(idx, 0)], np.nan)
        for g, (mv, _) in _visit_means(np.log1p(w), groups).items():
            sim_means[g][k] = mv
        y_wide[k] = w[:, tm]

    rows = []
    draws = []

    def row(stat, unit, g, m, n, o, lo, hi, sims):
        s = np.asarray(sims, float)
        draws.append(s)
        s = s[np.isfinite(s)]
        qlo, qmed, qhi = np.quantile(s, [0.025, 0.5, 0.975])
        rows.append(
            {
                "statistic": stat,
                "unit": unit,
                "group": g,
                "month": int(m),
                "n_participants": int(n),
                "observed": float(o),
                "observed_lo": float(lo),
                "observed_hi": float(hi),
                "predicted_median": float(qmed),
                "predicted_lo": float(qlo),
                "predicted_hi": float(qhi),
                "predictive_p": float(np.mean(s >= o)),
                "inside_95": bool(qlo <= o <= qhi),
            }
        )

    for g in groups:
        mv, n = obs_means[g]
        need = 5 if g == "all" else min_group_n
        lo, hi = np.nanquantile(boot[g], [0.025, 0.975], axis=0)
        for j, m in enumerate(months):
            if n[j] >= need:
                row(
                    "mean_ln_x_plus_1",
                    "ln(nmol/L)",
                    g,
                    m,
                    n[j],
                    mv[j],
                    lo[j],
                    hi[j],
                    sim_means[g][:, j],
                )
    wide_obs = np.where(present, rec.y[np.maximum(idx, 0)], np.nan)[:, tm]
    obs = wide_statistics(
        wide_obs, age, months=VISIT_MONTHS, n_boot=n_boot, seed=seed, min_group_n=min_group_n
    )
    sim = cohort_statistics(y_wide, age, months=VISIT_MONTHS)
    stat_units = {
        "ancova_slope": "1",
        "ancova_resid_sd": "ln(nmol/L)",
        "corr_baseline": "1",
        "corr_previous_visit": "1",
        "sd_individual_slope": "ln(nmol/L)/year",
        "mean_individual_slope": "ln(nmol/L)/year",
    }
    for r in obs.rows:
        key = (r["statistic"], r["month"], r["group"])
        row(
            r["statistic"],
            stat_units[r["statistic"]],
            r["group"],
            r["month"],
            r["n"],
            r["estimate"],
            r["lo"],
            r["hi"],
            sim[key],
        )
    table_ = pd.DataFrame(rows)
    return (table_, np.column_stack(draws)) if return_draws else table_


def predictive_omnibus(ppc, draws: np.ndarray) -> dict:
    """Are the predictive check's misses more than a dataset from the model would show?

    ``ppc``: :func:`predictive_check`'s table (S rows); ``draws``: its statistics in the K
    simulated copies, (K, S). Each copy is treated as a dataset in its own right: its statistics
    are outside the central 95 % of the K copies (the table's predictive interval) in some
    number of rows, which is the reference for the observed number, with the correlation
    between the statistics (the same participants enter several) kept. Two summaries, overall
    and per age group: the number of rows outside, and the smallest two-sided predictive p.
    Returns ``{group: {"n_statistics", "outside", "p_outside", "min_p", "p_min_p"}}`` where
    ``p_outside`` = P(copy's number outside ≥ observed) and ``p_min_p`` = P(copy's smallest p
    ≤ observed smallest p). Conservative: the observed data also fitted the posterior, so they
    sit closer to it than a fresh dataset would (Gelman et al., BDA3 §6.3).
    """
    K, S = draws.shape
    if len(ppc) != S:
        raise ValueError(f"predictive table has {len(ppc)} rows, draws {S} columns")
    fin = np.isfinite(draws)
    # each copy's two-sided p per statistic, against the other copies (rank-based)
    rank_hi = np.empty((K, S))
    for j in range(S):
        col = draws[fin[:, j], j]
        srt = np.sort(col)
        ge = col.size - np.searchsorted(srt, draws[:, j], side="left")  # copies ≥ this one
        rank_hi[:, j] = np.where(fin[:, j], (ge - 1) / max(col.size - 1, 1), 0.5)

    def two_sided(p_upper):
        return np.minimum(1.0, 2 * np.minimum(p_upper, 1 - p_upper))

    p_copy = two_sided(rank_hi)
    lo = ppc["predicted_lo"].to_numpy()
    hi = ppc["predicted_hi"].to_numpy()
    out_copy = fin & ((draws < lo) | (draws > hi))
    p_obs = two_sided(ppc["predictive_p"].to_numpy())
    out_obs = ~ppc["inside_95"].to_numpy(bool)
    res = {}
    groups = ["every statistic", *sorted(ppc["group"].unique())]
    for g in groups:
        m = np.ones(S, bool) if g == "every statistic" else (ppc["group"] == g).to_numpy()
        n_obs = int(out_obs[m].sum())
        n_copy = out_copy[:, m].sum(axis=1)
        mp_obs = float(np.min(p_obs[m]))
        mp_copy = p_copy[:, m].min(axis=1)
        res[g] = {
            "n_statistics": int(m.sum()),
            "outside": n_obs,
            "p_outside": float(np.mean(n_copy >= n_obs)),
            "min_p": mp_obs,
            "p_min_p": float(np.mean(mp_copy <= mp_obs)),
        }
    return res


def prior_posterior_plot(priors: dict, names, flat: np.ndarray, units: dict, path) -> Path:
    """Prior density (line) and posterior histogram per parameter (natural scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = len(names)
    ncol = 4
    nrow = int(np.ceil(d / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.3 * nrow), layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    for k, n in enumerate(names):
        ax = axes[k]
        po = flat[:, k]
        pr = priors[n].frozen()
        lo = min(np.quantile(po, 0.001), pr.ppf(0.01))
        hi = max(np.quantile(po, 0.999), pr.ppf(0.99))
        grid = np.linspace(lo, hi, 300)
        ax.hist(po, bins=40, range=(lo, hi), density=True, color="C0", alpha=0.6, label="posterior")
        ax.plot(grid, pr.pdf(grid), color="C3", lw=1.2, label="prior")
        ax.set_xlabel(f"{n} ({units[n]})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes[d:]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def report_lines(res: StructureRunResult) -> list[str]:
    """What ``tregsim calibrate`` prints for a structure posterior."""
    m = res.method
    lines = [
        f"posterior: {display_path(res.out.with_suffix('.nc'))} ({res.n_participants} participants, "
        f"{res.n_visits} visits, {res.n_censored} below the LLOQ)"
    ]
    head = ("MAP", "median", "q05", "q95", "contr.", "R-hat", "ESS", "τ")
    lines.append(f"  {'parameter':<13s} {'unit':<27s}" + "".join(f"{h:>9s}" for h in head))
    for _, r in res.table.iterrows():
        vals = [r[k] for k in ("map", "q50", "q05", "q95")]
        lines.append(
            f"  {r['parameter']:<13s} {r['unit']:<27s}"
            + "".join(f"{v:>9.4g}" for v in vals)
            + f"{r['contraction']:>9.2f}{r['rhat']:>9.3f}{r['ess_bulk']:>9.0f}"
            f"{r['autocorr_time_steps']:>9.0f}"
        )
    sampler = _sampler_name(m.get("move_used", m.get("move", "stretch")))
    if m.get("move") == "auto":
        how = "switched: " if m.get("move_used") == "slice" else ""
        sampler = (
            f"move auto ({how}independence acceptance "
            f"{res.timings_s.get('independence_acceptance', float('nan')):.2f}), {sampler}"
        )
    lines.append(
        f"  {sampler}: {m['n_walkers']} walkers x "
        f"{res.n_steps_run or m['n_steps']} steps (burn {m['burn']}, thin "
        f"{m['thin']}), acceptance {res.acceptance:.2f}, steps after burn-in / max τ = "
        f"{res.kept_steps_per_tau:.1f}; MAP log posterior {res.map_logpost:.2f}"
    )
    p = res.predictive
    lines.append(
        f"  predictive check: {int(p['inside_95'].sum())}/{len(p)} observed statistics inside "
        "the predictive 95 % interval (predictive_check.csv)"
    )
    for g, o in (res.omnibus or {}).items():
        if g == "every statistic" or o["outside"]:
            lines.append(
                f"    {g}: {o['outside']} of {o['n_statistics']} outside, P(a dataset of the "
                f"model has as many) = {o['p_outside']:.2f}; smallest two-sided p "
                f"{o['min_p']:.3f}, P(as small) = {o['p_min_p']:.2f}"
            )
    qc = res.quadrature
    if qc:
        lines.append(
            f"  quadrature check: against {qc['refined_nodes']} nodes the log-likelihood is "
            f"{qc['error_map_nats']:+.3f} nats off at the MAP and the error varies by "
            f"{qc['error_spread_nats']:.3f} nats over the MAP and {qc['n_points'] - 1} draws "
            + ("(fine)" if qc["ok"] else f"(above {QUADRATURE_SPREAD_NATS} nats: raise the nodes)")
        )
    lines.append(
        "  timings (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.3g}" for k, v in res.timings_s.items())
    )
    return lines
