"""Per-patient compiled Rosenbrock integration with numba (the fast path).

The same scheme as :mod:`tregsim.solve.rosenbrock` (Kaps–Rentrop / Shampine, order 4(3), exact
Jacobian and ∂f/∂t), but each patient integrates independently in compiled code, with
``prange`` across patients. Independent per-patient loops avoid the cost of lock-step
batching (where every iteration pays for the slowest patient; ``PERFORMANCE.md``).

Code generation: the model's right-hand side, Jacobian and ∂f/∂t are printed by sympy's
Python code printer after common-subexpression elimination, into a module under the user's
cache folder (``$TREGSIM_CACHE`` or ``~/.cache/tregsim``), named by a hash of the generated text,
and compiled by numba with its on-disk cache, so the compile cost (~10–20 s) is paid once per
model version and machine. The generated text comes only from sympy expressions that the
whitelisted parser built; nothing from the model file is executed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from tregsim.solve import rosenbrock as rb

GENERATOR_VERSION = 1


def available() -> bool:
    """True when numba can be imported (the backend is optional)."""
    return importlib.util.find_spec("numba") is not None


def cache_dir() -> Path:
    d = Path(os.environ.get("TREGSIM_CACHE", Path.home() / ".cache" / "tregsim")) / "numba"
    d.mkdir(parents=True, exist_ok=True)
    return d


class _Printer(PythonCodePrinter):
    def __init__(self):
        super().__init__({"allow_unknown_functions": True, "fully_qualified_modules": True})

    def _print_Logistic(self, e):
        return f"_logistic({self._print(e.args[0])})"

    def _print_Function(self, e):
        name = type(e).__name__
        if name in ("tregsim_min", "tregsim_max"):
            fn = "min" if name.endswith("min") else "max"
            out = self._print(e.args[0])
            for a in e.args[1:]:
                out = f"{fn}({out}, {self._print(a)})"
            return out
        return super()._print_Function(e)

    def _print_Heaviside(self, e):
        return f"_heaviside({self._print(e.args[0])})"


def _renamed(model, exprs):
    from tregsim.model.compile import _numeric_ready

    ren = {}
    for s in model.state_names:
        ren[model.spec.symbols[s]] = sp.Symbol("y_" + s, real=True)
    for p in model.parameter_names:
        ren[model.spec.symbols[p]] = sp.Symbol("p_" + p, real=True)
    for c in model._clock_last:
        ren[c] = sp.Symbol("tl_" + c.name, real=True)
    ren[model._t] = sp.Symbol("t", real=True)
    params = {ren[model.spec.symbols[p]] for p in model.parameter_names}
    return [_numeric_ready(e).xreplace(ren) for e in exprs], params


def _unpack(model, with_params=True) -> list[str]:
    lines = [f"    y_{s} = y[{i}]" for i, s in enumerate(model.state_names)]
    if with_params:
        lines += [f"    p_{p} = p[{i}]" for i, p in enumerate(model.parameter_names)]
    lines += [f"    tl_{c.name} = tl[{i}]" for i, c in enumerate(model._clock_last)]
    return lines


def _kernel_sources(model) -> tuple[list[str], int]:
    """precompute / rhs / all3 functions from one joint CSE of f, J and ∂f/∂t.

    Sub-expressions that depend on parameters only are "static": computed once per patient by
    ``precompute`` into ``k`` (powers and exponentials of parameters dominate the cost
    otherwise).
    """
    ns = len(model.state_names)
    J = model.jacobian_exprs
    jac_nz = [(i, j) for i in range(ns) for j in range(ns) if J[i, j] != 0]
    dt = [sp.diff(e, model._t) for e in model.rhs_exprs]
    dt_nz = [i for i in range(ns) if dt[i] != 0]
    exprs = [*model.rhs_exprs, *[J[i, j] for i, j in jac_nz], *[dt[i] for i in dt_nz]]
    targets_f = [f"f[{i}]" for i in range(ns)]
    targets_j = [f"J[{i}, {j}]" for i, j in jac_nz]
    targets_d = [f"fdt[{i}]" for i in dt_nz]
    exprs, params = _renamed(model, exprs)
    # hoist parameter-only sub-trees (and the parameter-only factors/terms of mixed products
    # and sums) into once-per-patient constants before CSE
    hoisted: dict[sp.Expr, sp.Symbol] = {}

    def is_static(e):
        return not e.is_Number and e.free_symbols and e.free_symbols <= params

    def const(e):
        if e not in hoisted:
            hoisted[e] = sp.Symbol(f"_h{len(hoisted)}", real=True)
        return hoisted[e]

    def hoist(e):
        if is_static(e):
            return const(e)
        if not e.args:
            return e
        if e.is_Mul or e.is_Add:
            st = [a for a in e.args if is_static(a)]
            rest = [hoist(a) for a in e.args if not is_static(a)]
            if st:
                return e.func(const(e.func(*st)) if len(st) > 1 else const(st[0]), *rest)
            return e.func(*rest)
        return e.func(*[hoist(a) for a in e.args])

    exprs = [hoist(e) for e in exprs]
    pre_repl = [(sym, ex) for ex, sym in hoisted.items()]
    repl, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"), optimizations="basic")
    repl = pre_repl + list(repl)
    params = params | set(hoisted.values())
    static: dict[sp.Symbol, int] = {}
    dyn = []
    for a, b in repl:
        if b.free_symbols <= (params | set(static)):
            static[a] = len(static)
        else:
            dyn.append((a, b))
    pr = _Printer()
    kname = {a: sp.Symbol(f"k[{i}]") for a, i in static.items()}

    def show(e):
        return pr.doprint(e.xreplace(kname)) if kname else pr.doprint(e)

    pre = ["@njit(cache=True, error_model='numpy')", "def precompute(p, k):"]
    pre += [f"    p_{p} = p[{i}]" for i, p in enumerate(model.parameter_names)]
    pre += [f"    {kname[a]} = {pr.doprint(b.xreplace(kname))}" for a, b in repl if a in static]
    pre.append("    return")

    def needed(outs):
        need, stack = set(), [s for e in outs for s in e.free_symbols]
        deps = dict(dyn)
        while stack:
            s = stack.pop()
            if s in deps and s not in need:
                need.add(s)
                stack.extend(deps[s].free_symbols)
        return need

    def body(outs, targets):
        need = needed(outs)
        lines = [f"    {a} = {show(b)}" for a, b in dyn if a in need]
        lines += [f"    {tg} = {show(e)}" for tg, e in zip(targets, outs)]
        return lines

    rhs = ["@njit(cache=True, error_model='numpy')", "def rhs(t, y, p, k, tl, f):", *_unpack(model)]
    rhs += body(reduced[:ns], targets_f)
    all3 = [
        "@njit(cache=True, error_model='numpy')",
        "def all3(t, y, p, k, tl, f, J, fdt):",
        *_unpack(model),
    ]
    all3 += body(reduced, [*targets_f, *targets_j, *targets_d])
    return [*pre, "", *rhs, "", *all3, ""], max(len(static), 1)


def generate_source(model) -> str:
    """Python/numba source of the model kernels plus the integrator."""
    kern, nk = _kernel_sources(model)
    src = [
        f"# generated by tregsim {GENERATOR_VERSION} for model {model.name}; do not edit",
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        f"NK = {nk}",
        "",
        "@njit(cache=True, inline='always', error_model='numpy')",
        "def _logistic(x):",
        "    if x >= 0.0:",
        "        return 1.0 / (1.0 + math.exp(-x))",
        "    e = math.exp(x)",
        "    return e / (1.0 + e)",
        "",
        "@njit(cache=True, inline='always', error_model='numpy')",
        "def _heaviside(x):",
        "    return 1.0 if x > 0.0 else (0.0 if x < 0.0 else 0.5)",
        "",
        *kern,
    ]
    src.append(
        _INTEGRATOR.format(
            GAM=rb.GAM,
            A21=rb.A21,
            A31=rb.A31,
            A32=rb.A32,
            C21=rb.C21,
            C31=rb.C31,
            C32=rb.C32,
            C41=rb.C41,
            C42=rb.C42,
            C43=rb.C43,
            B1=rb.B1,
            B2=rb.B2,
            B3=rb.B3,
            B4=rb.B4,
            E1=rb.E1,
            E2=rb.E2,
            E3=rb.E3,
            E4=rb.E4,
            C1X=rb.C1X,
            C2X=rb.C2X,
            C3X=rb.C3X,
            C4X=rb.C4X,
            A2X=rb.A2X,
            A3X=rb.A3X,
            ORDER=rb.ORDER,
            OK=rb.STATUS_OK,
            SMALL=rb.STATUS_STEP_TOO_SMALL,
            MAXS=rb.STATUS_MAX_STEPS,
            NONFIN=rb.STATUS_NONFINITE,
        )
    )
    return "\n".join(src) + "\n"


_INTEGRATOR = """
@njit(cache=True, error_model="numpy")
def _one(p, y0, t0, times, dt, da, ds, dc, ncl, atolv, rtol, h0, max_steps, out, stats):
    ns = y0.shape[0]
    nt = times.shape[0]
    kd = dt.shape[0]
    y = y0.copy()
    tl = np.full(max(ncl, 1), -np.inf)
    f0 = np.empty(ns); f2 = np.empty(ns); f3 = np.empty(ns); fdt = np.zeros(ns)
    g1 = np.empty(ns); g2 = np.empty(ns); g3 = np.empty(ns); g4 = np.empty(ns)
    yt = np.empty(ns); ynew = np.empty(ns); b = np.empty(ns)
    J = np.zeros((ns, ns)); A = np.empty((ns, ns)); piv = np.empty(ns, np.int64)
    k = np.empty(NK)
    precompute(p, k)
    t = t0
    h = h0
    optr = 0
    dptr = 0
    steps = 0
    rej = 0
    while True:
        # events at the current time: doses first, then outputs (outputs are post-dose)
        while True:
            if dptr < kd and dt[dptr] <= t:
                y[ds[dptr]] += da[dptr]
                if dc[dptr] >= 0:
                    tl[dc[dptr]] = t
                dptr += 1
                if h > h0:
                    h = h0
                continue
            if optr < nt and times[optr] <= t:
                for i in range(ns):
                    out[i, optr] = y[i]
                optr += 1
                continue
            break
        if optr >= nt:
            stats[0] = steps
            stats[1] = rej
            return {OK}
        tstop = times[optr]
        if dptr < kd and dt[dptr] < tstop:
            tstop = dt[dptr]
        span = tstop - t
        hit = h >= span
        hh = span if hit else h
        for i in range(ns):
            for j in range(ns):
                J[i, j] = 0.0
            fdt[i] = 0.0
        all3(t, y, p, k, tl, f0, J, fdt)
        d = 1.0 / ({GAM} * hh)
        for i in range(ns):
            for j in range(ns):
                A[i, j] = -J[i, j]
            A[i, i] += d
            piv[i] = i
        # LU with partial pivoting
        for kk in range(ns - 1):
            m = kk
            big = abs(A[kk, kk])
            for r in range(kk + 1, ns):
                if abs(A[r, kk]) > big:
                    big = abs(A[r, kk])
                    m = r
            if m != kk:
                for j in range(ns):
                    tmp = A[kk, j]; A[kk, j] = A[m, j]; A[m, j] = tmp
                tmpi = piv[kk]; piv[kk] = piv[m]; piv[m] = tmpi
            for r in range(kk + 1, ns):
                A[r, kk] /= A[kk, kk]
                for j in range(kk + 1, ns):
                    A[r, j] -= A[r, kk] * A[kk, j]
        # stage 1
        for i in range(ns):
            b[i] = f0[i] + hh * {C1X} * fdt[i]
        _lusolve(A, piv, b, g1)
        for i in range(ns):
            yt[i] = y[i] + {A21} * g1[i]
        rhs(t + {A2X} * hh, yt, p, k, tl, f2)
        for i in range(ns):
            b[i] = f2[i] + hh * {C2X} * fdt[i] + {C21} * g1[i] / hh
        _lusolve(A, piv, b, g2)
        for i in range(ns):
            yt[i] = y[i] + {A31} * g1[i] + {A32} * g2[i]
        rhs(t + {A3X} * hh, yt, p, k, tl, f3)
        for i in range(ns):
            b[i] = f3[i] + hh * {C3X} * fdt[i] + ({C31} * g1[i] + {C32} * g2[i]) / hh
        _lusolve(A, piv, b, g3)
        for i in range(ns):
            b[i] = f3[i] + hh * {C4X} * fdt[i] + ({C41} * g1[i] + {C42} * g2[i] + {C43} * g3[i]) / hh
        _lusolve(A, piv, b, g4)
        en = 0.0
        finite = True
        for i in range(ns):
            ynew[i] = y[i] + {B1} * g1[i] + {B2} * g2[i] + {B3} * g3[i] + {B4} * g4[i]
            e = {E1} * g1[i] + {E2} * g2[i] + {E3} * g3[i] + {E4} * g4[i]
            sc = atolv[i] + rtol * max(abs(y[i]), abs(ynew[i]))
            en += (e / sc) ** 2
            if not math.isfinite(ynew[i]):
                finite = False
        en = math.sqrt(en / ns)
        if not finite or not math.isfinite(en):
            en = math.inf
        ok = en <= 1.0
        fac = 0.9 * max(en, 1e-10) ** (-1.0 / {ORDER})
        fac = min(max(fac, 0.2), 5.0)
        if not ok:
            fac = min(fac, 0.5)
        hnew = hh * fac
        if ok and hit:
            hnew = max(hnew, min(h, hnew * 5.0))
        if ok:
            for i in range(ns):
                y[i] = ynew[i]
            t = tstop if hit else t + hh
            steps += 1
        else:
            rej += 1
            if hnew < 1e-12 * max(1.0, abs(t)):
                stats[0] = steps; stats[1] = rej
                return {SMALL}
            if not finite and hh < 1e-9 * max(1.0, abs(t)):
                stats[0] = steps; stats[1] = rej
                return {NONFIN}
        h = hnew
        if steps + rej > max_steps:
            stats[0] = steps; stats[1] = rej
            return {MAXS}


@njit(cache=True, inline='always', error_model="numpy")
def _lusolve(LU, piv, b, x):
    ns = b.shape[0]
    for i in range(ns):
        x[i] = b[piv[i]]
    for i in range(1, ns):
        s = x[i]
        for j in range(i):
            s -= LU[i, j] * x[j]
        x[i] = s
    for i in range(ns - 1, -1, -1):
        s = x[i]
        for j in range(i + 1, ns):
            s -= LU[i, j] * x[j]
        x[i] = s / LU[i, i]


@njit(cache=True, parallel=True, error_model="numpy")
def integrate_batch(P, Y0, t0, times, DT, DA, DS, DC, ncl, atolv, rtol, h0, max_steps, out,
                    status, stats):
    n = P.shape[0]
    for i in prange(n):
        status[i] = _one(P[i], Y0[i], t0, times, DT[i], DA[i], DS[i], DC[i], ncl, atolv, rtol,
                         h0, max_steps, out[i], stats[i])
"""


_LOADED: dict[str, object] = {}


def kernels_for(model):
    """The compiled module for ``model`` (generated, written and imported once per process)."""
    src = generate_source(model)
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    if digest in _LOADED:
        return _LOADED[digest]
    path = cache_dir() / f"tregsim_{model.name}_{digest}.py"
    if not path.exists() or path.read_text() != src:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        os.replace(tmp, path)
    name = f"_tregsim_kernels_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _LOADED[digest] = mod
    return mod


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
    t0=0.0,
    rtol=1e-7,
    atol=1e-10,
    h0=1e-2,
    max_steps=100_000,
) -> rb.SolveResult:
    """Same contract as :func:`tregsim.solve.rosenbrock.integrate`."""
    mod = model.__dict__.get("_numba_mod")
    if mod is None:
        mod = kernels_for(model)
        model.__dict__["_numba_mod"] = mod
    ns, n = y0.shape
    nt = len(times)
    scales = np.array([model.spec.states[s].scale for s in model.state_names])
    out = np.full((n, ns, nt), np.nan)
    status = np.zeros(n, dtype=np.int8)
    stats = np.zeros((n, 2), dtype=np.int64)
    bad = ~np.isfinite(p).all(axis=0) | ~np.isfinite(y0).all(axis=0)
    good = np.flatnonzero(~bad)
    if good.size:
        sub_out = np.full((good.size, ns, nt), np.nan)
        sub_status = np.zeros(good.size, dtype=np.int8)
        sub_stats = np.zeros((good.size, 2), dtype=np.int64)
        mod.integrate_batch(
            np.ascontiguousarray(p[:, good].T),
            np.ascontiguousarray(y0[:, good].T),
            float(t0),
            np.ascontiguousarray(times, dtype=float),
            np.ascontiguousarray(dose_time[good], dtype=float),
            np.ascontiguousarray(dose_amount[good], dtype=float),
            np.ascontiguousarray(dose_state[good], dtype=np.int64),
            np.ascontiguousarray(dose_clock[good], dtype=np.int64),
            len(model.clock_names),
            atol * scales,
            float(rtol),
            float(h0),
            int(max_steps),
            sub_out,
            sub_status,
            sub_stats,
        )
        out[good], status[good], stats[good] = sub_out, sub_status, sub_stats
    status[bad] = rb.STATUS_BAD_INPUT
    out[status != rb.STATUS_OK] = np.nan
    return rb.SolveResult(np.moveaxis(out, 0, 1), status, stats[:, 0], stats[:, 1])
