"""Regenerate ``tests/regression/quick_run_seed0.sha256`` — ONLY on purpose.

Run this when a model or solver change moves the numbers on purpose (and say so in the commit):

    python -m tests.regression.regenerate

It runs ``tregsim run experiments/nct06708780.toml --quick --seed 0`` into a temporary folder
and stores the SHA-256 of every CSV file it wrote (see docs/regression.md).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "nct06708780.toml"
HASHES = Path(__file__).with_name("quick_run_seed0.sha256")


def quick_run_hashes(out: Path) -> dict[str, str]:
    """Run the quick run into ``out``; relative CSV path → SHA-256."""
    from tregsim.cli import main

    status = main(["run", str(EXPERIMENT), "--quick", "--seed", "0", "--out", str(out)])
    if status != 0:
        raise SystemExit(f"tregsim run failed with status {status}")
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.csv"))
        if "chunks" not in p.parts
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
    lines = [
        "# SHA-256 of the CSV files of `tregsim run experiments/nct06708780.toml --quick --seed 0`",
        "# regenerate only on purpose: python -m tests.regression.regenerate",
        *(f"{sha}  {name}" for name, sha in hashes.items()),
    ]
    HASHES.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {HASHES.relative_to(ROOT)} ({len(hashes)} files)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
