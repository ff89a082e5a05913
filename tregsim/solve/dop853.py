"""The explicit Dormand–Prince 8(5,3) pair (DOP853) as data: tableau, error weights, interpolant.

Hairer E, Nørsett SP, Wanner G. *Solving Ordinary Differential Equations I: Nonstiff
Problems*, 2nd ed., Springer 1993, Sec. II.5 and II.10 (code DOP853). The coefficients are
scipy's (``scipy.integrate._ivp.dop853_coefficients``, the same numbers as Hairer's Fortran),
read once here so both backends share one tableau.

Stages 0–11 make the step; row 12 is the FSAL evaluation f(t + h, y_new); rows 13–15 are the
three extra stages of the 7th-order dense output. Error: Hairer's combined 5th/3rd-order
estimate. Stiffness: Hairer's test h·‖f(y_new) − f(y_11)‖/‖y_new − y_11‖ against the
stability boundary of the method on the negative real axis (≈ 6.1).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate._ivp import dop853_coefficients as _c

N_STAGES = 12
A = np.array(_c.A, dtype=float)  # (16, 16), rows 13..15: dense-output stages
B = np.array(_c.B, dtype=float)  # (12,)
C = np.array(_c.C, dtype=float)  # (16,)
E3 = np.array(_c.E3, dtype=float)  # (13,), applied to stages 0..11 and the FSAL row 12
E5 = np.array(_c.E5, dtype=float)  # (13,)
D = np.array(_c.D, dtype=float)  # (4, 16): interpolant coefficients 3..6
ERROR_ORDER = 7  # step factor exponent -1/(ERROR_ORDER + 1)
STIFF_BOUNDARY = 6.1  # Hairer's DOP853 stiffness threshold for h·|λ|
STABLE_CAP = 3.0  # largest h·|λ| the solver allows (half the boundary; docs/solver.md)
DENSE_MAX = 0.25  # dense output only from steps with h·|λ| below this (docs/solver.md)
# step factor bounds: Hairer's DOP853 shrink limit (FAC1 = 0.333) and a growth limit of 4
# (Hairer: 6, scipy: 10). Measured (docs/solver.md): with 10 the error estimate let a 14-day
# step through with 8e-7 error at rtol 1e-8; with 6 the worst C-peptide error over 500
# prior-drawn patients at rtol 1e-8 was 1.5e-7, with 4 it is 2.3e-8, for 2.6 % more RHS
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.333, 4.0
