"""Units and constants used across tregsim: the one home for calendar and assay numbers.

Time is in days since diagnosis everywhere; visits are given in months of
:data:`DAYS_PER_MONTH` days. MMTT C-peptide (2-h AUC mean) is in nmol/L, fasting C-peptide in
pmol/L, doses in cells/kg.
"""

from __future__ import annotations

DAYS_PER_YEAR = 365.25
"""Julian year, days."""

DAYS_PER_MONTH = DAYS_PER_YEAR / 12  # 30.4375
"""One visit month, days (TrialNet protocols schedule visits by calendar month)."""

LLOQ_NMOL_L = 0.017
"""Assay lower limit of quantification for MMTT C-peptide, nmol/L (Hao et al. 2016)."""

RESPONDER_THRESHOLD_NMOL_L = 0.2
"""MMTT C-peptide AUC mean at or above which β-cell function counts as clinically meaningful,
nmol/L (the TrialNet literature's responder threshold; DCCT: Palmer et al., Diabetes
2004;53:250, doi:10.2337/diabetes.53.1.250)."""
