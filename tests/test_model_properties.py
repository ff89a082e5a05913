"""Properties the model must have (issue #6), checked symbolically and by simulation.

* ψ = φ = 0: the infused cells are inert. Exact in the equations (sympy: every derivative of
  B, S, E, R and of the observable with respect to X, M vanishes identically), and the
  simulated Treg arm equals control to the solver tolerance.
* φ ≥ ψ (the cells add at least the suppression they displace): a larger dose never lowers
  mean C-peptide, over a dose ladder up to 3e9 cells/kg (150× the trial dose), for the
  model's Treg supply θ_R; without supply (the first specification's form, docs/model_spec.md) it fails, which is why θ_R exists
  (docs/models.md, "Endogenous Treg supply").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import tregsim
from tregsim.explore.sweep import simulate_paired

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "experiments" / "nct06708780.toml"
LADDER = np.array([0.0, 1e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9])  # cells/kg
MONTHS = [6.0, 12.0, 24.0]


@pytest.fixture(scope="module")
def exp():
    return tregsim.load_experiment(EXP)


@pytest.mark.parametrize("name", ["treg_t1d", "treg_t1d_v1_il2"])
def test_inert_cells_are_exact_in_the_equations(name):
    model = tregsim.load_model(name)
    sym = model.spec.symbols
    zero = {sym["phi"]: 0, sym["psi"]: 0}
    rhs = dict(zip(model.state_names, model.rhs_exprs))
    obs = model._timed(model.spec.observables["cpeptide"].expr)
    host = [s for s in model.state_names if s not in ("X", "M")]
    for target in [*(rhs[s] for s in host), obs]:
        for cell in ("X", "M"):
            d = sp.simplify(sp.diff(target, sym[cell]).subs(zero))
            assert d == 0, (name, cell, d)
    # and the cells do act when φ, ψ ≠ 0 (the check above can fail)
    assert sp.diff(rhs["B"], sym["X"]) != 0 and sp.diff(rhs["R"], sym["X"]) != 0


def test_inert_cells_simulate_equal_to_control(exp):
    po = simulate_paired(
        exp,
        ["phi", "psi", "dose_per_kg"],
        np.array([[0.0, 0.0, 2e7], [0.0, 0.0, 1e9]]),
        n=20,
        seed=5,
        progress=False,
    )
    assert po.ok.all()
    # The dose restarts the integrator, so step sequences differ and equality holds to the
    # solver tolerance (rtol 1e-7), not bitwise; a real effect at φ = 2 is ~1e-3 nmol/L.
    np.testing.assert_allclose(po.treg, po.control, rtol=1e-7, atol=1e-10)


def _ladder_means(exp, phi, psi, **fixed):
    names = ["dose_per_kg", "phi", "psi", *fixed]
    cols = [LADDER, np.full(LADDER.size, phi), np.full(LADDER.size, psi)]
    cols += [np.full(LADDER.size, v) for v in fixed.values()]
    po = simulate_paired(
        exp, names, np.column_stack(cols), n=12, seed=6, months=MONTHS, progress=False
    )
    assert po.ok.all()
    return po.treg.mean(axis=1), po.control.mean(axis=1)  # (doses, months) nmol/L


@pytest.mark.parametrize("psi", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("ratio", [1.0, 1.2, 2.0])
@pytest.mark.parametrize("alpha_X", [0.05, 0.2])
def test_larger_dose_never_lowers_cpeptide_when_phi_ge_psi(exp, psi, ratio, alpha_X):
    treg, control = _ladder_means(exp, ratio * psi, psi, alpha_X=alpha_X)
    np.testing.assert_allclose(treg[0], control[0], rtol=1e-7)
    step = np.diff(treg, axis=0)
    # non-decreasing up to solver noise (1e-9 nmol/L ≪ rtol × C-peptide)
    assert np.all(step >= -1e-9), (step.min(axis=0), treg[:, 1])
    assert treg[-1, 1] > treg[0, 1]  # and the top dose does something


def test_without_treg_supply_a_larger_dose_can_lower_cpeptide(exp):
    # the first specification's dR/dt (θ_R = 0): the niche empties and R regrows only ∝ R after the
    # product has contracted; this is the finding that made θ_R necessary.
    treg, _ = _ladder_means(exp, 1.0, 1.0, theta_R=0.0)
    i12 = MONTHS.index(12.0)
    assert np.all(np.diff(treg[:3, i12]) >= 0)  # small doses still help
    assert treg[:, i12].min() < treg[0, i12] - 1e-3, treg[:, i12]  # 1e9: −0.011 nmol/L
