"""The numpy backend's method choice: lock-step DOP853 (:mod:`tregsim.solve.explicit_numpy`)
or Rosenbrock (:mod:`tregsim.solve.rosenbrock`), and ``"auto"`` = DOP853 with the patients
whose stiffness test fires solved again with Rosenbrock (docs/solver.md)."""

from __future__ import annotations

import numpy as np

from tregsim.solve import explicit_numpy, rosenbrock


def integrate(
    model,
    p: np.ndarray,
    y0: np.ndarray,
    times: np.ndarray,
    dose_time: np.ndarray,
    dose_amount: np.ndarray,
    dose_state: np.ndarray,
    dose_clock: np.ndarray,
    *,
    breaks: np.ndarray | None = None,
    method: str = "auto",
    t0: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    h0: float = 1e-2,
    max_steps: int = 100_000,
) -> rosenbrock.SolveResult:
    """Same contract as :func:`tregsim.solve.rosenbrock.integrate`, with ``method`` one of
    ``"auto"``, ``"explicit"`` and ``"rosenbrock"``.

    ``"auto"`` here is a per-patient choice (a patient whose stiffness test fires is solved
    again from ``t0`` with Rosenbrock), not per stretch as in the numba kernel.
    """
    if method == "rosenbrock":
        return rosenbrock.integrate(
            model, p, y0, times, dose_time, dose_amount, dose_state, dose_clock,
            breaks=breaks, t0=t0, rtol=rtol, atol=atol, h0=h0, max_steps=max_steps,
        )  # fmt: skip
    kw = dict(breaks=breaks, t0=t0, rtol=rtol, atol=atol, h0=h0, max_steps=max_steps)
    res = explicit_numpy.integrate(
        model, p, y0, times, dose_time, dose_amount, dose_state, dose_clock,
        stiff_exit=method == "auto", **kw,
    )  # fmt: skip
    stiff = np.flatnonzero(res.n_switches > 0)
    if stiff.size:  # auto: the patients whose stiffness test fired, with Rosenbrock
        tt = np.atleast_2d(np.asarray(times, dtype=float))
        sub = rosenbrock.integrate(
            model, p[:, stiff], y0[:, stiff], tt if tt.shape[0] == 1 else tt[stiff],
            dose_time[stiff], dose_amount[stiff], dose_state[stiff], dose_clock[stiff],
            **{**kw, "breaks": None if breaks is None else breaks[stiff]},
        )  # fmt: skip
        res.y[:, stiff] = sub.y
        res.status[stiff] = sub.status
        for name in ("n_steps", "n_rejected", "n_rhs", "n_jac"):
            getattr(res, name)[stiff] += getattr(sub, name)
    return res
