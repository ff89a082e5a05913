"""The one schema validator for every TOML file tregsim reads (models, experiments,
calibration configurations).

A :class:`Table` wraps a TOML table at a dotted path of a file and reads typed values from it
(number, integer, string, boolean, lists, sub-tables), range-checked; :class:`Field`
declarations (type, required, default, range, choices) validate a whole table at once with
:meth:`Table.fields`. Every error has the same shape, ``file: [field] problem; fix: …``, and
the error class of the file kind (:class:`~tregsim.errors.ModelFileError`,
:class:`~tregsim.errors.ExperimentFileError`, :class:`~tregsim.errors.ConfigFileError`).
Unknown keys are rejected with the valid ones listed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tregsim.errors import ExperimentFileError, TregsimError

_TYPE_NAMES = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    list: "list",
    dict: "table",
}


@dataclass(frozen=True)
class Field:
    """Declaration of one key of a table.

    type : ``int``, ``float`` (ints accepted), ``str``, ``bool``, ``list`` or ``dict``.
    required : the key must be present; otherwise ``default`` is used.
    lo, hi : inclusive range of a number; choices : allowed strings.
    """

    type: type
    required: bool = False
    default: object = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""


class Table:
    """A TOML table being validated: ``data`` at dotted path ``field`` of ``file``; errors
    are raised as ``error_class`` (default :class:`~tregsim.errors.ExperimentFileError`)."""

    def __init__(
        self,
        data: object,
        file: object,
        field: str,
        error_class: type[TregsimError] = ExperimentFileError,
    ):
        self.file = file
        self.field = field
        self.error_class = error_class
        if not isinstance(data, dict):
            raise self.error(
                f"expected a table, got {type(data).__name__} {data!r}",
                fix="write it as a [section] or an inline { key = value } table",
            )
        self.data = data

    def error(self, problem: str, *, key: str | None = None, fix: str | None = None):
        return self.error_class(problem, file=self.file, field=self.sub(key), fix=fix)

    def fields(
        self, schema: Mapping[str, Field], *, elsewhere: Mapping[str, str] | None = None
    ) -> dict:
        """Validate the table against ``schema`` (key → :class:`Field`): unknown keys (with
        ``elsewhere[key]`` as the fix when the key belongs to another kind of file), missing
        required keys, types, ranges, choices. Returns key → value (defaults filled in)."""
        for k in self.data:
            if k not in schema:
                if elsewhere and k in elsewhere:
                    raise self.error(f"key {k!r} is not used here", key=k, fix=elsewhere[k])
                raise self.error(
                    f"unknown key {k!r}", key=k, fix=f"use one of: {', '.join(sorted(schema))}"
                )
        out = {}
        for k, f in schema.items():
            if k not in self.data:
                if f.required:
                    raise self.error(
                        f"missing required key {k!r}",
                        key=k,
                        fix=f"add `{k} = ...` to [{self.field or 'top level'}]",
                    )
                out[k] = f.default
                continue
            v = self.data[k]
            if f.type is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, f.type) or (f.type in (int, float) and isinstance(v, bool)):
                name = _TYPE_NAMES.get(f.type, f.type.__name__)
                raise self.error(
                    f"expected a {name}, got {type(v).__name__} {v!r}",
                    key=k,
                    fix=f"give a {name}",
                )
            if f.type in (int, float) and (f.lo is not None or f.hi is not None):
                v = self._check_number(v, k, f.lo, f.hi, False, f.unit)
                v = int(v) if f.type is int else v
            if f.choices is not None and v not in f.choices:
                raise self.error(
                    f"unknown value {v!r}", key=k, fix=f"use one of: {', '.join(f.choices)}"
                )
            out[k] = v
        return out

    def sub(self, key: str | None) -> str:
        """Dotted path of ``key`` inside this table."""
        if key is None:
            return self.field
        return f"{self.field}.{key}" if self.field else key

    def check_keys(self, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed = list(allowed)
        for k in self.data:
            if k not in allowed:
                raise self.error(
                    f"unknown key {k!r}", key=k, fix=f"use one of: {', '.join(sorted(allowed))}"
                )
        for k in required:
            if k not in self.data:
                raise self.error(
                    f"missing required key {k!r}",
                    key=k,
                    fix=f"add `{k} = ...` to [{self.field or 'top level'}]",
                )

    def has(self, key: str) -> bool:
        return key in self.data

    def table(self, key: str, default: dict | None = None) -> Table:
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required table {key!r}",
                    key=key,
                    fix=f"add a [{self.sub(key)}] section",
                )
            return Table(default, self.file, self.sub(key), self.error_class)
        return Table(self.data[key], self.file, self.sub(key), self.error_class)

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        unit: str = "",
    ) -> float:
        """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required number {key!r}",
                    key=key,
                    fix=f"add `{key} = <number{' ' + unit if unit else ''}>`",
                )
            return float(default)
        return self._check_number(self.data[key], key, lo, hi, lo_open, unit)

    def _check_number(self, v, key, lo, hi, lo_open, unit) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(
                f"expected a number, got {v!r}",
                key=key,
                fix="write a plain number such as 1.5 or 2e7",
            )
        v = float(v)
        u = f" {unit}" if unit else ""
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]{u}"
        if not math.isfinite(v):
            raise self.error(f"must be finite, got {v}", key=key, fix=f"use a value in {rng}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            rel = ">" if lo_open else "≥"
            raise self.error(
                f"must be {rel} {lo}{u}, got {v}{u}", key=key, fix=f"use a value in {rng}"
            )
        if hi is not None and v > hi:
            raise self.error(f"must be ≤ {hi}{u}, got {v}{u}", key=key, fix=f"use a value in {rng}")
        return v

    def integer(
        self, key: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required integer {key!r}", key=key, fix=f"add `{key} = <integer>`"
                )
            return int(default)
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(
                f"expected an integer, got {v!r}",
                key=key,
                fix="write a whole number without a decimal point",
            )
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(
                f"must be in [{lo}, {hi}], got {v}", key=key, fix=f"use an integer in [{lo}, {hi}]"
            )
        return v

    def string(
        self, key: str, default: str | None = None, choices: Iterable[str] | None = None
    ) -> str:
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required string {key!r}", key=key, fix=f'add `{key} = "..."`'
                )
            return default
        v = self.data[key]
        if not isinstance(v, str):
            raise self.error(f"expected a string, got {v!r}", key=key, fix="quote the value")
        if choices is not None and v not in (choices := list(choices)):
            raise self.error(
                f"unknown value {v!r}", key=key, fix=f"use one of: {', '.join(choices)}"
            )
        return v

    def boolean(self, key: str, default: bool | None = None) -> bool:
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required boolean {key!r}",
                    key=key,
                    fix=f"add `{key} = true` or `false`",
                )
            return default
        v = self.data[key]
        if not isinstance(v, bool):
            raise self.error(
                f"expected true or false, got {v!r}",
                key=key,
                fix="write true or false (lower case, unquoted)",
            )
        return v

    def numbers(
        self,
        key: str,
        default: list | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        increasing: bool = False,
        min_len: int = 1,
        unit: str = "",
    ) -> list[float]:
        """A list of finite numbers, optionally strictly increasing."""
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required list {key!r}", key=key, fix=f"add `{key} = [<numbers>]`"
                )
            return [float(x) for x in default]
        v = self.data[key]
        if not isinstance(v, list):
            raise self.error(
                f"expected a list of numbers, got {v!r}", key=key, fix=f"write `{key} = [1.0, 2.0]`"
            )
        if len(v) < min_len:
            raise self.error(
                f"needs at least {min_len} value(s), got {len(v)}",
                key=key,
                fix=f"list at least {min_len} value(s)",
            )
        out = [self._check_number(x, f"{key}[{i}]", lo, hi, lo_open, unit) for i, x in enumerate(v)]
        if increasing:
            for i in range(1, len(out)):
                if out[i] <= out[i - 1]:
                    raise self.error(
                        f"must be strictly increasing, got {out[i - 1]} then {out[i]}",
                        key=f"{key}[{i}]",
                        fix="sort the values and remove duplicates",
                    )
        return out

    def strings(
        self, key: str, default: list | None = None, choices: Iterable[str] | None = None
    ) -> list[str]:
        if key not in self.data:
            if default is None:
                raise self.error(
                    f"missing required list {key!r}", key=key, fix=f'add `{key} = ["..."]`'
                )
            return list(default)
        v = self.data[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(
                f"expected a list of strings, got {v!r}", key=key, fix=f'write `{key} = ["a", "b"]`'
            )
        if choices is not None:
            choices = list(choices)
            for i, x in enumerate(v):
                if x not in choices:
                    raise self.error(
                        f"unknown value {x!r}",
                        key=f"{key}[{i}]",
                        fix=f"use values from: {', '.join(choices)}",
                    )
        return list(v)
