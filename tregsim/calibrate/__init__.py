"""Bayesian calibration: population NPE (sbi), individual-level likelihood (emcee), ABC.

Modules: ``config`` (validated TOML), ``data`` (summary table, long-format records),
``simulator`` (batched virtual placebo cohorts → summaries), ``npe`` (sbi; torch imported
only here), ``pipeline`` (bank → train → posterior → diagnostics → files), ``diagnostics``
(SBC, coverage, contraction, predictive checks), ``likelihood`` (hierarchical marginal
likelihood, MAP, emcee), ``kinetics`` (Treg product persistence ABC). See docs/calibration.md.
Names resolve lazily so importing this package never imports torch or sbi.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_config": "tregsim.calibrate.config",
    "CalibrationConfig": "tregsim.calibrate.config",
    "calibrate": "tregsim.calibrate.pipeline",
    "CalibrationResult": "tregsim.calibrate.pipeline",
    "build_problem": "tregsim.calibrate.simulator",
    "load_patient_data": "tregsim.calibrate.data",
    "IndividualCalibration": "tregsim.calibrate.likelihood",
    "treg_kinetics_abc": "tregsim.calibrate.kinetics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'tregsim.calibrate' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
