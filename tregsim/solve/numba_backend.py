"""Per-patient compiled integration with numba (the fast path).

Each patient integrates independently in compiled code, with ``prange`` across patients
(independent loops avoid the lock-step cost where every iteration pays for the slowest
patient). Three methods share one kernel (``docs/solver.md``):

* ``explicit``: DOP853 (:mod:`tregsim.solve.dop853`), 7th-order dense output at the visits;
* ``rosenbrock``: the Kaps–Rentrop / Shampine 4(3) scheme of :mod:`tregsim.solve.rosenbrock`
  (exact Jacobian and ∂f/∂t), steps clipped to the visits;
* ``auto``: DOP853 with Hairer's stiffness test; a patient whose steps are limited by
  stability switches to Rosenbrock, and back when the Jacobian's norm bound says the explicit
  method is stable at the current step size.

Code generation: the model's right-hand side, Jacobian and ∂f/∂t are printed by sympy's
Python code printer after common-subexpression elimination, in three tiers: parameter-only
terms once per patient (``precompute``), time-only terms (functions of t and the dose clocks,
e.g. glycaemia G(t) and the expansion gate) once per stage time (``tblock_*``), and the rest
per evaluation. The module is written under the user's cache folder (``$TREGSIM_CACHE`` or
``~/.cache/tregsim``), named by a hash of the generated text, and compiled by numba with its
on-disk cache, so the compile cost is paid once per model version and machine. The generated
text comes only from sympy expressions that the whitelisted parser built; nothing from the
model file is executed.
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

from tregsim.solve import dop853 as dp
from tregsim.solve import rosenbrock as rb

GENERATOR_VERSION = 2
METHOD_CODES = {"auto": 0, "explicit": 1, "rosenbrock": 2}


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
        if name == "tregsim_pow":
            return f"_pw({self._print(e.args[0])}, {self._print(e.args[1])})"
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
    clocks = {ren[c] for c in model._clock_last}
    return [_numeric_ready(e).xreplace(ren) for e in exprs], params, clocks


_PW = sp.Function("tregsim_pow")


def _cheap_powers(exprs: list[sp.Expr], static: set) -> list[sp.Expr]:
    """Cheaper forms of b**x with a symbolic exponent x and a non-constant base b.

    A base raised to several such exponents (the model's Φ**w and Φ**(1 − w)) becomes
    exp(x·log b), the log shared; any other becomes ``_pw(b, x)``, which multiplies for
    small integer x (the glycaemia exponent h_G = 4) and calls pow otherwise. Products of
    exponentials are then merged into one exp. (A pow costs about a log plus an exp.)"""
    bases: dict[sp.Expr, set] = {}
    for e in exprs:
        for a in e.atoms(sp.Pow):
            b, x = a.args
            if not x.is_Number and not b.free_symbols <= static:
                bases.setdefault(b, set()).add(x)

    def shared_log(b):
        # exponents that are not numeric multiples of each other (w, 1 - w) share log b;
        # multiples (h_G, 2 h_G from the Jacobian) stay powers
        xs = list(bases.get(b, ()))
        return any(not (x / xs[0]).is_Number for x in xs[1:])

    def rw(b, x):
        if x.is_Number or b.free_symbols <= static:
            return sp.Pow(b, x)
        if shared_log(b):
            return sp.exp(x * sp.log(b))
        return _PW(b, x)

    def merge(m):
        ex = [a for a in m.args if isinstance(a, sp.exp)]
        pw = [a for a in m.args if isinstance(a, _PW)]
        if ex and pw:  # b**x · exp(z) → exp(x·log b + z): one exp fewer
            ex += [sp.exp(a.args[1] * sp.log(a.args[0])) for a in pw]
            pw = []
        if len(ex) < 2:
            return m
        rest = [a for a in m.args if not isinstance(a, (sp.exp, _PW))]
        return sp.Mul(*rest, sp.exp(sp.Add(*(a.args[0] for a in ex))))

    out = []
    for e in exprs:
        e = e.replace(lambda a: a.is_Pow, lambda a: rw(*a.args))
        out.append(e.replace(lambda a: a.is_Mul, merge))
    return out


def _hoister(pred, prefix, table):
    """Replace maximal sub-trees with ``pred`` (and the ``pred`` parts of sums and products)
    by symbols ``prefix{i}``; ``table`` maps the hoisted expression to its symbol."""

    def const(e):
        if e not in table:
            table[e] = sp.Symbol(f"{prefix}{len(table)}", real=True)
        return table[e]

    def hoist(e):
        if pred(e):
            return const(e)
        if not e.args:
            return e
        if e.is_Mul or e.is_Add:
            st = [a for a in e.args if pred(a)]
            rest = [hoist(a) for a in e.args if not pred(a)]
            if st:
                return e.func(const(e.func(*st)) if len(st) > 1 else const(st[0]), *rest)
            return e.func(*rest)
        return e.func(*[hoist(a) for a in e.args])

    return hoist


def _toposort(assign: list[tuple[sp.Symbol, sp.Expr]]) -> list[tuple[sp.Symbol, sp.Expr]]:
    defs = dict(assign)
    done, out = set(), []

    def visit(s):
        if s in done:
            return
        done.add(s)
        for d in sorted(defs[s].free_symbols & defs.keys(), key=str):
            visit(d)
        out.append((s, defs[s]))

    for s, _ in assign:
        visit(s)
    return out


def _kernel_sources(model) -> tuple[list[str], int, int]:
    """precompute / tblock_f / tblock_all / rhs / all3 from one joint CSE of f, J and ∂f/∂t.

    Tiers: parameter-only terms ("static", computed once per patient by ``precompute`` into
    ``k``); terms of time, dose clocks and parameters only ("time", computed once per stage
    time by ``tblock_f`` (what f needs) or ``tblock_all`` (what f, J, ∂f/∂t need) into
    ``tk``); the rest per evaluation.
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
    exprs, params, clocks = _renamed(model, exprs)
    tvars = {sp.Symbol("t", real=True)} | clocks
    exprs = _cheap_powers(exprs, params)

    s_table: dict[sp.Expr, sp.Symbol] = {}

    def is_static(e):
        return not e.is_Number and e.free_symbols and e.free_symbols <= params

    exprs = [_hoister(is_static, "_h", s_table)(e) for e in exprs]
    static_syms = params | set(s_table.values())
    t_table: dict[sp.Expr, sp.Symbol] = {}

    def is_time(e):
        fs = e.free_symbols
        return not e.is_Number and bool(fs & tvars) and fs <= (static_syms | tvars)

    exprs = [_hoister(is_time, "_t", t_table)(e) for e in exprs]
    tdefs = list(t_table.items())
    repl, reduced = sp.cse(
        [*exprs, *(ex for ex, _ in tdefs)],
        symbols=sp.numbered_symbols("_c"),
        optimizations="basic",
    )
    main = reduced[: len(exprs)]
    assign = [(sym, ex) for ex, sym in s_table.items()] + list(repl)
    assign += [(sym, reduced[len(exprs) + i]) for i, (_, sym) in enumerate(tdefs)]
    assign = _toposort(assign)

    static, timev, dyn = {}, [], []
    known_s, known_t = set(params), set(params)
    for a, b in assign:
        if b.free_symbols <= known_s:
            static[a] = len(static)
            known_s.add(a)
            known_t.add(a)
        elif b.free_symbols <= (known_t | tvars):
            timev.append((a, b))
            known_t.add(a)
        else:
            dyn.append((a, b))
    tset = {a for a, _ in timev}
    pr = _Printer()
    kname = {a: sp.Symbol(f"k[{i}]") for a, i in static.items()}

    def deps_closure(outs, table):
        need, stack = set(), [s for e in outs for s in e.free_symbols]
        while stack:
            s = stack.pop()
            if s in table and s not in need:
                need.add(s)
                stack.extend(table[s].free_symbols)
        return need

    dyn_d = dict(dyn)
    time_d = dict(timev)

    def slots_for(outs):
        """time symbols read by the dynamic code of ``outs``"""
        need = deps_closure(outs, dyn_d)
        used = {s for e in outs for s in e.free_symbols} | {
            s for a in need for s in dyn_d[a].free_symbols
        }
        return used & tset

    slots_all = slots_for(main)
    slot = {a: i for i, a in enumerate(x for x, _ in timev if x in slots_all)}
    tkname = {a: sp.Symbol(f"tk[{i}]") for a, i in slot.items()}

    def show(e, names):
        return pr.doprint(e.xreplace(names)) if names else pr.doprint(e)

    pre = ["@njit(cache=True, error_model='numpy')", "def precompute(p, k):"]
    pre += [f"    p_{p} = p[{i}]" for i, p in enumerate(model.parameter_names)]
    pre += [f"    {kname[a]} = {show(b, kname)}" for a, b in assign if a in static]
    pre.append("    return")

    clocks_unpack = [f"    tl_{c.name} = tl[{i}]" for i, c in enumerate(model._clock_last)]

    def tblock(name, outs):
        want = slots_for(outs)
        need = deps_closure(want, time_d) | want
        lines = [
            "@njit(cache=True, error_model='numpy')",
            f"def {name}(t, p, k, tl, tk):",
            *clocks_unpack,
        ]
        lines += [f"    {a} = {show(b, kname)}" for a, b in timev if a in need]
        lines += [f"    tk[{slot[a]}] = {a}" for a in sorted(want, key=lambda s: slot[s])]
        lines.append("    return")
        return lines

    names = {**kname, **tkname}

    def body(outs, targets):
        need = deps_closure(outs, dyn_d)
        lines = [f"    {a} = {show(b, names)}" for a, b in dyn if a in need]
        lines += [f"    {tg} = {show(e, names)}" for tg, e in zip(targets, outs)]
        return lines

    y_unpack = [f"    y_{s} = y[{i}]" for i, s in enumerate(model.state_names)]
    rhs = ["@njit(cache=True, error_model='numpy')", "def rhs(t, y, p, k, tl, tk, f):"]
    rhs += y_unpack + clocks_unpack + body(main[:ns], targets_f)
    all3 = ["@njit(cache=True, error_model='numpy')", "def all3(t, y, p, k, tl, tk, f, J, fdt):"]
    all3 += y_unpack + clocks_unpack + body(main, [*targets_f, *targets_j, *targets_d])
    src = [
        *pre,
        "",
        *tblock("tblock_f", main[:ns]),
        "",
        *tblock("tblock_all", main),
        "",
        *rhs,
        "",
        *all3,
        "",
    ]
    return src, max(len(static), 1), max(len(slot), 1)


def _lin(terms: list[tuple[float, str]]) -> str:
    """``c0*x0 + c1*x1 + ...`` with exact float literals, zero coefficients dropped."""
    parts = [f"{float(c)!r} * {x}" for c, x in terms if c != 0.0]
    return " + ".join(parts) if parts else "0.0"


def _dop853_source() -> str:
    """The DOP853 step (stages 1..11, solution, FSAL) and the dense-output block, unrolled."""
    A, C = dp.A, dp.C
    ind = " " * 12
    lines = []
    for s in range(1, dp.N_STAGES):
        comb = _lin([(A[s, j], f"K[{j}, i]") for j in range(s)])
        lines += [
            f"{ind}for i in range(ns):",
            f"{ind}    yt[i] = y[i] + hh * ({comb})",
        ]
        if s == dp.N_STAGES - 1:
            lines += [f"{ind}for i in range(ns):", f"{ind}    y11[i] = yt[i]"]
        lines += [
            f"{ind}tblock_f(t + {float(C[s])!r} * hh, p, k, tl, tk)",
            f"{ind}rhs(t + {float(C[s])!r} * hh, yt, p, k, tl, tk, K[{s}])",
        ]
    comb = _lin([(dp.B[j], f"K[{j}, i]") for j in range(dp.N_STAGES)])
    lines += [
        f"{ind}for i in range(ns):",
        f"{ind}    ynew[i] = y[i] + hh * ({comb})",
        # C[11] == 1: the time block of stage 11 is that of t + hh
        f"{ind}rhs(t + hh, ynew, p, k, tl, tk, K[12])",
        f"{ind}nrhs += {dp.N_STAGES}",
        f"{ind}err5 = 0.0",
        f"{ind}err3 = 0.0",
        f"{ind}snum = 0.0",
        f"{ind}sden = 0.0",
        f"{ind}finite = True",
        f"{ind}for i in range(ns):",
        f"{ind}    sc[i] = atolv[i] + rtol * max(abs(y[i]), abs(ynew[i]))",
        f"{ind}    e5 = ({_lin([(dp.E5[j], f'K[{j}, i]') for j in range(13)])}) / sc[i]",
        f"{ind}    e3 = ({_lin([(dp.E3[j], f'K[{j}, i]') for j in range(13)])}) / sc[i]",
        f"{ind}    err5 += e5 * e5",
        f"{ind}    err3 += e3 * e3",
        f"{ind}    d1 = (K[12, i] - K[11, i]) / sc[i]",
        f"{ind}    d2 = (ynew[i] - y11[i]) / sc[i]",
        f"{ind}    snum += d1 * d1",
        f"{ind}    sden += d2 * d2",
        f"{ind}    if not math.isfinite(ynew[i]):",
        f"{ind}        finite = False",
    ]
    step = "\n".join(lines)
    ind = " " * 20
    dl = []
    for s in range(13, 16):
        comb = _lin([(A[s, j], f"K[{j}, i]") for j in range(s)])
        dl += [
            f"{ind}for i in range(ns):",
            f"{ind}    yt[i] = y[i] + hh * ({comb})",
            f"{ind}tblock_f(t + {float(C[s])!r} * hh, p, k, tl, tk)",
            f"{ind}rhs(t + {float(C[s])!r} * hh, yt, p, k, tl, tk, K[{s}])",
        ]
    dl += [
        f"{ind}nrhs += 3",
        f"{ind}for i in range(ns):",
        f"{ind}    dy = ynew[i] - y[i]",
        f"{ind}    Fd[0, i] = dy",
        f"{ind}    Fd[1, i] = hh * K[0, i] - dy",
        f"{ind}    Fd[2, i] = 2.0 * dy - hh * (K[12, i] + K[0, i])",
    ]
    for r in range(4):
        comb = _lin([(dp.D[r, j], f"K[{j}, i]") for j in range(16)])
        dl.append(f"{ind}    Fd[{3 + r}, i] = hh * ({comb})")
    return step, "\n".join(dl)


def generate_source(model) -> str:
    """Python/numba source of the model kernels plus the integrator."""
    kern, nk, ntk = _kernel_sources(model)
    step, dense = _dop853_source()
    integ = _INTEGRATOR
    subs = {
        "@DOP_STEP@": step,
        "@DOP_DENSE@": dense,
        "@STIFF@": repr(dp.STIFF_BOUNDARY),
        "@CAP@": repr(dp.STABLE_CAP),
        "@DMAX@": repr(dp.DENSE_MAX),
        "@SAFETY@": repr(dp.SAFETY),
        "@MINF@": repr(dp.MIN_FACTOR),
        "@MAXF@": repr(dp.MAX_FACTOR),
        "@DEXP@": repr(-1.0 / (dp.ERROR_ORDER + 1)),
    }
    for name in (
        "GAM A21 A31 A32 C21 C31 C32 C41 C42 C43 B1 B2 B3 B4 E1 E2 E3 E4 C1X C2X C3X C4X A2X A3X"
    ).split():
        subs[f"@{name}@"] = repr(float(getattr(rb, name)))
    subs["@RORDER@"] = repr(float(rb.ORDER))
    subs["@OK@"] = str(rb.STATUS_OK)
    subs["@SMALL@"] = str(rb.STATUS_STEP_TOO_SMALL)
    subs["@MAXS@"] = str(rb.STATUS_MAX_STEPS)
    subs["@NONFIN@"] = str(rb.STATUS_NONFINITE)
    for k, v in subs.items():
        integ = integ.replace(k, v)
    src = [
        f"# generated by tregsim {GENERATOR_VERSION} for model {model.name}; do not edit",
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        f"NK = {nk}",
        f"NT = {ntk}",
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
        "@njit(cache=True, inline='always', error_model='numpy')",
        "def _pw(b, x):",
        "    # small integer exponents by multiplication (a fixed h_G = 4): the branch is the",
        "    # same for every step of a patient",
        "    if x == 4.0:",
        "        b2 = b * b",
        "        return b2 * b2",
        "    if x == 2.0:",
        "        return b * b",
        "    if x == 3.0:",
        "        return b * b * b",
        "    if x == 8.0:",
        "        b2 = b * b",
        "        b4 = b2 * b2",
        "        return b4 * b4",
        "    return b ** x",
        "",
        *kern,
        integ,
    ]
    return "\n".join(src) + "\n"


# Counters per patient (stats columns): accepted steps, rejected steps, right-hand-side
# evaluations, Jacobian evaluations, method switches.
N_STATS = 5

_INTEGRATOR = """
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


@njit(cache=True, inline='always', error_model="numpy")
def _jbound(J, sc):
    # min of the row-sum and column-sum norms of diag(1/sc) J diag(sc): both bound the
    # spectral radius of J
    ns = sc.shape[0]
    rmax = 0.0
    cmax = 0.0
    for i in range(ns):
        r = 0.0
        c = 0.0
        for j in range(ns):
            r += abs(J[i, j]) * sc[j] / sc[i]
            c += abs(J[j, i]) * sc[i] / sc[j]
        rmax = max(rmax, r)
        cmax = max(cmax, c)
    return min(rmax, cmax)


@njit(cache=True, error_model="numpy")
def _one(method, p, y0, t0, times, dt, da, ds, dc, bp, ncl, atolv, rtol, h0, max_steps, out,
         stats):
    ns = y0.shape[0]
    nt = times.shape[0]
    kd = dt.shape[0]
    kb = bp.shape[0]
    y = y0.copy()
    tl = np.full(max(ncl, 1), -np.inf)
    k = np.empty(NK)
    precompute(p, k)
    tk = np.empty(NT)
    K = np.empty((16, ns))
    Fd = np.empty((7, ns))
    yt = np.empty(ns); ynew = np.empty(ns); y11 = np.empty(ns); sc = np.empty(ns)
    f0 = np.empty(ns); f2 = np.empty(ns); f3 = np.empty(ns); fdt = np.zeros(ns)
    g1 = np.empty(ns); g2 = np.empty(ns); g3 = np.empty(ns); g4 = np.empty(ns)
    b = np.empty(ns)
    J = np.zeros((ns, ns)); A = np.empty((ns, ns)); piv = np.empty(ns, np.int64)
    t = t0
    h = h0
    optr = 0
    dptr = 0
    bptr = 0
    steps = 0
    rej = 0
    nrhs = 0
    njac = 0
    nsw = 0
    stiff = method == 2
    have_f = False
    need_h = True
    clip = False
    last_rej = False
    iasti = 0
    nonsti = 0
    calm = 0
    tend = times[nt - 1] if nt > 0 else t0
    code = @OK@
    while True:
        # events at the current time: doses, then step boundaries, then outputs (post-dose)
        while True:
            if dptr < kd and dt[dptr] <= t:
                y[ds[dptr]] += da[dptr]
                if dc[dptr] >= 0:
                    tl[dc[dptr]] = t
                dptr += 1
                if h > h0:
                    h = h0
                have_f = False
                need_h = True
                continue
            if bptr < kb and bp[bptr] <= t:
                bptr += 1
                continue
            if optr < nt and times[optr] <= t:
                for i in range(ns):
                    out[i, optr] = y[i]
                optr += 1
                continue
            break
        if optr >= nt:
            break
        tstop = times[optr] if (stiff or clip) else tend
        if dptr < kd and dt[dptr] < tstop:
            tstop = dt[dptr]
        if bptr < kb and bp[bptr] < tstop:
            tstop = bp[bptr]
        span = tstop - t
        hit = h >= span
        hh = span if hit else h
        if stiff:
            for i in range(ns):
                for j in range(ns):
                    J[i, j] = 0.0
                fdt[i] = 0.0
            tblock_all(t, p, k, tl, tk)
            all3(t, y, p, k, tl, tk, f0, J, fdt)
            d = 1.0 / (@GAM@ * hh)
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
            for i in range(ns):
                b[i] = f0[i] + hh * @C1X@ * fdt[i]
            _lusolve(A, piv, b, g1)
            for i in range(ns):
                yt[i] = y[i] + @A21@ * g1[i]
            tblock_f(t + @A2X@ * hh, p, k, tl, tk)
            rhs(t + @A2X@ * hh, yt, p, k, tl, tk, f2)
            for i in range(ns):
                b[i] = f2[i] + hh * @C2X@ * fdt[i] + @C21@ * g1[i] / hh
            _lusolve(A, piv, b, g2)
            for i in range(ns):
                yt[i] = y[i] + @A31@ * g1[i] + @A32@ * g2[i]
            tblock_f(t + @A3X@ * hh, p, k, tl, tk)
            rhs(t + @A3X@ * hh, yt, p, k, tl, tk, f3)
            for i in range(ns):
                b[i] = f3[i] + hh * @C3X@ * fdt[i] + (@C31@ * g1[i] + @C32@ * g2[i]) / hh
            _lusolve(A, piv, b, g3)
            for i in range(ns):
                b[i] = f3[i] + hh * @C4X@ * fdt[i] + (@C41@ * g1[i] + @C42@ * g2[i] + @C43@ * g3[i]) / hh
            _lusolve(A, piv, b, g4)
            nrhs += 3
            njac += 1
            en = 0.0
            finite = True
            for i in range(ns):
                ynew[i] = y[i] + @B1@ * g1[i] + @B2@ * g2[i] + @B3@ * g3[i] + @B4@ * g4[i]
                e = @E1@ * g1[i] + @E2@ * g2[i] + @E3@ * g3[i] + @E4@ * g4[i]
                sci = atolv[i] + rtol * max(abs(y[i]), abs(ynew[i]))
                en += (e / sci) ** 2
                if not math.isfinite(ynew[i]):
                    finite = False
            en = math.sqrt(en / ns)
            if not finite or not math.isfinite(en):
                en = math.inf
            ok = en <= 1.0
            fac = 0.9 * max(en, 1e-10) ** (-1.0 / @RORDER@)
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
                if method == 0:
                    # back to the explicit method once it is stable at this step size
                    for i in range(ns):
                        sc[i] = atolv[i] + rtol * abs(y[i])
                    if hnew * _jbound(J, sc) < @CAP@:
                        calm += 1
                    else:
                        calm = 0
                    if calm >= 15:
                        stiff = False
                        have_f = False
                        last_rej = False
                        nsw += 1
                        iasti = 0
                        nonsti = 0
        else:
            if not have_f:
                tblock_f(t, p, k, tl, tk)
                rhs(t, y, p, k, tl, tk, K[0])
                nrhs += 1
                have_f = True
            if need_h:
                # Hairer's initial step (Solving ODEs I, II.4) at the start and after a dose
                need_h = False
                d0 = 0.0
                d1 = 0.0
                for i in range(ns):
                    sc[i] = atolv[i] + rtol * abs(y[i])
                    d0 += (y[i] / sc[i]) ** 2
                    d1 += (K[0, i] / sc[i]) ** 2
                d0 = math.sqrt(d0 / ns)
                d1 = math.sqrt(d1 / ns)
                hi = 0.01 * d0 / d1 if (d0 >= 1e-5 and d1 >= 1e-5) else 1e-6
                hi = min(hi, span)
                for i in range(ns):
                    yt[i] = y[i] + hi * K[0, i]
                tblock_f(t + hi, p, k, tl, tk)
                rhs(t + hi, yt, p, k, tl, tk, K[13])
                nrhs += 1
                d2 = 0.0
                for i in range(ns):
                    d2 += ((K[13, i] - K[0, i]) / sc[i]) ** 2
                d2 = math.sqrt(d2 / ns) / hi
                if max(d1, d2) <= 1e-15:
                    h1 = max(1e-6, hi * 1e-3)
                else:
                    h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
                h = min(100.0 * hi, h1)
                if math.isfinite(h) and h > 0.0:
                    hit = h >= span
                    hh = span if hit else h
                else:
                    h = hh
@DOP_STEP@
            if err5 == 0.0 and err3 == 0.0:
                en = 0.0
            else:
                en = hh * err5 / math.sqrt((err5 + 0.01 * err3) * ns)
            if not finite or not math.isfinite(en):
                en = math.inf
            ok = en <= 1.0
            if ok:
                if en == 0.0:
                    fac = @MAXF@
                else:
                    fac = min(@MAXF@, @SAFETY@ * en ** @DEXP@)
                if last_rej:
                    fac = min(1.0, fac)
                last_rej = False
            else:
                fac = max(@MINF@, @SAFETY@ * en ** @DEXP@)
                last_rej = True
            hnew = hh * fac
            if ok and hit:
                hnew = max(hnew, min(h, hnew * 5.0))
            # Hairer's stiffness estimate h|lambda| (DOP853). Near the stability boundary the
            # error estimate stops controlling the fast components, so the step is capped at
            # @CAP@ (half the boundary); a patient whose step is held down by the cap to less
            # than half of what accuracy allows, 15 times in a row, is stiff
            hlamb = 0.0
            if finite and sden > 0.0:
                hlamb = hh * math.sqrt(snum / sden)
            if finite:
                if hlamb > @CAP@ and hnew > hh * @CAP@ / hlamb:
                    hcap = hh * @CAP@ / hlamb
                    if hnew > 2.0 * hcap:
                        iasti += 1
                        nonsti = 0
                    hnew = hcap
                else:
                    nonsti += 1
                    if nonsti >= 6:
                        iasti = 0
            # the interpolant is trusted only where h|lambda| is small (it does not resolve a
            # fast mode that the step itself damps); otherwise steps stop at the visits
            tnew = tstop if hit else t + hh
            if ok and hlamb > @DMAX@ and optr < nt and times[optr] < tnew:
                ok = False
                clip = True
                last_rej = False
                hnew = hh
            if ok:
                # h|lambda| grows with h: predict the next step's, to stop at visits without
                # a redo
                if hlamb * hnew / hh > @DMAX@:
                    clip = True
                elif clip and hlamb * hnew / hh < 0.5 * @DMAX@:
                    clip = False
                if optr < nt and times[optr] < tnew:
@DOP_DENSE@
                    while optr < nt and times[optr] < tnew:
                        x = (times[optr] - t) / hh
                        for i in range(ns):
                            acc = Fd[6, i] * x
                            acc = (acc + Fd[5, i]) * (1.0 - x)
                            acc = (acc + Fd[4, i]) * x
                            acc = (acc + Fd[3, i]) * (1.0 - x)
                            acc = (acc + Fd[2, i]) * x
                            acc = (acc + Fd[1, i]) * (1.0 - x)
                            acc = (acc + Fd[0, i]) * x
                            out[i, optr] = y[i] + acc
                        optr += 1
                for i in range(ns):
                    y[i] = ynew[i]
                    K[0, i] = K[12, i]
                t = tnew
                steps += 1
            if method == 0 and iasti >= 15:
                stiff = True
                nsw += 1
                iasti = 0
                calm = 0
        if not ok:
            rej += 1
            if hnew < 1e-12 * max(1.0, abs(t)):
                code = @SMALL@
                break
            if not finite and hh < 1e-9 * max(1.0, abs(t)):
                code = @NONFIN@
                break
        h = hnew
        if steps + rej > max_steps:
            code = @MAXS@
            break
    stats[0] = steps
    stats[1] = rej
    stats[2] = nrhs
    stats[3] = njac
    stats[4] = nsw
    return code


@njit(cache=True, parallel=True, error_model="numpy")
def integrate_batch(method, P, Y0, t0, TIMES, DT, DA, DS, DC, BP, ncl, atolv, rtol, h0,
                    max_steps, out, status, stats):
    n = P.shape[0]
    tstep = 0 if TIMES.shape[0] == 1 else 1
    for i in prange(n):
        ti = i * tstep
        status[i] = _one(method, P[i], Y0[i], t0, TIMES[ti], DT[i], DA[i], DS[i], DC[i], BP[i],
                         ncl, atolv, rtol, h0, max_steps, out[i], stats[i])
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
    breaks=None,
    method="auto",
    t0=0.0,
    rtol=1e-7,
    atol=1e-10,
    h0=1e-2,
    max_steps=100_000,
) -> rb.SolveResult:
    """Same contract as :func:`tregsim.solve.rosenbrock.integrate`; ``method`` is one of
    ``"auto"``, ``"explicit"``, ``"rosenbrock"``."""
    mod = model.__dict__.get("_numba_mod")
    if mod is None:
        mod = kernels_for(model)
        model.__dict__["_numba_mod"] = mod
    ns, n = y0.shape
    times = np.atleast_2d(np.asarray(times, dtype=float))
    nt = times.shape[1]
    if breaks is None:
        breaks = np.full((n, 0), np.inf)
    scales = np.array([model.spec.states[s].scale for s in model.state_names])
    out = np.full((n, ns, nt), np.nan)
    status = np.zeros(n, dtype=np.int8)
    stats = np.zeros((n, N_STATS), dtype=np.int64)
    bad = ~np.isfinite(p).all(axis=0) | ~np.isfinite(y0).all(axis=0)
    good = np.flatnonzero(~bad)
    if good.size:
        sub_out = np.full((good.size, ns, nt), np.nan)
        sub_status = np.zeros(good.size, dtype=np.int8)
        sub_stats = np.zeros((good.size, N_STATS), dtype=np.int64)
        tt = times if times.shape[0] == 1 else times[good]
        mod.integrate_batch(
            METHOD_CODES[method],
            np.ascontiguousarray(p[:, good].T),
            np.ascontiguousarray(y0[:, good].T),
            float(t0),
            np.ascontiguousarray(tt),
            np.ascontiguousarray(dose_time[good], dtype=float),
            np.ascontiguousarray(dose_amount[good], dtype=float),
            np.ascontiguousarray(dose_state[good], dtype=np.int64),
            np.ascontiguousarray(dose_clock[good], dtype=np.int64),
            np.ascontiguousarray(breaks[good], dtype=float),
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
    return rb.SolveResult(
        np.moveaxis(out, 0, 1),
        status,
        stats[:, 0],
        stats[:, 1],
        n_rhs=stats[:, 2],
        n_jac=stats[:, 3],
        n_switches=stats[:, 4],
    )
