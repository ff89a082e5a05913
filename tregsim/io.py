"""Atomic file writes, content hashes and run manifests.

Every output folder of tregsim carries ``manifest.json``: the command line, seed, hashes of
the model / experiment / data files that went in, and the versions of the packages used.
Files are written atomically (temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1

_VERSIONED = (
    "tregsim",
    "numpy",
    "scipy",
    "sympy",
    "xarray",
    "matplotlib",
    "SALib",
    "dask",
    "distributed",
    "torch",
    "sbi",
    "arviz",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    Use for writers that take a filename (``Dataset.to_netcdf``, ``savefig``)::

        with atomic_path(out / "cohort.nc") as tmp:
            ds.to_netcdf(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; give the final file the usual permissions (0666 minus umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_source_sha256() -> str:
    """SHA-256 over the ``tregsim`` package's Python sources (relative path and content of
    every ``*.py``, in sorted order): changes whenever any of its code does."""
    root = Path(__file__).resolve().parent  # the tregsim package
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def package_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Installed versions of the packages that shape results (absent ones are skipped)."""
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def machine_info() -> dict[str, str]:
    """The machine as it shapes the last digits of results: CPU model, the SIMD features glibc's
    maths library and numpy dispatch on, the C library (round 27: those digits follow the CPU,
    docs/regression.md)."""
    cpu, flags = platform.processor() or "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
                break
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
    libc = " ".join(platform.libc_ver())
    return {"machine": platform.machine(), "cpu": cpu, "simd": " ".join(simd), "libc": libc}


def build_manifest(
    *,
    command: str,
    seed: int | None,
    inputs: dict[str, str | os.PathLike] | None = None,
    settings: dict | None = None,
    argv: list[str] | None = None,
) -> dict:
    """A manifest dict for an output folder.

    Parameters
    ----------
    command : the tregsim command (``"cohort"``, ``"power"`` …).
    seed : the master seed, or ``None`` for deterministic commands.
    inputs : role → path of each input file (model, experiment, data, posterior); each is
        hashed with SHA-256.
    settings : everything else that determines the result (n, budgets, chunking-independent
        options). Two runs with equal ``command``, ``seed``, input hashes and ``settings``
        produce identical results; resume logic compares exactly these.
    argv : the command line (defaults to ``sys.argv``).
    """
    hashes = {}
    for role, p in (inputs or {}).items():
        hashes[role] = {"path": portable_path(p), "sha256": file_sha256(p)}
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "command": command,
        "seed": seed,
        "inputs": hashes,
        "settings": settings or {},
        "command_line": " ".join(portable_argv(argv if argv is not None else sys.argv)),
        "versions": package_versions(),
        "machine": machine_info(),
        "git_commit": git_commit(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def portable_argv(argv: list[str]) -> list[str]:
    """The command line as a manifest records it: the program by its name, and every absolute
    path a user typed (``--out /home/me/runs/x``, ``--out=/…``) as :func:`portable_path`
    names it, so no manifest carries where the machine keeps files."""
    out = [Path(argv[0]).name] if argv else []
    for a in argv[1:]:
        prefix, val = "", a
        if a.startswith("--") and "=" in a:
            opt, _, val = a.partition("=")
            prefix = opt + "="
        out.append(prefix + (portable_path(val) if os.path.isabs(val) else val))
    return out


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as a manifest names it: relative to the project folder (the checkout that
    holds ``calibration/``, ``models/``; ``../shared/data/…`` for the shared data beside it),
    else relative to the working folder, else its file name — never an absolute path."""
    p = Path(path).resolve()
    from tregsim.resources import project_root

    for base in (project_root(), Path.cwd()):
        if base is None:
            continue
        rel = os.path.relpath(p, Path(base).resolve())
        if not rel.startswith("../../"):
            return Path(rel).as_posix()
    return p.name


@functools.cache
def git_commit() -> str | None:
    """The git commit of the tregsim source tree that runs, with ``-dirty`` when it has
    uncommitted changes; None outside a git checkout (an installed wheel)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def identity(manifest: dict) -> dict:
    """The part of a manifest that determines results (for resume / overwrite checks)."""
    return {
        "command": manifest.get("command"),
        "seed": manifest.get("seed"),
        "inputs": {k: v.get("sha256") for k, v in manifest.get("inputs", {}).items()},
        "settings": manifest.get("settings"),
    }
