"""Solver methods (issue 16): explicit DOP853, Rosenbrock, and auto-switching between them.

References are independent: scipy Radau at rtol 1e-10 on the hand-written right-hand
side (tests/test_simulate.py), and runs of the same patient alone.
"""

import numpy as np
import pytest
from test_simulate import MODEL, TIMES, _rel, patients_from_priors, reference_solve

import tregsim
from tregsim.errors import ArgumentError
from tregsim.solve import MONTH_DAYS

pytest.importorskip("numba")


def stiff_patient(n=1):
    """A prior-extreme patient: effector relaxation δ_E and Treg turnover δ_R 1000× their
    typical values (eigenvalues near −30 and −90 /day against years-long decline)."""
    return MODEL.parameters(n, delta_E=30.0, delta_R=86.6, age=12.0, cpep0=0.6)


DOSE = tregsim.Doses(time=[[60.0]], amount=[[2e7]])


@pytest.fixture(scope="module")
def stiff_reference():
    p = {k: float(v[0]) for k, v in stiff_patient().items()}
    return reference_solve(p, [60.0], [2e7])


def test_auto_switches_on_a_stiff_patient_and_stays_accurate(stiff_reference):
    P = stiff_patient()
    auto = tregsim.simulate_arrays(MODEL, P, DOSE, TIMES, method="auto")
    expl = tregsim.simulate_arrays(MODEL, P, DOSE, TIMES, method="explicit")
    assert auto.status[0] == 0 and expl.status[0] == 0
    # the stiffness test fired: the patient went to Rosenbrock (Jacobians evaluated)
    assert auto.stats["switches"][0] >= 1
    assert auto.stats["jacobians"][0] > 0
    # and it paid off: far fewer right-hand sides than the explicit method held at its
    # stability limit
    assert auto.stats["rhs"][0] < 0.2 * expl.stats["rhs"][0]
    ref = stiff_reference
    for r in (auto, expl):
        assert _rel(r.state("B")[0], ref[0]) < 1e-6
        assert _rel(r.state("S")[0], ref[1]) < 1e-6


def test_auto_on_stiff_patient_converges_at_tight_tolerance(stiff_reference):
    P = stiff_patient()
    r = tregsim.simulate_arrays(MODEL, P, DOSE, TIMES, method="auto", rtol=1e-10, atol=1e-13)
    assert r.status[0] == 0 and r.stats["switches"][0] >= 1
    assert _rel(r.state("B")[0], stiff_reference[0]) < 1e-8


def test_typical_patients_stay_explicit(rng):
    """Along typical trajectories the model is not stiff: no Jacobian at all under auto."""
    n = 50
    P = patients_from_priors(rng, n)
    d = tregsim.Doses(time=rng.uniform(20, 120, (n, 1)), amount=np.full((n, 1), 2e7))
    r = tregsim.simulate_arrays(MODEL, P, d, TIMES, method="auto")
    assert (r.status == 0).all()
    assert np.median(r.stats["jacobians"]) == 0
    assert (r.stats["rhs"] >= 12 * r.stats["steps"]).all()


def test_stiff_patient_leaves_others_bitwise_untouched(rng):
    n = 20
    P = patients_from_priors(rng, n)
    vals = {k: v.copy() for k, v in P.items()}
    vals["delta_E"][5], vals["delta_R"][5] = 30.0, 86.6
    vals["eps_gate"][11] = 1e-3  # a near-step expansion gate
    Pm = type(P)(vals, n)
    d = tregsim.Doses(time=np.full((n, 1), 60.0), amount=np.full((n, 1), 2e7))
    full = tregsim.simulate_arrays(MODEL, Pm, d, TIMES, method="auto")
    keep = np.setdiff1d(np.arange(n), [5, 11])
    d_k = tregsim.Doses(time=np.full((keep.size, 1), 60.0), amount=np.full((keep.size, 1), 2e7))
    part = tregsim.simulate_arrays(MODEL, Pm.subset(keep), d_k, TIMES, method="auto")
    assert (full.status == 0).all()
    assert full.states[:, keep].tobytes() == part.states.tobytes()
    assert full.stats["switches"][5] >= 1


def test_tiny_gate_width_is_accurate():
    """ε_gate = 0.01 day: the expansion stops almost as a step at τ = T_max, where the solver
    puts a step boundary; every method matches Radau."""
    P = MODEL.parameters(1, eps_gate=0.01)
    p = {k: float(v[0]) for k, v in P.items()}
    ref = reference_solve(p, [60.0], [2e7])
    for method in ("auto", "explicit", "rosenbrock"):
        r = tregsim.simulate_arrays(MODEL, P, DOSE, TIMES, method=method)
        assert r.status[0] == 0
        assert _rel(r.state("B")[0], ref[0]) < 1e-6, method
        # X decays over ten orders of magnitude; its absolute tolerance per step is
        # atol × scale = 1e-10 × 3e8 = 0.03 cells/kg, so allow 100 steps' worth of it
        x = r.state("X")[0]
        atol_x = 1e-10 * MODEL.spec.states["X"].scale
        assert np.all(np.abs(x - ref[4]) <= 1e-6 * np.abs(ref[4]) + 100 * atol_x), method


def test_gate_switch_is_a_step_boundary():
    assert [str(e) for _, e in MODEL.clock_break_exprs] == ["T_max"]


@pytest.mark.parametrize("method", ["auto", "explicit", "rosenbrock"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_per_patient_output_times(rng, method, backend):
    """times (n, n_times): each patient's own visit days, identical to running alone."""
    n = 6
    P = patients_from_priors(rng, n)
    enrol = rng.uniform(30, 200, n)
    times = enrol[:, None] + np.arange(13)[None, :] * MONTH_DAYS
    d = tregsim.Doses(time=(enrol + 14)[:, None], amount=np.full((n, 1), 2e7))
    r = tregsim.simulate_arrays(MODEL, P, d, times, method=method, backend=backend)
    assert r.times.shape == (n, 13) and r.observables["cpeptide"].shape == (n, 13)
    for i in (0, 3):
        alone = tregsim.simulate_arrays(
            MODEL,
            P.subset(np.array([i])),
            tregsim.Doses(time=d.time[i : i + 1], amount=d.amount[i : i + 1]),
            times[i],
            method=method,
            backend=backend,
        )
        if backend == "numba":  # per-patient compiled loops: bitwise
            np.testing.assert_array_equal(r.states[:, i], alone.states[:, 0])
        else:  # numpy's SIMD transcendental functions depend on the lane (1 ulp)
            np.testing.assert_allclose(r.states[:, i], alone.states[:, 0], rtol=1e-12, atol=0)


def test_per_patient_times_in_dataset():
    P = MODEL.parameters(2)
    times = np.array([[0.0, 30.0, 60.0], [10.0, 40.0, 70.0]])
    ds = tregsim.simulate(MODEL, P, None, times)
    assert ds["cpeptide"].dims == ("patient", "time")
    np.testing.assert_array_equal(ds["time_days"].values, times)
    assert ds["time_days"].attrs["units"] == "day"


def test_bad_method_and_times_are_rejected():
    P = MODEL.parameters(2)
    with pytest.raises(ArgumentError, match="unknown method 'bdf'"):
        tregsim.simulate_arrays(MODEL, P, None, TIMES, method="bdf")
    with pytest.raises(ArgumentError, match="3 rows, the batch has 2"):
        tregsim.simulate_arrays(MODEL, P, None, np.zeros((3, 4)))


def test_numpy_auto_hands_stiff_patients_to_rosenbrock(rng, stiff_reference):
    """numpy backend, auto: lock-step DOP853; a patient whose stiffness test fires is solved
    again with the lock-step Rosenbrock; the others keep their explicit solution."""
    n = 6
    P = patients_from_priors(rng, n)
    vals = {k: v.copy() for k, v in P.items()}
    for k, v in stiff_patient().items():
        vals[k][2] = v[0]
    Pm = type(P)(vals, n)
    d = tregsim.Doses(time=np.full((n, 1), 60.0), amount=np.full((n, 1), 2e7))
    auto = tregsim.simulate_arrays(MODEL, Pm, d, TIMES, backend="numpy", method="auto")
    expl = tregsim.simulate_arrays(MODEL, Pm, d, TIMES, backend="numpy", method="explicit")
    assert (auto.status == 0).all()
    assert auto.stats["switches"][2] == 1 and auto.stats["jacobians"][2] > 0
    others = np.setdiff1d(np.arange(n), [2])
    assert (auto.stats["switches"][others] == 0).all()
    # the same lock-step explicit solution up to numpy's lane-dependent rounding (values
    # below 1e-7 × the state's scale, e.g. X long after the dose, compared absolutely)
    scale = np.array([MODEL.spec.states[s].scale for s in MODEL.state_names])[:, None, None]
    a, b = auto.states[:, others], expl.states[:, others]
    assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-7 * scale)) < 1e-10
    assert _rel(auto.state("B")[2], stiff_reference[0]) < 1e-6
    assert auto.stats["rhs"][2] < 0.2 * expl.stats["rhs"][2]
