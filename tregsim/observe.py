"""Observation models: MMTT C-peptide with assay noise and the lower limit of quantification."""

from __future__ import annotations

import numpy as np

from tregsim.errors import ArgumentError

LLOQ_NMOL_L = 0.017
"""Assay lower limit of quantification for MMTT C-peptide, nmol/L (Hao et al. 2016)."""


def observe_cpeptide(
    mean: np.ndarray,
    rng: np.random.Generator,
    sigma: float | np.ndarray,
    *,
    lloq: float = LLOQ_NMOL_L,
    noise: str = "lognormal",
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy MMTT 2-h AUC mean C-peptide from the noise-free model value.

    Parameters
    ----------
    mean : noise-free C-peptide μ, nmol/L, any shape.
    rng : the generator to draw from (one standard normal per element, in C order).
    sigma : residual SD, broadcastable to ``mean``. For ``"lognormal"`` (the model's default)
        ``log y = log μ + ε``; for ``"trialnet"`` the TrialNet convention
        ``log(y + 1) = log(μ + 1) + ε``. ε ~ N(0, σ²).
    lloq : values below it are censored: returned as ``lloq`` with the flag set.

    Returns
    -------
    y : observed values, nmol/L, same shape as ``mean`` (censored values set to ``lloq``).
    censored : bool array, True where the value was below the LLOQ.
    """
    mean = np.asarray(mean, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if (sigma < 0).any() or not np.isfinite(sigma).all():
        raise ArgumentError(
            f"sigma must be finite and ≥ 0, got {sigma.min()}",
            field="sigma",
            fix="pass the residual SD on the log scale",
        )
    eps = rng.standard_normal(mean.shape) * sigma
    with np.errstate(divide="ignore"):
        if noise == "lognormal":
            y = np.exp(np.log(mean) + eps)
        elif noise == "trialnet":
            y = np.exp(np.log1p(mean) + eps) - 1.0
        else:
            raise ArgumentError(
                f"unknown noise model {noise!r}", field="noise", fix='use "lognormal" or "trialnet"'
            )
    censored = ~(y >= lloq)
    return np.where(censored, lloq, y), censored
