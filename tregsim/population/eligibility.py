"""Eligibility rules over covariates: structured data, never evaluated code.

A rule is one of

* ``{ covariate = "age", min = 8.0, max = 65.0 }`` — inclusive range (either bound optional);
* ``{ covariate = "aab_positive", equals = true }`` — equality (numbers or booleans);
* ``{ covariate = "sex", in = [0, 1] }`` — membership;
* ``{ any_of = [rule, ...] }`` / ``{ all_of = [rule, ...] }`` — or / and.

``[eligibility] all_of = [...]`` lists the top-level rules (all must hold);
``min_acceptance`` (default 0.001) is the acceptance rate below which the experiment is
rejected as "nearly nobody eligible".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tregsim.population.distributions import COVARIATE_UNITS, COVARIATES
from tregsim.schema import Table


@dataclass(frozen=True)
class Range:
    covariate: str
    min: float | None = None
    max: float | None = None

    def __call__(self, cov: dict) -> np.ndarray:
        x = np.asarray(cov[self.covariate], dtype=float)
        ok = np.ones(x.shape, bool)
        if self.min is not None:
            ok &= x >= self.min
        if self.max is not None:
            ok &= x <= self.max
        return ok

    def describe(self) -> str:
        u = COVARIATE_UNITS[self.covariate]
        if self.min is not None and self.max is not None:
            return f"{self.min} ≤ {self.covariate} ≤ {self.max} {u}"
        if self.min is not None:
            return f"{self.covariate} ≥ {self.min} {u}"
        return f"{self.covariate} ≤ {self.max} {u}"


@dataclass(frozen=True)
class OneOf:
    covariate: str
    values: tuple

    def __call__(self, cov: dict) -> np.ndarray:
        x = np.asarray(cov[self.covariate])
        return np.isin(x.astype(float), np.asarray(self.values, dtype=float))

    def describe(self) -> str:
        if len(self.values) == 1:
            return f"{self.covariate} = {self.values[0]}"
        return f"{self.covariate} in {list(self.values)}"


@dataclass(frozen=True)
class AnyOf:
    rules: tuple

    def __call__(self, cov: dict) -> np.ndarray:
        out = self.rules[0](cov)
        for r in self.rules[1:]:
            out = out | r(cov)
        return out

    def describe(self) -> str:
        return "(" + " or ".join(r.describe() for r in self.rules) + ")"


@dataclass(frozen=True)
class AllOf:
    rules: tuple

    def __call__(self, cov: dict) -> np.ndarray:
        n = len(next(iter(cov.values())))
        out = np.ones(n, bool)
        for r in self.rules:
            out &= r(cov)
        return out

    def describe(self) -> str:
        if not self.rules:
            return "everyone"
        return " and ".join(r.describe() for r in self.rules)


@dataclass(frozen=True)
class Eligibility:
    rule: AllOf
    min_acceptance: float = 1e-3

    def __call__(self, cov: dict) -> np.ndarray:
        """Boolean mask ``(n,)`` of eligible candidates."""
        return self.rule(cov)

    def describe(self) -> str:
        return self.rule.describe()


def _parse_rule(t: Table):
    if t.has("any_of") or t.has("all_of"):
        key = "any_of" if t.has("any_of") else "all_of"
        t.check_keys((key,))
        items = t.data[key]
        if not isinstance(items, list) or not items:
            raise t.error(
                "expected a non-empty list of rules",
                key=key,
                fix=f'write {key} = [{{ covariate = "age", min = 8 }}, ...]',
            )
        rules = tuple(
            _parse_rule(Table(r, t.file, t.sub(f"{key}[{i}]"))) for i, r in enumerate(items)
        )
        return AnyOf(rules) if key == "any_of" else AllOf(rules)
    t.check_keys(("covariate", "min", "max", "equals", "in"), required=("covariate",))
    name = t.string("covariate", choices=COVARIATES)
    kinds = [k for k in ("equals", "in") if t.has(k)]
    has_range = t.has("min") or t.has("max")
    if (len(kinds) + has_range) != 1:
        raise t.error(
            "a rule needs exactly one of min/max, equals, in",
            fix="split it into separate rules inside all_of / any_of",
        )
    if has_range:
        lo = t.number("min") if t.has("min") else None
        hi = t.number("max") if t.has("max") else None
        if lo is not None and hi is not None and hi < lo:
            raise t.error(
                f"max ({hi}) < min ({lo}): nobody can be eligible",
                key="max",
                fix="swap min and max",
            )
        return Range(name, lo, hi)
    raw = t.data["equals"] if kinds[0] == "equals" else t.data["in"]
    vals = [raw] if kinds[0] == "equals" else raw
    if (
        not isinstance(vals, list)
        or not vals
        or not all(isinstance(v, bool | int | float) for v in vals)
    ):
        raise t.error(
            f"expected a number, boolean or list of them, got {raw!r}",
            key=kinds[0],
            fix="write equals = true or in = [0, 1]",
        )
    if name in BOOLEAN_COVARIATES and not all(isinstance(v, bool) or v in (0, 1) for v in vals):
        raise t.error(
            f"{name} is true/false, got {raw!r}",
            key=kinds[0],
            fix=f"write equals = true (or false) for {name}",
        )
    return OneOf(name, tuple(float(v) for v in vals))


BOOLEAN_COVARIATES = ("aab_positive",)


def parse_eligibility(t: Table) -> Eligibility:
    """Parse ``[eligibility]``."""
    t.check_keys(("all_of", "min_acceptance"))
    rules = t.data.get("all_of", [])
    if not isinstance(rules, list):
        raise t.error(
            "expected a list of rules",
            key="all_of",
            fix='write all_of = [{ covariate = "age", min = 8 }]',
        )
    parsed = tuple(
        _parse_rule(Table(r, t.file, t.sub(f"all_of[{i}]"))) for i, r in enumerate(rules)
    )
    return Eligibility(AllOf(parsed), t.number("min_acceptance", default=1e-3, lo=0.0, hi=1.0))
