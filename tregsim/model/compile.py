"""Compile a :class:`ModelSpec` once into vectorized numpy functions.

The right-hand side, its analytic Jacobian and its time derivative are sympy expressions with
every intermediate substituted, then common-subexpression-eliminated and lambdified *once*
into numpy functions over a batch: states are arrays of shape ``(n_states, n)``, parameters
``(n_params, n)``. The compiled model pickles (it pickles the spec and re-compiles lazily),
so Dask workers can receive it.

The generated code comes from sympy's printer applied to expressions built by the whitelisted
parser; no text from a model file is evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import sympy as sp
from scipy.special import expit

from tregsim.errors import ArgumentError, ModelFileError
from tregsim.model.spec import ModelSpec, load_spec

CLOCK_PREFIX = "_tlast_"
"""Each dose clock ``c`` becomes ``c = t - _tlast_c`` with a per-patient ``_tlast_c``
(time of the latest dose, days; ``-inf`` before the first)."""


def _np_min(*args):
    return np.minimum.reduce(np.broadcast_arrays(*args))


def _np_max(*args):
    return np.maximum.reduce(np.broadcast_arrays(*args))


_MIN = sp.Function("tregsim_min")
_MAX = sp.Function("tregsim_max")
_MODULES = [{"Logistic": expit, "tregsim_min": _np_min, "tregsim_max": _np_max}, "numpy"]


def _numeric_ready(e: sp.Expr) -> sp.Expr:
    """Swap Min/Max for elementwise versions (numpy's amin on a tuple mis-broadcasts)."""
    return e.replace(sp.Min, lambda *a: _MIN(*a)).replace(sp.Max, lambda *a: _MAX(*a))


class ParameterBatch(dict):
    """Parameter values for a batch of ``n`` patients: name → float64 array of shape ``(n,)``."""

    def __init__(self, values: dict[str, np.ndarray], n: int):
        super().__init__(values)
        self.n = int(n)

    def subset(self, idx) -> ParameterBatch:
        """The batch restricted to patients ``idx`` (an index array or boolean mask)."""
        first = next(iter(self.values()))
        m = len(first[idx])
        return ParameterBatch({k: v[idx] for k, v in self.items()}, m)

    def replace(self, **values) -> ParameterBatch:
        """A copy with some parameters replaced (scalars broadcast to ``(n,)``)."""
        out = ParameterBatch(dict(self), self.n)
        for k, v in values.items():
            if k not in self:
                raise ArgumentError(
                    f"unknown parameter {k!r}", field=k, fix=f"use one of {', '.join(sorted(self))}"
                )
            out[k] = np.broadcast_to(np.asarray(v, dtype=float), (self.n,)).copy()
        return out

    @staticmethod
    def concat(batches: list[ParameterBatch]) -> ParameterBatch:
        keys = list(batches[0])
        return ParameterBatch(
            {k: np.concatenate([b[k] for b in batches]) for k in keys}, sum(b.n for b in batches)
        )


@dataclass
class _Kernels:
    rhs: object
    jac: object
    jac_nz: list
    dfdt: object
    dfdt_nz: list
    init: object
    obs: dict


class CompiledModel:
    """A model compiled for batched simulation. Build with :func:`tregsim.load_model`.

    Attributes
    ----------
    spec : the parsed model file.
    state_names, parameter_names, observable_names : tuples of names, in array order.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.state_names = tuple(spec.states)
        self.parameter_names = tuple(spec.parameters)
        self.observable_names = tuple(spec.observables)
        self.clock_names = spec.clocks
        self.dose_targets = tuple(spec.doses)
        self._check_initials()
        self._kernels = None

    # pickling: drop compiled functions, rebuild on demand
    def __getstate__(self):
        d = self.__dict__.copy()
        d["_kernels"] = None
        for k in ("rhs_exprs", "jacobian_exprs", "_numba_mod", "_break_fns"):
            d.pop(k, None)
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)

    def __repr__(self):
        return (
            f"CompiledModel({self.name!r}: {len(self.state_names)} states, "
            f"{len(self.parameter_names)} parameters)"
        )

    # --- symbolic ------------------------------------------------------------------------
    @property
    def _t(self):
        return self.spec.symbols["t"]

    @property
    def _y(self):
        return [self.spec.symbols[s] for s in self.state_names]

    @property
    def _p(self):
        return [self.spec.symbols[p] for p in self.parameter_names]

    @property
    def _clock_last(self):
        return [sp.Symbol(CLOCK_PREFIX + c, real=True) for c in self.clock_names]

    def _timed(self, e: sp.Expr) -> sp.Expr:
        """Expand intermediates and express clocks as ``t - _tlast``."""
        e = self.spec.expand(e)
        subs = {
            self.spec.symbols[c]: self._t - last
            for c, last in zip(self.clock_names, self._clock_last)
        }
        return e.subs(subs) if subs else e

    @cached_property
    def rhs_exprs(self) -> list[sp.Expr]:
        """Right-hand sides with intermediates substituted, in state order."""
        return [self._timed(self.spec.equations[s]) for s in self.state_names]

    @cached_property
    def jacobian_exprs(self) -> sp.Matrix:
        return sp.Matrix(self.rhs_exprs).jacobian(self._y)

    @cached_property
    def clock_break_exprs(self) -> list[tuple[int, sp.Expr]]:
        """Switching points of dose-clock gates, as (clock index, offset after the dose, days).

        For every ``logistic(a)`` or ``Heaviside(a)`` in the right-hand side whose argument is
        linear in a dose clock with parameter-only coefficients, the clock value where the
        argument is 0 (the treg_t1d expansion gate: τ = T_max). The solver puts a step
        boundary there after each dose, so the step control does not straddle the switch
        (``docs/solver.md``)."""
        from tregsim.model.expr import Logistic

        params = set(self._p)
        out: list[tuple[int, sp.Expr]] = []
        for ci, last in enumerate(self._clock_last):
            seen = set()
            for e in self.rhs_exprs:
                for g in e.atoms(Logistic, sp.Heaviside):
                    a = g.args[0]
                    if last not in a.free_symbols:
                        continue
                    slope = sp.diff(a, last)
                    if slope == 0 or not slope.free_symbols <= params:
                        continue
                    # a = slope * (last - t + offset)  ⇒  a = 0 at t - last = offset
                    off = sp.simplify(self._t - last + a / slope)
                    if off.free_symbols <= params and off not in seen:
                        seen.add(off)
                        out.append((ci, off))
        return out

    def clock_breaks(self, p: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Numeric :attr:`clock_break_exprs` for parameters ``p`` (n_params, n): a list of
        (clock index, offsets (n,) in days)."""
        n = p.shape[1]
        fns = self.__dict__.get("_break_fns")
        if fns is None:
            fns = [
                (ci, sp.lambdify(self._p, _numeric_ready(e), modules=_MODULES))
                for ci, e in self.clock_break_exprs
            ]
            self.__dict__["_break_fns"] = fns
        return [(ci, np.broadcast_to(np.asarray(fn(*p), dtype=float), (n,))) for ci, fn in fns]

    def _check_initials(self):
        allowed = set(self._p)
        for s, st in self.spec.states.items():
            e = self.spec.expand(st.initial)
            bad = sorted(str(x) for x in e.free_symbols - allowed)
            if bad:
                raise ModelFileError(
                    f"initial value depends on {bad}, which are not parameters",
                    file=self.spec.path,
                    field=f"states.{s}.initial",
                    fix="write initial values in terms of parameters (and parameter-only expressions)",
                )

    # --- numeric -------------------------------------------------------------------------
    @property
    def kernels(self) -> _Kernels:
        if self._kernels is None:
            self._kernels = self._compile()
        return self._kernels

    def _compile(self) -> _Kernels:
        args = [self._t, *self._y, *self._p, *self._clock_last]
        f = [_numeric_ready(e) for e in self.rhs_exprs]
        rhs = sp.lambdify(args, f, modules=_MODULES, cse=True)
        J = self.jacobian_exprs
        n = len(self.state_names)
        jac_nz = [(i, j) for i in range(n) for j in range(n) if J[i, j] != 0]
        jac = sp.lambdify(
            args, [_numeric_ready(J[i, j]) for i, j in jac_nz] or [0], modules=_MODULES, cse=True
        )
        dt = [sp.diff(e, self._t) for e in self.rhs_exprs]
        dfdt_nz = [i for i in range(n) if dt[i] != 0]
        dfdt = sp.lambdify(
            args, [_numeric_ready(dt[i]) for i in dfdt_nz] or [0], modules=_MODULES, cse=True
        )
        init = sp.lambdify(
            self._p,
            [
                _numeric_ready(self.spec.expand(self.spec.states[s].initial))
                for s in self.state_names
            ],
            modules=_MODULES,
            cse=True,
        )
        obs = {
            o: sp.lambdify(args, _numeric_ready(self._timed(ob.expr)), modules=_MODULES)
            for o, ob in self.spec.observables.items()
        }
        return _Kernels(rhs, jac, jac_nz, dfdt, dfdt_nz, init, obs)

    def rhs(self, t, y: np.ndarray, p: np.ndarray, tlast: np.ndarray | None = None) -> np.ndarray:
        """dy/dt for a batch: ``y`` (n_states, n), ``p`` (n_params, n), ``tlast``
        (n_clocks, n) → (n_states, n). ``t`` is a scalar or (n,) in days."""
        out = np.empty_like(y)
        vals = self.kernels.rhs(t, *y, *p, *(tlast if tlast is not None else ()))
        for i, v in enumerate(vals):
            out[i] = v
        return out

    def jacobian(self, t, y, p, tlast=None) -> np.ndarray:
        """∂f/∂y for a batch, shape (n_states, n_states, n)."""
        ns, n = y.shape
        out = np.zeros((ns, ns, n))
        k = self.kernels
        vals = k.jac(t, *y, *p, *(tlast if tlast is not None else ()))
        for (i, j), v in zip(k.jac_nz, vals):
            out[i, j] = v
        return out

    def dfdt(self, t, y, p, tlast=None) -> np.ndarray:
        """∂f/∂t for a batch (explicit time dependence: covariates, dose clocks), (n_states, n)."""
        out = np.zeros_like(y)
        k = self.kernels
        vals = k.dfdt(t, *y, *p, *(tlast if tlast is not None else ()))
        for i, v in zip(k.dfdt_nz, vals):
            out[i] = v
        return out

    def initial_state(self, p: np.ndarray) -> np.ndarray:
        """Initial states from parameters ``p`` (n_params, n) → (n_states, n)."""
        n = p.shape[1]
        out = np.empty((len(self.state_names), n))
        for i, v in enumerate(self.kernels.init(*p)):
            out[i] = v
        return out

    def observable(self, name: str, t, y, p, tlast=None) -> np.ndarray:
        """Noise-free observable ``name`` for a batch (broadcast over trailing time axes)."""
        v = self.kernels.obs[name](t, *y, *p, *(tlast if tlast is not None else ()))
        return np.broadcast_to(v, np.broadcast(t, y[0]).shape).astype(float, copy=True)

    # --- parameters ----------------------------------------------------------------------
    def defaults(self) -> dict[str, float]:
        """Every parameter's file value, name → float."""
        return {n: p.value for n, p in self.spec.parameters.items()}

    def parameters(self, n: int = 1, **overrides) -> ParameterBatch:
        """A batch of ``n`` patients at the file values, with overrides.

        Each override is a scalar or an array of shape ``(n,)``; names must be declared.
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ArgumentError(
                f"n must be a non-negative integer, got {n!r}",
                field="n",
                fix="pass the number of patients",
            )
        vals = {}
        for name, p in self.spec.parameters.items():
            vals[name] = np.full(n, p.value)
        for k, v in overrides.items():
            if k not in vals:
                raise ArgumentError(
                    f"unknown parameter {k!r} for model {self.name!r}",
                    field=k,
                    fix=f"use one of {', '.join(self.parameter_names)}",
                )
            a = np.asarray(v, dtype=float)
            if a.ndim == 0:
                a = np.full(n, float(a))
            if a.shape != (n,):
                raise ArgumentError(
                    f"{k} must be a scalar or have shape ({n},), got {a.shape}",
                    field=k,
                    fix="pass one value per patient",
                )
            vals[k] = a.copy()
        return ParameterBatch(vals, n)

    def param_matrix(self, params: ParameterBatch) -> np.ndarray:
        """Stack a batch into (n_params, n) in ``parameter_names`` order."""
        missing = [k for k in self.parameter_names if k not in params]
        if missing:
            raise ArgumentError(
                f"parameter batch lacks {missing}",
                field="params",
                fix="build it with model.parameters(n, ...)",
            )
        return np.stack([np.asarray(params[k], dtype=float) for k in self.parameter_names])

    # --- presentation ----------------------------------------------------------------------
    def latex(self) -> str:
        """The model's equations as a LaTeX ``aligned`` block (intermediates, then ODEs)."""
        syms = {s: sp.Symbol(_latex_name(s)) for s in self.spec.symbols}

        def tex(e):
            return sp.latex(
                e.subs({self.spec.symbols[k]: v for k, v in syms.items() if k in self.spec.symbols})
            )

        lines = []
        for n, i in self.spec.intermediates.items():
            lines.append(f"{_latex_name(n)} &= {tex(i.expr)}")
        for s in self.state_names:
            lines.append(rf"\frac{{d{_latex_name(s)}}}{{dt}} &= {tex(self.spec.equations[s])}")
        for o, ob in self.spec.observables.items():
            lines.append(f"{_latex_name(o)} &= {tex(ob.expr)}")
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def describe(self) -> str:
        """Plain-text listing of states, parameters and equations (for `tregsim model show`)."""
        s = self.spec
        out = [f"model {s.name}: {s.title}", ""]
        out.append("states:")
        for st in s.states.values():
            out.append(f"  {st.name:<8} [{st.unit}]  initial = {st.initial_text}  {st.description}")
        out.append("")
        out.append("parameters:")
        for p in s.parameters.values():
            pr = p.prior.describe() if p.prior else "-"
            out.append(
                f"  {p.name:<13} = {p.value:<11.4g} [{p.unit}]  {p.role:<10} prior {pr:<22} {p.source}"
            )
        out.append("")
        out.append("expressions:")
        for i in s.intermediates.values():
            unit = f" [{i.unit}]" if i.unit else ""
            out.append(f"  {i.name} = {i.text}{unit}")
        out.append("")
        out.append("equations:")
        for st in self.state_names:
            out.append(f"  d{st}/dt = {s.equation_texts[st]}")
        if s.doses:
            out.append("")
            out.append("doses:")
            for d in s.doses.values():
                clock = f"; resets clock {d.clock}" if d.clock else ""
                out.append(f"  bolus into {d.state} [{d.unit}]{clock}")
        out.append("")
        out.append("observables:")
        for o in s.observables.values():
            out.append(f"  {o.name} = {o.text} [{o.unit}]  noise {o.noise}")
        return "\n".join(out)


_GREEK = {
    "lambda",
    "gamma",
    "omega",
    "delta",
    "psi",
    "phi",
    "alpha",
    "beta",
    "rho",
    "tau",
    "sigma",
    "eta",
    "chi",
    "mu",
    "epsilon",
    "eps",
    "Phi",
    "kappa",
    "theta",
}


def _latex_name(name: str) -> str:
    base, _, sub = name.partition("_")
    if base == "eps":
        base = "epsilon"
    b = "\\" + base if base in _GREEK else base
    if len(base) > 1 and base not in _GREEK:
        b = r"\mathrm{" + base + "}"
    if sub:
        sub_t = "\\" + sub if sub in _GREEK else sub.replace("_", r"\_")
        return f"{b}_{{{sub_t}}}"
    return b


def compile_model(spec: ModelSpec) -> CompiledModel:
    """Compile a spec (validates initial values; numeric kernels are built on first use)."""
    return CompiledModel(spec)


def _models_dir() -> Path:
    from tregsim.resources import shipped_path

    return shipped_path("models")


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model name in ``models/`` or a path to a model file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or len(p.parts) > 1:
        return p
    cand = _models_dir() / f"{name_or_path}.toml"
    if not cand.exists():
        avail = ", ".join(sorted(x.stem for x in _models_dir().glob("*.toml")))
        raise ModelFileError(
            f"unknown model {str(name_or_path)!r}",
            file=None,
            field="model",
            fix=f"use one of: {avail}, or a path to a .toml model file",
        )
    return cand


_CACHE: dict[tuple[str, float], CompiledModel] = {}


def load_model(name_or_path: str | Path) -> CompiledModel:
    """Load and compile a model by name (``"treg_t1d"``) or path. Cached per file."""
    path = resolve_model_path(name_or_path).resolve()
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    model = compile_model(load_spec(path))
    if key is not None:
        _CACHE[key] = model
    return model


def list_models() -> list[tuple[str, str]]:
    """(name, title) of every model file in ``models/``."""
    out = []
    for p in sorted(_models_dir().glob("*.toml")):
        try:
            out.append((p.stem, load_spec(p).title))
        except ModelFileError as e:
            out.append((p.stem, f"INVALID: {e}"))
    return out


__all__ = ["CompiledModel", "ParameterBatch", "compile_model", "list_models", "load_model", "math"]
