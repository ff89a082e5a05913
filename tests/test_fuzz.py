"""Fuzzing of the input layers (issue 7, item 4).

Contracts checked on arbitrary input:

* ``tregsim.model.parse_expression`` returns a sympy expression or raises
  :class:`~tregsim.errors.ModelFileError` — nothing else — within a time limit;
* ``tregsim.model.spec_from_dict`` on mutated versions of ``models/treg_t1d.toml`` succeeds or
  raises ``ModelFileError``;
* ``tregsim.experiment.load_experiment`` on mutated versions of
  ``experiments/nct06708780.toml`` (and on arbitrary TOML-ish text) succeeds or raises
  ``ExperimentFileError`` (a ``TregsimError`` subclass is tolerated only where documented).

Hypothesis runs derandomized (``derandomize=True``): the same examples on every machine, so a
CI failure reproduces locally. Known crashers found by this fuzzing are pinned in
``KNOWN_PARSER_CRASHES`` and asserted as strict xfails in ``test_known_parser_crashers``; the
fuzz tests tolerate only those exact failure signatures, so any new crash fails the suite.
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import tomllib
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tregsim.errors import ExperimentFileError, ModelFileError, TregsimError
from tregsim.model import parse_expression, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
MODEL_DOC = tomllib.loads((ROOT / "models" / "treg_t1d.toml").read_text(encoding="utf-8"))
EXP_PATH = ROOT / "experiments" / "nct06708780.toml"
EXP_DOC = tomllib.loads(EXP_PATH.read_text(encoding="utf-8"))

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")  # ast.parse on "1if" etc.

# Reproducible by default (derandomize=True). Deeper runs: TREGSIM_FUZZ_SCALE=20 multiplies
# max_examples; TREGSIM_FUZZ_RANDOM=1 draws fresh random examples (not reproducible).
_SCALE = float(os.environ.get("TREGSIM_FUZZ_SCALE", "1"))
_RANDOM = os.environ.get("TREGSIM_FUZZ_RANDOM", "") not in ("", "0")
FUZZ = settings(
    derandomize=not _RANDOM,
    deadline=timedelta(seconds=5),  # plus a hard SIGALRM limit per call (`time_limit`)
    max_examples=max(1, int(150 * _SCALE)),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
SLOW_FUZZ = settings(FUZZ, max_examples=max(1, int(120 * _SCALE)), deadline=timedelta(seconds=20))

SYMBOLS = {n: sp.Symbol(n) for n in ("B", "S", "E", "phi", "lam", "t", "tau")}

# Failure signatures (exception type, message start) of parser bugs found by this fuzzing,
# reported to the model-layer owner; see test_known_parser_crashers.
# (The TypeErrors of comparisons used as values were fixed at 07:04 and are regression tests.)
KNOWN_PARSER_CRASHES: tuple = ()  # exp(1e308) InvalidOperation: fixed 07:2x


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (main thread, POSIX)."""

    def handler(signum, frame):
        raise Hang(f"took longer than {seconds} s")

    import time

    old = signal.signal(signal.SIGALRM, handler)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # e.g. pytest-timeout's alarm
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer:  # give an enclosing alarm back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 1e-3))


def _known(e: BaseException) -> bool:
    return any(isinstance(e, t) and str(e).startswith(m) for t, m in KNOWN_PARSER_CRASHES)


def check_parse(text) -> None:
    try:
        with time_limit(3.0):
            out = parse_expression(text, SYMBOLS, file="fuzz.toml", key="equations.B")
    except ModelFileError as e:
        assert e.file == "fuzz.toml" and e.field == "equations.B"
        assert e.fix, "a ModelFileError without a fix"
        return
    except Exception as e:
        if _known(e):
            return
        raise AssertionError(f"parse_expression({text!r}) raised {type(e).__name__}: {e}") from e
    assert isinstance(out, sp.Basic), f"parse_expression({text!r}) returned {type(out)}"


# ------------------------------------------------------------------------------ (a) parser
TOKENS = [
    *SYMBOLS,
    "undeclared",
    "__import__",
    "os",
    "__class__",
    "__builtins__",
    "self",
    "x",
    "0",
    "1",
    "2.5",
    "-3",
    "1e308",
    "1e309",
    "1e-320",
    "10",
    "9" * 40,
    "0x1F",
    "1_000",
    "1j",
    "nan",
    "inf",
    "True",
    "None",
    "+",
    "-",
    "*",
    "/",
    "**",
    "//",
    "%",
    "@",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "~",
    "&",
    "|",
    "^",
    "<<",
    ">>",
    "and",
    "or",
    "not",
    "if",
    "else",
    "lambda",
    "for",
    "in",
    "is",
    "yield",
    "await",
    "import",
    ":",
    ":=",
    ",",
    ".",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    '"',
    "'",
    "'abc'",
    "\\",
    "#",
    "\n",
    ";",
    "*args",
    "**kw",
    "x=1",
    "exp",
    "log",
    "sqrt",
    "abs",
    "tanh",
    "logistic",
    "min",
    "max",
    "piecewise",
    "eval",
    "open",
    "getattr",
    "print",
]


@FUZZ
@given(st.text(max_size=200))
def test_parse_arbitrary_text(text):
    check_parse(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25), st.sampled_from(["", " "]))
def test_parse_token_soup(tokens, sep):
    check_parse(sep.join(tokens))


_LEAF = st.one_of(
    st.sampled_from([*sorted(SYMBOLS), "undeclared"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**40), 10**40).map(str),
)
_CMP = st.sampled_from(["<", "<=", ">", ">="])


def _node(kind: str):
    e = st.deferred(lambda: EXPR)
    if kind == "binop":
        return st.builds("({} {} {})".format, e, st.sampled_from(["+", "-", "*", "/", "**"]), e)
    if kind == "cmp":
        return st.builds("({} {} {})".format, e, _CMP, e)
    if kind == "bool":
        c = _node("cmp")
        return st.builds("({} {} {})".format, c, st.sampled_from(["and", "or"]), c)
    if kind == "unary":
        return st.builds("{}{}".format, st.sampled_from(["-", "+"]), e)
    if kind == "call1":
        fn = st.sampled_from(["exp", "log", "sqrt", "abs", "tanh", "logistic"])
        return st.builds("{}({})".format, fn, e)
    if kind == "calln":
        args = st.lists(e, max_size=4).map(", ".join)
        return st.builds("{}({})".format, st.sampled_from(["min", "max"]), args)
    if kind == "piecewise":
        cond = st.one_of(_node("cmp"), _node("bool"), e)
        return st.builds("piecewise({}, {}, {})".format, e, cond, e)
    raise ValueError(kind)


# leaves are drawn half of the time, so trees stay small (hypothesis bounds the size too)
EXPR = st.one_of(
    _LEAF,
    _LEAF,
    *(_node(k) for k in ("binop", "cmp", "bool", "unary", "call1", "calln", "piecewise")),
)


# Nested exp of a constant (exp(exp(1e5))) hangs inside sympy/mpmath where SIGALRM cannot
# interrupt it and memory grows until the OS kills the process: reported and pinned as xfail in
# tests/test_bad_inputs.py::test_model_check_constant_blowup_fails_fast (run in a subprocess).
_NESTED_EXP = re.compile(r"exp\(\s*[-+]?\s*\(*\s*exp\(")


@FUZZ
@given(EXPR)
def test_parse_grammar_expressions(text):
    assume(not _NESTED_EXP.search(text))
    check_parse(text)


@FUZZ
@given(st.integers(1, 5000), st.sampled_from(["(", "-", "exp(", "B**", "+(", "not "]))
def test_parse_deep_nesting_never_hangs_or_crashes(depth, opener):
    closer = ")" if "(" in opener else ""
    check_parse(opener * depth + "B" + closer * depth)


@FUZZ
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.binary(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_parse_non_text_values(value):
    check_parse(value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-(B < 1)", id="unary-minus-of-comparison"),
        pytest.param("(B < 1) < 2", id="comparison-of-comparison"),
        pytest.param("piecewise(1, (B < 1) < S, 2)", id="nested-comparison-in-piecewise"),
    ],
)
def test_comparison_as_value_is_rejected(text):
    """Found by this fuzzing (TypeError, fixed 07:04): now a ModelFileError."""
    with pytest.raises(ModelFileError):
        parse_expression(text, SYMBOLS, file="f.toml", key="k")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("sqrt(-1)", id="sqrt-negative-constant"),
        pytest.param("log(-1)", id="log-negative-constant"),
        pytest.param("log(0)", id="log-zero"),
        pytest.param("B / 0", id="division-by-zero"),
        pytest.param("exp(1e308)", id="exp-overflow"),
        pytest.param("exp(B < 1)", id="function-of-comparison"),
        pytest.param("piecewise(1, B, 2)", id="non-comparison-condition"),
    ],
)
def test_parser_rejects_non_real_constants(text):
    """Found by this fuzzing (accepted as I, zoo, booleans; fixed 07:04)."""
    with pytest.raises(ModelFileError):
        parse_expression(text, SYMBOLS, file="f.toml", key="k")


# ------------------------------------------------------------------------------ mutations
JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["B", "phi", "lognormal", "population", "1/day", "-1", "nan", "t"]),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc, prefix=()):
    """Every key path of a nested dict (lists indexed too)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, base: dict, n_max: int = 3):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, n_max))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["drop", "replace", "insert", "swap_type"]))
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSONISH)
        elif op == "insert":
            if isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(JSONISH)
            else:
                parent.insert(key, draw(JSONISH))
        else:  # same value, other type: "1" for 1, [x] for x, {"x": x} ...
            v = parent[key]
            parent[key] = draw(st.sampled_from([str(v), [v], {"value": v}, None, -1, math.nan]))
    return doc


@SLOW_FUZZ
@given(mutated(MODEL_DOC))
def test_spec_from_dict_mutations(doc):
    try:
        with time_limit(10.0):
            spec_from_dict(doc, "fuzz_model.toml")
        event("accepted")
    except ModelFileError as e:
        event(f"ModelFileError [{(e.field or '').split('.')[0]}]")
        assert e.fix and "fuzz_model.toml" in str(e)


@pytest.mark.parametrize(
    "path, value",
    [
        pytest.param(("parameters", "phi", "prior", "dist"), ["lognormal"], id="prior-dist-list"),
        pytest.param(("parameters", "f_lambda", "iiv_sd"), ["omega_lambda"], id="iiv-sd-list"),
        pytest.param(("observables", "cpeptide", "sigma"), {"a": 1}, id="observable-sigma-table"),
        pytest.param(("observables", "cpeptide", "lloq"), [1], id="observable-lloq-list"),
    ],
)
def test_non_string_names_are_rejected(path, value):
    """Found by this fuzzing (TypeError: unhashable type; fixed 07:04)."""
    doc = copy.deepcopy(MODEL_DOC)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    with pytest.raises(ModelFileError):
        spec_from_dict(doc, "f.toml")


def test_spec_from_dict_unmutated_base_is_valid():
    spec_from_dict(copy.deepcopy(MODEL_DOC), "base.toml")


# ---------------------------------------------------------------- experiment loader
def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) and k.isascii() else _toml_str(k)


def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c.isascii() and c.isprintable() and c not in '"\\':
            out.append(c)
        else:
            out.append(f"\\U{ord(c):08X}")
    return '"' + "".join(out) + '"'


def to_toml(v) -> str:
    """Minimal TOML value writer (inline tables): enough to round-trip fuzzed documents.
    ``None`` has no TOML form and is written as the string "None"."""
    if v is None:
        return '"None"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(to_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {to_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dump_doc(doc: dict) -> str:
    return "".join(f"{_toml_key(k)} = {to_toml(v)}\n" for k, v in doc.items())


def test_toml_writer_round_trips_the_experiment():
    assert tomllib.loads(dump_doc(EXP_DOC)) == EXP_DOC


def _load_experiment_checked(path: Path):
    from tregsim.experiment import load_experiment

    try:
        with time_limit(15.0):
            load_experiment(path)
        event("accepted")
    except ExperimentFileError as e:
        event(f"ExperimentFileError [{(e.field or '').split('.')[0]}]")
        assert e.fix, f"no fix in {e}"
        assert path.name in str(e), f"file not named in {e}"
    except TregsimError as e:  # other subclasses must still name the file and a fix
        raise AssertionError(f"{type(e).__name__} (not ExperimentFileError): {e}") from e


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_experiments")


@SLOW_FUZZ
@given(doc=mutated(EXP_DOC))
def test_load_experiment_mutations(doc, exp_dir):
    p = exp_dir / "fuzz_experiment.toml"
    p.write_text(dump_doc(doc), encoding="utf-8")
    _load_experiment_checked(p)


TOML_TOKENS = [
    "schema_version",
    "model",
    "visits_months",
    "population",
    "arms",
    "[arms.x]",
    "[run]",
    "[population.age]",
    "=",
    " ",
    "\n",
    "1",
    "-1",
    "nan",
    "inf",
    "1e400",
    '"treg_t1d"',
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "true",
    "[[arms]]",
    '"""',
    "#",
    "0",
    "1979-05-27",
    "'",
    "x",
]


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300), st.lists(st.sampled_from(TOML_TOKENS), max_size=40).map("".join)
    )
)
def test_load_experiment_arbitrary_text(text, exp_dir):
    p = exp_dir / "fuzz_text.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_experiment_checked(p)


# ------------------------------------------------------------------ the checks can fail
def test_check_parse_flags_foreign_exceptions(monkeypatch):
    """check_parse fails on anything but a sympy result or ModelFileError."""

    def bad_parser(*a, **k):
        raise KeyError("boom")

    monkeypatch.setitem(globals(), "parse_expression", bad_parser)
    with pytest.raises(AssertionError, match="KeyError"):
        check_parse("B + 1")
    monkeypatch.setitem(globals(), "parse_expression", lambda *a, **k: "not sympy")
    with pytest.raises(AssertionError, match="returned"):
        check_parse("B + 1")


def test_time_limit_catches_a_hang():
    with pytest.raises(Hang), time_limit(0.2):
        while True:
            pass


# ------------------------------------------------------------------ data tables (bonus)
CSV_CELLS = [
    "1",
    "0",
    "-1",
    "2.5",
    "1e400",
    ".",
    "",
    "nan",
    "inf",
    "-inf",
    "x",
    '"a,b"',
    "1e7",
    "0.8",
    "60",
    "true",
    " 1 ",
]


@st.composite
def nonmem_text(draw):
    cols = ["ID", "TIME", "DV", "MDV", "EVID", "AMT"]
    extra = draw(
        st.lists(
            st.sampled_from(["CMT", "BLQ", "AGE", "WT", "SEX", "CPEP0", "CENS", "ID", "junk"]),
            max_size=3,
        )
    )
    header = draw(st.permutations(cols + extra))
    if draw(st.booleans()):
        header = header[: draw(st.integers(1, len(header)))]
    rows = draw(
        st.lists(
            st.lists(st.sampled_from(CSV_CELLS), min_size=len(header), max_size=len(header) + 1),
            max_size=6,
        )
    )
    return "\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n"


@FUZZ
@given(text=st.one_of(nonmem_text(), st.text(max_size=200)))
def test_read_nonmem_and_long_arbitrary_tables(text, exp_dir):
    from tregsim.errors import DataFileError
    from tregsim.interop.nonmem import read_long, read_nonmem

    p = exp_dir / "fuzz_table.csv"
    p.write_text(text, encoding="utf-8")
    for reader in (read_nonmem, read_long):
        try:
            with time_limit(5.0):
                reader(p)
            event(f"{reader.__name__} accepted")
        except DataFileError as e:
            assert e.fix and p.name in str(e), str(e)
            event(f"{reader.__name__} DataFileError")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("log(log(log(log(log(log(2.5)))))) * B", id="nested-log-positive"),
        pytest.param(
            "log(log(log(log(log(log(log(log(log(log(log(log(-584)))))))))))) * B",
            id="nested-log-negative",
        ),
    ],
)
def test_parse_constant_chains_are_fast(text):
    """Found by random fuzzing: a constant expression must be judged within 3 s."""
    with time_limit(3.0):
        try:
            parse_expression(text, SYMBOLS, file="f.toml", key="k")
        except ModelFileError:
            pass
