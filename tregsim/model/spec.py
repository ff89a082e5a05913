"""Model files (``models/*.toml``) → a validated :class:`ModelSpec` of sympy expressions.

A model file declares ``schema_version``, ``name``, ``[states.*]``, ``[parameters.*]``,
``[expressions]`` (named intermediates, in any order), ``[equations]`` (one ODE right-hand side
per state), ``[doses.*]`` (which states accept bolus doses, and the clock they reset) and
``[observables.*]`` (with their noise model). See ``docs/model_files.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from tregsim.errors import ModelFileError
from tregsim.model.expr import RESERVED, parse_expression
from tregsim.model.priors import Prior, parse_prior
from tregsim.schema import Table

SCHEMA_VERSION = 1
ROLES = ("fixed", "population", "individual", "covariate")
NOISE_MODELS = ("lognormal", "trialnet", "none")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")

_TOP_KEYS = {
    "schema_version",
    "name",
    "title",
    "description",
    "time_unit",
    "states",
    "parameters",
    "expressions",
    "equations",
    "doses",
    "observables",
    "references",
    "variant_of",
}
_STATE_KEYS = {"unit", "initial", "description", "scale"}
_PARAM_KEYS = {"value", "unit", "role", "prior", "source", "description", "iiv_sd", "latex"}
_EXPR_KEYS = {"expr", "unit", "description", "latex"}
_DOSE_KEYS = {"unit", "clock", "description"}
_OBS_KEYS = {"expr", "unit", "description", "noise", "sigma", "lloq"}


@dataclass(frozen=True)
class State:
    name: str
    unit: str
    initial: sp.Expr
    initial_text: str
    description: str = ""
    scale: float = 1.0  # typical magnitude: absolute tolerance is atol × scale


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    unit: str
    role: str
    prior: Prior | None
    source: str = ""
    description: str = ""
    iiv_sd: str | None = None  # for role "individual": name of the parameter holding the SD


@dataclass(frozen=True)
class Intermediate:
    name: str
    expr: sp.Expr
    text: str
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class DoseTarget:
    state: str
    unit: str
    clock: str | None  # name of the clock symbol reset by each dose (e.g. "tau")
    description: str = ""


@dataclass(frozen=True)
class Observable:
    name: str
    expr: sp.Expr
    text: str
    unit: str
    noise: str = "lognormal"
    sigma: str | None = None  # parameter name of the residual SD (log scale)
    lloq: str | None = None  # parameter name of the lower limit of quantification
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed, validated model. Expressions are sympy over the symbols in ``symbols``."""

    name: str
    path: Path | None
    title: str
    description: str
    states: dict[str, State]
    parameters: dict[str, Parameter]
    intermediates: dict[str, Intermediate]  # in dependency order
    equations: dict[str, sp.Expr]  # state → RHS (may reference intermediates)
    equation_texts: dict[str, str]
    doses: dict[str, DoseTarget]
    observables: dict[str, Observable]
    symbols: dict[str, sp.Symbol] = field(repr=False)
    references: tuple[str, ...] = ()
    variant_of: str | None = None

    @property
    def clocks(self) -> tuple[str, ...]:
        return tuple(d.clock for d in self.doses.values() if d.clock)

    def expand(self, expr: sp.Expr) -> sp.Expr:
        """Substitute every intermediate, so ``expr`` depends only on t, clocks, states, params."""
        subs = {self.symbols[n]: i.expr for n, i in self.intermediates.items()}
        # intermediates are in dependency order: substituting in reverse resolves chains
        for name in reversed(list(self.intermediates)):
            expr = expr.subs(self.symbols[name], subs[self.symbols[name]])
        return expr


def _err(msg, path, key, fix):
    return ModelFileError(msg, file=path, field=key, fix=fix)


def _table(table, path, key) -> Table:
    """``table`` at dotted ``key`` of the model file, validated by :mod:`tregsim.schema`."""
    return Table(table, path, "" if key == "<top level>" else key, ModelFileError)


def _check_keys(table, allowed, path, key):
    _table(table, path, key).check_keys(allowed)


def _str(table, k, path, key, default=""):
    return _table(table, path, key).string(k, default=default)


def _check_name(name, path, key):
    if not _NAME.match(name) or name in RESERVED:
        raise _err(
            f"invalid name {name!r}",
            path,
            key,
            "use letters, digits and _ (starting with a letter), not a reserved word "
            f"({', '.join(sorted(RESERVED))})",
        )


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a model file. Raises ModelFileError naming file, key and fix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _err(
            f"cannot read model file ({e.strerror})",
            path,
            None,
            "check the path, or name a model in models/ (see `tregsim models`)",
        ) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _err(f"malformed TOML ({e})", path, None, "fix the TOML syntax") from None
    return spec_from_dict(doc, path)


def spec_from_dict(doc: dict, path: str | Path | None = None) -> ModelSpec:
    """Validate a model document (the parsed TOML) into a :class:`ModelSpec`."""
    _check_keys(doc, _TOP_KEYS, path, "<top level>")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise _err(
            f"schema_version must be {SCHEMA_VERSION}, got {doc.get('schema_version')!r}",
            path,
            "schema_version",
            f"add schema_version = {SCHEMA_VERSION}",
        )
    if doc.get("time_unit", "day") != "day":
        raise _err(
            f'time_unit must be "day", got {doc.get("time_unit")!r}',
            path,
            "time_unit",
            'tregsim works in days since diagnosis: write time_unit = "day" and rates per day',
        )
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(
            f"name must be an identifier, got {name!r}", path, "name", 'add name = "my_model"'
        )
    for sec in ("states", "parameters", "equations"):
        if not doc.get(sec):
            raise _err(
                f"missing or empty [{sec}]", path, sec, f"declare at least one entry in [{sec}]"
            )

    # --- symbols -------------------------------------------------------------------------
    states_raw: dict = doc["states"]
    params_raw: dict = doc["parameters"]
    exprs_raw: dict = doc.get("expressions", {}) or {}
    doses_raw: dict = doc.get("doses", {}) or {}
    obs_raw: dict = doc.get("observables", {}) or {}
    for sec, tbl in (
        ("states", states_raw),
        ("parameters", params_raw),
        ("expressions", exprs_raw),
        ("doses", doses_raw),
        ("observables", obs_raw),
    ):
        if not isinstance(tbl, dict):
            raise _err(f"[{sec}] must be a table", path, sec, f"write [{sec}.<name>] tables")
    seen: dict[str, str] = {}
    for sec, tbl in (
        ("states", states_raw),
        ("parameters", params_raw),
        ("expressions", exprs_raw),
        ("observables", obs_raw),
    ):
        for n in tbl:
            _check_name(n, path, f"{sec}.{n}")
            if n in seen:
                raise _err(
                    f"name {n!r} declared in both [{seen[n]}] and [{sec}]",
                    path,
                    f"{sec}.{n}",
                    "give each state, parameter and expression its own name",
                )
            seen[n] = sec
    clocks = []
    for d, tbl in doses_raw.items():
        _check_keys(tbl, _DOSE_KEYS, path, f"doses.{d}")
        if d not in states_raw:
            raise _err(
                f"dose target {d!r} is not a state",
                path,
                f"doses.{d}",
                f"use one of the states: {', '.join(states_raw)}",
            )
        c = tbl.get("clock")
        if c is not None:
            if c != "tau" and (not isinstance(c, str) or not _NAME.match(c) or c in seen):
                raise _err(
                    f"invalid clock name {c!r}",
                    path,
                    f"doses.{d}.clock",
                    'use "tau" or a new identifier',
                )
            clocks.append(c)
    symbols = {"t": sp.Symbol("t", real=True)}
    for c in clocks:
        symbols[c] = sp.Symbol(c, real=True)
    for n in (*states_raw, *params_raw, *exprs_raw):
        symbols[n] = sp.Symbol(n, real=True)

    # --- parameters ----------------------------------------------------------------------
    parameters: dict[str, Parameter] = {}
    for n, tbl in params_raw.items():
        key = f"parameters.{n}"
        _check_keys(tbl, _PARAM_KEYS, path, key)
        v = tbl.get("value")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _err(
                f"value must be a finite number, got {v!r}",
                path,
                key + ".value",
                "write value = <number>",
            )
        if "unit" not in tbl:
            raise _err(
                "missing unit", path, key + ".unit", 'write unit = "1/day" (or "1" for none)'
            )
        role = tbl.get("role", "fixed")
        if not isinstance(role, str) or role not in ROLES:
            raise _err(
                f"role must be one of {ROLES}, got {role!r}",
                path,
                key + ".role",
                f"use one of {', '.join(ROLES)}",
            )
        prior = parse_prior(tbl["prior"], file=path, key=key + ".prior") if "prior" in tbl else None
        if role in ("population", "individual") and prior is None and role == "population":
            raise _err(
                "a population parameter needs a prior",
                path,
                key + ".prior",
                'add prior = { dist = "lognormal", median = ..., sdlog = ... }',
            )
        if prior is not None:
            lo, hi = prior.bounds
            if not lo <= float(v) <= hi:
                raise _err(
                    f"value {v} lies outside its prior's support [{lo}, {hi}]",
                    path,
                    key + ".value",
                    "use a value inside the prior's support",
                )
        iiv = tbl.get("iiv_sd")
        if iiv is not None and (not isinstance(iiv, str) or iiv not in params_raw):
            raise _err(
                f"iiv_sd names unknown parameter {iiv!r}",
                path,
                key + ".iiv_sd",
                "name a declared parameter holding the SD of the log",
            )
        parameters[n] = Parameter(
            n,
            float(v),
            _str(tbl, "unit", path, key),
            role,
            prior,
            _str(tbl, "source", path, key),
            _str(tbl, "description", path, key),
            iiv,
        )

    # --- intermediates (any order in the file; resolved topologically) --------------------
    texts: dict[str, tuple[str, str, str]] = {}
    for n, v in exprs_raw.items():
        key = f"expressions.{n}"
        if isinstance(v, dict):
            _check_keys(v, _EXPR_KEYS, path, key)
            if "expr" not in v:
                raise _err("missing expr", path, key + ".expr", 'write expr = "..."')
            texts[n] = (v["expr"], _str(v, "unit", path, key), _str(v, "description", path, key))
        else:
            texts[n] = (v, "", "")
    parsed = {
        n: parse_expression(t, symbols, file=path, key=f"expressions.{n}")
        for n, (t, _, _) in texts.items()
    }
    order: list[str] = []
    state_of: dict[str, int] = {}

    def visit(n, stack):
        if state_of.get(n) == 2:
            return
        if state_of.get(n) == 1:
            cyc = " → ".join([*stack[stack.index(n) :], n])
            raise _err(
                f"circular definition {cyc}",
                path,
                f"expressions.{n}",
                "break the cycle: an expression may not depend on itself",
            )
        state_of[n] = 1
        for s in parsed[n].free_symbols:
            if s.name in parsed:
                visit(s.name, [*stack, n])
        state_of[n] = 2
        order.append(n)

    for n in parsed:
        visit(n, [])
    intermediates = {
        n: Intermediate(n, parsed[n], str(texts[n][0]), texts[n][1], texts[n][2]) for n in order
    }

    # --- states and equations --------------------------------------------------------------
    eqs_raw = doc["equations"]
    if not isinstance(eqs_raw, dict):
        raise _err("[equations] must be a table", path, "equations", 'write <state> = "..."')
    missing = [s for s in states_raw if s not in eqs_raw]
    extra = [s for s in eqs_raw if s not in states_raw]
    if missing:
        raise _err(
            f"no equation for state(s) {missing}",
            path,
            "equations",
            "write one right-hand side per state",
        )
    if extra:
        raise _err(
            f"equation(s) for undeclared state(s) {extra}",
            path,
            "equations",
            f"declare them under [states] or remove; states: {', '.join(states_raw)}",
        )
    no_time = {k: v for k, v in symbols.items() if k not in ("t", *clocks)}
    states: dict[str, State] = {}
    for n, tbl in states_raw.items():
        key = f"states.{n}"
        _table(tbl, path, key).check_keys(_STATE_KEYS, required=("unit", "initial"))
        init = parse_expression(
            tbl["initial"],
            {k: v for k, v in no_time.items() if k not in states_raw},
            file=path,
            key=key + ".initial",
        )
        scale = tbl.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise _err(
                f"scale must be a positive number, got {scale!r}",
                path,
                key + ".scale",
                "write the state's typical magnitude, e.g. scale = 1e7",
            )
        states[n] = State(
            n,
            _str(tbl, "unit", path, key),
            init,
            str(tbl["initial"]),
            _str(tbl, "description", path, key),
            float(scale),
        )
    equations, equation_texts = {}, {}
    for n in states_raw:
        equations[n] = parse_expression(eqs_raw[n], symbols, file=path, key=f"equations.{n}")
        equation_texts[n] = str(eqs_raw[n])

    # --- doses and observables ---------------------------------------------------------------
    for d, t in doses_raw.items():
        if t.get("unit") != states[d].unit:
            raise _err(
                f"dose unit {t.get('unit')!r} differs from the unit of state {d} "
                f"({states[d].unit!r})",
                path,
                f"doses.{d}.unit",
                f'a bolus adds to the state: write unit = "{states[d].unit}"',
            )
    doses = {
        d: DoseTarget(
            d,
            _str(t, "unit", path, f"doses.{d}"),
            t.get("clock"),
            _str(t, "description", path, f"doses.{d}"),
        )
        for d, t in doses_raw.items()
    }
    observables = {}
    for n, tbl in obs_raw.items():
        key = f"observables.{n}"
        _table(tbl, path, key).check_keys(_OBS_KEYS, required=("expr", "unit"))
        if n == "cpeptide" and tbl.get("unit") != "nmol/L":
            raise _err(
                f"the cpeptide observable must be in nmol/L, got {tbl.get('unit')!r}",
                path,
                key + ".unit",
                'MMTT 2-h AUC mean C-peptide is in nmol/L: write unit = "nmol/L"',
            )
        noise = tbl.get("noise", "none")
        if not isinstance(noise, str) or noise not in NOISE_MODELS:
            raise _err(
                f"noise must be one of {NOISE_MODELS}, got {noise!r}",
                path,
                key + ".noise",
                f"use one of {', '.join(NOISE_MODELS)}",
            )
        for k in ("sigma", "lloq"):
            if k in tbl and (not isinstance(tbl[k], str) or tbl[k] not in parameters):
                raise _err(
                    f"{k} names unknown parameter {tbl[k]!r}",
                    path,
                    f"{key}.{k}",
                    "name a declared parameter",
                )
        observables[n] = Observable(
            n,
            parse_expression(tbl["expr"], symbols, file=path, key=key + ".expr"),
            str(tbl["expr"]),
            _str(tbl, "unit", path, key),
            noise,
            tbl.get("sigma"),
            tbl.get("lloq"),
            _str(tbl, "description", path, key),
        )

    refs = doc.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise _err(
            "references must be a list of strings", path, "references", "quote each reference"
        )
    return ModelSpec(
        name=name,
        path=None if path is None else Path(path),
        title=_str(doc, "title", path, "title"),
        description=_str(doc, "description", path, "description"),
        states=states,
        parameters=parameters,
        intermediates=intermediates,
        equations=equations,
        equation_texts=equation_texts,
        doses=doses,
        observables=observables,
        symbols=symbols,
        references=tuple(refs),
        variant_of=doc.get("variant_of"),
    )
