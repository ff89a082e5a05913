"""What every analysis result shares: the posterior default, the call record, its manifest.

Every analysis (cohort, natural-history check, power study, sweep, sensitivity, responders,
compare, calibration) is a library function that returns a result object with
``.save(out_dir)`` (atomic writes, then ``manifest.json``) and a loader. The manifest of a
result records *its own* call: the function and its arguments (``manifest["call"]``), so a
folder written under ``tregsim run`` says which analysis made it, not the ``tregsim run``
command line. Paths in manifests, CSV files and the report are relative to the working folder
(or a file name), never absolute: see :func:`display_path`.

Population parameters come from the shipped posterior
(``calibration/posteriors/natural_history.nc``) by default in every analysis; ``None`` (on the
command line ``--posterior none``) keeps the model file's values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tregsim import io
from tregsim.errors import DataFileError, OutputFolderError

SHIPPED: Final = "shipped"
"""The default ``posterior`` of every analysis: the shipped
``calibration/posteriors/natural_history.nc`` (no posterior if the file is absent)."""

PosteriorArg = str | os.PathLike | None
"""``SHIPPED`` (default), a netCDF path, or ``None`` / ``"none"`` for the model file's values."""


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder when it lies below it, else its file name.

    The one rule by which manifests, CSV files and the report name files without printing
    where the machine keeps them.
    """
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name


def posterior_path(posterior: PosteriorArg) -> Path | None:
    """The file a ``posterior`` argument names, or ``None`` for the model file's values.

    Raises
    ------
    DataFileError : a named file does not exist (field ``posterior``).
    """
    if posterior is None or (isinstance(posterior, str) and posterior.lower() == "none"):
        return None
    if isinstance(posterior, str) and posterior == SHIPPED:
        from tregsim.posterior import DEFAULT_POSTERIOR

        return Path(DEFAULT_POSTERIOR) if Path(DEFAULT_POSTERIOR).is_file() else None
    p = Path(posterior)
    if not p.is_file():
        raise DataFileError(
            "posterior file not found",
            file=p,
            field="posterior",
            fix="give the posterior.nc written by `tregsim calibrate`, or none",
        )
    return p


def posterior_note(path: Path | None) -> str:
    """One line for manifests and ledgers: where the population parameters come from."""
    if path is None:
        return "model file values (no posterior)"
    return f"posterior draws from {display_path(path)} (default: the shipped posterior)"


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in list(value)]
    if isinstance(value, os.PathLike):
        return display_path(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return getattr(value, "name", None) or type(value).__name__


def result_manifest(
    *,
    command: str,
    function: str,
    arguments: Mapping[str, Any],
    seed: int | None,
    inputs: Mapping[str, str | os.PathLike],
    settings: Mapping[str, Any],
    argv: list[str] | None = None,
) -> dict:
    """The manifest of one analysis result.

    ``function`` (dotted name) and ``arguments`` form ``manifest["call"]``; ``argv`` is the
    command line when a command made the result (``None``: the call itself is recorded as the
    command line). Input paths are recorded by :func:`display_path` with their SHA-256.
    """
    call = {"function": function, "arguments": _jsonable(dict(arguments))}
    if argv is None:
        args = ", ".join(f"{k}={v!r}" for k, v in call["arguments"].items())
        argv = [f"{function}({args})"]
    man = io.build_manifest(
        command=command, seed=seed, inputs=dict(inputs), settings=dict(settings), argv=argv
    )
    for rec in man["inputs"].values():
        rec["path"] = display_path(rec["path"])
    man["call"] = call
    return man


def ensure_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` and check that files can be written into it.

    Raises
    ------
    OutputFolderError : it cannot be created or written (one line, field ``out``).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".tregsim-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputFolderError(
            f"cannot write into this folder ({e.strerror or e})",
            file=out,
            field="out",
            fix="choose a folder you can write to",
        ) from None
    return out


def check_writable(out_dir: str | os.PathLike) -> None:
    """Raise :class:`OutputFolderError` unless ``out_dir`` can be created and written; leaves
    no folder behind (a command checks this before any work, even before validating inputs).
    """
    out = Path(out_dir)
    missing = []
    p = out
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        ensure_output_dir(out)
    finally:
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break


def open_output(out_dir: str | os.PathLike | None, manifest: dict, overwrite: bool) -> Path | None:
    """Prepare ``out_dir`` for checkpoints of the run ``manifest`` describes (``None``: no
    checkpoints). See :func:`tregsim.checkpoint.prepare_output_dir`."""
    if out_dir is None:
        return None
    from tregsim.checkpoint import prepare_output_dir

    ensure_output_dir(out_dir)
    return prepare_output_dir(out_dir, manifest, overwrite=overwrite)


def write_manifest(out_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write ``manifest.json`` into ``out_dir`` (last, after every result file)."""
    return io.write_json(Path(out_dir) / io.MANIFEST, manifest)


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a saved result.

    Raises
    ------
    OutputFolderError : the folder holds no readable manifest.
    """
    from tregsim.checkpoint import _read_json

    return _read_json(Path(out_dir) / io.MANIFEST)
