"""SBML export: libSBML consistency, and libRoadRunner reproducing tregsim's trajectories."""

from __future__ import annotations

import numpy as np
import pytest

libsbml = pytest.importorskip("libsbml")

import tregsim  # noqa: E402
from tregsim.errors import ArgumentError  # noqa: E402
from tregsim.interop.sbml import (  # noqa: E402
    NEVER_DOSED,
    DoseEvent,
    build_sbml_document,
    check_sbml,
    dose_events,
    export_sbml,
    to_l3_formula,
)

MONTH = 365.25 / 12
TIMES = np.arange(25) * MONTH  # monthly outputs over 730.5 days


@pytest.fixture(scope="module")
def model():
    return tregsim.load_model("treg_t1d")


def prior_patients(model, n, rng):
    """n patients: every parameter with a prior drawn from it, IIV and covariates drawn too."""
    over = {}
    for name, p in model.spec.parameters.items():
        if p.prior is not None:
            over[name] = p.prior.sample(rng, size=n)
    omega = over.get("omega_lambda", np.full(n, model.spec.parameters["omega_lambda"].value))
    over["f_lambda"] = np.exp(omega * rng.standard_normal(n))
    over["age"] = rng.uniform(7.0, 40.0, n)
    over["weight"] = rng.uniform(25.0, 90.0, n)
    over["cpep0"] = rng.uniform(0.25, 1.3, n)
    return model.parameters(n, **{k: v for k, v in over.items() if k in model.parameter_names})


# ------------------------------------------------------------------------------ printer
def _roundtrip(expr, values):
    """Evaluate the printed formula with libSBML's own evaluator → float."""
    import sympy as sp

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    for k, v in values.items():
        p = m.createParameter()
        p.setId(k)
        p.setValue(v)
        p.setConstant(True)
    ast = libsbml.parseL3FormulaWithModel(to_l3_formula(expr), m)
    assert ast is not None, libsbml.getLastParseL3Error()
    got = libsbml.SBMLTransforms.evaluateASTNode(ast, m)
    want = float(expr.subs({sp.Symbol(k, real=True): v for k, v in values.items()}).evalf())
    return got, want


def test_printer_matches_sympy_numerically():
    import sympy as sp

    from tregsim.model.expr import Logistic

    x, y, z = (sp.Symbol(s, real=True) for s in "xyz")
    vals = {"x": 0.7, "y": -1.3, "z": 2.5}
    exprs = [
        -(x**2) + y**-1 - sp.Rational(3, 7) * z,
        sp.log(z) + sp.sqrt(z) + sp.exp(-x / z) + sp.Abs(y) + sp.tanh(y),
        Logistic((z - x) / sp.Float(0.5)),
        sp.Min(x, y, z) + sp.Max(x, y) + sp.Max(x, y, z),
        sp.Piecewise((x, y > 0), (z, sp.And(x < 1, z >= 2)), (y, True)),
        (x * z) ** (-y) - z ** sp.Float(1.5),
    ]
    for e in exprs:
        got, want = _roundtrip(e, vals)
        assert got == pytest.approx(want, rel=1e-14), e


def test_printer_rejects_unknown_functions():
    import sympy as sp

    with pytest.raises(ArgumentError, match="no SBML equivalent"):
        to_l3_formula(sp.sin(sp.Symbol("x")))


# ------------------------------------------------------------------------------ document
def test_export_passes_libsbml_consistency_checks(model, tmp_path):
    out = tmp_path / "model.xml"
    text = export_sbml(model, out, doses=dose_events(days=[60.0, 120.0], amounts=[2e7, 1e7]))
    assert out.read_text() == text
    doc = libsbml.readSBMLFromFile(str(out))
    assert doc.getLevel() == 3 and doc.getVersion() == 2
    assert doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR) == 0
    errors, _warnings = check_sbml(doc)
    assert errors == []
    m = doc.getModel()
    assert m.getTimeUnits() == "day"
    for s in model.state_names:
        assert m.getRateRule(s) is not None
        assert m.getInitialAssignmentBySymbol(s) is not None
    for n in model.spec.intermediates:
        assert m.getAssignmentRule(n) is not None
    assert libsbml.formulaToL3String(m.getAssignmentRule("tau").getMath()) == "time - t_last_dose"
    assert m.getParameter("t_last_dose").getValue() == NEVER_DOSED
    assert m.getNumEvents() == 2
    ev = m.getEvent("dose_1")
    assert {ev.getEventAssignment(i).getVariable() for i in range(2)} == {"X", "t_last_dose"}
    assert m.getParameter("dose_2_amount").getValue() == 1e7
    # units: declared where expressible, the original string kept in the annotation
    assert m.getParameter("lambda_ref").getUnits() == "per_day"
    assert m.getParameter("X").getUnits() == "cells_per_kg"
    assert m.getUnitDefinition("nmol_per_L") is not None
    ann = m.getParameter("phi").getAnnotationString()
    assert 'role="population"' in ann and "lognormal" in ann
    assert "mg/dL" in m.getParameter("G_dx").getNotesString()


def test_dose_schedule_inputs(model):
    d = tregsim.Doses(time=[[60.0, np.nan]], amount=[[2e7, 0.0]], target="X")
    assert dose_events(d) == [DoseEvent(60.0, 2e7, "X")]
    assert dose_events(days=[90, 30], amounts=1e6) == [DoseEvent(30.0, 1e6), DoseEvent(90.0, 1e6)]
    with pytest.raises(ArgumentError, match="amounts"):
        dose_events(days=[1, 2], amounts=[1, 2, 3])
    with pytest.raises(ArgumentError, match="≥ 0"):
        dose_events(days=[1], amounts=[-5.0])
    with pytest.raises(ArgumentError, match="one dose schedule"):
        dose_events(tregsim.Doses(time=np.ones((2, 1)), amount=np.ones((2, 1))))
    with pytest.raises(ArgumentError, match="does not accept doses"):
        build_sbml_document(model, [DoseEvent(1.0, 1.0, "B")])


# ------------------------------------------------------------------------------ roadrunner
def _max_rel(a, b, model):
    """Max over states of |a-b| / max(|b|, floor); floor = 1e-7 × the state's scale
    (1 cell/kg for X, M: relative agreement of a fraction of a cell is meaningless)."""
    floors = np.array([model.spec.states[s].scale * 1e-7 for s in model.state_names])
    return (np.abs(a - b) / np.maximum(np.abs(b), floors[:, None, None])).max(axis=(1, 2))


@pytest.mark.parametrize("dosed", [False, True])
def test_roadrunner_reproduces_tregsim(model, dosed, rng):
    pytest.importorskip("roadrunner")
    from tregsim.interop.roadrunner import load_roadrunner, simulate_roadrunner

    n = 6
    P = prior_patients(model, n, rng)
    doses = tregsim.Doses(time=[60.0], amount=[2e7], target="X") if dosed else None
    xml = export_sbml(model, doses=dose_events(days=[60.0], amounts=[2e7]))
    # Both solvers near their limits: at rtol 1e-10 / atol 1e-14 CVODE itself moves X by
    # ~1e-6 relative against its own rtol 1e-12 run, so the check would measure CVODE's error.
    r = load_roadrunner(xml, rtol=1e-12, atol=1e-16)
    rr = simulate_roadrunner(r, model, P, TIMES, doses=doses)
    ts = tregsim.simulate_arrays(model, P, doses=doses, times=TIMES, rtol=1e-12, atol=1e-15)
    assert (ts.status == 0).all()
    assert np.isfinite(rr).all()
    err = _max_rel(rr, ts.states, model)
    assert err.max() < 1e-6, dict(zip(model.state_names, err))
    if dosed:
        assert rr[model.state_names.index("X")].max() > 1e7  # the dose went in
    else:
        assert (rr[model.state_names.index("X")] == 0).all()


def test_roadrunner_per_patient_doses_and_reset(model, rng):
    """Different schedules per patient (incl. none), and no state leaks between patients."""
    pytest.importorskip("roadrunner")
    from tregsim.interop.roadrunner import load_roadrunner, simulate_roadrunner

    n = 4
    P = prior_patients(model, n, rng)
    doses = tregsim.Doses(
        time=[[30.0, 200.0], [np.nan, np.nan], [100.0, np.nan], [0.0, 45.5]],
        amount=[[1e7, 2e7], [0, 0], [5e6, 0], [3e7, 1e6]],
        target="X",
    )
    xml = export_sbml(model, doses=dose_events(days=[0.0, 0.0], amounts=[0.0, 0.0]))
    r = load_roadrunner(xml, rtol=1e-12, atol=1e-16)
    rr = simulate_roadrunner(r, model, P, TIMES, doses=doses)
    ts = tregsim.simulate_arrays(model, P, doses=doses, times=TIMES, rtol=1e-12, atol=1e-15)
    assert _max_rel(rr, ts.states, model).max() < 1e-6
    # the same patient again, alone: identical to its run inside the loop
    again = simulate_roadrunner(
        r,
        model,
        P.subset(np.array([1])),
        TIMES,
        doses=tregsim.Doses(time=[[np.nan, np.nan]], amount=[[0.0, 0.0]], target="X"),
    )
    np.testing.assert_array_equal(again[:, 0], rr[:, 1])


@pytest.mark.parametrize("name", ["treg_t1d_v0_empirical", "treg_t1d_v1_il2"])
def test_variant_models_export_and_reproduce(name, rng):
    """Every shipped variant exports cleanly and roadrunner reproduces it (one dose into X)."""
    pytest.importorskip("roadrunner")
    from tregsim.interop.roadrunner import load_roadrunner, simulate_roadrunner

    try:
        model = tregsim.load_model(name)
    except tregsim.ModelFileError:
        pytest.skip(f"model {name} is not in models/")
    xml = export_sbml(model, doses=dose_events(days=[60.0], amounts=[2e7]))
    assert check_sbml(xml)[0] == []
    P = prior_patients(model, 3, rng)
    doses = tregsim.Doses(time=[60.0], amount=[2e7], target="X")
    rr = simulate_roadrunner(
        load_roadrunner(xml, rtol=1e-12, atol=1e-16), model, P, TIMES, doses=doses
    )
    ts = tregsim.simulate_arrays(model, P, doses=doses, times=TIMES, rtol=1e-12, atol=1e-15)
    assert _max_rel(rr, ts.states, model).max() < 1e-6


def test_parameters_named_like_l3_constants_stay_parameters():
    """`pi`, `avogadro`, `e` declared in a model are parameters in the SBML (<ci>), and the
    constant e of exp(1) is not confused with them."""
    from tregsim.model import compile_model, spec_from_dict

    doc = {
        "schema_version": 1,
        "name": "toy",
        "states": {"y": {"unit": "1", "initial": "pi"}},
        "parameters": {
            "pi": {"value": 2.0, "unit": "1"},
            "avogadro": {"value": 0.5, "unit": "1/day"},
            "e": {"value": 1.5, "unit": "1"},
        },
        "equations": {"y": "-avogadro * y * e + exp(1) * log(2)"},
    }
    toy = compile_model(spec_from_dict(doc))
    doc = libsbml.readSBMLFromString(export_sbml(toy))  # keep: the model lives in the doc
    m = doc.getModel()
    rate = libsbml.writeMathMLToString(m.getRateRule("y").getMath())
    assert "<ci> avogadro </ci>" in rate and "<ci> e </ci>" in rate
    assert "<exponentiale/>" not in rate and "<avogadro" not in rate
    init = libsbml.writeMathMLToString(m.getInitialAssignmentBySymbol("y").getMath())
    assert "<ci> pi </ci>" in init
    # exp(1)·log(2) is a constant: the parser folds it in doubles (e·ln 2 = 1.884…), so the
    # constant e never meets the parameter `e`
    assert "<cn> 1.88416938536372 </cn>" in rate
