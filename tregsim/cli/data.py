"""``tregsim data check|import|export``: NONMEM-style tables ⇄ the long calibration format."""

from __future__ import annotations

import argparse

HELP = "check data tables; convert NONMEM-style tables to/from the long calibration format"

EPILOG = """formats (docs/interop.md):
  NONMEM-style: ID, TIME (days since diagnosis), DV (C-peptide nmol/L), MDV, EVID (0 obs,
                1 dose), AMT (cells/kg), [CMT, BLQ, AGE, WT, SEX, CPEP0]; '.' = missing
  long:         id, day, cpeptide_nmol_l, age, censored [, weight, sex, cpep0]
examples:
  tregsim data check visits_nm.csv
  tregsim data import visits_nm.csv -o visits_long.csv     (NONMEM-style -> long)
  tregsim data export visits_long.csv -o visits_nm.csv     (long -> NONMEM-style)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a NONMEM-style or long-format table")
    c.add_argument("file")
    i = sub.add_parser("import", help="NONMEM-style table -> long format (observations)")
    i.add_argument("file")
    i.add_argument("-o", "--out", required=True, help="output CSV (long format)")
    e = sub.add_parser("export", help="long format -> NONMEM-style table")
    e.add_argument("file")
    e.add_argument("-o", "--out", required=True, help="output CSV (NONMEM-style)")


def _kind(path) -> str:
    from tregsim.errors import DataFileError

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = {c.strip() for c in f.readline().split(",")}
    except OSError as e:
        raise DataFileError(
            f"cannot read ({e.strerror})", file=path, fix="check the path"
        ) from None
    return "nonmem" if {"ID", "TIME", "DV"} <= header else "long"


def run(args) -> int:
    from tregsim.errors import DataFileError
    from tregsim.interop import nonmem as nm

    kind = _kind(args.file)
    if args.action == "check":
        if kind == "nonmem":
            df = nm.read_nonmem(args.file)
            n_obs = int(((df["EVID"] == 0) & (df["MDV"] == 0)).sum())
            print(
                f"{args.file}: ok (NONMEM-style; {df['ID'].nunique()} individuals, "
                f"{n_obs} observations, {int((df['EVID'] == 1).sum())} doses, "
                f"{int(df['BLQ'].sum())} below LLOQ)"
            )
        else:
            df = nm.read_long(args.file)
            print(
                f"{args.file}: ok (long format; {df['id'].nunique()} individuals, "
                f"{len(df)} observations, {int(df['censored'].sum())} censored)"
            )
        return 0
    if args.action == "import":
        if kind != "nonmem":
            raise DataFileError(
                "not a NONMEM-style table (no ID, TIME, DV columns)",
                file=args.file,
                field="header",
                fix="use `tregsim data export` to convert a long table",
            )
        table = nm.read_nonmem(args.file)
        if "AGE" not in table.columns or table["AGE"].isna().any():
            # the long format needs an age per individual (calibration covariate)
            raise DataFileError(
                "no AGE for every individual: the long format needs age (years)",
                file=args.file,
                field="AGE",
                fix="add an AGE column (years) to the NONMEM table",
            )
        long = nm.nonmem_to_long(table, extra_covariates=True)
        nm.write_long(long, args.out)
        print(
            f"wrote {args.out}: {len(long)} observations of {long['id'].nunique()} "
            "individuals (long format)"
        )
        return 0
    if kind == "nonmem":
        raise DataFileError(
            "already a NONMEM-style table",
            file=args.file,
            field="header",
            fix="use `tregsim data import` to convert it to the long format",
        )
    out = nm.long_to_nonmem(nm.read_long(args.file))
    nm.write_nonmem(out, args.out)
    print(f"wrote {args.out}: {len(out)} records (NONMEM-style)")
    return 0
