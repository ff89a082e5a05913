"""The observation model: MMTT C-peptide with assay noise and the lower limit of quantification.

One implementation, used by the calibration simulator (:mod:`tregsim.calibrate.simulator`), the
natural-history check (:mod:`tregsim.cohort`) and virtual trials (:mod:`tregsim.trial.virtual`).

The noise is a function of **pre-drawn standard normals** ``z`` (same shape as the mean), so the
caller decides where they come from: a :func:`tregsim.rng.draw` stream indexed by absolute
patient / item number keeps every patient's noise independent of chunking and workers
(:func:`draw_standard_normals`).

Noise models (ε = σ·z, σ = the observable's residual SD on the log scale):

* ``"lognormal"`` (the models' default): ``y = μ · exp(ε)``;
* ``"trialnet"``: ``log(y + 1) = log(μ + 1) + ε`` (the TrialNet analysis scale).

Values below the LLOQ (:data:`tregsim.units.LLOQ_NMOL_L` unless the model says otherwise) are
censored; ``below`` says what is reported for them: ``"lloq"`` (the LLOQ), ``"half_lloq"``
(LLOQ/2, a common substitution) or ``"keep"`` (the noisy value). Units: nmol/L.
"""

from __future__ import annotations

import numpy as np

from tregsim import rng as _rng
from tregsim.errors import ArgumentError
from tregsim.units import LLOQ_NMOL_L

NOISE_MODELS = ("lognormal", "trialnet")
BELOW_LLOQ = ("lloq", "half_lloq", "keep")

__all__ = [
    "BELOW_LLOQ",
    "C_REF_NMOL_L",
    "LLOQ_NMOL_L",
    "NOISE_MODELS",
    "add_noise",
    "censor",
    "deviation_scale",
    "draw_standard_normals",
    "log1p_recorded",
    "observe",
    "observe_cpeptide",
    "observe_visits",
    "solve_at_patient_times",
    "visit_normals",
]


def draw_standard_normals(seed: int, stream: str, start: int, stop: int, shape=()) -> np.ndarray:
    """Standard normals for items ``[start, stop)`` of ``stream``: ``(stop − start, *shape)``.

    Item i always gets the same numbers whatever the chunk (:func:`tregsim.rng.draw`).
    """
    shape = tuple(shape)
    return _rng.draw(seed, stream, start, stop, lambda g, m: g.standard_normal((m, *shape)))


def add_noise(mean, z, sigma, *, noise: str = "lognormal") -> np.ndarray:
    """Noisy values from the noise-free ``mean`` (nmol/L) and standard normals ``z``.

    ``z`` has the shape of ``mean``; ``sigma`` (≥ 0, log scale) broadcasts to it.
    """
    mean = np.asarray(mean, dtype=float)
    z = np.asarray(z, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if z.shape != mean.shape:
        raise ArgumentError(
            f"z has shape {z.shape}, the mean {mean.shape}",
            field="z",
            fix="pass one standard normal per value",
        )
    if (sigma < 0).any() or not np.isfinite(sigma).all():
        raise ArgumentError(
            f"sigma must be finite and ≥ 0, got {sigma.min()}",
            field="sigma",
            fix="pass the residual SD on the log scale",
        )
    if noise == "lognormal":
        return mean * np.exp(sigma * z)
    if noise == "trialnet":
        with np.errstate(invalid="ignore"):
            return np.exp(np.log1p(mean) + sigma * z) - 1.0
    raise ArgumentError(
        f"unknown noise model {noise!r}",
        field="noise",
        fix=f"use one of: {', '.join(NOISE_MODELS)}",
    )


def censor(y, lloq=LLOQ_NMOL_L, *, below: str = "lloq") -> tuple[np.ndarray, np.ndarray]:
    """Apply the LLOQ: ``(reported values, censored flags)``; NaN stays NaN (missing, not
    censored). ``below`` is one of :data:`BELOW_LLOQ`."""
    y = np.asarray(y, dtype=float)
    lloq = np.asarray(lloq, dtype=float)
    censored = y < lloq
    if below == "lloq":
        return np.where(censored, lloq, y), censored
    if below == "half_lloq":
        return np.where(censored, lloq / 2, y), censored
    if below == "keep":
        return y, censored
    raise ArgumentError(
        f"unknown below-LLOQ rule {below!r}",
        field="below",
        fix=f"use one of: {', '.join(BELOW_LLOQ)}",
    )


def observe(
    mean,
    z,
    sigma,
    *,
    lloq=LLOQ_NMOL_L,
    noise: str = "lognormal",
    below: str = "lloq",
) -> tuple[np.ndarray, np.ndarray]:
    """Observed MMTT C-peptide: :func:`add_noise` then :func:`censor`.

    Parameters
    ----------
    mean : noise-free C-peptide μ, nmol/L, any shape.
    z : standard normals, the shape of ``mean`` (e.g. :func:`draw_standard_normals`).
    sigma : residual SD on the log scale, broadcastable to ``mean``.
    lloq : lower limit of quantification, nmol/L, broadcastable to ``mean``.
    noise, below : see the module docstring.

    Returns
    -------
    y : reported values, nmol/L, the shape of ``mean``.
    censored : bool, True where the noisy value was below the LLOQ.
    """
    return censor(add_noise(mean, z, sigma, noise=noise), lloq, below=below)


def observe_cpeptide(
    mean: np.ndarray,
    rng: np.random.Generator,
    sigma: float | np.ndarray,
    *,
    lloq: float = LLOQ_NMOL_L,
    noise: str = "lognormal",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`observe` with the normals drawn from ``rng`` (one per element, C order);
    censored values are reported as ``lloq``."""
    mean = np.asarray(mean, dtype=float)
    return observe(mean, rng.standard_normal(mean.shape), sigma, lloq=lloq, noise=noise)


# ----------------------------------------------------------------------------------------
# Each patient's visits with the within-patient structure of issue #14
# ----------------------------------------------------------------------------------------
# Observed MMTT C-peptide at each patient's own visits, with the structure of issue #14.
#
# One measurement per patient and visit from the noise-free model value μ (nmol/L):
#
#     log y = log μ + h(μ)·b(t) + σ_meas_eff·e,   h(μ) = (μ / 0.6 nmol/L)^(−κ)
#
# * b: within-patient biological deviation, a stationary Ornstein–Uhlenbeck process on the log
#   scale (SD ``sigma_bio``, correlation time ``tau_bio`` days), evaluated at the patient's
#   visit days (exact AR(1) transitions between them);
# * e ~ N(0, 1) independent: the MMTT test–retest error ``sigma_meas`` (Greenbaum 2008, see
#   ``models/treg_t1d.toml``). When ``sigma_bio = 0`` the one residual carries the
#   heteroscedastic factor: σ_meas_eff = σ_meas·h(μ); otherwise σ_meas_eff = σ_meas;
# * with ``inv_nu`` = 1/ν > 0 (σ_bio = 0 only) e is Student-t with ν degrees of freedom: the
#   shipped structure since round 19 (ν ≈ 3: a few visits far off a patient's course;
#   docs/calibration.md, "Round 18: a heavy-tailed within-patient deviation");
# * values below the LLOQ are censored (returned as ``lloq`` with a flag).
#
# The candidate structures and why this one: ``docs/calibration.md``, "Structure of individual
# variability". Random numbers come from :mod:`tregsim.rng` stream ``stream`` indexed by
# patient, so patient i gets the same measurements whatever the chunking. Used by
# ``cohort.nc``'s ``cpeptide_observed``, the natural-history check and virtual trials under the
# records structure (the default, :mod:`tregsim.population.structure`); ``variability="lumped"``
# uses :func:`observe` with ``sigma``.
#
# :func:`solve_at_patient_times` gives noise-free values at per-patient visit days (each
# patient's own baseline), the one place that knows whether the solver takes a
# ``(n_patients, n_times)`` ``times`` array.

C_REF_NMOL_L = 0.6
"""Reference C-peptide of the heteroscedastic factor and the hazard covariate, nmol/L."""


def deviation_scale(log_mu, kappa, lloq: float = LLOQ_NMOL_L) -> np.ndarray:
    """The heteroscedastic factor h(μ) = (max(μ, LLOQ) / 0.6 nmol/L)^(−κ) of the within-patient
    deviation, from ``log_mu`` = ln(μ / (nmol/L)) (any shape, broadcast with ``kappa``).

    The factor stops growing below the LLOQ: (μ/0.6)^(−κ) → ∞ as μ → 0 would let a patient with
    no C-peptide left be "observed" at any level (and overflow ``exp``); above the LLOQ it is
    the structure unchanged. The one home of this rule: the records likelihood, the calibration
    simulators and the virtual trials all call it (docs/calibration.md, "Structure of
    individual variability")."""
    with np.errstate(invalid="ignore"):
        lm = np.maximum(np.asarray(log_mu, float), np.log(lloq))
    return np.exp(-np.asarray(kappa, float) * (lm - np.log(C_REF_NMOL_L)))


def log1p_recorded(log_y, lloq: float = LLOQ_NMOL_L) -> np.ndarray:
    """ln(y + 1) of an observed MMTT from ``log_y`` = ln(y / (nmol/L)), LLOQ/2 recorded below
    the LLOQ, as the records, the virtual trials and the twins record it. From ln y as
    logaddexp, so that a far node of a heavy-tailed deviation does not overflow."""
    log_y = np.asarray(log_y, float)
    return np.where(log_y < np.log(lloq), np.log1p(lloq / 2), np.logaddexp(0.0, log_y))


def t_variance_factor(inv_nu) -> np.ndarray:
    """Variance of a Student-t deviation of unit scale, ν/(ν − 2) with ν = 1/``inv_nu``
    (1 at ``inv_nu`` = 0, the normal; ``inf`` at ν ≤ 2, where the variance does not exist)."""
    v = np.asarray(inv_nu, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = 1.0 / (1.0 - 2.0 * v)
    return np.where(v <= 0, 1.0, np.where(v < 0.5, f, np.inf))


def student_t_from_normal(z, inv_nu) -> np.ndarray:
    """Student-t deviates with ν = 1/``inv_nu`` degrees of freedom from standard normals ``z``
    by the quantile map F_ν⁻¹(Φ(z)) (exact in distribution; ``z`` itself where ``inv_nu`` = 0,
    so a normal structure's random stream and results are unchanged). Computed from the lower
    tail, −sign(z)·F_ν⁻¹(Φ(−|z|)), where Φ keeps its precision. Arguments broadcast."""
    z = np.asarray(z, float)
    v = np.asarray(inv_nu, float)
    if not np.any(v > 0):  # the shape of a broadcast, as below (a normal posterior's K draws)
        return np.array(np.broadcast_to(z, np.broadcast_shapes(z.shape, v.shape)), copy=True)
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore"):
        # |z| ≤ 30 (Φ(−30) ≈ 5e-198): stdtrit fails near 1e-250; a normal draw beyond never occurs
        lower = special.ndtr(-np.minimum(np.abs(z), 30.0))
        t = -np.sign(z) * special.stdtrit(1.0 / np.where(v > 0, v, 1.0), lower)
    return np.where(v > 0, t, z)


_IQR_Z = 0.6744897501960817  # Φ⁻¹(0.75): a normal's upper quartile in SDs
_DECONV_RHO = np.linspace(0.0, 1.2, 121)  # deviation scale / measured SD
_DECONV_INV_NU = np.linspace(0.0, 0.5, 26)


def _deconvolution_table() -> np.ndarray:
    """F(ρ, 1/ν) (121, 26): the noise-free SD, in units of the measured SD, for which
    N(0, F²) plus ρ·t_ν has the interquartile range of N(0, 1) (NaN where ρ·t_ν alone is
    wider). Bisection on F of the sum's CDF at the normal's upper quartile, integrated over
    whichever part is the smoother (Gauss–Hermite nodes of the normal, mapped through the
    t quantile for the deviation); built once per process, when a t deviation is first met (≈ 1 s)."""
    global _TABLE
    if _TABLE is not None:
        return _TABLE
    from scipy import special

    z, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    rho, inv = np.meshgrid(_DECONV_RHO, _DECONV_INV_NU, indexing="ij")
    nu = 1.0 / np.maximum(inv, 1e-12)
    e = student_t_from_normal(z[None, None, :], inv[..., None])  # (R, N, nodes)

    def cdf(f):
        f3 = f[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            over_e = (special.ndtr((_IQR_Z - rho[..., None] * e) / f3) * w).sum(-1)
            over_z = (special.stdtr(nu[..., None], (_IQR_Z - f3 * z) / rho[..., None]) * w).sum(-1)
            over_z = np.where(
                inv > 0, over_z, (special.ndtr((_IQR_Z - f3 * z) / rho[..., None]) * w).sum(-1)
            )
        return np.where(f >= rho, over_e, over_z)

    lo, hi = np.zeros_like(rho), np.ones_like(rho)
    for _ in range(36):  # CDF(upper quartile) falls as F grows: find CDF = 0.75 (to 2⁻³⁶)
        mid = 0.5 * (lo + hi)
        up = cdf(mid) > 0.75
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    out = 0.5 * (lo + hi)
    with np.errstate(divide="ignore"):
        alone = special.stdtr(nu, _IQR_Z / rho)  # the deviation alone: P(ρ·t ≤ quartile)
    out[(rho > 0) & (alone < 0.75)] = np.nan
    out[0] = 1.0
    _TABLE = out
    return out


_TABLE: np.ndarray | None = None


def deconvolved_sd(measured_sd, scale, inv_nu=0.0) -> np.ndarray:
    """Log-SD s of the noise-free value whose measurement, N(0, s²) plus a deviation of scale
    ``scale`` (normal, or Student-t with ν = 1/``inv_nu``), has the spread of
    N(0, ``measured_sd``²). Arguments broadcast; NaN where the deviation alone is as wide.

    For the normal the variances add: s = √(measured² − scale²). A t deviation's variance
    scale²·ν/(ν − 2) is set by its tails, which the records pin down poorly (the shipped
    posterior's 1/ν spans 0.22–0.39: a variance factor 1.8–4.6), so it is matched by the
    interquartile range instead (the tabulated exact convolution, :func:`_deconvolution_table`,
    bilinear in scale/measured and 1/ν ≤ 0.5). From the records' own measured baseline spread
    this recovers each posterior draw's fitted noise-free s_c to an RMS 0.034, against 0.057
    by variances (docs/calibration.md, "Round 19")."""
    m = np.asarray(measured_sd, float)
    sc = np.asarray(scale, float)
    v = np.asarray(inv_nu, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = np.sqrt(np.where(m**2 > sc**2, m**2 - sc**2, np.nan))
        if not np.any(v > 0):
            return normal
        rho = sc / m
        tab = _deconvolution_table()
        fr = np.clip(rho / _DECONV_RHO[1], 0.0, _DECONV_RHO.size - 1.0)
        fv = np.clip(v / _DECONV_INV_NU[1], 0.0, _DECONV_INV_NU.size - 1.0)
        i = np.minimum(fr.astype(int), _DECONV_RHO.size - 2)
        j = np.minimum(fv.astype(int), _DECONV_INV_NU.size - 2)
        a, b = fr - i, fv - j
        f = (
            (1 - a) * (1 - b) * tab[i, j]
            + a * (1 - b) * tab[i + 1, j]
            + (1 - a) * b * tab[i, j + 1]
            + a * b * tab[i + 1, j + 1]
        )
        f = np.where(rho > _DECONV_RHO[-1], np.nan, f)
        return np.where(v > 0, m * f, normal)


def visit_variance_log(
    log_mu,
    sigma_meas,
    sigma_bio=0.0,
    kappa=0.0,
    lloq: float = LLOQ_NMOL_L,
    inv_nu=0.0,
) -> np.ndarray:
    """Variance of ln(observed) about ln(μ) at one visit under :func:`observe_visits`:
    σ_meas² + (h(μ)·σ_bio)² with a biological deviation (σ_bio > 0), else (h(μ)·σ_meas)²·f,
    with h the heteroscedastic factor :func:`deviation_scale` and f = ν/(ν − 2) the variance of
    the Student-t deviation of ``inv_nu`` = 1/ν (:func:`t_variance_factor`; 1 for the normal).
    Arguments broadcast; ``log_mu`` = ln(μ / (nmol/L))."""
    h = deviation_scale(log_mu, kappa, lloq)
    sm, sb = np.asarray(sigma_meas, float), np.asarray(sigma_bio, float)
    return np.where(sb > 0, sm**2 + (h * sb) ** 2, (h * sm) ** 2 * t_variance_factor(inv_nu))


def visit_normals(seed: int, stream: str, start: int, stop: int, n_visits: int) -> np.ndarray:
    """Standard normals (stop − start, 2, n_visits) for patients [start, stop): [:, 0] drives
    the OU path, [:, 1] the assay error. Patient i's numbers do not depend on chunking."""
    return _rng.draw(seed, stream, start, stop, lambda g, n: g.standard_normal((n, 2, n_visits)))


def observe_visits(
    mean_nmol_l: np.ndarray,
    days: np.ndarray,
    normals: np.ndarray,
    *,
    sigma_meas: float | np.ndarray,
    sigma_bio: float | np.ndarray = 0.0,
    tau_bio: float | np.ndarray = 90.0,
    kappa: float | np.ndarray = 0.0,
    lloq: float = LLOQ_NMOL_L,
    inv_nu: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed C-peptide from noise-free values.

    Parameters
    ----------
    mean_nmol_l : (P, T) noise-free C-peptide, nmol/L (NaN for failed solves stays NaN).
    days : (T,) or (P, T) visit days (any origin; only differences matter), increasing per row.
    normals : (P, 2, T) standard normals (:func:`visit_normals`).
    sigma_meas, sigma_bio, tau_bio (days), kappa : scalars or (P,) per patient (e.g. posterior
        draws).
    inv_nu : 1/ν, scalar or (P,): > 0 makes the error e Student-t with ν degrees of freedom
        (scale σ_meas·h; drawn from the same normals by :func:`student_t_from_normal`, so the
        stream does not change); 0 (the default) is the normal. Only without a biological
        deviation (σ_bio = 0), the structure it was fitted with.

    Returns
    -------
    y : (P, T) observed nmol/L (censored values set to ``lloq``); censored : (P, T) bool.
    """
    mu = np.asarray(mean_nmol_l, float)
    P, T = mu.shape
    z = np.asarray(normals, float)
    if z.shape != (P, 2, T):
        raise ArgumentError(
            f"normals must have shape {(P, 2, T)}, got {z.shape}",
            field="normals",
            fix="draw them with visit_normals(seed, stream, start, stop, n_visits)",
        )
    d = np.broadcast_to(np.asarray(days, float), (P, T))
    if T > 1 and np.any(np.diff(d, axis=1) < 0):
        raise ArgumentError("visit days must increase per patient", field="days", fix="sort visits")

    def col(v):
        return np.broadcast_to(np.asarray(v, float), (P,))[:, None]

    sm, sb, tau, kap = col(sigma_meas), col(sigma_bio), col(tau_bio), col(kappa)
    inu = col(inv_nu)
    if np.any(sm < 0) or np.any(sb < 0) or np.any(tau <= 0):
        raise ArgumentError(
            "sigma_meas, sigma_bio must be ≥ 0 and tau_bio > 0",
            field="sigma_meas/sigma_bio/tau_bio",
            fix="pass SDs on the log scale and a correlation time in days",
        )
    if np.any(inu < 0) or np.any((inu > 0) & (sb > 0)):
        raise ArgumentError(
            "inv_nu must be ≥ 0, and > 0 only where sigma_bio = 0",
            field="inv_nu",
            fix="pass 1/degrees of freedom of the Student-t deviation (0: normal) with sigma_bio 0",
        )
    b = np.empty((P, T))
    b[:, 0] = z[:, 0, 0]
    for k in range(1, T):
        rho = np.exp(-(d[:, k] - d[:, k - 1]) / tau[:, 0])
        b[:, k] = rho * b[:, k - 1] + np.sqrt(1 - rho**2) * z[:, 0, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = deviation_scale(np.log(mu), kap, lloq)
        h = np.where(np.isfinite(h), h, 1.0)
        bio = sb > 0
        e = student_t_from_normal(z[:, 1], inu)
        log_y = np.log(mu) + np.where(bio, h * sb * b, 0.0) + np.where(bio, sm, sm * h) * e
        y = np.exp(log_y)
    censored = y < lloq
    return np.where(censored, lloq, y), censored


def solve_at_patient_times(model, params, times: np.ndarray, doses=None, **solver_kw) -> np.ndarray:
    """Noise-free observable ``cpeptide`` (P, T) at per-patient ``times`` (P, T) days after
    diagnosis (each patient's own baseline + the visit schedule).

    Uses the solver's per-patient ``times`` when it takes them; otherwise solves on the sorted
    union of all times and picks each patient's columns (exact: the same solution evaluated
    at more output points).
    """
    from tregsim.solve import simulate_arrays

    times = np.asarray(times, float)
    if times.ndim == 1:
        times = np.broadcast_to(times, (params.n if hasattr(params, "n") else 1, times.size))
    try:
        res = simulate_arrays(model, params, doses, times=times, **solver_kw)
        out = res.observables["cpeptide"]
        if out.shape == times.shape:
            return out
    except ArgumentError:
        pass  # this solver takes one common time grid
    grid, inv = np.unique(times, return_inverse=True)
    res = simulate_arrays(model, params, doses, times=grid, **solver_kw)
    full = res.observables["cpeptide"]
    return np.take_along_axis(full, inv.reshape(times.shape), axis=1)
