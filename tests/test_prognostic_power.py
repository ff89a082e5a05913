"""ancova_prognostic in replicate trials: level under no effect, power against the closed-form
ANCOVA power with the reduced residual SD (Shieh 2017 exact unconditional power)."""

from __future__ import annotations

import numpy as np

from tregsim.trial.closed_form import power_ancova
from tregsim.trial.endpoints import ancova_trialnet
from tregsim.trial.prognostic import ancova_prognostic


def _trials(rng, R, n, effect, rho_p):
    """Multivariate-normal trials on the ln(AUC+1) scale: x0 = ln(AUC0+1), age, a prognostic
    score s independent of (x0, age) given its construction, outcome
    y = 0.95·x0 + 0.003·age + 0.165·(ρ_p·s + √(1−ρ_p²)·e) + effect·arm."""
    arm = np.zeros((R, 2 * n), bool)
    arm[:, :n] = True
    arm = rng.permuted(arm, axis=1)
    x0 = rng.normal(0.536, 0.193, (R, 2 * n))
    age = rng.uniform(8, 65, (R, 2 * n))
    s = rng.standard_normal((R, 2 * n))
    y = (
        0.95 * x0
        + 0.003 * age
        + 0.165 * (rho_p * s + np.sqrt(1 - rho_p**2) * rng.standard_normal((R, 2 * n)))
    )
    y = y + effect * arm
    # the analyses take AUC in nmol/L: invert ln(AUC+1)
    return np.expm1(y), np.expm1(x0), age, s, arm


def test_level_under_no_effect(rng):
    R, n = 4000, 20
    y, b, age, s, arm = _trials(rng, R, n, 0.0, 0.5)
    rej = ancova_prognostic(y, b, age, s, arm).reject.mean()
    se = np.sqrt(0.05 * 0.95 / R)
    assert abs(rej - 0.05) < 3 * se, rej


def test_power_matches_closed_form_with_reduced_residual_sd(rng):
    R, n, effect, rho_p = 4000, 20, 0.12, 0.6
    y, b, age, s, arm = _trials(rng, R, n, effect, rho_p)
    p_pro = ancova_prognostic(y, b, age, s, arm).reject.mean()
    p_anc = ancova_trialnet(y, b, age, arm).reject.mean()
    # closed form: residual SD 0.165·√(1−ρ²) with 3 covariates; 0.165 with 2 (s omitted)
    cf_pro = float(power_ancova(n, n, effect, 0.165 * np.sqrt(1 - rho_p**2), 0.0, n_covariates=3))
    cf_anc = float(power_ancova(n, n, effect, 0.165, 0.0, n_covariates=2))
    for sim, cf in ((p_pro, cf_pro), (p_anc, cf_anc)):
        assert abs(sim - cf) < 3 * np.sqrt(cf * (1 - cf) / R), (sim, cf)
    assert p_pro > p_anc
