"""The whitelisted expression parser and model-file validation."""

import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import tregsim
from tregsim.errors import ModelFileError
from tregsim.model import parse_expression, spec_from_dict

SYMS = {n: sp.Symbol(n, real=True) for n in ("a", "b", "c", "t")}
ROOT = Path(__file__).resolve().parents[1]

MALICIOUS = [
    ("__import__('os').system('echo pwned')", "unknown function|call"),
    ("a.__class__", "attribute access"),
    ("a.real", "attribute access"),
    ("(lambda: 1)()", "calls are only allowed|lambda"),
    ("lambda x: x", "lambda"),
    ("a[0]", "subscripts"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("exec('1')", "unknown function 'exec'"),
    ("getattr(a, 'x')", "unknown function 'getattr'"),
    ("exp(x=1)", "keyword arguments"),
    ("d + 1", "unknown name 'd'"),
    ("'text'", "is not a number"),
    ("[a, b]", "lists"),
    ("{a: b}", "dicts"),
    ("(a, b)", "tuples"),
    ("a if b else c", "if-else"),
    ("f'{a}'", "f-strings"),
    ("(y := 3)", "assignment expressions"),
    ("[x for x in a]", "comprehensions"),
    ("9" * 1_000_000, "longer than"),
    ("9" * 40, "more than 30 digits"),
    ("10**10**10", "not finite|fails"),
    ("1e999", "non-finite"),
    ("1/0", "fails"),
    ("a +", "not a valid expression"),
    ("", "empty expression"),
    ("a < b", "comparison is not a value"),
    ("a // b", "FloorDiv"),
    ("a % b", "Mod"),
    ("a @ b", "MatMult"),
    ("not a", "Not"),
    ("a < b < c", "single comparisons"),
    ("exp(a, b)", "takes 1 argument"),
    ("piecewise(a, b)", "takes at least 3"),
    ("-(" * 200 + "a" + ")" * 200, "too deeply nested|nesting deeper"),
    ("exp", "used without arguments"),
    ("True", "is not a number"),
]


@pytest.mark.parametrize(("text", "message"), MALICIOUS, ids=[m[1][:30] for m in MALICIOUS])
def test_rejects_malicious_or_malformed(text, message):
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match=message) as ei:
        parse_expression(text, SYMS, file="models/evil.toml", key="expressions.x")
    assert time.perf_counter() - t0 < 2.0  # no hang, no huge arithmetic
    msg = str(ei.value)
    assert msg.startswith("models/evil.toml: [expressions.x]")
    assert "fix:" in msg


def test_redundant_parentheses_are_harmless():
    assert parse_expression("(" * 150 + "a" + ")" * 150, SYMS) == SYMS["a"]


def test_parses_whitelisted_forms():
    a, b, c, t = (SYMS[k] for k in ("a", "b", "c", "t"))
    assert parse_expression("a + b * c ** 2 - a / b", SYMS) == a + b * c**2 - a / b
    assert parse_expression("exp(-t / a) + log(b) + sqrt(c)", SYMS) == (
        sp.exp(-t / a) + sp.log(b) + sp.sqrt(c)
    )
    assert parse_expression("min(a, b, c)", SYMS) == sp.Min(a, b, c)
    pw = parse_expression("piecewise(a, t < 10, b)", SYMS)
    assert pw == sp.Piecewise((a, t < 10), (b, True))
    assert parse_expression("2 * 3 + 1", SYMS) == 7  # constants folded in floating point
    assert parse_expression(0.5, SYMS) == sp.Float(0.5)


def test_logistic_derivative_matches_sympy_identity():
    x = SYMS["a"]
    e = parse_expression("logistic(a)", SYMS)
    d = sp.diff(e, x)
    ref = sp.diff(1 / (1 + sp.exp(-x)), x)
    for v in (-30.0, -1.0, 0.0, 2.5, 40.0):
        assert float(d.subs(x, v)) == pytest.approx(float(ref.subs(x, v)), rel=1e-12, abs=1e-300)


def _model_doc():
    return tomllib.loads((ROOT / "models" / "treg_t1d.toml").read_text())


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d.update(bogus=1), "bogus", r"unknown key 'bogus'; fix: use one of: .*states"),
        (lambda d: d.pop("schema_version"), "schema_version", "schema_version must be 1"),
        (
            lambda d: d["parameters"]["phi"].update(unit_typo="x"),
            "parameters.phi.unit_typo",
            "unknown key",
        ),
        (
            lambda d: d["parameters"]["phi"].update(value=float("nan")),
            "parameters.phi.value",
            "finite number",
        ),
        (
            lambda d: d["parameters"]["phi"].update(role="free"),
            "parameters.phi.role",
            "role must be one of",
        ),
        (
            lambda d: d["parameters"]["phi"].update(prior={"dist": "cauchy"}),
            "parameters.phi.prior.dist",
            "unknown prior distribution",
        ),
        (
            lambda d: d["parameters"]["phi"].update(prior={"dist": "lognormal", "median": 2}),
            "parameters.phi.prior",
            "needs 'sdlog'",
        ),
        (
            lambda d: d["parameters"]["phi"].update(value=-1.0),
            "parameters.phi.value",
            "outside its prior",
        ),
        (lambda d: d["equations"].pop("M"), "equations", r"no equation for state\(s\) \['M'\]"),
        (
            lambda d: d["equations"].update(B="-lam * B + os.system"),
            "equations.B",
            "attribute access",
        ),
        (
            lambda d: d["expressions"].update(lam="lambda0 * lam"),
            "expressions.lam",
            "circular definition",
        ),
        (lambda d: d["states"]["B"].update(initial="B + 1"), "states.B.initial", "unknown name"),
        (lambda d: d["doses"].update(Q={"unit": "x"}), "doses.Q", "not a state"),
        (
            lambda d: d["observables"]["cpeptide"].update(sigma="nope"),
            "observables.cpeptide.sigma",
            "unknown parameter",
        ),
        (
            lambda d: d["parameters"].update({"exp": {"value": 1, "unit": "1"}}),
            "parameters.exp",
            "invalid name",
        ),
    ],
)
def test_model_file_errors_name_file_field_fix(mutate, field, message):
    doc = _model_doc()
    mutate(doc)
    with pytest.raises(ModelFileError, match=message) as ei:
        spec_from_dict(doc, "models/bad.toml")
    assert f"[{field}]" in str(ei.value)
    assert "fix:" in str(ei.value)


def test_malformed_toml(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("schema_version = 1\nname = \n")
    with pytest.raises(ModelFileError, match="malformed TOML") as ei:
        tregsim.load_model(p)
    assert str(p) in str(ei.value)


def test_unknown_model_name_lists_available():
    with pytest.raises(ModelFileError, match=r"unknown model 'nope'.*treg_t1d"):
        tregsim.load_model("nope")


def test_parameter_overrides_validated():
    m = tregsim.load_model("treg_t1d")
    with pytest.raises(tregsim.ArgumentError, match="unknown parameter 'phii'"):
        m.parameters(3, phii=1.0)
    with pytest.raises(tregsim.ArgumentError, match=r"shape \(3,\)"):
        m.parameters(3, phi=np.ones(4))
