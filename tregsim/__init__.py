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
    # experiments, populations, cohorts
    "load_experiment": "tregsim.experiment",
    "Experiment": "tregsim.experiment",
    "sample_population": "tregsim.population",
    "Population": "tregsim.population",
    "TregInfusion": "tregsim.regimen",
    "RoutineCare": "tregsim.regimen",
    "simulate_arms": "tregsim.cohort",
    "run_cohort": "tregsim.cohort",
    "CohortResult": "tregsim.cohort",
    "cohort_study": "tregsim.cohort",
    "load_cohort": "tregsim.cohort",
    "natural_history": "tregsim.placebo",
    "natural_history_check": "tregsim.placebo",
    "NaturalHistory": "tregsim.placebo",
    "load_natural_history": "tregsim.placebo",
    # virtual trials
    "virtual_trials": "tregsim.trial.virtual",
    "simulated_power": "tregsim.trial.power",
    "simulated_mde": "tregsim.trial.power",
    "allocation_bias": "tregsim.trial.power",
    "PowerResult": "tregsim.trial.power",
    "power_study": "tregsim.trial.study",
    "PowerStudy": "tregsim.trial.study",
    "load_power_study": "tregsim.trial.study",
    "synthetic_trials": "tregsim.trial.design",
    "TrialData": "tregsim.trial.design",
    "analyse_trials": "tregsim.trial.endpoints",
    "ancova_trialnet": "tregsim.trial.endpoints",
    "power_t_test": "tregsim.trial.closed_form",
    "power_ancova": "tregsim.trial.closed_form",
    "n_per_arm_for_power": "tregsim.trial.closed_form",
    "minimal_detectable_effect": "tregsim.trial.closed_form",
    "LogisticAllocation": "tregsim.trial.allocation",
    # exploration
    "sweep": "tregsim.explore.sweep",
    "parse_grid": "tregsim.explore.sweep",
    "SweepResult": "tregsim.explore.sweep",
    "sweep_study": "tregsim.explore.sweep",
    "load_sweep": "tregsim.explore.sweep",
    "sensitivity_study": "tregsim.explore.sensitivity",
    "sobol_indices": "tregsim.explore.sensitivity",
    "morris_indices": "tregsim.explore.sensitivity",
    "experiment_sensitivity": "tregsim.explore.sensitivity",
    "ParameterRange": "tregsim.explore.sensitivity",
    "SensitivityResult": "tregsim.explore.sensitivity",
    "phi_needed": "tregsim.explore.responders",
    "rank_predictors": "tregsim.explore.responders",
    "responder_analysis": "tregsim.explore.responders",
    "compare_models": "tregsim.explore.compare",
    "compare_study": "tregsim.explore.compare_study",
    "ComparisonStudy": "tregsim.explore.compare_study",
    "responders_study": "tregsim.explore.responders",
    # calibration
    "calibration_study": "tregsim.calibration",
    "Calibration": "tregsim.calibration",
    "load_calibration": "tregsim.calibration",
    # execution, files
    "run_chunks": "tregsim.parallel",
    "Executor": "tregsim.parallel",
    "ChunkError": "tregsim.parallel",
    "prepare_output_dir": "tregsim.checkpoint",
    "OutputFolderError": "tregsim.errors",
    "SHIPPED": "tregsim.results",
    # interoperability
    "export_sbml": "tregsim.interop.sbml",
    "export_petab": "tregsim.interop.petab",
    "read_nonmem": "tregsim.interop.nonmem",
    "write_nonmem": "tregsim.interop.nonmem",
    # report
    "build_report": "tregsim.report.html",
    "run_experiment": "tregsim.report.run",
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
