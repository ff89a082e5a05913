"""Export a tregsim model (and a dose schedule) as SBML Level 3 Version 2.

The exported document is self-contained and simulable by any SBML tool (libRoadRunner,
COPASI, AMICI …):

* every **state** is a non-constant global parameter driven by a rate rule (the ODE right-hand
  side); its initial value is an initial assignment (the model file's ``initial`` expression,
  intermediates expanded), so changing e.g. ``cpep0`` and resetting moves ``B``/``S`` at t = 0;
* every **parameter** is a constant global parameter with its file value;
* every **intermediate** (incl. time-dependent covariates such as ``G(t)``) and every
  **observable** is a non-constant parameter with an assignment rule;
* each **dose clock** ``c`` (``tau``: days since the latest dose) is an assignment rule
  ``c := time - t_last_dose``; ``t_last_dose`` starts at :data:`NEVER_DOSED` (−1e9 days, i.e.
  ``tau`` ≈ +∞ before the first dose);
* each **dose** is an event ``dose_<i>`` with trigger ``time >= dose_<i>_day`` and assignments
  ``X := X + dose_<i>_amount`` and ``t_last_dose := dose_<i>_day``. The clock is reset to the
  *scheduled* day, not to ``time`` at event detection, so the expansion gate uses the dose time
  exactly (root finding may place the event a few ulps late). ``dose_<i>_day`` /
  ``dose_<i>_amount`` are parameters, so a simulator can change them per patient.

Units: time in days (``timeUnits="day"``); unit strings of the model file become SBML unit
definitions where expressible (day, 1/day, year, kg, mg/dL, nmol/L, cells/kg, dimensionless);
every element also carries the original unit string, role, prior and source in its notes and in
a ``tregsim:`` annotation (:data:`ANNOTATION_NS`).

Expressions are printed by :func:`to_l3_formula`, a small sympy → SBML L3 infix printer
(``log`` → ``ln``, ``logistic(x)`` → ``1/(1+exp(-x))``, ``min``/``max`` and sympy ``Piecewise``
→ ``piecewise``), and parsed by libSBML with the model as context, so names such as ``pi`` or
``avogadro`` would refer to model parameters rather than constants.

Requires the ``interop`` extra (``pip install tregsim[interop]``: python-libsbml).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import sympy as sp

from tregsim.errors import ArgumentError, ModelFileError
from tregsim.model.expr import Logistic

SBML_LEVEL = 3
SBML_VERSION = 2
NEVER_DOSED = -1.0e9
"""Initial ``t_last_dose`` (days): the clock ``tau = time - t_last_dose`` is ≈ +∞ before the
first dose (tregsim itself uses exactly +∞; every gate of the shipped models is 0 at both)."""
ANNOTATION_NS = "https://tregsim.org/sbml/1"
ANNOTATION_PREFIX = "tregsim"
COMPARTMENT = "body"
TIME = "time"
_RESERVED_IDS = {TIME}


def _libsbml():
    try:
        import libsbml
    except ImportError as e:  # pragma: no cover - the extra is installed in CI
        raise ImportError("SBML export needs python-libsbml: pip install 'tregsim[interop]'") from e
    return libsbml


# ------------------------------------------------------------------------------ printing
_REL = {
    sp.StrictLessThan: "<",
    sp.LessThan: "<=",
    sp.StrictGreaterThan: ">",
    sp.GreaterThan: ">=",
    sp.Eq: "==",
    sp.Ne: "!=",
}


def _num(x: float) -> str:
    if not math.isfinite(x):
        raise ArgumentError(
            f"non-finite number {x} cannot be written to SBML",
            field="expression",
            fix="use finite constants in the model file",
        )
    s = repr(float(x))
    return f"({s})" if x < 0 else s


def to_l3_formula(expr, names: Mapping[str, str] | None = None) -> str:
    """Print a sympy expression as an SBML Level 3 infix formula (``libsbml.parseL3Formula``).

    Parameters
    ----------
    expr : sympy expression over the model's symbols (``t`` is time in days).
    names : optional symbol name → SBML id renames (``t`` → ``time`` is always applied).

    Every operation is fully parenthesised, so the result does not depend on the L3 parser's
    precedence rules; ``log`` is printed as ``ln`` (the L3 parser reads ``log`` as log10).

    Raises
    ------
    ArgumentError : for functions that have no SBML equivalent.
    """
    names = dict(names or {})
    names.setdefault("t", TIME)

    def p(e) -> str:
        if isinstance(e, sp.Symbol):
            return names.get(e.name, e.name)
        if e is sp.true or e == sp.true:
            return "true"
        if e is sp.false or e == sp.false:
            return "false"
        if e is sp.E:  # not "exponentiale": a model may name a parameter like a constant
            return "exp(1)"
        if e is sp.pi:
            return repr(math.pi)
        if isinstance(e, sp.Integer):
            return f"({int(e)})" if e < 0 else str(int(e))
        if isinstance(e, sp.Rational):
            return f"({int(e.p)}/{int(e.q)})"
        if isinstance(e, sp.Float | sp.NumberSymbol):
            return _num(float(e))
        if e in (sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise ArgumentError(
                f"infinite or undefined constant {e} in {expr}",
                field="expression",
                fix="use finite constants",
            )
        if isinstance(e, sp.Add):
            terms = list(e.as_ordered_terms())
            out = p(terms[0])
            for a in terms[1:]:
                out += f" - {p(-a)}" if a.could_extract_minus_sign() else f" + {p(a)}"
            return f"({out})"
        if isinstance(e, sp.Mul):
            coeff, rest = e.as_coeff_Mul()
            if coeff == -1:
                return f"(-{p(rest)})"
            num, den = [], []
            for a in e.args:
                if isinstance(a, sp.Pow) and a.exp.is_Number and a.exp < 0:
                    den.append(a.base if a.exp == -1 else a.base ** (-a.exp))
                elif isinstance(a, sp.Rational) and not isinstance(a, sp.Integer):
                    if a.p != 1:
                        num.append(sp.Integer(a.p))
                    den.append(sp.Integer(a.q))
                else:
                    num.append(a)
            top = " * ".join(p(a) for a in num) if num else "1"
            if not den:
                return f"({top})"
            bottom = p(den[0]) if len(den) == 1 else "(" + " * ".join(p(a) for a in den) + ")"
            return f"({top} / {bottom})"
        if isinstance(e, sp.Pow):
            b, x = e.args
            if x == sp.Rational(1, 2):
                return f"sqrt({p(b)})"
            if x == -1:
                return f"(1 / {p(b)})"
            return f"({p(b)} ^ {p(x)})"
        if isinstance(e, sp.exp):
            return f"exp({p(e.args[0])})"
        if isinstance(e, sp.log):
            return f"ln({p(e.args[0])})"
        if isinstance(e, sp.Abs):
            return f"abs({p(e.args[0])})"
        if isinstance(e, sp.tanh):
            return f"tanh({p(e.args[0])})"
        if isinstance(e, Logistic):
            return f"(1 / (1 + exp(-{p(e.args[0])})))"
        if isinstance(e, sp.Min | sp.Max):
            op = "<=" if isinstance(e, sp.Min) else ">="
            args = [p(a) for a in e.args]
            out = args[0]
            for a in args[1:]:
                out = f"piecewise({out}, {out} {op} {a}, {a})"
            return out
        if isinstance(e, sp.Piecewise):
            parts = []
            otherwise = None
            for val, cond in e.args:
                if cond is sp.true or cond == sp.true:
                    otherwise = p(val)
                    break
                parts += [p(val), p(cond)]
            if otherwise is not None:
                parts.append(otherwise)
            return "piecewise(" + ", ".join(parts) + ")"
        for cls, op in _REL.items():
            if isinstance(e, cls):
                return f"({p(e.lhs)} {op} {p(e.rhs)})"
        if isinstance(e, sp.And):
            return "(" + " && ".join(p(a) for a in e.args) + ")"
        if isinstance(e, sp.Or):
            return "(" + " || ".join(p(a) for a in e.args) + ")"
        if isinstance(e, sp.Not):
            return f"(!{p(e.args[0])})"
        raise ArgumentError(
            f"{type(e).__name__} in {expr} has no SBML equivalent",
            field="expression",
            fix="use + - * / ** exp log sqrt abs tanh logistic min max piecewise",
        )

    return p(sp.sympify(expr))


# ------------------------------------------------------------------------------ units
# unit string of the model files → (SBML id, [(kind, exponent, scale, multiplier)]).
# kind None = dimensionless (no definition needed).
_UNITS: dict[str, tuple[str, list[tuple[str, float, int, float]] | None]] = {
    "day": ("day", [("second", 1, 0, 86400.0)]),
    "1/day": ("per_day", [("second", -1, 0, 86400.0)]),
    "year": ("year", [("second", 1, 0, 31557600.0)]),  # Julian year, 365.25 days
    "kg": ("kilogram", None),
    "mg/dL": ("mg_per_dL", [("gram", 1, -3, 1.0), ("litre", -1, -1, 1.0)]),
    "nmol/L": ("nmol_per_L", [("mole", 1, -9, 1.0), ("litre", -1, 0, 1.0)]),
    "pmol/L": ("pmol_per_L", [("mole", 1, -12, 1.0), ("litre", -1, 0, 1.0)]),
    "cells/kg": ("cells_per_kg", [("item", 1, 0, 1.0), ("kilogram", -1, 0, 1.0)]),
    "cells": ("cells", [("item", 1, 0, 1.0)]),
    "1": ("dimensionless", None),
}
# unit strings that mean "a pure number" (normalised quantities)
_DIMENSIONLESS = {"1", "fraction of healthy mass", "1 at diagnosis", "R units", ""}


def sbml_unit_id(unit: str) -> str | None:
    """SBML unit id for a model-file unit string, or ``None`` if not expressible."""
    u = unit.strip()
    if u in _DIMENSIONLESS:
        return "dimensionless"
    if u in _UNITS:
        return _UNITS[u][0]
    return None


def _add_unit_definitions(libsbml, model, used: Iterable[str]) -> None:
    kinds = {
        "second": libsbml.UNIT_KIND_SECOND,
        "gram": libsbml.UNIT_KIND_GRAM,
        "litre": libsbml.UNIT_KIND_LITRE,
        "mole": libsbml.UNIT_KIND_MOLE,
        "item": libsbml.UNIT_KIND_ITEM,
        "kilogram": libsbml.UNIT_KIND_KILOGRAM,
    }
    done = set()
    for unit in used:
        if unit not in _UNITS:
            continue
        uid, parts = _UNITS[unit]
        if parts is None or uid in done:
            continue
        done.add(uid)
        ud = model.createUnitDefinition()
        _ok(ud.setId(uid), f"unit definition {uid}")
        ud.setName(unit)
        for kind, exponent, scale, mult in parts:
            u = ud.createUnit()
            u.setKind(kinds[kind])
            u.setExponent(float(exponent))
            u.setScale(int(scale))
            u.setMultiplier(float(mult))


# ------------------------------------------------------------------------------ helpers
def _ok(status: int, what: str) -> None:
    libsbml = _libsbml()
    if status != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise ModelFileError(
            f"libSBML rejected {what} ({libsbml.OperationReturnValue_toString(status)})",
            field=what,
            fix="report this as a tregsim bug",
        )


def _notes(fields: Mapping[str, str]) -> str:
    rows = "".join(f"<p>{escape(k)}: {escape(str(v))}</p>" for k, v in fields.items() if v)
    return f'<body xmlns="http://www.w3.org/1999/xhtml">{rows or "<p/>"}</body>'


def _annotation(kind: str, fields: Mapping[str, str]) -> str:
    attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in fields.items() if v not in (None, ""))
    return (
        f"<annotation><{ANNOTATION_PREFIX}:{kind} xmlns:{ANNOTATION_PREFIX}="
        f'"{ANNOTATION_NS}" {attrs}/></annotation>'
    )


def _prior_text(prior) -> str:
    """``lognormal(median=0.0017, sdlog=0.5)``: the model file's prior, machine-readable."""
    if prior is None:
        return ""
    return f"{prior.dist}(" + ", ".join(f"{k}={v!r}" for k, v in prior.args.items()) + ")"


@dataclass(frozen=True)
class DoseEvent:
    """One bolus dose: ``day`` (days since diagnosis) of ``amount`` (cells/kg) into ``target``."""

    day: float
    amount: float
    target: str = "X"


def dose_events(doses=None, *, days=None, amounts=None, target: str = "X") -> list[DoseEvent]:
    """Normalise a dose schedule for :func:`export_sbml`.

    Accepts a :class:`tregsim.Doses` with a 1-D (same for every patient) or single-row
    schedule, a list of :class:`DoseEvent`, or ``days`` / ``amounts`` sequences (days since
    diagnosis, cells/kg; one amount broadcasts to all days). NaN days (no dose) are dropped.
    """
    if doses is None and days is None:
        return []
    if doses is not None and days is not None:
        raise ArgumentError(
            "give either doses or days/amounts, not both",
            field="doses",
            fix="pass one dose description",
        )
    if doses is not None and not hasattr(doses, "time"):
        out = list(doses)
        if not all(isinstance(d, DoseEvent) for d in out):
            raise ArgumentError(
                "doses must be a tregsim.Doses or a list of DoseEvent",
                field="doses",
                fix="use DoseEvent(day, amount, target)",
            )
        return sorted(out, key=lambda d: d.day)
    if doses is not None:
        t, a = np.asarray(doses.time, float), np.asarray(doses.amount, float)
        if t.ndim == 2:
            if t.shape[0] != 1:
                raise ArgumentError(
                    f"an SBML file holds one dose schedule, got {t.shape[0]} patients' schedules",
                    field="doses",
                    fix="export one patient's doses (Doses with 1-D arrays)",
                )
            t, a = t[0], a[0]
        target = doses.target
    else:
        t = np.atleast_1d(np.asarray(days, dtype=float))
        a = np.atleast_1d(np.asarray(1.0 if amounts is None else amounts, dtype=float))
        if amounts is None:
            raise ArgumentError(
                "dose days given without amounts",
                field="amounts",
                fix="give the dose in cells/kg (e.g. --dose-per-kg 2e7)",
            )
        if a.size == 1:
            a = np.full(t.shape, float(a[0]))
        if a.shape != t.shape:
            raise ArgumentError(
                f"{t.size} dose days but {a.size} amounts",
                field="amounts",
                fix="give one amount, or one per dose day",
            )
    out = []
    for day, amt in zip(t, a):
        if np.isnan(day):
            continue
        if not np.isfinite(day):
            raise ArgumentError(
                f"dose day must be finite, got {day}", field="days", fix="use days since diagnosis"
            )
        if not (np.isfinite(amt) and amt >= 0):
            raise ArgumentError(
                f"dose amount must be finite and ≥ 0 cells/kg, got {amt}",
                field="amounts",
                fix="use a non-negative dose in cells/kg",
            )
        out.append(DoseEvent(float(day), float(amt), target))
    return sorted(out, key=lambda d: d.day)


def clock_parameter(clock: str, n_clocks: int) -> str:
    """SBML id of the 'time of the latest dose' parameter for ``clock``."""
    return "t_last_dose" if n_clocks == 1 else f"t_last_dose_{clock}"


# ------------------------------------------------------------------------------ export
def build_sbml_document(model, doses=None):
    """Build the libSBML ``SBMLDocument`` of ``model`` (a CompiledModel or ModelSpec).

    Parameters
    ----------
    model : :class:`tregsim.CompiledModel` (or its ``.spec``).
    doses : anything :func:`dose_events` accepts (one schedule), or ``None``.
    """
    libsbml = _libsbml()
    spec = getattr(model, "spec", model)
    events = dose_events(doses)
    clocks = spec.clocks
    tlast = {c: clock_parameter(c, len(clocks)) for c in clocks}
    generated = {COMPARTMENT, *tlast.values()}
    for i in range(len(events)):
        generated |= {f"dose_{i + 1}", f"dose_{i + 1}_day", f"dose_{i + 1}_amount"}
    declared = (
        set(spec.states)
        | set(spec.parameters)
        | set(spec.intermediates)
        | set(spec.observables)
        | set(clocks)
    )
    clash = sorted(declared & (generated | _RESERVED_IDS))
    if clash:
        raise ModelFileError(
            f"name(s) {clash} clash with identifiers the SBML export needs",
            file=spec.path,
            field="parameters",
            fix="rename them in the model file",
        )
    for ev in events:
        if ev.target not in spec.doses:
            raise ArgumentError(
                f"model {spec.name!r} does not accept doses into {ev.target!r}",
                field="doses.target",
                fix=f"use one of {', '.join(spec.doses) or '(none)'}",
            )

    doc = libsbml.SBMLDocument(SBML_LEVEL, SBML_VERSION)
    m = doc.createModel()
    _ok(m.setId(spec.name), "model id")
    m.setName(spec.title or spec.name)
    m.setTimeUnits("day")
    notes = {
        "tregsim model": spec.name,
        "description": " ".join(spec.description.split()),
        "time": "days since diagnosis (t = 0 = diagnosis and insulin start)",
    }
    for i, r in enumerate(spec.references):
        notes[f"reference {i + 1}"] = r
    if events:
        notes["doses"] = "; ".join(
            f"{e.amount:g} cells/kg into {e.target} at day {e.day:g}" for e in events
        )
    m.setNotes(_notes(notes))

    units_used = {"day", "1/day"}
    units_used |= {p.unit for p in spec.parameters.values()}
    units_used |= {s.unit for s in spec.states.values()}
    units_used |= {i.unit for i in spec.intermediates.values()}
    units_used |= {o.unit for o in spec.observables.values()}
    units_used |= {d.unit for d in spec.doses.values()}
    _add_unit_definitions(libsbml, m, units_used)

    c = m.createCompartment()
    c.setId(COMPARTMENT)
    c.setName("the patient (no species; states are parameters with rate rules)")
    c.setSize(1.0)
    c.setConstant(True)
    c.setSpatialDimensions(3.0)
    c.setUnits("dimensionless")

    def add_param(pid, value, unit, constant, note_fields, ann_kind):
        p = m.createParameter()
        _ok(p.setId(pid), f"parameter {pid}")
        if value is not None:
            p.setValue(float(value))
        p.setConstant(constant)
        uid = sbml_unit_id(unit or "")
        if uid is not None and unit:
            p.setUnits(uid)
        fields = {"unit": unit or "(not given)", **note_fields}
        if unit and uid is None:
            fields["unit note"] = "not expressible as an SBML unit definition"
        _ok(p.setNotes(_notes(fields)), f"notes of {pid}")
        _ok(
            p.setAnnotation(_annotation(ann_kind, {"unit": unit, **note_fields})),
            f"annotation of {pid}",
        )
        return p

    # parameters (constants) first, so formula parsing sees every id
    for pr in spec.parameters.values():
        add_param(
            pr.name,
            pr.value,
            pr.unit,
            True,
            {
                "role": pr.role,
                "prior": _prior_text(pr.prior),
                "iiv_sd": pr.iiv_sd or "",
                "source": pr.source,
                "description": pr.description,
            },
            "parameter",
        )
    defaults = {k: p.value for k, p in spec.parameters.items()}
    sym = spec.symbols
    for s, st in spec.states.items():
        init = spec.expand(st.initial)
        try:
            v0 = float(init.subs({sym[k]: v for k, v in defaults.items()}))
        except (TypeError, ValueError):
            v0 = None
        add_param(
            s,
            v0,
            st.unit,
            False,
            {
                "kind": "state (rate rule)",
                "initial": st.initial_text,
                "description": st.description,
            },
            "state",
        )
    for n, it in spec.intermediates.items():
        add_param(
            n,
            None,
            it.unit,
            False,
            {
                "kind": "intermediate (assignment rule)",
                "expression": it.text,
                "description": it.description,
            },
            "expression",
        )
    for cl in clocks:
        targets = ", ".join(d.state for d in spec.doses.values() if d.clock == cl)
        add_param(
            tlast[cl],
            NEVER_DOSED,
            "day",
            False,
            {
                "kind": "time of the latest dose (set by dose events)",
                "description": f"days since diagnosis of the latest dose into {targets}; "
                f"{NEVER_DOSED:g} = never dosed",
            },
            "dose_clock_origin",
        )
        add_param(
            cl,
            None,
            "day",
            False,
            {
                "kind": "dose clock (assignment rule)",
                "description": f"days since the latest dose into {targets}",
            },
            "dose_clock",
        )
    for o, ob in spec.observables.items():
        add_param(
            o,
            None,
            ob.unit,
            False,
            {
                "kind": "observable (assignment rule)",
                "expression": ob.text,
                "noise": ob.noise,
                "sigma": ob.sigma or "",
                "lloq": ob.lloq or "",
                "description": ob.description,
            },
            "observable",
        )
    for i, ev in enumerate(events, start=1):
        add_param(
            f"dose_{i}_day",
            ev.day,
            "day",
            True,
            {"kind": "dose time", "description": f"day of dose {i} into {ev.target}"},
            "dose_day",
        )
        add_param(
            f"dose_{i}_amount",
            ev.amount,
            spec.doses[ev.target].unit,
            True,
            {"kind": "dose amount", "description": f"amount of dose {i} into {ev.target}"},
            "dose_amount",
        )

    settings = libsbml.L3ParserSettings(
        m,
        libsbml.L3P_PARSE_LOG_AS_LN,
        libsbml.L3P_EXPAND_UNARY_MINUS,
        libsbml.L3P_NO_UNITS,
        libsbml.L3P_AVOGADRO_IS_CSYMBOL,
        libsbml.L3P_COMPARE_BUILTINS_CASE_SENSITIVE,
    )

    def math_of(expr, what):
        text = to_l3_formula(expr)
        ast = libsbml.parseL3FormulaWithSettings(text, settings)
        if ast is None:
            raise ModelFileError(
                f"cannot convert {what} to MathML: {libsbml.getLastParseL3Error()} in {text!r}",
                file=spec.path,
                field=what,
                fix="report this as a tregsim bug",
            )
        return ast

    for s, st in spec.states.items():
        ia = m.createInitialAssignment()
        ia.setSymbol(s)
        _ok(
            ia.setMath(math_of(spec.expand(st.initial), f"states.{s}.initial")),
            f"initial assignment of {s}",
        )
    for n, it in spec.intermediates.items():
        r = m.createAssignmentRule()
        r.setVariable(n)
        _ok(r.setMath(math_of(it.expr, f"expressions.{n}")), f"rule of {n}")
    for cl in clocks:
        r = m.createAssignmentRule()
        r.setVariable(cl)
        _ok(
            r.setMath(math_of(sp.Symbol("t") - sp.Symbol(tlast[cl]), f"doses.{cl}")),
            f"rule of {cl}",
        )
    for o, ob in spec.observables.items():
        r = m.createAssignmentRule()
        r.setVariable(o)
        _ok(r.setMath(math_of(ob.expr, f"observables.{o}.expr")), f"rule of {o}")
    for s in spec.states:
        r = m.createRateRule()
        r.setVariable(s)
        _ok(r.setMath(math_of(spec.equations[s], f"equations.{s}")), f"rate rule of {s}")

    for i, ev in enumerate(events, start=1):
        e = m.createEvent()
        e.setId(f"dose_{i}")
        e.setName(f"{ev.amount:g} {spec.doses[ev.target].unit} into {ev.target} at day {ev.day:g}")
        e.setUseValuesFromTriggerTime(True)
        tr = e.createTrigger()
        tr.setInitialValue(False)  # a dose at t0 fires at t0
        tr.setPersistent(True)
        tr.setMath(math_of(sp.Symbol("t") >= sp.Symbol(f"dose_{i}_day"), f"dose_{i}.trigger"))
        a = e.createEventAssignment()
        a.setVariable(ev.target)
        a.setMath(math_of(sp.Symbol(ev.target) + sp.Symbol(f"dose_{i}_amount"), f"dose_{i}.amount"))
        cl = spec.doses[ev.target].clock
        if cl:
            a2 = e.createEventAssignment()
            a2.setVariable(tlast[cl])
            # the scheduled day, not `time` at detection: the gate clock starts exactly there
            a2.setMath(math_of(sp.Symbol(f"dose_{i}_day"), f"dose_{i}.clock"))
    return doc


def check_sbml(doc_or_xml) -> tuple[list[str], list[str]]:
    """Run libSBML's full consistency checks; returns (errors, warnings) as message lines."""
    libsbml = _libsbml()
    doc = doc_or_xml
    if isinstance(doc_or_xml, str | bytes):
        text = doc_or_xml.decode() if isinstance(doc_or_xml, bytes) else doc_or_xml
        doc = libsbml.readSBMLFromString(text)
    doc.checkConsistency()
    errors, warnings = [], []
    for i in range(doc.getNumErrors()):
        err = doc.getError(i)
        line = (
            f"{err.getSeverityAsString()} {err.getErrorId()} line {err.getLine()}: "
            f"{' '.join(err.getMessage().split())}"
        )
        (errors if err.getSeverity() >= libsbml.LIBSBML_SEV_ERROR else warnings).append(line)
    return errors, warnings


def export_sbml(model, path: str | os.PathLike | None = None, *, doses=None) -> str:
    """SBML L3V2 text of ``model`` with ``doses`` as events; written atomically to ``path``.

    Parameters
    ----------
    model : a :class:`tregsim.CompiledModel` (``tregsim.load_model("treg_t1d")``).
    path : output file (``.xml``), or ``None`` to only return the text.
    doses : one dose schedule (see :func:`dose_events`), cells/kg at days since diagnosis.

    Raises
    ------
    ModelFileError : if libSBML's consistency checks report an error (nothing is written).
    """
    libsbml = _libsbml()
    doc = build_sbml_document(model, doses)
    errors, _ = check_sbml(doc)
    if errors:
        spec = getattr(model, "spec", model)
        raise ModelFileError(
            f"the exported SBML fails libSBML's checks: {errors[0]}",
            file=spec.path,
            field="sbml",
            fix="report this as a tregsim bug",
        )
    text = libsbml.writeSBMLToString(doc)
    if path is not None:
        from tregsim.io import write_text

        write_text(path, text)
    return text


__all__ = [
    "ANNOTATION_NS",
    "NEVER_DOSED",
    "DoseEvent",
    "build_sbml_document",
    "check_sbml",
    "clock_parameter",
    "dose_events",
    "export_sbml",
    "sbml_unit_id",
    "to_l3_formula",
]
