"""The treatment effect from the Treg trials' own results (docs/treatment_effect.md).

``calibrate_treatment_effect(config, out)`` runs the synthesis; ``TreatmentEffectResult``
holds what the evidence says (``.save(dir)``, ``.load(dir)``); ``load_evidence`` validates the
evidence file.
"""

from tregsim.calibrate.treatment_effect.evidence import load_evidence
from tregsim.calibrate.treatment_effect.run import POSTERIOR_FILE, calibrate_treatment_effect
from tregsim.calibrate.treatment_effect.summary import TreatmentEffectResult

__all__ = [
    "POSTERIOR_FILE",
    "TreatmentEffectResult",
    "calibrate_treatment_effect",
    "load_evidence",
]
