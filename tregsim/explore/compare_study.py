"""A model comparison as one analysis: :func:`compare_study` → :class:`ComparisonStudy`.

The population and doses come from :mod:`tregsim.explore.compare` (the built-in population or an
experiment's); this module adds what every analysis has: argument checks that name arguments,
the manifest recording its call, ``.save(dir)`` (``compare.csv``, ``compare.png``,
``manifest.json``) and :func:`load_comparison`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tregsim.errors import ArgumentError


@dataclass
class ComparisonStudy:
    """Result of :func:`compare_study`: the comparison (``result``, a
    :class:`tregsim.explore.compare.ComparisonResult`) and its manifest."""

    result: Any
    manifest: dict

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``compare.csv``, ``compare.png`` and ``manifest.json`` (last)."""
        from tregsim.io import write_text
        from tregsim.plots.compare import plot_compare
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        write_text(out / "compare.csv", self.result.to_csv_text())
        plot_compare(self.result, out / "compare.png")
        write_manifest(out, self.manifest)
        return out

    def report_lines(self) -> list[str]:
        """Paired mean difference of every treated arm vs control at 12 months and the end."""
        res = self.result
        t = res.table
        last = t["month"].max()
        m12 = 12.0 if (t["month"] == 12.0).any() else last
        control = next(a.name for a in res.arms if a.control)
        lines = []
        for (mname, aname), g in t.groupby(["model", "arm"], sort=False):
            if aname == control:
                continue
            d = {
                m: float(g.loc[g["month"] == m, "mean_delta_vs_control_nmol_L"].iloc[0])
                for m in sorted({m12, last})
            }
            txt = ", ".join(f"{v:+.4f} nmol/L at {m:g} mo" for m, v in d.items())
            lines.append(f"compare: {mname} {aname} − control: {txt}")
        n_failed = int(
            res.n * len(res.cpeptide)
            - sum(np.isfinite(c).all(axis=1).sum() for c in res.cpeptide.values())
        )
        lines.append(
            f"compare: {len(res.models)} models × {len(res.arms)} arms × {res.n} patients in "
            f"{self.manifest['settings_runtime']['seconds']:.1f} s; {n_failed} failed solves"
        )
        return lines


def compare_study(
    models: Sequence[str],
    *,
    n: int = 200,
    seed: int = 0,
    months: float = 24.0,
    experiment: Any = None,
    dose_per_kg: float = 2e7,
    infusion_day: float = 60.0,
    il2_iu: float = 0.0,
    il2_days: int = 5,
    il2_start_day: float | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    argv: list[str] | None = None,
    sets: Mapping[str, float | str] | None = None,
) -> ComparisonStudy:
    """The same virtual patients on several model variants.

    models : model names or files. ``experiment`` (a loaded experiment) gives the population
    and arms; otherwise the built-in population receives ``dose_per_kg`` cells/kg on
    ``infusion_day`` (days after diagnosis) and, with ``il2_iu`` > 0, ``il2_days`` daily IL-2
    injections of ``il2_iu`` IU from ``il2_start_day``. ``months``: follow-up after diagnosis.
    ``sets``: parameter name → value (model units) replacing the model file's value for every
    patient in each model that has the parameter (e.g. ``{"phi": 20}``); a name no model has,
    a covariate or a value outside a model's prior support is refused (``ArgumentError``).
    """
    from tregsim.explore import compare as cmp
    from tregsim.model import load_model, resolve_model_path
    from tregsim.results import display_path, open_output, result_manifest

    if seed < 0:
        raise ArgumentError(
            f"seed must be ≥ 0, got {seed}", field="seed", fix="give a whole number ≥ 0"
        )
    if n < 1:
        raise ArgumentError(
            f"n must be ≥ 1, got {n}", field="n", fix="give the number of virtual patients"
        )
    if not (np.isfinite(months) and 1 <= months <= 600):
        raise ArgumentError(
            f"months must be in [1, 600], got {months}",
            field="months",
            fix="give the follow-up in months, e.g. 24",
        )
    names = [s.strip() for s in models if s.strip()]
    if not names:
        raise ArgumentError(
            "no models given", field="models", fix="give e.g. treg_t1d,treg_t1d_v0_empirical"
        )
    loaded = [load_model(s) for s in names]  # validates every file before writing anything
    values = _set_values(loaded, sets or {})
    inputs: dict = {f"model:{m.name}": resolve_model_path(s) for m, s in zip(loaded, names)}
    times = np.arange(int(np.floor(months)) + 1) * cmp.MONTH_DAYS
    if experiment is not None:
        if il2_iu > 0:
            raise ArgumentError(
                "il2_iu cannot be combined with experiment",
                field="il2",
                fix="set il2_dose_iu / il2_days in the experiment's arm, or drop the experiment",
            )
        pop, arms = cmp.population_from_experiment(experiment, n, seed)
        inputs.update({f"experiment:{k}": v for k, v in experiment.input_files().items()})
        regimen: dict = {"experiment": display_path(experiment.path)}
    else:
        arms = cmp.default_arms(dose_per_kg, infusion_day, il2_iu, il2_days, il2_start_day)
        pop = cmp.builtin_population(n, seed)
        regimen = {
            "dose_per_kg": dose_per_kg,
            "infusion_day": infusion_day,
            "il2_iu_per_dose": il2_iu,
            "il2_days": il2_days,
            "il2_start_day": il2_start_day,
        }
    settings = {"models": [m.name for m in loaded], "n": n, "months": months, **regimen}
    if values:
        settings["set"] = {k: v for per_model in values.values() for k, v in per_model.items()}
    manifest = result_manifest(
        command="compare",
        function="tregsim.explore.compare_study.compare_study",
        arguments={**settings, "seed": seed},
        seed=seed,
        inputs=inputs,
        settings=settings,
        argv=argv,
    )
    open_output(out_dir, manifest, overwrite)
    t0 = time.perf_counter()
    res = cmp.compare_models(loaded, arms, pop, times_days=times, seed=seed, values=values)
    manifest["settings_runtime"] = {"seconds": round(time.perf_counter() - t0, 2)}
    return ComparisonStudy(res, manifest)


def _set_values(models, sets: Mapping[str, float | str]) -> dict[str, dict[str, float]]:
    """model name → the ``sets`` entries that model has, validated against it (the messages of
    an experiment's ``[parameters]``); a name that no model has is refused."""
    from tregsim.experiment import parameter_override_errors

    out: dict[str, dict[str, float]] = {}
    for name in sets:
        if not any(name in m.spec.parameters for m in models):
            raise ArgumentError(
                f"no compared model has a parameter {name!r}",
                field=f"set.{name}",
                fix="use a parameter of one of the models (tregsim model show NAME lists them)",
            )
    for m in models:
        mine = {k: v for k, v in sets.items() if k in m.spec.parameters}
        for k, v, fix in parameter_override_errors(m, mine):
            if fix is not None:
                raise ArgumentError(f"{m.name}: {v}", field=f"set.{k}", fix=fix)
            out.setdefault(m.name, {})[k] = v
    return out


def load_comparison(out_dir: str | os.PathLike) -> dict:
    """A comparison saved by :meth:`ComparisonStudy.save`: ``{"table": DataFrame, "header":
    [...], "manifest": {...}}`` (per-patient trajectories are not saved)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    lines = (out / "compare.csv").read_text(encoding="utf-8").splitlines()
    return {
        "table": pd.read_csv(out / "compare.csv", comment="#"),
        "header": [ln for ln in lines if ln.startswith("#")],
        "manifest": read_manifest(out),
    }
