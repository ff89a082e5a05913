"""Batched linearly-implicit (Rosenbrock) integration with per-patient step-size control.

Method: the 4-stage, order-4(3) Rosenbrock scheme of Kaps & Rentrop with Shampine's
coefficients (Shampine 1982, ACM TOMS 8:93; the ``stiff`` routine of Numerical Recipes),
using the analytic Jacobian and ∂f/∂t from sympy. Used for ``method="rosenbrock"`` and, under
``method="auto"``, for patients whose stiffness test fires: along typical trajectories the
model is not stiff and the explicit DOP853 pair is cheaper (``docs/solver.md``).

Batching: all unfinished patients advance together, each with its OWN time, step size and
error control (lock-step iterations, not a common step). The 6×6 linear systems are solved by
an LU with partial pivoting vectorized across patients. Patients that finish or fail leave the
active set, which is compacted when it shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Shampine's parameter set for the Kaps–Rentrop scheme.
GAM = 0.5
A21, A31, A32 = 2.0, 48.0 / 25.0, 6.0 / 25.0
C21, C31, C32 = -8.0, 372.0 / 25.0, 12.0 / 5.0
C41, C42, C43 = -112.0 / 125.0, -54.0 / 125.0, -2.0 / 5.0
B1, B2, B3, B4 = 19.0 / 9.0, 0.5, 25.0 / 108.0, 125.0 / 108.0
E1, E2, E3, E4 = 17.0 / 54.0, 7.0 / 36.0, 0.0, 125.0 / 108.0
C1X, C2X, C3X, C4X = 0.5, -1.5, 121.0 / 50.0, 29.0 / 250.0
A2X, A3X = 1.0, 3.0 / 5.0
ORDER = 4

STATUS_OK = 0
STATUS_STEP_TOO_SMALL = 1
STATUS_MAX_STEPS = 2
STATUS_NONFINITE = 3
STATUS_BAD_INPUT = 4
STATUS_TEXT = {
    STATUS_OK: "ok",
    STATUS_STEP_TOO_SMALL: "step size underflow (stiffness or a singularity)",
    STATUS_MAX_STEPS: "maximum number of steps exceeded",
    STATUS_NONFINITE: "non-finite state (overflow or invalid parameters)",
    STATUS_BAD_INPUT: "non-finite parameters or initial state",
}


def lu_factor(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-place LU with partial pivoting of a batch ``A`` of shape (m, m, n)."""
    m, _, n = A.shape
    perm = np.tile(np.arange(m)[:, None], (1, n))
    cols = np.arange(n)
    for k in range(m - 1):
        p = k + np.argmax(np.abs(A[k:, k, :]), axis=0)  # (n,)
        swap = p != k
        if swap.any():
            c = cols[swap]
            pk = p[swap]
            rowk = A[k, :, c].copy()
            A[k, :, c] = A[pk, :, c]
            A[pk, :, c] = rowk
            tmp = perm[k, c].copy()
            perm[k, c] = perm[pk, c]
            perm[pk, c] = tmp
        A[k + 1 :, k, :] /= A[k, k, :]
        A[k + 1 :, k + 1 :, :] -= A[k + 1 :, k, None, :] * A[k, None, k + 1 :, :]
    return A, perm


def lu_solve(LU: np.ndarray, perm: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve with a batch LU from :func:`lu_factor`; ``b`` (m, n) → x (m, n)."""
    m = b.shape[0]
    x = np.take_along_axis(b, perm, axis=0)
    for i in range(1, m):
        x[i] -= np.einsum("jn,jn->n", LU[i, :i], x[:i])
    for i in range(m - 1, -1, -1):
        if i < m - 1:
            x[i] -= np.einsum("jn,jn->n", LU[i, i + 1 :], x[i + 1 :])
        x[i] /= LU[i, i]
    return x


@dataclass
class SolveResult:
    """Raw solver output. ``y`` is (n_states, n, n_times); ``status`` (n,) int8; per patient
    (n,) int64 counters: ``n_steps`` accepted and ``n_rejected`` rejected steps, ``n_rhs``
    right-hand-side evaluations, ``n_jac`` Jacobian evaluations (each with an LU),
    ``n_switches`` method switches (``method="auto"``)."""

    y: np.ndarray
    status: np.ndarray
    n_steps: np.ndarray
    n_rejected: np.ndarray
    n_rhs: np.ndarray | None = None
    n_jac: np.ndarray | None = None
    n_switches: np.ndarray | None = None


def batch_start(model, p, y0, times, breaks, atol):
    """What both numpy integrators set up first: ``times`` as ``(1 | n, n_times)``, empty
    ``breaks`` ``(n, 0)`` if None, per-state absolute tolerances ``(ns, 1)``, NaN outputs
    ``(ns, n, n_times)``, statuses ``(n,)`` with non-finite inputs flagged, and that mask."""
    ns, n = y0.shape
    times = np.atleast_2d(np.asarray(times, dtype=float))
    if breaks is None:
        breaks = np.full((n, 0), np.inf)
    scales = np.array([model.spec.states[s].scale for s in model.state_names])[:, None]
    out = np.full((ns, n, times.shape[1]), np.nan)
    status = np.zeros(n, dtype=np.int8)
    bad = ~np.isfinite(p).all(axis=0) | ~np.isfinite(y0).all(axis=0)
    status[bad] = STATUS_BAD_INPUT
    return times, breaks, atol * scales, out, status, bad


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
    method: str = "rosenbrock",
    t0: float = 0.0,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    h0: float = 1e-2,
    max_steps: int = 100_000,
) -> SolveResult:
    """Integrate a batch from ``t0`` with outputs at ``times`` and bolus doses.

    Parameters
    ----------
    model : CompiledModel.
    p : (n_params, n) parameters.
    y0 : (n_states, n) initial states at ``t0``.
    times : (n_times,) or (n, n_times) non-decreasing output times ≥ t0, days (shared, or
        each patient's own).
    dose_time : (n, k) dose times (days), +inf for padding; sorted per patient.
    dose_amount : (n, k) amounts added to the target state.
    dose_state, dose_clock : (n, k) int arrays: index of the target state, index of the clock
        reset by the dose (-1 for none).
    breaks : (n, kb) extra step boundaries (days; +inf padding), sorted per patient, e.g. the
        end of the expansion phase after each dose.
    method : ``"rosenbrock"`` only (:func:`tregsim.solve.numpy_backend.integrate` chooses
        between this scheme and the explicit one).
    rtol, atol : relative and absolute tolerances; state i uses ``atol × scale_i``.

    Outputs at a dose time are recorded after the dose.
    """
    if method != "rosenbrock":
        raise ValueError(f"rosenbrock.integrate solves method='rosenbrock' only, got {method!r}")
    ns, n = y0.shape
    times, breaks, atol_v, out, status, bad = batch_start(model, p, y0, times, breaks, atol)
    nt = times.shape[1]
    kd = dose_time.shape[1]
    n_clocks = len(model.clock_names)
    n_steps = np.zeros(n, dtype=np.int64)
    n_rej = np.zeros(n, dtype=np.int64)

    # active-set arrays (compacted together)
    ids = np.flatnonzero(~bad)
    t = np.full(len(ids), float(t0))
    y = y0[:, ids].copy()
    P = p[:, ids].copy()
    h = np.full(len(ids), float(h0))
    tlast = np.full((n_clocks, len(ids)), -np.inf)
    optr = np.zeros(len(ids), dtype=np.int64)
    dptr = np.zeros(len(ids), dtype=np.int64)
    DT = np.concatenate([dose_time[ids], np.full((len(ids), 1), np.inf)], axis=1)
    DA = dose_amount[ids]
    DS = dose_state[ids]
    DC = dose_clock[ids]
    BP = np.concatenate([breaks[ids], np.full((len(ids), 1), np.inf)], axis=1)
    bptr = np.zeros(len(ids), dtype=np.int64)
    TE = np.concatenate([times, np.full((times.shape[0], 1), np.inf)], axis=1)
    TE = np.broadcast_to(TE, (n, nt + 1))
    steps = np.zeros(len(ids), dtype=np.int64)
    rej = np.zeros(len(ids), dtype=np.int64)
    done = np.zeros(len(ids), dtype=bool)
    st = np.zeros(len(ids), dtype=np.int8)

    def process_events(sel):
        """At patients ``sel`` (indices into the active set) apply doses due at t, then record
        outputs due at t. Loops while any event remains at the current time."""
        while sel.size:
            tt = t[sel]
            # doses due now
            dd = DT[sel, np.minimum(dptr[sel], kd)]
            due = dd <= tt
            if due.any():
                s = sel[due]
                j = dptr[s]
                tgt = DS[s, j]
                y[tgt, s] += DA[s, j]
                c = DC[s, j]
                hasc = c >= 0
                tlast[c[hasc], s[hasc]] = t[s[hasc]]
                dptr[s] += 1
                # the gate opens at a dose: restart with a small step
                h[s] = np.minimum(h[s], h0)
            bb = BP[sel, bptr[sel]]
            brk = (bb <= tt) & ~due
            bptr[sel[brk]] += 1
            oo = TE[ids[sel], optr[sel]]
            rec = (oo <= tt) & ~due & ~brk
            if rec.any():
                s = sel[rec]
                out[:, ids[s], optr[s]] = y[:, s]
                optr[s] += 1
                fin = optr[s] >= nt
                done[s[fin]] = True
            sel = sel[due | rec | brk]
            sel = sel[~done[sel]]

    process_events(np.arange(len(ids)))

    while True:
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        # compact when fewer than half remain
        if act.size < 0.5 * len(ids):
            finished = np.flatnonzero(done)
            status[ids[finished]] = st[finished]
            n_steps[ids[finished]] = steps[finished]
            n_rej[ids[finished]] = rej[finished]
            ids, t, y, P, h, tlast = ids[act], t[act], y[:, act], P[:, act], h[act], tlast[:, act]
            optr, dptr, DT, DA, DS, DC = optr[act], dptr[act], DT[act], DA[act], DS[act], DC[act]
            BP, bptr = BP[act], bptr[act]
            steps, rej, done, st = steps[act], rej[act], done[act], st[act]
            act = np.arange(len(ids))

        ta = t[act]
        tstop = np.minimum(TE[ids[act], optr[act]], DT[act, dptr[act]])
        tstop = np.minimum(tstop, BP[act, bptr[act]])
        span = tstop - ta
        hh = np.minimum(h[act], span)
        hit = h[act] >= span
        ya = y[:, act]
        Pa = P[:, act]
        tla = tlast[:, act]

        f0 = model.rhs(ta, ya, Pa, tla)
        J = model.jacobian(ta, ya, Pa, tla)
        dfdt = model.dfdt(ta, ya, Pa, tla)
        A = -J
        diag = 1.0 / (GAM * hh)
        for i in range(ns):
            A[i, i] += diag
        LU, perm = lu_factor(A)
        g1 = lu_solve(LU, perm, f0 + hh * C1X * dfdt)
        y2 = ya + A21 * g1
        f2 = model.rhs(ta + A2X * hh, y2, Pa, tla)
        g2 = lu_solve(LU, perm, f2 + hh * C2X * dfdt + C21 * g1 / hh)
        y3 = ya + A31 * g1 + A32 * g2
        f3 = model.rhs(ta + A3X * hh, y3, Pa, tla)
        g3 = lu_solve(LU, perm, f3 + hh * C3X * dfdt + (C31 * g1 + C32 * g2) / hh)
        g4 = lu_solve(LU, perm, f3 + hh * C4X * dfdt + (C41 * g1 + C42 * g2 + C43 * g3) / hh)
        ynew = ya + B1 * g1 + B2 * g2 + B3 * g3 + B4 * g4
        err = E1 * g1 + E2 * g2 + E3 * g3 + E4 * g4
        sc = atol_v + rtol * np.maximum(np.abs(ya), np.abs(ynew))
        en = np.sqrt(np.mean((err / sc) ** 2, axis=0))
        finite = np.isfinite(ynew).all(axis=0) & np.isfinite(en)
        en = np.where(finite, en, np.inf)
        ok = en <= 1.0
        with np.errstate(divide="ignore"):
            fac = np.clip(0.9 * np.power(np.maximum(en, 1e-10), -1.0 / ORDER), 0.2, 5.0)
        fac = np.where(ok, fac, np.minimum(fac, 0.5))
        hnew = hh * fac
        # a step shortened to land on an event says little about the natural step size
        hnew = np.where(ok & hit, np.maximum(hnew, np.minimum(h[act], hnew * 5)), hnew)

        acc = act[ok]
        y[:, acc] = ynew[:, ok]
        t[acc] = np.where(hit[ok], tstop[ok], ta[ok] + hh[ok])
        steps[acc] += 1
        rej[act[~ok]] += 1
        h[act] = hnew

        # failures
        tiny = (hnew < 1e-12 * np.maximum(1.0, np.abs(ta))) & ~ok
        nonfin = ~finite & (hh < 1e-9 * np.maximum(1.0, np.abs(ta)))
        many = (steps[act] + rej[act]) > max_steps
        for code, mask in (
            (STATUS_NONFINITE, nonfin),
            (STATUS_STEP_TOO_SMALL, tiny),
            (STATUS_MAX_STEPS, many),
        ):
            f = act[mask & ~done[act]]
            st[f] = code
            done[f] = True

        ev = acc[hit[ok]]
        ev = ev[~done[ev]]
        process_events(ev)

    alln = np.arange(len(ids))
    status[ids[alln]] = st
    n_steps[ids[alln]] = steps
    n_rej[ids[alln]] = rej
    # a failed patient has no trustworthy trajectory: report NaN, with the status
    out[:, status != STATUS_OK, :] = np.nan
    tried = n_steps + n_rej
    return SolveResult(
        out, status, n_steps, n_rej, n_rhs=3 * tried, n_jac=tried, n_switches=np.zeros_like(tried)
    )
