"""Options shared by the commands, defined once: seed, out, posterior, overwrite, workers, --set.

Module top level imports only the standard library (``tregsim --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

POSTERIOR_HELP = (
    "population posterior (netCDF from `tregsim calibrate`): patient i draws its population "
    "parameters from draw i mod n_draws. Default: the shipped "
    "calibration/posteriors/natural_history.nc; 'none' keeps the model file's values"
)


def add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")


def add_posterior(parser: argparse.ArgumentParser, help: str = POSTERIOR_HELP) -> None:
    parser.add_argument("--posterior", metavar="FILE|none", default=None, help=help)


VARIABILITY_HELP = (
    "structure of individual variability of the virtual patients (docs/calibration.md, "
    "'Structure of individual variability'): 'records' (default) = the structure fitted to the "
    "placebo records: hazard covariate on the baseline C-peptide and the within-patient "
    "observation model, per draw of a records-structure posterior, else the point values of "
    "calibration/natural_history_structure.json; 'lumped' = the old structure (one residual "
    "sigma, no hazard covariate)"
)


def add_variability(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variability", choices=("records", "lumped"), default=None, help=VARIABILITY_HELP
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of a different run in --out instead of refusing "
        "(without it, rerunning the same run resumes its checkpoints)",
    )


def add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run chunks on a local Dask cluster of N worker processes "
        "(default: in this process; results do not depend on it)",
    )


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a model parameter's value, e.g. --set phi=20; repeatable (validated "
        "against the model file: known name, a number inside the prior's support)",
    )


def add_common(
    parser: argparse.ArgumentParser,
    *,
    posterior: bool = True,
    sets: bool = True,
    parallel_chunk: int | None = None,
) -> None:
    """``--out``, ``--seed``, ``--posterior``, ``--set`` and either the parallel options
    (``--workers/--scheduler/--chunk-size/--overwrite``, when ``parallel_chunk`` is given) or
    ``--overwrite`` alone."""
    add_out(parser)
    add_seed(parser)
    if posterior:
        add_posterior(parser)
    if sets:
        add_set(parser)
    if parallel_chunk is not None:
        from tregsim.parallel import add_parallel_arguments

        add_parallel_arguments(parser, chunk_size=parallel_chunk)
    else:
        add_overwrite(parser)


def posterior_arg(args: argparse.Namespace) -> Any:
    """The library's ``posterior`` argument of ``--posterior``: the shipped posterior when the
    option is absent, ``None`` for ``none``, else the path."""
    from tregsim.results import SHIPPED

    value = getattr(args, "posterior", None)
    if value is None:
        return SHIPPED
    if value.lower() == "none":
        return None
    return value


def parse_sets(items: list[str]) -> dict[str, float | str]:
    """``["phi=20", …]`` → ``{"phi": 20.0}``; a value that is not a number stays text, so the
    library's validation names the field in its error."""
    from tregsim.errors import ArgumentError

    out: dict[str, float | str] = {}
    for s in items:
        name, sep, val = s.partition("=")
        if not sep or not name.strip():
            raise ArgumentError(
                f"expected NAME=VALUE, got {s!r}", field="set", fix="write e.g. --set phi=20"
            )
        try:
            out[name.strip()] = float(val)
        except ValueError:
            out[name.strip()] = val.strip()
    return out


def apply_sets(exp: Any, args: argparse.Namespace) -> Any:
    """``exp`` with the ``--set`` overrides applied (the same validation as an experiment
    file's ``[parameters]`` table)."""
    sets = parse_sets(getattr(args, "set", []) or [])
    if not sets:
        return exp
    from tregsim.experiment import with_parameters  # type: ignore[attr-defined]

    return with_parameters(exp, sets, origin="--set")


def load_experiment_arg(args: argparse.Namespace) -> Any:
    """The experiment of ``args.experiment`` with ``--set`` applied."""
    from tregsim.experiment import load_experiment

    return apply_sets(load_experiment(args.experiment), args)


def parallel(args: argparse.Namespace) -> dict[str, Any]:
    """``workers``, ``scheduler``, ``chunk_size`` keyword arguments of the library."""
    out = {"workers": getattr(args, "workers", None)}
    if hasattr(args, "scheduler"):
        out["scheduler"] = args.scheduler
    if hasattr(args, "chunk_size"):
        out["chunk_size"] = args.chunk_size
    return out


def analysis_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments every library analysis takes from the shared options: ``seed``,
    ``posterior`` (when the command has ``--posterior``), ``variability`` (``--variability``),
    ``out_dir``, ``overwrite``,
    ``argv`` and, for commands with the parallel options, ``workers``/``scheduler``/
    ``chunk_size``."""
    kw: dict[str, Any] = {
        "seed": args.seed,
        "out_dir": args.out,
        "overwrite": args.overwrite,
        "argv": argv(),
    }
    if hasattr(args, "posterior"):
        kw["posterior"] = posterior_arg(args)
    if hasattr(args, "variability"):
        kw["variability"] = args.variability
    if hasattr(args, "chunk_size"):
        kw.update(parallel(args))
    return kw


def argv() -> list[str]:
    """The command line as the user typed it, for the manifest."""
    return ["tregsim", *sys.argv[1:]]


def flag_of(parser: argparse.ArgumentParser, name: str | None) -> str | None:
    """The option string of the argument a library error names (``effect_phi`` →
    ``--effect-phi``); ``name`` itself for positionals or unknown names."""
    if not name:
        return name
    for action in parser._actions:
        if action.dest == name and action.option_strings:
            longs = [o for o in action.option_strings if o.startswith("--")]
            return (longs or action.option_strings)[0]
        if isinstance(action, argparse._SubParsersAction):  # export sbml, data import …
            for sub in action.choices.values():
                flag = flag_of(sub, name)
                if flag != name:
                    return flag
    return name
