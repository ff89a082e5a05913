"""Virtual-trial statistics: endpoint analysis, power, sample size, assurance, allocation.

See ``docs/trials.md``. Arrays are ``(R, n)``: R replicate trials × n patient slots; MMTT
C-peptide in nmol/L, analysed on ln(AUC + 1) (TrialNet).
"""

from tregsim.trial.allocation import LogisticAllocation, first_n_per_arm
from tregsim.trial.closed_form import (
    minimal_detectable_effect,
    n_per_arm_for_power,
    power_ancova,
    power_t_test,
)
from tregsim.trial.design import TrialData, draw_effects, synthetic_trials
from tregsim.trial.endpoints import (
    AnalysisResult,
    analyse_trials,
    ancova,
    ancova_trialnet,
    mann_whitney,
    responder_test,
    t_test,
)
from tregsim.trial.power import (
    PowerResult,
    allocation_bias,
    simulated_mde,
    simulated_power,
    variance_components,
)

__all__ = [
    "AnalysisResult",
    "LogisticAllocation",
    "PowerResult",
    "TrialData",
    "allocation_bias",
    "analyse_trials",
    "ancova",
    "ancova_trialnet",
    "draw_effects",
    "first_n_per_arm",
    "mann_whitney",
    "minimal_detectable_effect",
    "n_per_arm_for_power",
    "power_ancova",
    "power_t_test",
    "responder_test",
    "simulated_mde",
    "simulated_power",
    "synthetic_trials",
    "t_test",
    "variance_components",
]
