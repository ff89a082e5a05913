"""Verification of the batched solver against independent references.

The reference right-hand side below is written by hand from docs/model_spec.md (not
from the model file), so these tests check the parser, the compiler and the solver together.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import expit

import tregsim
from tregsim.solve import MONTH_DAYS

MODEL = tregsim.load_model("treg_t1d")
TIMES = np.arange(25) * MONTH_DAYS  # monthly over 730.5 days


def reference_rhs(t, y, p, t_last):
    """docs/model_spec.md equations, written by hand. p: dict of floats; t_last: latest dose (days)."""
    B, S, E, R, X, M = y
    s0 = p["s0"]
    M0 = p["cpep0"] / (p["C_cap"] * (1 - s0 + p["eta_S"] * s0))
    G = p["G_tgt"] + (p["G_dx"] - p["G_tgt"]) * np.exp(-t / p["tau_G"])
    g = G ** p["h_G"] / (G ** p["h_G"] + p["G50"] ** p["h_G"])
    gdx = p["G_dx"] ** p["h_G"] / (p["G_dx"] ** p["h_G"] + p["G50"] ** p["h_G"])
    k_in = p["k_re"] * s0 / ((1 - s0) * gdx)
    R_eff = R + p["phi"] * (X + M) / p["T_ref"]
    Phi = (1 + 1 / p["K_s"]) / (1 + R_eff / p["K_s"])
    lam0 = p["lambda_ref"] * (p["age"] / 10) ** (-p["gamma_a"]) * p["f_lambda"]
    lam = lam0 * E * Phi ** p["w"]
    tau = t - t_last
    chi = expit((p["T_max"] - tau) / p["eps_gate"])
    rho = np.log(p["FX"]) / p["T_max"]
    return [
        -lam * B - k_in * g * B + p["k_re"] * S,
        k_in * g * B - p["k_re"] * S - lam * S,
        p["delta_E"] * (((B + S) / M0) ** p["q"] * Phi ** (1 - p["w"]) - E),
        p["delta_R"] * ((p["theta_R"] + R) * (1 - R) - p["psi"] * R * (X + M) / p["T_ref"]),
        (rho * chi - p["alpha_X"] * (1 - chi)) * X,
        (1 - chi) * p["F_M"] * (p["alpha_X"] - p["beta_M"]) * X - p["beta_M"] * M,
    ]


def reference_solve(p, dose_times=(), dose_amounts=(), times=TIMES):
    """scipy Radau at rtol 1e-10 / atol 1e-12, integrated piecewise between doses."""
    s0 = p["s0"]
    M0 = p["cpep0"] / (p["C_cap"] * (1 - s0 + p["eta_S"] * s0))
    y = np.array([(1 - s0) * M0, s0 * M0, 1.0, 1.0, 0.0, 0.0])
    out = np.full((6, len(times)), np.nan)
    t_last = -np.inf
    bounds = [0.0, *dose_times, float(times[-1])]
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        if k > 0:
            y = y.copy()
            y[4] += dose_amounts[k - 1]  # bolus; outputs at a dose time are post-dose
            t_last = a
        last = k == len(bounds) - 2
        sel = (times >= a) & ((times <= b) if last else (times < b))
        t_eval = np.unique(np.r_[times[sel], b])
        sol = solve_ivp(
            reference_rhs,
            (a, b),
            y,
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
            t_eval=t_eval,
            args=(p, t_last),
        )
        assert sol.success, sol.message
        out[:, sel] = sol.y[:, np.searchsorted(t_eval, times[sel])]
        y = sol.y[:, -1]
    return out


def patients_from_priors(rng, n):
    """n patients: every parameter with a prior drawn from it, covariates realistic."""
    over = {}
    for name, par in MODEL.spec.parameters.items():
        if par.prior is not None:
            over[name] = par.prior.sample(rng, n)
    over["age"] = rng.uniform(8, 45, n)
    over["cpep0"] = np.exp(rng.normal(np.log(0.6), 0.5, n))
    over["f_lambda"] = np.exp(rng.normal(0, 0.6, n))
    # keep fold expansion ≥ 1.05 so the expanding pool is well defined over the gate
    over["FX"] = np.maximum(over["FX"], 1.05)
    return MODEL.parameters(n, **over)


def _rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))


METHODS = ["auto", "explicit", "rosenbrock"]
_REFS: dict = {}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("treated", "n"), [(False, 100), (True, 100)])
def test_matches_scipy_radau_reference(rng, treated, n, method):
    P = patients_from_priors(rng, n)
    if treated:
        dt = rng.uniform(20, 120, n)
        da = np.exp(rng.uniform(np.log(1e6), np.log(1e8), n))
        doses = tregsim.Doses(time=dt[:, None], amount=da[:, None])
    else:
        doses = None
    r = tregsim.simulate_arrays(MODEL, P, doses, TIMES, method=method)
    assert (r.status == 0).all()
    worst = 0.0
    for i in range(n):
        p = {k: float(v[i]) for k, v in P.items()}
        key = (treated, i, tuple(sorted(p.items())))
        if key not in _REFS:  # the same patients for every method: solve Radau once
            _REFS[key] = reference_solve(p, [dt[i]], [da[i]]) if treated else reference_solve(p)
        ref = _REFS[key]
        cref = p["C_cap"] * (ref[0] + p["eta_S"] * ref[1])
        worst = max(
            worst,
            _rel(r.state("B")[i], ref[0]),
            _rel(r.state("S")[i], ref[1]),
            _rel(r.observables["cpeptide"][i], cref),
        )
    assert worst < 1e-6, worst


@pytest.mark.parametrize("method", ["auto", "rosenbrock"])
def test_closed_form_reduced_model(rng, method):
    """No stunning, no therapy, fast effectors: B = B0 (1 + q λ0 t)^(-1/q) (docs/model_spec.md).

    δ_E = 1e7 /day makes this problem stiff (an eigenvalue near −1e7): the explicit method
    alone cannot take it (see tests/test_solver_methods.py), ``auto`` must switch."""
    n = 20
    q = rng.uniform(0.1, 0.9, n)
    age = rng.uniform(8, 40, n)
    P = MODEL.parameters(
        n, s0=0.0, delta_E=1e7, q=q, age=age, f_lambda=np.exp(rng.normal(0, 0.5, n)), cpep0=0.8
    )
    r = tregsim.simulate_arrays(MODEL, P, None, TIMES, method=method)
    lam0 = P["lambda_ref"] * (age / 10) ** (-P["gamma_a"]) * P["f_lambda"]
    B0 = 0.8 / P["C_cap"]
    exact = B0[:, None] * (1 + q[:, None] * lam0[:, None] * TIMES[None]) ** (-1 / q[:, None])
    assert (r.status == 0).all()
    assert _rel(r.state("B"), exact) < 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_dose_conserved_without_decay(rng, method):
    n = 10
    P = MODEL.parameters(n, alpha_X=0.0, beta_M=0.0, FX=1.0)
    amount = rng.uniform(1e6, 5e7, n)
    r = tregsim.simulate_arrays(
        MODEL,
        P,
        tregsim.Doses(time=np.full((n, 1), 45.0), amount=amount[:, None]),
        TIMES,
        method=method,
    )
    after = TIMES >= 45.0
    total = r.state("X")[:, after] + r.state("M")[:, after]
    assert np.max(np.abs(total / amount[:, None] - 1)) < 1e-9
    assert np.all(r.state("X")[:, ~after] == 0)


@pytest.mark.parametrize("method", METHODS)
def test_bad_patient_flagged_others_unaffected(rng, method):
    n = 50
    P = patients_from_priors(rng, n)
    good = tregsim.simulate_arrays(MODEL, P, None, TIMES, method=method)
    bad = P.replace(f_lambda=P["f_lambda"].copy())
    bad["f_lambda"][7] = np.nan  # invalid parameter
    bad["q"][13] = -40.0  # effector drive explodes as mass falls
    bad["lambda_ref"][21] = 1e6  # absurd hazard
    r = tregsim.simulate_arrays(MODEL, bad, None, TIMES, method=method)
    assert r.status[7] != 0 and "non-finite" in r.reason[7]
    others = np.setdiff1d(np.arange(n), [7, 13, 21])
    for i in (13, 21):
        assert r.status[i] != 0 or np.isfinite(r.observables["cpeptide"][i]).all()
    np.testing.assert_array_equal(
        r.observables["cpeptide"][others], good.observables["cpeptide"][others]
    )


@pytest.mark.parametrize("method", METHODS)
def test_multiple_doses_and_output_at_dose_time(rng, method):
    n = 4
    P = MODEL.parameters(n)
    d = tregsim.Doses(time=[30.0, 60.0, 90.0], amount=[1e7, 1e7, 1e7])
    times = np.array([0.0, 30.0, 60.0, 90.0, 120.0])
    r = tregsim.simulate_arrays(MODEL, P, d, times, method=method)
    X = r.state("X")
    # outputs at a dose time are recorded after the dose
    assert X[0, 1] == pytest.approx(1e7, rel=1e-12)
    assert X[0, 2] > 1e7 and X[0, 3] > 1e7


def test_xarray_dataset_has_units_and_status():
    P = MODEL.parameters(3)
    ds = tregsim.simulate(MODEL, P, tregsim.Doses(time=[60.0], amount=[2e7]), TIMES)
    assert ds["cpeptide"].dims == ("patient", "time")
    assert ds["cpeptide"].attrs["units"] == "nmol/L"
    assert ds["time"].attrs["units"] == "day"
    assert (ds["status"] == 0).all()


def test_compiled_model_pickles():
    import pickle

    m2 = pickle.loads(pickle.dumps(MODEL))
    P = MODEL.parameters(2)
    a = tregsim.simulate_arrays(MODEL, P, None, TIMES[:5]).observables["cpeptide"]
    b = tregsim.simulate_arrays(m2, P, None, TIMES[:5]).observables["cpeptide"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["explicit", "rosenbrock"])
def test_numba_and_numpy_backends_agree(rng, method):
    """Two implementations of the same scheme: per-patient compiled vs lock-step numpy."""
    pytest.importorskip("numba")
    n = 40
    P = patients_from_priors(rng, n)
    d = tregsim.Doses(time=rng.uniform(20, 120, (n, 2)), amount=rng.uniform(1e6, 5e7, (n, 2)))
    a = tregsim.simulate_arrays(MODEL, P, d, TIMES, backend="numba", method=method)
    b = tregsim.simulate_arrays(MODEL, P, d, TIMES, backend="numpy", method=method)
    assert (a.status == 0).all() and (b.status == 0).all()
    # rounding differs (numpy's and numba's transcendental functions), so accept/reject
    # decisions can differ near the error threshold: the two agree to the order of the
    # tolerance, not bitwise; values below 1e-7 × the state's scale (30 cells/kg for X,
    # which decays to 1e-3 cells/kg and below long after the dose) are compared absolutely,
    # as in benchmarks/bench_roadrunner.py
    scale = np.array([MODEL.spec.states[s].scale for s in MODEL.state_names])[:, None, None]
    floor = 1e-7 * scale
    assert np.max(np.abs(a.states - b.states) / np.maximum(np.abs(b.states), floor)) < 1e-7


@pytest.mark.parametrize("method", METHODS)
def test_results_do_not_depend_on_batch_composition(rng, method):
    """A patient's trajectory is the same alone or in any batch (chunk invariance)."""
    n = 30
    P = patients_from_priors(rng, n)
    d = tregsim.Doses(time=rng.uniform(20, 120, (n, 1)), amount=rng.uniform(1e6, 5e7, (n, 1)))
    full = tregsim.simulate_arrays(MODEL, P, d, TIMES, method=method)
    sub = np.arange(10, 20)
    d_sub = tregsim.Doses(time=d.time[sub], amount=d.amount[sub])
    part = tregsim.simulate_arrays(MODEL, P.subset(sub), d_sub, TIMES, method=method)
    np.testing.assert_array_equal(full.states[:, 10:20], part.states)
    for k in full.stats:
        np.testing.assert_array_equal(full.stats[k][10:20], part.stats[k])
