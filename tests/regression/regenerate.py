"""Regenerate ``tests/regression/quick_run_seed0.sha256`` — ONLY on purpose.

Run this when a model or solver change moves the numbers on purpose (and say so in the commit):

    python -m tests.regression.regenerate

It runs ``tregsim run experiments/nct06708780.toml --quick --seed 0`` into a temporary folder
and stores the SHA-256 of every CSV file it wrote, except the files of :data:`BY_VALUE`: their
values are stored instead (``quick_run_seed0/``) and compared with a tolerance, because their
last digits follow the CPU (round 27: glibc's libm picks its exp/log code by the CPU's
features; see docs/regression.md).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "nct06708780.toml"
HASHES = Path(__file__).with_name("quick_run_seed0.sha256")
VALUES = Path(__file__).with_name("quick_run_seed0")
BY_VALUE = {
    # file → prefix of columns left out (the placebo table's own aggregates: read, not computed)
    "cohort/summary.csv": None,
    "natural_history/natural_history.csv": "obs_",
}
"""Quick-run files compared by value: their bytes moved with the machine's CPU at unchanged
code (round 26), by ≤ 1.3·10⁻¹⁴ relative (round 27's measurement)."""
RTOL = ATOL = 1e-9
"""Tolerance of the by-value files: 10⁵ × the CPU-dependent differences measured, and far below
any number a user reads (nmol/L to 4 digits)."""


def _value_file(name: str) -> Path:
    return VALUES / name.replace("/", "__")


def reference_values(out: Path, name: str):
    """The columns of ``out/name`` that are compared by value (a DataFrame)."""
    import pandas as pd

    df = pd.read_csv(out / name)
    drop = BY_VALUE[name]
    return df[[c for c in df.columns if drop is None or not c.startswith(drop)]]


def compare_values(out: Path) -> list[str]:
    """Differences of the by-value files in ``out`` from the stored values: one line per file
    and column that differs (same columns and rows, strings equal, numbers within
    :data:`RTOL` / :data:`ATOL`, NaN where NaN), empty when all agree."""
    import numpy as np
    import pandas as pd

    bad = []
    for name in BY_VALUE:
        got, want = reference_values(out, name), pd.read_csv(_value_file(name))
        if list(got.columns) != list(want.columns) or len(got) != len(want):
            bad.append(f"{name}: columns or rows differ from {_value_file(name).name}")
            continue
        for c in want.columns:
            a, b = got[c].to_numpy(), want[c].to_numpy()
            if a.dtype.kind in "fi" and b.dtype.kind in "fi":
                ok = np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
            else:
                ok = np.array_equal(a.astype(str), b.astype(str))
            if not ok:
                bad.append(f"{name}: column {c}")
    return bad


def quick_run_hashes(out: Path) -> dict[str, str]:
    """Run the quick run into ``out``; relative CSV path → SHA-256 (the files of
    :data:`BY_VALUE` left out)."""
    from tregsim.cli import main

    status = main(["run", str(EXPERIMENT), "--quick", "--seed", "0", "--out", str(out)])
    if status != 0:
        raise SystemExit(f"tregsim run failed with status {status}")
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.csv"))
        if "chunks" not in p.parts and p.relative_to(out).as_posix() not in BY_VALUE
    }


def read_hashes(path: Path = HASHES) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sha, name = line.split()
            out[name] = sha
    return out


def main() -> int:
    import os

    os.chdir(ROOT)  # CSV files name inputs relative to the working folder
    with tempfile.TemporaryDirectory() as tmp:
        hashes = quick_run_hashes(Path(tmp) / "run")
        VALUES.mkdir(exist_ok=True)
        for name in BY_VALUE:
            reference_values(Path(tmp) / "run", name).to_csv(
                _value_file(name), index=False, float_format="%.17g"
            )
    lines = [
        "# SHA-256 of the CSV files of `tregsim run experiments/nct06708780.toml --quick --seed 0`",
        "# regenerate only on purpose: python -m tests.regression.regenerate",
        *(f"{sha}  {name}" for name, sha in hashes.items()),
    ]
    HASHES.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(
        f"wrote {HASHES.relative_to(ROOT)} ({len(hashes)} files) and the values of "
        f"{len(BY_VALUE)} in {VALUES.relative_to(ROOT)}/",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
