"""Prognostic covariate adjustment: the TrialNet ANCOVA plus a twin's predicted control outcome.

PROCOVA (EMA qualification opinion adopted 15 September 2022; Schuler et al., Int J Biostat
2022;18:329, doi:10.1515/ijb-2021-0072): each participant's outcome predicted under
control from pre-randomization data only enters the ANCOVA as one more covariate. With
randomization the test keeps its level whatever the prediction's quality; the residual
variance, and with it the sample size, shrinks by 1 − ρ² where ρ is the partial correlation of
prediction and outcome beyond the other covariates.

The analysis, :func:`tregsim.trial.endpoints.ancova_prognostic` (re-exported here), is the
batched OLS of :func:`tregsim.trial.endpoints.ancova` (one linear solve for R replicate trials):
ln(AUC_m + 1) on arm, ln(AUC_0 + 1), age and the prediction. This module adds the statistics
that measure a prognostic score on data (partial correlation, residual SD).
"""

from __future__ import annotations

import numpy as np

from tregsim.trial.endpoints import ancova_prognostic

__all__ = ["ancova_prognostic", "partial_correlation", "residual_sd"]


def partial_correlation(y: np.ndarray, x: np.ndarray, covariates: np.ndarray) -> float:
    """Correlation of ``y`` and ``x`` (n,) after regressing both on an intercept and the
    ``covariates`` (n, c) by OLS (the residual-on-residual correlation)."""
    Z = np.column_stack([np.ones(len(y)), covariates])
    ry = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    return float(np.sum(rx * ry) / np.sqrt(np.sum(rx**2) * np.sum(ry**2)))


def residual_sd(y: np.ndarray, covariates: np.ndarray) -> float:
    """Residual SD (df-corrected) of the OLS of ``y`` (n,) on an intercept and ``covariates``."""
    Z = np.column_stack([np.ones(len(y)), covariates])
    r = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    return float(np.sqrt(np.sum(r**2) / (len(y) - Z.shape[1])))
