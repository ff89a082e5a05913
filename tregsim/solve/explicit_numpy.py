"""Lock-step batched DOP853 in numpy (the compiler-free explicit path).

The same method as the numba kernel's explicit mode (:mod:`tregsim.solve.dop853`: Hairer's
error estimate and step control, 7th-order dense output at the visits, doses and breaks as
step boundaries): all unfinished patients advance together, each with its own time, step
size and error control. Slower than the numpy Rosenbrock path for cohorts (every iteration
costs 12 vectorized right-hand sides; ``docs/solver.md``), so ``method="auto"`` on the numpy
backend uses Rosenbrock.
"""

from __future__ import annotations

import numpy as np

from tregsim.solve import dop853 as dp
from tregsim.solve.rosenbrock import (
    STATUS_MAX_STEPS,
    STATUS_NONFINITE,
    STATUS_OK,
    STATUS_STEP_TOO_SMALL,
    SolveResult,
    batch_start,
)


def _comb(c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """sum_j c[j] K[j] term by term in a fixed order (BLAS dot products may sum in a
    batch-size-dependent order, which would make a patient's result depend on its batch)."""
    acc = None
    for j in np.flatnonzero(c):
        acc = c[j] * K[j] if acc is None else acc + c[j] * K[j]
    return np.zeros_like(K[0]) if acc is None else acc


def _dense(F: np.ndarray, y_old: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DOP853 interpolant: F (7, ns, m), y_old (ns, m), x (m,) in (0, 1) → (ns, m)."""
    acc = np.zeros_like(y_old)
    for i, f in enumerate(F[::-1]):
        acc = (acc + f) * (x if i % 2 == 0 else 1.0 - x)
    return y_old + acc


def integrate(
    model,
    p,
    y0,
    times,
    dose_time,
    dose_amount,
    dose_state,
    dose_clock,
    *,
    breaks=None,
    t0=0.0,
    rtol=1e-7,
    atol=1e-10,
    h0=1e-2,
    max_steps=100_000,
    stiff_exit=False,
) -> SolveResult:
    """Same contract as :func:`tregsim.solve.rosenbrock.integrate` (explicit DOP853).

    ``stiff_exit``: stop a patient whose stiffness test fires (15 steps held down by the
    stability cap to less than half of what accuracy allows, as in the numba kernel); its
    ``n_switches`` is 1 and its outputs NaN, for the caller to solve it with Rosenbrock."""
    ns, n = y0.shape
    times, breaks, atol_v, out, status, bad = batch_start(model, p, y0, times, breaks, atol)
    nt = times.shape[1]
    kd = dose_time.shape[1]
    n_clocks = len(model.clock_names)
    n_steps = np.zeros(n, dtype=np.int64)
    n_rej = np.zeros(n, dtype=np.int64)
    n_rhs = np.zeros(n, dtype=np.int64)

    ids = np.flatnonzero(~bad)
    m = len(ids)
    t = np.full(m, float(t0))
    y = y0[:, ids].copy()
    P = p[:, ids].copy()
    h = np.full(m, float(h0))
    f = np.zeros((ns, m))
    have_f = np.zeros(m, dtype=bool)
    last_rej = np.zeros(m, dtype=bool)
    clip = np.zeros(m, dtype=bool)
    need_h = np.ones(m, dtype=bool)
    iasti = np.zeros(m, dtype=np.int64)
    nonsti = np.zeros(m, dtype=np.int64)
    went_stiff = np.zeros(m, dtype=bool)
    tlast = np.full((n_clocks, m), -np.inf)
    optr = np.zeros(m, dtype=np.int64)
    dptr = np.zeros(m, dtype=np.int64)
    bptr = np.zeros(m, dtype=np.int64)
    DT = np.concatenate([dose_time[ids], np.full((m, 1), np.inf)], axis=1)
    DA, DS, DC = dose_amount[ids], dose_state[ids], dose_clock[ids]
    BP = np.concatenate([breaks[ids], np.full((m, 1), np.inf)], axis=1)
    TE = np.concatenate([times, np.full((times.shape[0], 1), np.inf)], axis=1)
    TE = np.broadcast_to(TE, (n, nt + 1))
    tend = np.broadcast_to(times[:, -1] if nt else np.full(1, t0), (n,))
    steps = np.zeros(m, dtype=np.int64)
    rej = np.zeros(m, dtype=np.int64)
    rhs_n = np.zeros(m, dtype=np.int64)
    done = np.zeros(m, dtype=bool)
    st = np.zeros(m, dtype=np.int8)
    if nt == 0:
        done[:] = True

    def process_events(sel):
        while sel.size:
            tt = t[sel]
            due = DT[sel, np.minimum(dptr[sel], kd)] <= tt
            if due.any():
                s = sel[due]
                j = dptr[s]
                y[DS[s, j], s] += DA[s, j]
                c = DC[s, j]
                hasc = c >= 0
                tlast[c[hasc], s[hasc]] = t[s[hasc]]
                dptr[s] += 1
                h[s] = np.minimum(h[s], h0)
                have_f[s] = False
                need_h[s] = True
            brk = (BP[sel, bptr[sel]] <= tt) & ~due
            bptr[sel[brk]] += 1
            rec = (TE[ids[sel], optr[sel]] <= tt) & ~due & ~brk
            if rec.any():
                s = sel[rec]
                out[:, ids[s], optr[s]] = y[:, s]
                optr[s] += 1
                done[s[optr[s] >= nt]] = True
            sel = sel[due | rec | brk]
            sel = sel[~done[sel]]

    process_events(np.arange(m))
    A, C = dp.A, dp.C
    while True:
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        need = act[~have_f[act]]
        if need.size:
            f[:, need] = model.rhs(t[need], y[:, need], P[:, need], tlast[:, need])
            rhs_n[need] += 1
            have_f[need] = True
        ta, ya, Pa, tla = t[act], y[:, act], P[:, act], tlast[:, act]
        tstop = np.where(clip[act], TE[ids[act], optr[act]], tend[ids[act]])
        tstop = np.minimum(tstop, DT[act, dptr[act]])
        tstop = np.minimum(tstop, BP[act, bptr[act]])
        span = tstop - ta
        nh = np.flatnonzero(need_h[act])
        if nh.size:  # Hairer's initial step at the start and after a dose (as in numba)
            g = act[nh]
            need_h[g] = False
            sc0 = atol_v + rtol * np.abs(y[:, g])
            d0 = np.sqrt(np.mean((y[:, g] / sc0) ** 2, axis=0))
            d1 = np.sqrt(np.mean((f[:, g] / sc0) ** 2, axis=0))
            with np.errstate(all="ignore"):
                hi = np.where((d0 >= 1e-5) & (d1 >= 1e-5), 0.01 * d0 / d1, 1e-6)
                hi = np.minimum(hi, span[nh])
                f1 = model.rhs(t[g] + hi, y[:, g] + hi * f[:, g], P[:, g], tlast[:, g])
                d2 = np.sqrt(np.mean(((f1 - f[:, g]) / sc0) ** 2, axis=0)) / hi
                dm = np.maximum(d1, d2)
                h1 = np.where(dm <= 1e-15, np.maximum(1e-6, hi * 1e-3), (0.01 / dm) ** (1 / 8))
                hn = np.minimum(100 * hi, h1)
            rhs_n[g] += 1
            good = np.isfinite(hn) & (hn > 0)
            h[g[good]] = hn[good]
        hit = h[act] >= span
        hh = np.where(hit, span, h[act])
        K = np.empty((16, ns, act.size))
        K[0] = f[:, act]
        for s in range(1, dp.N_STAGES):
            dy = _comb(A[s, :s], K[:s]) * hh
            K[s] = model.rhs(ta + C[s] * hh, ya + dy, Pa, tla)
        y11 = ya + dy
        ynew = ya + hh * _comb(dp.B, K[: dp.N_STAGES])
        K[12] = model.rhs(ta + hh, ynew, Pa, tla)
        rhs_n[act] += dp.N_STAGES
        sc = atol_v + rtol * np.maximum(np.abs(ya), np.abs(ynew))
        e5 = np.sum((_comb(dp.E5, K[:13]) / sc) ** 2, axis=0)
        e3 = np.sum((_comb(dp.E3, K[:13]) / sc) ** 2, axis=0)
        with np.errstate(all="ignore"):
            en = np.where((e5 == 0) & (e3 == 0), 0.0, hh * e5 / np.sqrt((e5 + 0.01 * e3) * ns))
        finite = np.isfinite(ynew).all(axis=0) & np.isfinite(en)
        en = np.where(finite, en, np.inf)
        ok = en <= 1.0
        with np.errstate(divide="ignore"):
            powf = dp.SAFETY * np.power(np.maximum(en, 1e-300), -1.0 / (dp.ERROR_ORDER + 1))
        fac_ok = np.where(en == 0, dp.MAX_FACTOR, np.minimum(dp.MAX_FACTOR, powf))
        fac_ok = np.where(last_rej[act], np.minimum(1.0, fac_ok), fac_ok)
        fac = np.where(ok, fac_ok, np.maximum(dp.MIN_FACTOR, np.where(finite, powf, 0.0)))
        hnew = hh * fac
        hnew = np.where(ok & hit, np.maximum(hnew, np.minimum(h[act], hnew * 5)), hnew)
        # stiffness estimate, step cap and visit clipping as in the numba kernel
        with np.errstate(all="ignore"):
            num = np.sum(((K[12] - K[11]) / sc) ** 2, axis=0)
            den = np.sum(((ynew - y11) / sc) ** 2, axis=0)
            hlamb = np.where(finite & (den > 0), hh * np.sqrt(num / den), 0.0)
            hcap = hh * dp.STABLE_CAP / hlamb
        capped = finite & (hlamb > dp.STABLE_CAP) & (hnew > hcap)
        held = capped & (hnew > 2 * hcap)
        iasti[act] = np.where(held, iasti[act] + 1, iasti[act])
        nonsti[act] = np.where(held, 0, np.where(finite & ~capped, nonsti[act] + 1, nonsti[act]))
        iasti[act] = np.where(finite & ~capped & (nonsti[act] >= 6), 0, iasti[act])
        hnew = np.where(capped, hcap, hnew)
        tnew = np.where(hit, tstop, ta + hh)
        redo = ok & (hlamb > dp.DENSE_MAX) & (TE[ids[act], optr[act]] < tnew)
        ok = ok & ~redo
        hnew = np.where(redo, hh, hnew)
        last_rej[act] = ~ok & ~redo
        clip[act] |= redo
        with np.errstate(all="ignore"):
            pred = hlamb * hnew / hh
        clip[act[ok]] = np.where(
            pred[ok] > dp.DENSE_MAX,
            True,
            np.where(pred[ok] < 0.5 * dp.DENSE_MAX, False, clip[act[ok]]),
        )

        # dense output strictly inside accepted steps
        dn = ok & (TE[ids[act], optr[act]] < tnew)
        if dn.any():
            w = np.flatnonzero(dn)
            Kw = K[:, :, w]
            for s in range(13, 16):
                dy = _comb(A[s, :s], Kw[:s]) * hh[w]
                Kw[s] = model.rhs(ta[w] + C[s] * hh[w], ya[:, w] + dy, Pa[:, w], tla[:, w])
            rhs_n[act[w]] += 3
            dy = ynew[:, w] - ya[:, w]
            F = np.empty((7, ns, w.size))
            F[0] = dy
            F[1] = hh[w] * Kw[0] - dy
            F[2] = 2 * dy - hh[w] * (Kw[12] + Kw[0])
            for r in range(4):
                F[3 + r] = hh[w] * _comb(dp.D[r], Kw)
            while w.size:
                g = act[w]
                x = (TE[ids[g], optr[g]] - ta[w]) / hh[w]
                out[:, ids[g], optr[g]] = _dense(F, ya[:, w], x)
                optr[g] += 1
                more = TE[ids[g], optr[g]] < tnew[w]
                w, F = w[more], F[:, :, more]

        acc = act[ok]
        y[:, acc] = ynew[:, ok]
        f[:, acc] = K[12][:, ok]
        t[acc] = tnew[ok]
        steps[acc] += 1
        rej[act[~ok]] += 1
        h[act] = hnew

        tiny = (hnew < 1e-12 * np.maximum(1.0, np.abs(ta))) & ~ok
        nonfin = ~finite & (hh < 1e-9 * np.maximum(1.0, np.abs(ta)))
        many = (steps[act] + rej[act]) > max_steps
        for code, mask in (
            (STATUS_NONFINITE, nonfin),
            (STATUS_STEP_TOO_SMALL, tiny),
            (STATUS_MAX_STEPS, many),
        ):
            fl = act[mask & ~done[act]]
            st[fl] = code
            done[fl] = True
        if stiff_exit:
            sw = act[(iasti[act] >= 15) & ~done[act]]
            went_stiff[sw] = True
            done[sw] = True
        ev = acc[~done[acc]]
        process_events(ev)

    status[ids] = st
    n_steps[ids] = steps
    n_rej[ids] = rej
    n_rhs[ids] = rhs_n
    n_sw = np.zeros_like(n_steps)
    n_sw[ids[went_stiff]] = 1
    out[:, (status != STATUS_OK) | (n_sw > 0), :] = np.nan
    return SolveResult(
        out,
        status,
        n_steps,
        n_rej,
        n_rhs=n_rhs,
        n_jac=np.zeros_like(n_steps),
        n_switches=n_sw,
    )
