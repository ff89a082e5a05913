"""`tregsim model show|check`: print a model's states, parameters and equations; validate files."""

from __future__ import annotations

import argparse

HELP = "show a model (states, parameters, equations; --latex) or check model files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="print states, parameters, expressions and equations")
    s.add_argument("model", help="model name in models/ or a path")
    s.add_argument("--latex", action="store_true", help="print the equations as LaTeX")
    c = sub.add_parser("check", help="validate model file(s) and report every problem")
    c.add_argument("files", nargs="+", help="model files")


def run(args) -> int:
    import sys

    from tregsim.errors import ModelFileError
    from tregsim.model import compile_model, load_model, load_spec

    if args.action == "show":
        m = load_model(args.model)
        print(m.latex() if args.latex else m.describe())
        return 0
    bad = 0
    for f in args.files:
        try:
            m = compile_model(load_spec(f))
            m.kernels  # noqa: B018  (compiles: catches problems only numeric code shows)
            print(f"{f}: ok ({len(m.state_names)} states, {len(m.parameter_names)} parameters)")
        except ModelFileError as e:
            bad += 1
            print(f"tregsim model: error: {e}", file=sys.stderr)
    return 2 if bad else 0
