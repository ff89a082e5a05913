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
    "LLOQ_NMOL_L",
    "NOISE_MODELS",
    "add_noise",
    "censor",
    "draw_standard_normals",
    "observe",
    "observe_cpeptide",
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
