"""One grammar for grids of values, shared by ``tregsim sweep --grid`` and
``tregsim power --n-per-arm``.

``a..b:log:k``  k values log-spaced from a to b (both > 0, inclusive);
``a..b:lin:k``  k values evenly spaced from a to b (inclusive);
``a..b:step``   a, a + step, … up to b (inclusive within 1e-9·step);
``v1,v2,…``     the listed values (a single value is allowed).
"""

from __future__ import annotations

import math
import re

import numpy as np

from tregsim.errors import ArgumentError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUM})\s*\.\.\s*({_NUM})\s*:(.*)$")
GRID_FIX = (
    "write NAME=a..b:log:k (k log-spaced values), NAME=a..b:lin:k (k evenly spaced), "
    "NAME=a..b:step (a, a+step, … ≤ b) or NAME=v1,v2,…"
)
MAX_VALUES = 100_000


def parse_values(text: str, *, field: str, name: str = "grid", fix: str = GRID_FIX):
    """Values of one grid written in the grammar above.

    Returns ``(values, spacing)``: a float array (finite, no duplicates) and ``"log"``,
    ``"linear"`` or ``"list"``. Errors name ``field`` and give ``fix``.
    """

    def bad(problem: str, fix_: str = fix) -> ArgumentError:
        return ArgumentError(problem, field=field, fix=fix_)

    m = _RANGE.match(text)
    try:
        if m:
            a, b, rest = float(m.group(1)), float(m.group(2)), m.group(3).strip()
            parts = [p.strip() for p in rest.split(":")]
            if len(parts) == 2 and parts[0] in ("log", "lin"):
                k = int(parts[1])
                if k < 1 or str(k) != parts[1]:
                    raise ValueError
                if parts[0] == "log":
                    if a <= 0 or b <= 0:
                        raise bad(
                            f"log-spaced grid needs a, b > 0, got {a:g}..{b:g}",
                            "use positive bounds or ':lin:k'",
                        )
                    values, spacing = np.geomspace(a, b, k), "log"
                else:
                    values, spacing = np.linspace(a, b, k), "linear"
            elif len(parts) == 1:
                step = float(parts[0])
                if not step > 0 or b < a:
                    raise bad(f"linear grid needs step > 0 and a ≤ b, got {a:g}..{b:g}:{parts[0]}")
                n = math.floor((b - a) / step + 1e-9) + 1
                if n > MAX_VALUES:
                    raise bad(f"grid {name} would have {n} values", "use a larger step")
                values, spacing = a + step * np.arange(n), "linear"
            else:
                raise ValueError
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
            spacing = "list"
    except ArgumentError:
        raise
    except ValueError as e:
        raise bad(f"cannot parse grid {text!r}") from e
    if values.size == 0:
        raise bad(f"grid {name} {text!r} has no values")
    if not np.all(np.isfinite(values)):
        raise bad(f"grid {name} has non-finite values", "use finite numbers")
    if len(np.unique(values)) != len(values):
        raise bad(f"grid {name} repeats values {values.tolist()}", "list each value once")
    return values.astype(float), spacing
