"""Whitelisted expression parser: text → Python ``ast`` → sympy, never ``eval``.

Allowed: numbers (finite int/float literals), names declared in the model file, ``+ - * / **``,
unary ``-``/``+``, comparisons (only inside ``piecewise``), ``and``/``or``, and the functions in
:data:`FUNCTIONS`. Everything else — attribute access, subscripts, lambdas, calls to undeclared
names, keyword arguments, strings, huge literals — raises :class:`~tregsim.errors.ModelFileError`
naming the file, the key and the offending text.

Numeric sub-expressions are folded in floating point here (so ``10**10**10`` is an overflow
error, not a multi-gigabyte integer computed by sympy).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

import sympy as sp

from tregsim.errors import ModelFileError

MAX_EXPR_CHARS = 2000
MAX_DEPTH = 60
MAX_LITERAL_DIGITS = 30


class Logistic(sp.Function):
    r"""The logistic function :math:`\sigma(x) = 1/(1+e^{-x})`, evaluated stably (expit)."""

    nargs = 1

    def fdiff(self, argindex=1):
        # σ'(x) = σ(x)·σ(−x): same value as σ(1 − σ) without cancellation for large |x|
        x = self.args[0]
        return Logistic(x) * Logistic(-x)

    def _eval_evalf(self, prec):
        return self.rewrite_as_exp()._eval_evalf(prec)

    def _latex(self, printer):
        return r"\sigma\left(" + printer._print(self.args[0]) + r"\right)"

    def rewrite_as_exp(self) -> sp.Expr:
        """The same function as ``1/(1+exp(-x))`` (for SBML and other exporters)."""
        return 1 / (1 + sp.exp(-self.args[0]))


def _piecewise(*args):
    # piecewise(value1, condition1, value2, condition2, ..., otherwise)
    if len(args) < 3 or len(args) % 2 == 0:
        raise ValueError(
            "piecewise takes value1, condition1, [value2, condition2, ...], otherwise "
            f"(an odd number ≥ 3 of arguments), got {len(args)}"
        )
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    for v, c in pairs:
        if not _is_condition(c):
            raise ValueError(f"piecewise condition must be a comparison, got {c}")
        if not _is_value(v):
            raise ValueError(f"piecewise value must be a number or expression, got {v}")
    if not _is_value(args[-1]):
        raise ValueError(f"piecewise otherwise-value must be an expression, got {args[-1]}")
    return sp.Piecewise(*pairs, (args[-1], True))


FUNCTIONS = {
    "exp": (sp.exp, 1),
    "log": (sp.log, 1),
    "sqrt": (sp.sqrt, 1),
    "abs": (sp.Abs, 1),
    "tanh": (sp.tanh, 1),
    "logistic": (Logistic, 1),
    "min": (sp.Min, -2),
    "max": (sp.Max, -2),
    "piecewise": (_piecewise, -3),
}
"""Function name → (sympy constructor, arity; negative = at least that many)."""


def _logistic_float(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


_FLOAT_FUNCS = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "tanh": math.tanh,
    "logistic": _logistic_float,
    "min": min,
    "max": max,
}

RESERVED = frozenset(FUNCTIONS) | {
    "t",
    "tau",
    "and",
    "or",
    "not",
    "lambda",
    "True",
    "False",
    "None",
}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {
    ast.Lt: sp.StrictLessThan,
    ast.LtE: sp.LessThan,
    ast.Gt: sp.StrictGreaterThan,
    ast.GtE: sp.GreaterThan,
}
_DESCRIBE = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambda",
    ast.Call: "this call",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Dict: "dicts",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions",
    ast.IfExp: "if-else expressions (use piecewise)",
    ast.Starred: "star arguments",
    ast.Await: "await",
}


def _fold(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            v = a + b
        elif op == "-":
            v = a - b
        elif op == "*":
            v = a * b
        elif op == "/":
            v = a / b
        else:
            v = math.pow(a, b)
    except (OverflowError, ZeroDivisionError, ValueError) as e:
        raise ValueError(f"constant arithmetic {a} {op} {b} fails ({e})") from None
    if not math.isfinite(v):
        raise ValueError(f"constant arithmetic {a} {op} {b} is not finite")
    return v


def _is_condition(e) -> bool:
    return isinstance(e, (sp.core.relational.Relational, sp.And, sp.Or))


def _is_value(e) -> bool:
    return isinstance(e, sp.Expr) and not _is_condition(e)


def _number(v: float) -> sp.Expr:
    if float(v).is_integer() and abs(v) <= 10_000:
        return sp.Integer(int(v))
    return sp.Float(v)


def parse_expression(
    text: object,
    symbols: Mapping[str, sp.Symbol],
    *,
    file: object = None,
    key: str = "",
) -> sp.Expr:
    """Parse ``text`` into a sympy expression over ``symbols``.

    Parameters
    ----------
    text : the expression (a string, or a plain number).
    symbols : name → sympy Symbol of every name the expression may use.
    file, key : where the text came from, for error messages.

    Raises
    ------
    ModelFileError : anything outside the whitelist, naming ``file``, ``key`` and the text.
    """

    def fail(
        problem: str,
        fix: str = "use numbers, declared names, + - * / ** and "
        "exp, log, sqrt, abs, tanh, logistic, min, max, piecewise",
    ) -> ModelFileError:
        shown = text if len(str(text)) <= 80 else str(text)[:77] + "..."
        return ModelFileError(f"{problem} in expression {shown!r}", file=file, field=key, fix=fix)

    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise fail(
            f"expected an expression string or a number, got {type(text).__name__}",
            "write the expression as a TOML string",
        )
    if isinstance(text, (int, float)):
        if not math.isfinite(float(text)):
            raise fail("non-finite number", "use a finite number")
        return _number(float(text))
    if len(text) > MAX_EXPR_CHARS:
        raise fail(
            f"expression longer than {MAX_EXPR_CHARS} characters", "split it into named expressions"
        )
    if not text.strip():
        raise fail("empty expression", "write an expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise fail(f"not a valid expression ({type(e).__name__}: {e})") from None

    def conv(node: ast.AST, depth: int):
        if depth > MAX_DEPTH:
            raise fail(f"nesting deeper than {MAX_DEPTH}", "split it into named expressions")
        if isinstance(node, ast.Expression):
            return conv(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise fail(f"literal {v!r} is not a number")
            if isinstance(v, int) and len(str(abs(v))) > MAX_LITERAL_DIGITS:
                raise fail(
                    f"integer literal with more than {MAX_LITERAL_DIGITS} digits",
                    "write it in scientific notation, e.g. 1e30",
                )
            if not math.isfinite(float(v)):
                raise fail("non-finite number literal", "use a finite number")
            return _number(float(v))
        if isinstance(node, ast.Name):
            if node.id in symbols:
                return symbols[node.id]
            if node.id in FUNCTIONS:
                raise fail(f"function {node.id!r} used without arguments")
            raise fail(
                f"unknown name {node.id!r}",
                "declare it under [parameters], [states] or [expressions]",
            )
        if isinstance(node, ast.UnaryOp):
            operand = conv(node.operand, depth + 1)
            if not _is_value(operand):
                raise fail(
                    "a comparison is not a value", "use piecewise(value, condition, otherwise)"
                )
            if isinstance(node.op, ast.USub):
                return _number(-float(operand)) if operand.is_Number else -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            raise fail(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise fail(f"operator {type(node.op).__name__} is not allowed")
            a, b = conv(node.left, depth + 1), conv(node.right, depth + 1)
            if not _is_value(a) or not _is_value(b):
                raise fail("comparisons may only appear as piecewise conditions")
            if a.is_Number and b.is_Number:
                try:
                    return _number(_fold(op, float(a), float(b)))
                except ValueError as e:
                    raise fail(str(e), "use finite constants") from None
            return {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "**": lambda: a**b,
            }[op]()
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
                raise fail("only single comparisons <, <=, >, >= are allowed")
            a, b = conv(node.left, depth + 1), conv(node.comparators[0], depth + 1)
            if not _is_value(a) or not _is_value(b):
                raise fail("a comparison can only compare values", "compare two expressions")
            try:
                rel = _CMPOPS[type(node.ops[0])](a, b)
            except TypeError as e:
                raise fail(f"invalid comparison ({e})") from None
            if not _is_condition(rel):
                raise fail(
                    "comparison of constants is always true or false",
                    "compare expressions that depend on names",
                )
            return rel
        if isinstance(node, ast.BoolOp):
            vals = [conv(v, depth + 1) for v in node.values]
            if not all(_is_condition(v) for v in vals):
                raise fail("and/or combine comparisons only")
            return sp.And(*vals) if isinstance(node.op, ast.And) else sp.Or(*vals)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise fail("calls are only allowed to the whitelisted functions by name")
            name = node.func.id
            if name not in FUNCTIONS:
                raise fail(f"call to unknown function {name!r}")
            if node.keywords:
                raise fail(f"keyword arguments in call to {name!r}")
            ctor, arity = FUNCTIONS[name]
            args = [conv(a, depth + 1) for a in node.args]
            if name != "piecewise" and not all(_is_value(a) for a in args):
                raise fail(f"{name} takes values, not comparisons")
            if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
                need = arity if arity > 0 else f"at least {-arity}"
                raise fail(f"{name} takes {need} argument(s), got {len(args)}")
            if name != "piecewise" and all(a.is_Number for a in args):
                # constant call: evaluate in doubles (sympy would work in arbitrary precision,
                # and exp(exp(exp(10.5))) would never finish)
                try:
                    v = _FLOAT_FUNCS[name](*[float(a) for a in args])
                except (OverflowError, ValueError, ZeroDivisionError):
                    raise fail(
                        f"{name} of a constant is not a finite real number",
                        "use arguments inside the function's domain",
                    ) from None
                if not math.isfinite(v):
                    raise fail(f"{name} of a constant is not finite", "use finite constants")
                return _number(v)
            try:
                return ctor(*args)
            except (ValueError, TypeError, ArithmeticError) as e:
                raise fail(f"invalid call to {name}: {type(e).__name__} {e}") from None
        what = _DESCRIBE.get(type(node), type(node).__name__)
        raise fail(f"{what} is not allowed")

    try:
        out = conv(tree, 0)
    except RecursionError:
        raise fail("expression too deeply nested", "split it into named expressions") from None
    except ArithmeticError as e:  # sympy/mpmath on absurd constants, e.g. exp(1e308)
        raise fail(
            f"constant arithmetic fails ({type(e).__name__})", "use finite constants"
        ) from None
    if not _is_value(out):
        raise fail("a comparison is not a value", "use piecewise(value, condition, otherwise)")
    # constant sub-expressions that sympy evaluated: they must be real and finite
    try:
        _check_constants(out)
    except ArithmeticError:
        raise fail(
            "a constant part is complex, infinite or undefined (e.g. log(0), sqrt(-1), exp(1e308))",
            "use arguments inside each function's domain",
        ) from None
    return out


def _check_constants(out) -> None:
    fail = _ConstantError
    if out.has(sp.I, sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise fail("complex")
    for atom in out.atoms(sp.Number):
        try:
            ok = math.isfinite(float(atom))
        except (OverflowError, TypeError, ValueError):
            ok = False
        if not ok:
            raise fail(str(atom))


class _ConstantError(ArithmeticError):
    pass
