"""`tregsim simulate`: both NCT06708780 arms (or any arms) for a model, to files and a figure."""

from __future__ import annotations

import argparse

HELP = "simulate a model under routine care and Treg infusion arms (trajectories, CSV, figure)"

# Default Treg arm: a single infusion of 20e6 cells/kg on day 60 after diagnosis — the high
# dose of Marek-Trzonkowska 2012 and T-Rex (Bender 2024), given within ~2 months of diagnosis
# as in Marek-Trzonkowska 2012 (../shared/data/treg_therapy_trials.csv).
DEFAULT_DOSE_PER_KG = 20e6
DEFAULT_INFUSION_DAY = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="treg_t1d", help="model name in models/ or a path (default: treg_t1d)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--dose-per-kg",
        type=float,
        default=DEFAULT_DOSE_PER_KG,
        help="Treg dose, cells/kg (default 2e7: Marek-Trzonkowska 2012 / T-Rex high dose)",
    )
    p.add_argument(
        "--infusion-day",
        type=float,
        action="append",
        help="infusion day(s) after diagnosis, repeatable (default 60)",
    )
    p.add_argument("--months", type=float, default=24.0, help="horizon, months (default 24)")
    from tregsim.cli import options

    options.add_set(p)
    p.add_argument("--rtol", type=float, default=1e-7, help="relative tolerance (default 1e-7)")


def _parse_sets(items, model):
    from tregsim.errors import ArgumentError

    out = {}
    for s in items:
        name, sep, val = s.partition("=")
        if not sep:
            raise ArgumentError(
                f"expected NAME=VALUE, got {s!r}", field="--set", fix="write e.g. --set phi=20"
            )
        if name not in model.parameter_names:
            raise ArgumentError(
                f"unknown parameter {name!r}",
                field="--set",
                fix=f"use one of {', '.join(model.parameter_names)}",
            )
        try:
            v = float(val)
        except ValueError:
            raise ArgumentError(
                f"value for {name} is not a number: {val!r}",
                field="--set",
                fix="write a number, e.g. --set phi=20",
            ) from None
        if v != v or v in (float("inf"), float("-inf")):
            raise ArgumentError(
                f"value for {name} must be finite, got {val}",
                field="--set",
                fix="write a finite number",
            )
        prior = model.spec.parameters[name].prior
        if prior is not None:
            lo, hi = prior.bounds
            if not lo <= v <= hi:
                raise ArgumentError(
                    f"{name} = {v:g} is outside the support [{lo:g}, {hi:g}] of its prior "
                    f"{prior.describe()}",
                    field="--set",
                    fix=f"give {name} a value in [{lo:g}, {hi:g}]",
                )
        out[name] = v
    return out


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tregsim.errors import ArgumentError
    from tregsim.io import atomic_path, write_json, write_text
    from tregsim.model import load_model, resolve_model_path
    from tregsim.solve import MONTH_DAYS, Doses, simulate

    model = load_model(args.model)
    days = args.infusion_day or [DEFAULT_INFUSION_DAY]
    horizon = args.months * MONTH_DAYS
    if not (np.isfinite(args.months) and 0 < args.months <= 240):
        raise ArgumentError(
            f"horizon must be in (0, 240] months, got {args.months}",
            field="--months",
            fix="give e.g. --months 24",
        )
    for d in days:
        if not (np.isfinite(d) and 0 <= d <= horizon):
            raise ArgumentError(
                f"infusion day {d} is outside 0..{horizon:.0f} days",
                field="--infusion-day",
                fix="give a day within the horizon",
            )
    if not (np.isfinite(args.dose_per_kg) and args.dose_per_kg >= 0):
        raise ArgumentError(
            f"dose must be finite and ≥ 0 cells/kg, got {args.dose_per_kg}",
            field="--dose-per-kg",
            fix="give e.g. --dose-per-kg 2e7",
        )
    overrides = _parse_sets(args.set, model)
    if "X" not in model.spec.doses:
        raise ArgumentError(
            f"model {model.name!r} takes no Treg doses into X",
            field="--model",
            fix="choose a model with [doses.X]",
        )
    times = np.arange(0.0, horizon + 1e-9, MONTH_DAYS / 4)
    P = model.parameters(2, **overrides)
    doses = Doses(
        time=np.array([[np.nan] * len(days), sorted(days)]),
        amount=np.array([[0.0] * len(days), [args.dose_per_kg] * len(days)]),
    )
    ds = simulate(model, P, doses, times, rtol=args.rtol)
    arms = [
        "routine care",
        f"Treg {args.dose_per_kg:.3g} cells/kg day {', '.join(f'{d:g}' for d in days)} + routine care",
    ]
    ds = ds.assign_coords(arm=("patient", arms))
    phi = (
        overrides.get("phi", model.spec.parameters["phi"].value)
        if "phi" in model.parameter_names
        else None
    )
    ds.attrs.update(assumption=f"model {model.name}; phi = {phi}", dose_per_kg=args.dose_per_kg)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "trajectories.nc") as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    c = ds["cpeptide"].values
    lines = [
        f"# model: {model.name}",
        f"# phi: {phi}",
        "time_days,time_months,cpeptide_routine_care_nmol_l,cpeptide_treg_nmol_l,delta_nmol_l",
    ]
    for j, t in enumerate(times):
        lines.append(
            f"{t:.4f},{t / MONTH_DAYS:.4f},{c[0, j]:.6g},{c[1, j]:.6g},{c[1, j] - c[0, j]:.6g}"
        )
    write_text(out / "cpeptide.csv", "\n".join(lines) + "\n")

    from tregsim.plots.simulate import plot_cpeptide_arms

    fig = plot_cpeptide_arms(
        times / MONTH_DAYS, c, arms, title=f"{model.name}: MMTT C-peptide by arm (φ = {phi})"
    )
    with atomic_path(out / "cpeptide.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    from tregsim.cli import options
    from tregsim.results import result_manifest

    settings = {
        "dose_per_kg": args.dose_per_kg,
        "infusion_days": days,
        "months": args.months,
        "overrides": overrides,
        "rtol": args.rtol,
    }
    write_json(
        out / "manifest.json",
        result_manifest(
            command="simulate",
            function="tregsim.solve.simulate",
            arguments={"model": model.name, **settings},
            seed=None,
            inputs={"model": resolve_model_path(args.model)},
            settings=settings,
            argv=options.argv(),
        ),
    )
    j12 = int(np.argmin(np.abs(times - 12 * MONTH_DAYS)))
    j24 = int(np.argmin(np.abs(times - 24 * MONTH_DAYS))) if args.months >= 24 else len(times) - 1
    print(f"wrote {out}/trajectories.nc, cpeptide.csv, cpeptide.png, manifest.json")
    for lab, j in (("12 months", j12), (f"{times[j24] / MONTH_DAYS:.0f} months", j24)):
        print(
            f"C-peptide at {lab}: routine care {c[0, j]:.4f} nmol/L, Treg {c[1, j]:.4f} nmol/L "
            f"(Δ {c[1, j] - c[0, j]:+.4f} nmol/L, {100 * (c[1, j] / c[0, j] - 1):+.2f} %)"
        )
    return 0
