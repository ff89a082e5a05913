"""Exceptions that name the file, the field and the fix.

Every user-facing error of tregsim is a :class:`TregsimError` (a ``ValueError``). The CLI turns
one into a single line on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations


class TregsimError(ValueError):
    """A bad input, reported as ``<file>: [<field>] <problem>; fix: <fix>``.

    Parameters
    ----------
    problem : what was received and what was expected.
    file : path of the offending file, or ``None`` (e.g. a CLI argument or Python call).
    field : dotted key inside the file (``parameters.lambda_ref.prior``) or the argument name.
    fix : one sentence telling the user what to change.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: object | None = None,
        field: str | None = None,
        fix: str | None = None,
    ):
        self.problem = problem
        self.file = None if file is None else str(file)
        self.field = field
        self.fix = fix
        super().__init__(self._format())

    def __reduce__(self):
        # keep file / field / fix when the error crosses a process boundary (Dask workers)
        return (_rebuild, (type(self), self.problem, self.file, self.field, self.fix))

    def _format(self) -> str:
        where = self.file or "<input>"
        parts = [where + ":"]
        if self.field:
            parts.append(f"[{self.field}]")
        parts.append(self.problem)
        msg = " ".join(parts)
        if self.fix:
            msg += f"; fix: {self.fix}"
        return msg


def _rebuild(cls, problem, file, field, fix):
    return cls(problem, file=file, field=field, fix=fix)


class ModelFileError(TregsimError):
    """A model file (``models/*.toml``) or an expression in it is invalid."""


class ExperimentFileError(TregsimError):
    """An experiment file (``experiments/*.toml``) is invalid."""


class ConfigFileError(TregsimError):
    """A calibration configuration file is invalid."""


class DataFileError(TregsimError):
    """A data file (CSV, NONMEM-style table, posterior) is invalid."""


class ArgumentError(TregsimError):
    """A command-line or Python argument is invalid."""


class OutputFolderError(TregsimError):
    """An output folder holds results of a different command or inputs."""


def require_unique(names, *, problem: str, field: str, fix: str) -> None:
    """Raise :class:`ArgumentError` ``problem: [repeated names]`` if a name occurs twice."""
    names = list(names)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ArgumentError(f"{problem} {dup}", field=field, fix=fix)
