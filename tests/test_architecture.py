"""The layering of docs/architecture.md holds (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contracts_are_kept():
    # the console script beside this interpreter (a venv that is not activated), else PATH
    beside = Path(sys.executable).with_name("lint-imports")
    exe = str(beside) if beside.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed (pip install -e '.[test]')")
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "0 broken" in r.stdout


def _strongly_connected(adj: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in adj:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycle():
    """No two tregsim modules import each other, directly or through others (imports inside
    functions count)."""
    import grimp  # ships with import-linter (the test extra)

    g = grimp.build_graph("tregsim")
    adj = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    assert _strongly_connected(adj) == []


def test_cycle_finder_finds_a_cycle():
    adj = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _strongly_connected(adj) == [["a", "b", "c"]]
