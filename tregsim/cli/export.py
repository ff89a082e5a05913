"""``tregsim export sbml|petab``: the model for other simulators and estimation tools."""

from __future__ import annotations

import argparse

HELP = "export a model as SBML (with a dose schedule) or a PEtab calibration problem"

EPILOG = """examples:
  tregsim export sbml treg_t1d -o treg_t1d.xml
  tregsim export sbml treg_t1d -o dosed.xml --dose-day 60 --dose-per-kg 2e7
  tregsim export sbml treg_t1d -o two.xml --dose-day 60,240 --dose-per-kg 2e7
  tregsim export petab treg_t1d --data visits.csv -o petab/ --individual per_individual
Days are days since diagnosis; doses are cells/kg. --data takes the long format
(id, day, cpeptide_nmol_l, age[, censored, weight, cpep0]) or a NONMEM-style table
(ID, TIME, DV, MDV, EVID, AMT, ...; its dose records become per-individual dose schedules).
See docs/interop.md for what PEtab cannot express (random effects, censoring)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    s = sub.add_parser("sbml", help="SBML Level 3 Version 2 (doses as events)")
    s.add_argument("model", help="model name in models/ or a path")
    s.add_argument("-o", "--out", required=True, help="output file (.xml)")
    s.add_argument(
        "--dose-day",
        action="append",
        default=[],
        metavar="DAYS",
        help="dose day(s) since diagnosis; repeatable or comma-separated",
    )
    s.add_argument(
        "--dose-per-kg",
        action="append",
        default=[],
        metavar="CELLS_PER_KG",
        help="dose(s) in cells/kg: one for all days or one per day",
    )
    s.add_argument("--target", default="X", help="dosed state (default X)")
    pe = sub.add_parser("petab", help="PEtab v1 individual-level calibration problem")
    pe.add_argument("model", help="model name in models/ or a path")
    pe.add_argument(
        "--data", required=True, help="long-format or NONMEM-style CSV of C-peptide visits (nmol/L)"
    )
    pe.add_argument("-o", "--out", required=True, help="output folder")
    pe.add_argument(
        "--estimate",
        default=None,
        metavar="NAMES",
        help="comma-separated parameters to estimate (default: population "
        "parameters with priors, except inter-individual SDs)",
    )
    pe.add_argument(
        "--individual",
        choices=("per_individual", "fixed"),
        default="per_individual",
        help="random effect f_lambda: per-individual penalised parameters "
        "(default) or fixed effects only",
    )
    pe.add_argument(
        "--cpep0",
        choices=("auto", "column", "first"),
        default="auto",
        help="C-peptide at diagnosis: the data's cpep0 column, each individual's "
        "first value, or auto (column if present)",
    )


def _floats(items: list[str], flag: str) -> list[float]:
    import math

    from tregsim.errors import ArgumentError

    out = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            try:
                v = float(part)
            except ValueError:
                raise ArgumentError(
                    f"not a number: {part!r}",
                    field=flag,
                    fix=f"write e.g. {flag} 60 or {flag} 60,240",
                ) from None
            if not math.isfinite(v):
                raise ArgumentError(
                    f"must be finite, got {part!r}", field=flag, fix="write a finite number"
                )
            out.append(v)
    return out


def _is_nonmem(path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        header = {c.strip() for c in f.readline().split(",")}
    return {"ID", "TIME", "DV", "EVID"} <= header


def run(args) -> int:
    from pathlib import Path

    from tregsim.errors import ArgumentError
    from tregsim.model import load_model

    model = load_model(args.model)
    if args.format == "sbml":
        from tregsim.interop.sbml import check_sbml, dose_events, export_sbml

        days = _floats(args.dose_day, "--dose-day")
        amounts = _floats(args.dose_per_kg, "--dose-per-kg")
        for flag, vals, what in (
            ("--dose-day", days, "days after diagnosis"),
            ("--dose-per-kg", amounts, "cells/kg"),
        ):
            bad = [v for v in vals if v < 0]
            if bad:
                raise ArgumentError(
                    f"must be ≥ 0 ({what}), got {bad[0]:g}",
                    field=flag,
                    fix=f"give non-negative {what}",
                )
        if bool(days) != bool(amounts):
            raise ArgumentError(
                "give both --dose-day and --dose-per-kg, or neither",
                field="--dose-day/--dose-per-kg",
                fix="e.g. --dose-day 60 --dose-per-kg 2e7",
            )
        doses = dose_events(days=days, amounts=amounts, target=args.target) if days else []
        text = export_sbml(model, args.out, doses=doses)
        errors, warnings = check_sbml(text)
        print(
            f"wrote {args.out}: SBML L3V2, {len(model.state_names)} states as rate rules, "
            f"{len(doses)} dose event(s); libSBML consistency: {len(errors)} errors, "
            f"{len(warnings)} warnings (units that cannot be fully checked)"
        )
        return 0

    from tregsim.interop.petab import export_petab

    data_path = Path(args.data)
    if not data_path.exists():
        from tregsim.errors import DataFileError

        raise DataFileError("file not found", file=data_path, fix="check the path")
    doses = None
    data = data_path
    if _is_nonmem(data_path):
        from tregsim.interop.nonmem import nonmem_to_long, read_nonmem

        nm = read_nonmem(data_path)
        data = nonmem_to_long(nm, extra_covariates=True)
        d = nm[nm["EVID"] == 1]
        doses = {pid: list(zip(g["TIME"], g["AMT"])) for pid, g in d.groupby("ID", sort=False)}
    est = (
        None
        if args.estimate is None
        else [s.strip() for s in args.estimate.split(",") if s.strip()]
    )
    y = export_petab(
        model,
        data,
        args.out,
        estimate=est,
        individual=args.individual,
        cpep0=args.cpep0,
        doses=doses,
        source=data_path,
    )
    print(f"wrote {y} (PEtab v1: model.xml, conditions, measurements, observables, parameters)")
    return 0
