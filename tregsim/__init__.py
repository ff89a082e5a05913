"""tregsim: simulate regulatory T cell therapy in type 1 diabetes.

The public API, re-exported here. Names resolve lazily, so ``import tregsim`` is fast and
never imports torch or sbi (calibration imports them when it runs).

Units: days for time (t = 0 at diagnosis), nmol/L for MMTT 2-h AUC mean C-peptide,
pmol/L for fasting C-peptide, cells/kg for doses, years for age, kg for weight.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "TregsimError": "tregsim.errors",
    "ModelFileError": "tregsim.errors",
    "ExperimentFileError": "tregsim.errors",
    "ConfigFileError": "tregsim.errors",
    "DataFileError": "tregsim.errors",
    "ArgumentError": "tregsim.errors",
    # models
    "load_model": "tregsim.model",
    "list_models": "tregsim.model",
    "ModelSpec": "tregsim.model",
    "CompiledModel": "tregsim.model",
    "ParameterBatch": "tregsim.model",
    # simulation
    "simulate": "tregsim.solve",
    "simulate_arrays": "tregsim.solve",
    "Doses": "tregsim.solve",
    "observe_cpeptide": "tregsim.observe",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'tregsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
