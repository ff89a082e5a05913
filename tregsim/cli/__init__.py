"""The ``tregsim`` command line.

Each subcommand lives in its own module ``tregsim/cli/<name>.py`` exposing

* ``HELP``: one line for ``tregsim --help``;
* ``add_arguments(parser)``: declares its arguments (argparse only);
* ``run(args) -> int``: does the work; heavy imports (xarray, torch, sbi …) happen here.

Module top levels import only the standard library, so ``tregsim --help`` stays fast and never
imports torch or sbi. A :class:`tregsim.errors.TregsimError` becomes one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name → module; every one must import (a broken command fails loudly, never vanishes).
COMMANDS: dict[str, str] = {
    "run": "tregsim.cli.run",
    "simulate": "tregsim.cli.simulate",
    "cohort": "tregsim.cli.cohort",
    "check": "tregsim.cli.check",
    "calibrate": "tregsim.cli.calibrate",
    "power": "tregsim.cli.power",
    "sweep": "tregsim.cli.sweep",
    "sensitivity": "tregsim.cli.sensitivity",
    "responders": "tregsim.cli.responders",
    "compare": "tregsim.cli.compare",
    "model": "tregsim.cli.model",
    "models": "tregsim.cli.models",
    "export": "tregsim.cli.export",
    "data": "tregsim.cli.data",
    "twin": "tregsim.cli.twin",
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line, exit 2 (its own default status)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; fix: see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tregsim",
        description="Simulate regulatory T cell therapy in type 1 diabetes "
        "(days for time, nmol/L for MMTT C-peptide AUC, cells/kg for doses).",
    )
    from tregsim import __version__

    parser.add_argument("--version", action="version", version=f"tregsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = _load(name)
        epilog = getattr(mod, "EPILOG", None)  # e.g. the kinds a config may name
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=mod.HELP,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter
            if epilog
            else argparse.HelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


FILE_OUTPUT = ("export", "data")
"""Commands whose ``-o/--out`` names a file (the others write into a folder)."""


def _check_output(args: argparse.Namespace) -> None:
    """An unwritable ``--out`` is one line and exit 2 for every command, before any work."""
    out = getattr(args, "out", None)
    if not out:
        return
    from pathlib import Path

    from tregsim.results import check_writable

    check_writable(Path(out).parent if args.command in FILE_OUTPUT else out)


def main(argv: list[str] | None = None) -> int:
    from tregsim.errors import TregsimError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        _check_output(args)
        return int(args._run(args) or 0)
    except TregsimError as e:
        from tregsim.cli.options import flag_of

        # library errors name arguments; on the command line they are flags
        flag = flag_of(args._parser, e.field)
        if flag != e.field and e.field:
            problem = e.problem
            if problem.startswith(e.field + " "):
                problem = flag + problem[len(e.field) :]
            e = type(e)(problem, file=e.file, field=flag, fix=e.fix)
        print(f"tregsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tregsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
