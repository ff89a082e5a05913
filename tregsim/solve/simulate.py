"""``simulate``: one batched call for every patient — doses, outputs, per-patient status."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.model.compile import CompiledModel, ParameterBatch
from tregsim.solve.rosenbrock import STATUS_OK, STATUS_TEXT, integrate

DEFAULT_RTOL = 1e-7
DEFAULT_ATOL = 1e-10
DEFAULT_METHOD = "auto"
METHODS = ("auto", "explicit", "rosenbrock")
MONTH_DAYS = 365.25 / 12


@dataclass
class Doses:
    """Bolus doses into one state (``target``), per patient.

    Parameters
    ----------
    time : days after diagnosis, shape (n, k) or (k,) (same schedule for every patient);
        NaN marks "no dose" (for patients with fewer doses).
    amount : cells/kg (or the target state's unit), same shape as ``time``; ≥ 0 and finite
        where ``time`` is set.
    target : state that receives the dose (declared under ``[doses]`` in the model file).
    """

    time: np.ndarray
    amount: np.ndarray
    target: str = "X"

    def __post_init__(self):
        self.time = np.atleast_1d(np.asarray(self.time, dtype=float))
        self.amount = np.atleast_1d(np.asarray(self.amount, dtype=float))
        if self.time.shape != self.amount.shape:
            raise ArgumentError(
                f"dose time {self.time.shape} and amount {self.amount.shape} shapes differ",
                field="doses",
                fix="give one amount per dose time",
            )
        if self.time.ndim > 2:
            raise ArgumentError(
                f"dose arrays must be (k,) or (n, k), got {self.time.shape}",
                field="doses",
                fix="pass (n_patients, n_doses) arrays",
            )
        given = ~np.isnan(self.time)
        if np.isinf(self.time).any():
            raise ArgumentError(
                "dose times must be finite (NaN marks no dose)",
                field="doses.time",
                fix="use finite days after diagnosis",
            )
        a = self.amount[given]
        if not np.isfinite(a).all() or (a < 0).any():
            bad = a[~np.isfinite(a) | (a < 0)][0]
            raise ArgumentError(
                f"dose amounts must be finite and ≥ 0, got {bad}",
                field="doses.amount",
                fix="use a non-negative dose in cells/kg",
            )

    def for_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        t, a = self.time, self.amount
        if t.ndim == 1:
            t, a = np.broadcast_to(t, (n, t.size)), np.broadcast_to(a, (n, a.size))
        if t.shape[0] != n:
            raise ArgumentError(
                f"doses are given for {t.shape[0]} patients, the batch has {n}",
                field="doses",
                fix="pass (n_patients, n_doses) arrays",
            )
        return t, a


@dataclass
class SimulationArrays:
    """Numpy results of :func:`simulate_arrays`.

    states : (n_states, n, n_times) in the model's state order and units.
    observables : name → (n, n_times) noise-free observables (e.g. ``cpeptide`` nmol/L).
    status : (n,) int8, 0 = ok; ``reason`` (n,) text; ``n_steps`` (n,) accepted steps.
    times : (n_times,) days, or (n, n_times) when each patient has their own output times.
    stats : per-patient solver counters, name → (n,) int64: ``steps`` (accepted),
        ``rejected``, ``rhs`` (right-hand-side evaluations), ``jacobians`` (Jacobian + LU
        evaluations), ``switches`` (explicit ↔ Rosenbrock switches of ``method="auto"``).
    """

    states: np.ndarray
    observables: dict[str, np.ndarray]
    status: np.ndarray
    reason: np.ndarray
    n_steps: np.ndarray
    times: np.ndarray
    state_names: tuple[str, ...]
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    def state(self, name: str) -> np.ndarray:
        return self.states[self.state_names.index(name)]


def _dose_arrays(model: CompiledModel, doses, n: int):
    doses = [] if doses is None else ([doses] if isinstance(doses, Doses) else list(doses))
    ts, amts, sidx, cidx = [], [], [], []
    for d in doses:
        if d.target not in model.spec.doses:
            raise ArgumentError(
                f"model {model.name!r} does not accept doses into {d.target!r}",
                field="doses.target",
                fix=f"use one of {', '.join(model.spec.doses) or '(none)'}",
            )
        t, a = d.for_batch(n)
        ts.append(t)
        amts.append(a)
        sidx.append(np.full(t.shape, model.state_names.index(d.target)))
        clock = model.spec.doses[d.target].clock
        cidx.append(np.full(t.shape, model.clock_names.index(clock) if clock else -1))
    if not ts:
        e = np.empty((n, 0))
        return e, e, e.astype(int), e.astype(int)
    T = np.concatenate(ts, axis=1)
    A = np.concatenate(amts, axis=1)
    S = np.concatenate(sidx, axis=1)
    C = np.concatenate(cidx, axis=1)
    T = np.where(np.isnan(T), np.inf, T)
    order = np.argsort(T, axis=1, kind="stable")
    take = lambda X: np.take_along_axis(X, order, axis=1)  # noqa: E731
    return take(T), np.where(np.isinf(take(T)), 0.0, take(A)), take(S), take(C)


def _breaks(model: CompiledModel, p: np.ndarray, T: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Step boundaries (n, k) after the doses: each dose time plus each gate-switch offset of
    its clock (:attr:`CompiledModel.clock_break_exprs`), sorted, +inf padding."""
    n = p.shape[1]
    cols = []
    if T.shape[1]:
        for ci, off in model.clock_breaks(p):
            ok = (C == ci) & np.isfinite(T) & (np.isfinite(off) & (off > 0))[:, None]
            cols.append(np.where(ok, T + off[:, None], np.inf))
    if not cols:
        return np.full((n, 0), np.inf)
    return np.sort(np.concatenate(cols, axis=1), axis=1)


def _integrator(backend: str):
    from tregsim.solve import numba_backend

    if backend == "auto":
        backend = "numba" if numba_backend.available() else "numpy"
    if backend == "numba":
        if not numba_backend.available():
            raise ArgumentError(
                "backend 'numba' needs the numba package",
                field="backend",
                fix="pip install numba, or use backend='numpy'",
            )
        return numba_backend.integrate
    if backend == "numpy":
        return integrate
    raise ArgumentError(
        f"unknown backend {backend!r}", field="backend", fix="use 'auto', 'numba' or 'numpy'"
    )


def simulate_arrays(
    model: CompiledModel,
    params: ParameterBatch,
    doses: Doses | list[Doses] | None = None,
    times=None,
    *,
    t0: float = 0.0,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = 100_000,
    backend: str = "auto",
    method: str = DEFAULT_METHOD,
) -> SimulationArrays:
    """Simulate a batch of patients in one call; numpy results (the fast path).

    Parameters
    ----------
    model : a compiled model (:func:`tregsim.load_model`).
    params : a :class:`ParameterBatch` of ``n`` patients (``model.parameters(n, ...)``).
    doses : bolus doses (cells/kg) per patient, or ``None`` (routine care).
    times : output times, days after diagnosis, non-decreasing, ≥ ``t0``: shape (n_times,)
        for every patient, or (n, n_times) for each patient's own times (e.g. visits counted
        from each patient's enrolment). Default: monthly for 2 years.
    rtol, atol : tolerances of the per-patient error control (atol scaled per state).
    method : ``"auto"`` (default: explicit DOP853 per patient, switching a patient to
        Rosenbrock where its stiffness test fires and back when safe), ``"explicit"``
        (DOP853 only) or ``"rosenbrock"`` (the linearly-implicit 4(3) scheme only). All meet
        the same tolerance against scipy Radau references (``docs/solver.md``).
    backend : ``"numba"`` (per-patient compiled kernels, threads across patients; compiled
        once per model and cached on disk), ``"numpy"`` (lock-step batches, no compiler;
        ``"auto"`` maps to Rosenbrock there), or ``"auto"`` (numba when installed).

    A patient whose solve fails gets NaN outputs and a non-zero ``status``; others are
    unaffected.
    """
    if times is None:
        times = np.arange(25) * MONTH_DAYS
    n = params.n
    times = np.atleast_1d(np.asarray(times, dtype=float))
    if times.ndim == 2 and times.shape[0] != n:
        raise ArgumentError(
            f"per-patient output times have {times.shape[0]} rows, the batch has {n} patients",
            field="times",
            fix="pass times of shape (n_times,) or (n_patients, n_times)",
        )
    if (
        times.ndim not in (1, 2)
        or not np.isfinite(times).all()
        or (np.diff(times, axis=-1) < 0).any()
    ):
        raise ArgumentError(
            "output times must be finite and non-decreasing, shape (n_times,) or "
            "(n_patients, n_times)",
            field="times",
            fix="pass sorted days after diagnosis",
        )
    if times.size and times.min() < t0:
        raise ArgumentError(
            f"output times start at {times.min()} < t0 = {t0}",
            field="times",
            fix="request outputs at or after t0",
        )
    if method not in METHODS:
        raise ArgumentError(
            f"unknown method {method!r}", field="method", fix=f"use one of {', '.join(METHODS)}"
        )
    if not (rtol > 0 and atol > 0):
        raise ArgumentError(
            f"tolerances must be > 0, got rtol={rtol}, atol={atol}",
            field="rtol/atol",
            fix="use e.g. rtol=1e-7, atol=1e-10",
        )
    p = model.param_matrix(params)
    with np.errstate(all="ignore"):
        y0 = model.initial_state(p)
        T, A, S, C = _dose_arrays(model, doses, n)
        res = _integrator(backend)(
            model,
            p,
            y0,
            times,
            T,
            A,
            S,
            C,
            breaks=_breaks(model, p, T, C),
            method=method,
            t0=t0,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
        )
        obs = {}
        nt = times.shape[-1]
        tt = times if times.ndim == 2 else times[None, :]
        for o in model.observable_names:
            tl = np.full((len(model.clock_names), n, nt), np.nan)  # obs need no clocks
            obs[o] = model.observable(o, tt, res.y, p[:, :, None], tl)
    reason = np.array([STATUS_TEXT[int(s)] for s in res.status], dtype=object)
    stats = {
        "steps": res.n_steps,
        "rejected": res.n_rejected,
        "rhs": res.n_rhs,
        "jacobians": res.n_jac,
        "switches": res.n_switches,
    }
    return SimulationArrays(
        res.y, obs, res.status, reason, res.n_steps, times, model.state_names, stats
    )


def simulate(
    model: CompiledModel,
    params: ParameterBatch,
    doses: Doses | list[Doses] | None = None,
    times=None,
    **kwargs,
):
    """Simulate a batch of patients; returns an ``xarray.Dataset`` with dims (patient, time).

    One variable per state and observable (units in ``attrs``), ``status`` (0 = ok) and
    ``status_reason`` per patient, the parameters as (patient,) coordinates-free variables
    under ``param_<name>``. Same arguments as :func:`simulate_arrays`.
    """
    import xarray as xr

    r = simulate_arrays(model, params, doses, times, **kwargs)
    data = {}
    for i, s in enumerate(model.state_names):
        st = model.spec.states[s]
        data[s] = (
            ("patient", "time"),
            r.states[i],
            {"units": st.unit, "long_name": st.description},
        )
    for o in model.observable_names:
        ob = model.spec.observables[o]
        data[o] = (
            ("patient", "time"),
            r.observables[o],
            {"units": ob.unit, "long_name": ob.description},
        )
    data["status"] = (("patient",), r.status, {"long_name": "solver status (0 = ok)"})
    data["status_reason"] = (("patient",), r.reason.astype(str))
    data["n_steps"] = (("patient",), r.n_steps)
    for k, v in r.stats.items():
        data[f"solver_{k}"] = (("patient",), v)
    for k, v in params.items():
        pu = model.spec.parameters[k].unit
        data[f"param_{k}"] = (("patient",), np.asarray(v), {"units": pu})
    tattrs = {"units": "day", "long_name": "days since diagnosis"}
    if r.times.ndim == 2:  # each patient's own times: an index dimension plus the days
        coords = {
            "patient": np.arange(params.n),
            "time": np.arange(r.times.shape[1]),
            "time_days": (("patient", "time"), r.times, tattrs),
        }
    else:
        coords = {"patient": np.arange(params.n), "time": ("time", r.times, tattrs)}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(model=model.name, n_failed=int((r.status != STATUS_OK).sum()))
    return ds
