"""Global sensitivity analysis (Sobol' and Morris) on a batched model function, via SALib.

SALib does the sampling (``SALib.sample.sobol`` — Saltelli's scheme on a scrambled Sobol'
sequence — and ``SALib.sample.morris``) and the estimation (``SALib.analyze.sobol``,
``SALib.analyze.morris``, with bootstrap confidence intervals). tregsim adds:

* a validated problem spec where each parameter has bounds and a scale (``"log"`` samples
  uniformly in log space, for rate constants and potencies spanning decades);
* one call of the model function on the *whole* design (batch first: ``func(X)`` with
  ``X`` of shape ``(n_samples, n_params)`` returns ``(n_samples, n_outputs)``);
* a typed result with output names, units and (optionally) visit months, so indices can
  be read as curves over time, saved to CSV and read back.

SALib sees every parameter on the unit interval ``[0, 1]``; the map to natural units
(linear or log) is done here, so a log-scaled parameter is sampled uniformly in its
logarithm. Reference: Saltelli et al. 2010 Comput Phys Commun 181:259 (estimators);
Campolongo et al. 2007 Environ Model Softw 22:1509 (Morris μ*).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ArgumentError, DataFileError

SCHEMA_VERSION = 1
SCALES = ("linear", "log")


@dataclass(frozen=True)
class ParameterRange:
    """One uncertain input: ``name`` varies over ``[low, high]`` (natural units).

    ``scale="log"`` samples uniformly in ``log(value)`` (requires ``low > 0``);
    ``scale="linear"`` uniformly in the value. ``unit`` is carried into CSVs and plots.
    """

    name: str
    low: float
    high: float
    scale: str = "linear"
    unit: str = "-"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ArgumentError(
                f"scale must be one of {SCALES}, got {self.scale!r}",
                field=f"problem.{self.name}.scale",
                fix="use 'log' for positive quantities spanning decades, else 'linear'",
            )
        lo, hi = float(self.low), float(self.high)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ArgumentError(
                f"bounds must be finite with low < high, got [{lo}, {hi}]",
                field=f"problem.{self.name}.bounds",
                fix="give two finite numbers, the lower first",
            )
        if self.scale == "log" and lo <= 0:
            raise ArgumentError(
                f"log-scaled bounds must be > 0, got low = {lo}",
                field=f"problem.{self.name}.bounds",
                fix="use a positive lower bound or scale 'linear'",
            )

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map ``u`` in [0, 1] (any shape) to natural units."""
        if self.scale == "log":
            a, b = math.log(self.low), math.log(self.high)
            return np.exp(a + (b - a) * u)
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class Output:
    """One model output: ``name`` (e.g. ``"cpeptide_control"``), ``unit``, and the visit
    ``month`` it refers to (``None`` for a time-independent output)."""

    name: str
    unit: str = "-"
    month: float | None = None

    @property
    def label(self) -> str:
        m = "" if self.month is None else f" @ {self.month:g} months"
        return f"{self.name} ({self.unit}){m}"


def make_problem(params: Sequence[ParameterRange | dict]) -> tuple[ParameterRange, ...]:
    """Validate a problem spec.

    Each item is a :class:`ParameterRange` or a dict with keys ``name``, ``bounds``
    (``[low, high]``), optional ``scale`` (``"linear"`` | ``"log"``) and ``unit``.
    Names must be unique; at least one parameter is required.
    """
    out = []
    for i, p in enumerate(params):
        if isinstance(p, ParameterRange):
            out.append(p)
            continue
        if not isinstance(p, dict):
            raise ArgumentError(
                f"problem item {i} must be a dict or ParameterRange, got {type(p).__name__}",
                field=f"problem[{i}]",
                fix="give {'name': ..., 'bounds': [low, high], 'scale': 'log'|'linear'}",
            )
        unknown = set(p) - {"name", "bounds", "scale", "unit"}
        if unknown or "name" not in p or "bounds" not in p:
            raise ArgumentError(
                f"problem item {i} has keys {sorted(p)}",
                field=f"problem[{i}]",
                fix="use keys name, bounds, and optionally scale, unit",
            )
        lo, hi = p["bounds"]
        out.append(ParameterRange(p["name"], lo, hi, p.get("scale", "linear"), p.get("unit", "-")))
    if not out:
        raise ArgumentError(
            "problem has no parameters", field="problem", fix="give at least one parameter"
        )
    names = [p.name for p in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ArgumentError(
            f"duplicate parameter names {dup}", field="problem", fix="list each parameter once"
        )
    return tuple(out)


def _salib_problem(params: tuple[ParameterRange, ...]) -> dict:
    # SALib samples the unit cube; the (log-)scaling to natural units is ours.
    return {
        "num_vars": len(params),
        "names": [p.name for p in params],
        "bounds": [[0.0, 1.0]] * len(params),
    }


def _to_natural(params: tuple[ParameterRange, ...], U: np.ndarray) -> np.ndarray:
    X = np.empty_like(U)
    for j, p in enumerate(params):
        X[:, j] = p.from_unit(U[:, j])
    return X


def _normalise_outputs(outputs, n_out: int | None) -> tuple[Output, ...]:
    if outputs is None:
        if n_out is None:
            raise ArgumentError("outputs unknown", field="outputs", fix="name the outputs")
        return tuple(Output(f"y{i}") for i in range(n_out))
    outs = tuple(o if isinstance(o, Output) else Output(str(o)) for o in outputs)
    return outs


def _evaluate(func, X, outputs, what: str) -> tuple[np.ndarray, tuple[Output, ...]]:
    Y = np.asarray(func(X), dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ArgumentError(
            f"func returned shape {Y.shape} for {X.shape[0]} samples",
            field="func",
            fix="return an array of shape (n_samples, n_outputs)",
        )
    outs = _normalise_outputs(outputs, Y.shape[1])
    if len(outs) != Y.shape[1]:
        raise ArgumentError(
            f"{len(outs)} output names for {Y.shape[1]} output columns",
            field="outputs",
            fix="give one name per column of func's result",
        )
    bad = ~np.isfinite(Y)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise ArgumentError(
            f"func returned non-finite values for {rows} of {Y.shape[0]} {what} samples "
            f"(outputs {[o.name for o, b in zip(outs, bad.any(axis=0)) if b]})",
            field="func",
            fix="narrow the parameter ranges to where the model solves, or fix the model",
        )
    return Y, outs


@dataclass(frozen=True)
class SensitivityResult:
    """Sensitivity indices of every output with respect to every parameter.

    ``indices`` maps an index name to an array of shape ``(n_outputs, n_params)``:
    Sobol' → ``S1, S1_conf, ST, ST_conf``; Morris → ``mu, mu_star, mu_star_conf, sigma``.
    ``*_conf`` are half-widths of the bootstrap ``conf_level`` intervals, in the units of
    the index (Sobol' indices are fractions of variance; Morris μ*, σ are in output units
    per unit-interval step of the parameter, i.e. per full range in natural units).
    """

    method: str
    parameters: tuple[ParameterRange, ...]
    outputs: tuple[Output, ...]
    indices: dict[str, np.ndarray]
    n_base: int
    n_evaluations: int
    seed: int
    conf_level: float = 0.95
    notes: tuple[str, ...] = field(default_factory=tuple)
    ledger: tuple[str, ...] = ()
    manifest: dict = field(default_factory=dict)

    def save(self, out_dir) -> Path:
        """Write ``indices.csv`` (with the ledger), the figures and ``manifest.json``."""
        return _save_sensitivity(self, out_dir)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def index(self, name: str, output: str | int, month: float | None = None) -> np.ndarray:
        """Index ``name`` for one output (by position or by name [+ month]) → ``(n_params,)``."""
        return self.indices[name][self._output_pos(output, month)]

    def _output_pos(self, output, month) -> int:
        if isinstance(output, int):
            return output
        for i, o in enumerate(self.outputs):
            if o.name == output and (month is None or o.month == month):
                return i
        raise ArgumentError(
            f"no output {output!r} (month {month})",
            field="output",
            fix=f"choose one of {sorted({o.name for o in self.outputs})}",
        )

    def to_frame(self):
        """Long table: one row per (output, parameter), index columns beside."""
        import pandas as pd

        rows = []
        for i, o in enumerate(self.outputs):
            for j, p in enumerate(self.parameters):
                row = {
                    "output": o.name,
                    "output_unit": o.unit,
                    "month": np.nan if o.month is None else o.month,
                    "parameter": p.name,
                    "parameter_unit": p.unit,
                    "low": p.low,
                    "high": p.high,
                    "scale": p.scale,
                }
                for k, v in self.indices.items():
                    row[k] = float(v[i, j])
                rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path, header: Sequence[str] = ()) -> Path:
        """Write the long table atomically with ``#`` header lines (method, n, seed, extra
        ``header`` lines such as the model variant and φ). Readable by :func:`read_indices`."""
        from tregsim.io import write_text

        lines = [
            f"# schema_version: {SCHEMA_VERSION}",
            f"# method: {self.method}",
            f"# n_base: {self.n_base}",
            f"# n_evaluations: {self.n_evaluations}",
            f"# seed: {self.seed}",
            f"# conf_level: {self.conf_level}",
            *(f"# note: {n}" for n in self.notes),
            *(h if h.startswith("#") else f"# {h}" for h in header),
        ]
        buf = io.StringIO()
        self.to_frame().to_csv(buf, index=False, float_format="%.6g")
        return write_text(path, "\n".join(lines) + "\n" + buf.getvalue())


def read_indices(path) -> SensitivityResult:
    """Read a CSV written by :meth:`SensitivityResult.to_csv` back into a result."""
    import pandas as pd

    path = Path(path)
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            k, _, v = line[1:].partition(":")
            meta.setdefault(k.strip(), v.strip())
    if meta.get("schema_version") != str(SCHEMA_VERSION) or "method" not in meta:
        raise DataFileError(
            "not a tregsim sensitivity-index CSV (missing '# schema_version: 1' / '# method')",
            file=path,
            fix="give a file written by tregsim sensitivity",
        )
    df = pd.read_csv(path, comment="#")
    params, outputs = [], []
    for name, g in df.groupby("parameter", sort=False):
        r = g.iloc[0]
        params.append(ParameterRange(name, r["low"], r["high"], r["scale"], r["parameter_unit"]))
    keys = df[["output", "output_unit", "month"]].drop_duplicates()
    for _, r in keys.iterrows():
        m = None if pd.isna(r["month"]) else float(r["month"])
        outputs.append(Output(r["output"], r["output_unit"], m))
    fixed = {
        "output",
        "output_unit",
        "month",
        "parameter",
        "parameter_unit",
        "low",
        "high",
        "scale",
    }
    idx_names = [c for c in df.columns if c not in fixed]
    indices = {k: df[k].to_numpy(float).reshape(len(outputs), len(params)) for k in idx_names}
    return SensitivityResult(
        method=meta["method"],
        parameters=tuple(params),
        outputs=tuple(outputs),
        indices=indices,
        n_base=int(meta["n_base"]),
        n_evaluations=int(meta["n_evaluations"]),
        seed=int(meta["seed"]),
        conf_level=float(meta["conf_level"]),
    )


def _bootstrap_seed(seed: int) -> int:
    """SALib ignores a seed of 0 (``if seed:``) and then bootstraps from NumPy's global state,
    so seed 0 gave different confidence intervals on every run; any other seed is kept."""
    return int(seed) if seed else 2**31 - 1


def check_sample_size(n_base: int, what: str, power_of_two: bool):
    """Raise :class:`ArgumentError` unless ``n_base`` is an integer ≥ 2 (and a power of 2)."""
    if not isinstance(n_base, (int, np.integer)) or n_base < 2:
        raise ArgumentError(
            f"{what} must be an integer ≥ 2, got {n_base!r}", field=what, fix="use e.g. 512"
        )
    if power_of_two and (n_base & (n_base - 1)):
        lo = 1 << (int(n_base).bit_length() - 1)
        raise ArgumentError(
            f"{what} must be a power of 2 (keeps the Sobol' sequence balanced), got {n_base}",
            field=what,
            fix=f"use {lo} or {lo * 2}",
        )


def sobol_design(params, n_base: int, *, seed: int, calc_second_order: bool = False):
    """Saltelli design in natural units: ``(n_base·(d+2), d)`` (or ``n_base·(2d+2)`` with
    second order), from SALib's scrambled Sobol' sampler seeded with ``seed``."""
    from SALib.sample import sobol as sobol_sample

    params = make_problem(params)
    check_sample_size(n_base, "n_base", power_of_two=True)
    U = sobol_sample.sample(
        _salib_problem(params), int(n_base), calc_second_order=calc_second_order, seed=seed
    )
    return _to_natural(params, U)


def sobol_indices(
    func: Callable[[np.ndarray], np.ndarray],
    problem: Sequence[ParameterRange | dict],
    n_base: int,
    *,
    seed: int,
    outputs: Sequence[Output | str] | None = None,
    calc_second_order: bool = False,
    num_resamples: int = 200,
    conf_level: float = 0.95,
) -> SensitivityResult:
    """First-order and total Sobol' indices of each output of ``func``.

    Parameters
    ----------
    func : ``func(X) -> Y``; ``X`` has shape ``(n_samples, n_params)`` in natural units
        (columns in problem order), ``Y`` shape ``(n_samples, n_outputs)``. Called **once**
        on the whole Saltelli design, ``n_samples = n_base·(n_params + 2)``.
    problem : parameter ranges (see :func:`make_problem`).
    n_base : base sample size N, a power of 2.
    seed : seeds the scrambled Sobol' sequence and the bootstrap of the CIs.
    outputs : names (or :class:`Output` with unit and month) of the columns of ``Y``.
    calc_second_order : also compute S2 (stored as ``S2`` of shape
        ``(n_outputs, n_params, n_params)`` and its ``S2_conf``).
    num_resamples, conf_level : bootstrap of the confidence intervals.

    An output with zero variance over the design gets NaN indices and a note.
    """
    from SALib.analyze import sobol as sobol_analyze

    params = make_problem(problem)
    X = sobol_design(params, n_base, seed=seed, calc_second_order=calc_second_order)
    Y, outs = _evaluate(func, X, outputs, "Saltelli")
    d = len(params)
    keys = ["S1", "S1_conf", "ST", "ST_conf"]
    res = {k: np.full((len(outs), d), np.nan) for k in keys}
    if calc_second_order:
        for k in ("S2", "S2_conf"):
            res[k] = np.full((len(outs), d, d), np.nan)
    notes = []
    sp = _salib_problem(params)
    for i in range(len(outs)):
        y = Y[:, i]
        if np.ptp(y) == 0:
            notes.append(f"output {outs[i].label} is constant over the design: indices NaN")
            continue
        si = sobol_analyze.analyze(
            sp,
            y,
            calc_second_order=calc_second_order,
            num_resamples=num_resamples,
            conf_level=conf_level,
            seed=_bootstrap_seed(seed),
        )
        for k in res:
            res[k][i] = si[k]
    return SensitivityResult(
        method="sobol",
        parameters=params,
        outputs=outs,
        indices=res,
        n_base=int(n_base),
        n_evaluations=int(X.shape[0]),
        seed=int(seed),
        conf_level=conf_level,
        notes=tuple(notes),
    )


def morris_design(params, n_trajectories: int, *, seed: int, num_levels: int = 4):
    """Morris trajectories in natural units: ``(n_trajectories·(d+1), d)``."""
    from SALib.sample import morris as morris_sample

    params = make_problem(params)
    check_sample_size(n_trajectories, "n_trajectories", power_of_two=False)
    U = morris_sample.sample(
        _salib_problem(params), int(n_trajectories), num_levels=num_levels, seed=seed
    )
    return _to_natural(params, U), U


def morris_indices(
    func: Callable[[np.ndarray], np.ndarray],
    problem: Sequence[ParameterRange | dict],
    n_trajectories: int,
    *,
    seed: int,
    outputs: Sequence[Output | str] | None = None,
    num_levels: int = 4,
    num_resamples: int = 200,
    conf_level: float = 0.95,
) -> SensitivityResult:
    """Morris elementary-effects screening (μ, μ*, μ* CI, σ) of each output of ``func``.

    ``func`` is called once on all ``n_trajectories·(n_params + 1)`` points (shape
    ``(n_samples, n_params)``, natural units). Elementary effects are taken on the unit
    scale of each parameter, ``EE = (y(u + Δ) − y(u)) / Δ`` with ``u`` the position in the
    sampled range (in log space for log-scaled parameters), so μ* is in output units per
    full range and comparable across parameters: for ``y = c·x`` on ``[lo, hi]``,
    μ = μ* = ``c·(hi − lo)`` and σ = 0.
    """
    from SALib.analyze import morris as morris_analyze

    params = make_problem(problem)
    X, U = morris_design(params, n_trajectories, seed=seed, num_levels=num_levels)
    Y, outs = _evaluate(func, X, outputs, "Morris")
    d = len(params)
    keys = ["mu", "mu_star", "mu_star_conf", "sigma"]
    res = {k: np.full((len(outs), d), np.nan) for k in keys}
    sp = _salib_problem(params)
    for i in range(len(outs)):
        si = morris_analyze.analyze(
            sp,
            U,
            Y[:, i],
            num_resamples=num_resamples,
            conf_level=conf_level,
            num_levels=num_levels,
            seed=_bootstrap_seed(seed),
        )
        for k in keys:
            res[k][i] = np.asarray(si[k], dtype=float)
    return SensitivityResult(
        method="morris",
        parameters=params,
        outputs=outs,
        indices=res,
        n_base=int(n_trajectories),
        n_evaluations=int(X.shape[0]),
        seed=int(seed),
        conf_level=conf_level,
    )


# ------------------------------------------------------------------ on a tregsim experiment
DEFAULT_PARAMETERS = ("lambda_ref", "gamma_a", "q", "phi", "FX", "alpha_X", "F_M", "psi", "w")
PRIOR_QUANTILES = (0.05, 0.95)


def default_ranges(model, names: Sequence[str]) -> tuple[ParameterRange, ...]:
    """Ranges from the model file's priors: the 5 % and 95 % quantiles (``Prior.ppf``).

    Log scale for log-normal / log-uniform priors (rates and potencies spanning decades),
    linear otherwise. A parameter without a prior needs an explicit range.
    """
    out = []
    for name in names:
        p = model.spec.parameters.get(name)
        if p is None:
            raise ArgumentError(
                f"unknown parameter {name!r} for model {model.name}",
                field="params",
                fix=f"use names from: {', '.join(model.parameter_names)}",
            )
        if p.role in ("covariate", "individual"):
            raise ArgumentError(
                f"{name!r} is a {p.role} parameter (it varies between patients already)",
                field="params",
                fix="choose population or fixed parameters",
            )
        if p.prior is None:
            raise ArgumentError(
                f"{name!r} has no prior in the model file, so it has no default range",
                field="params",
                fix=f"give --range {name}=LOW..HIGH[:log]",
            )
        lo, hi = (float(v) for v in p.prior.ppf(np.array(PRIOR_QUANTILES)))
        scale = "log" if p.prior.dist in ("lognormal", "loguniform") else "linear"
        out.append(ParameterRange(name, lo, hi, scale, p.unit))
    return tuple(out)


def parse_range(spec: str, model) -> ParameterRange:
    """``NAME=LOW..HIGH`` or ``NAME=LOW..HIGH:log`` (natural units of the parameter)."""
    import re

    m = re.fullmatch(
        r"\s*([A-Za-z_]\w*)\s*=\s*([^.:]+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\.\.\s*"
        r"([^:]+?)\s*(?::\s*(log|linear))?\s*",
        spec,
    )
    fix = "write NAME=LOW..HIGH or NAME=LOW..HIGH:log, e.g. phi=0.5..50:log"
    if not m:
        raise ArgumentError(f"cannot parse range {spec!r}", field="--range", fix=fix)
    name = m.group(1)
    try:
        lo, hi = float(m.group(2)), float(m.group(3))
    except ValueError as e:
        raise ArgumentError(f"cannot parse range {spec!r}", field="--range", fix=fix) from e
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ArgumentError(
            f"range of {name} must have finite LOW < HIGH, got {lo:g}..{hi:g}",
            field="--range",
            fix=f"write {name}={min(lo, hi):g}..{max(lo, hi):g}" if lo != hi else fix,
        )
    scale = m.group(4) or "linear"
    if scale == "log" and lo <= 0:
        raise ArgumentError(
            f"a log range of {name} needs LOW > 0, got {lo:g}", field="--range", fix=fix
        )
    p = model.spec.parameters.get(name)
    unit = p.unit if p is not None else "-"
    return ParameterRange(name, lo, hi, scale, unit)


def experiment_outputs(months: Sequence[float]) -> tuple[Output, ...]:
    """Outputs of :func:`experiment_sensitivity`: cohort-mean control C-peptide and paired
    ΔC-peptide (Treg − control), nmol/L, at each visit month."""
    return tuple(
        [Output("cpeptide_control", "nmol/L", float(m)) for m in months]
        + [Output("delta_cpeptide", "nmol/L", float(m)) for m in months]
    )


def experiment_sensitivity(
    exp,
    problem: Sequence[ParameterRange | dict],
    n: int,
    *,
    seed: int,
    method: str = "sobol",
    n_patients: int = 16,
    months: Sequence[float] | None = None,
    arm: str | None = None,
    num_resamples: int = 200,
    **run_options,
) -> SensitivityResult:
    """Sobol' or Morris indices of the model's C-peptide predictions for an experiment.

    Each design point sets the problem's parameters for ``n_patients`` fixed virtual patients
    (the same patients — common random numbers — at every point), simulated under the
    treatment arm's regimen and under routine care in one batched, chunked run
    (:func:`tregsim.explore.sweep.simulate_paired`). Outputs, at each visit month > 0 after
    the baseline visit: the cohort mean of control-arm C-peptide and of the paired
    ΔC-peptide (nmol/L). ``n`` is the Sobol' base sample (power of 2) or the number of
    Morris trajectories. ``run_options`` go to ``simulate_paired`` (chunk_size, workers …).
    """
    from tregsim.explore.sweep import simulate_paired
    from tregsim.population.sampling import sample_population

    if method not in ("sobol", "morris"):
        raise ArgumentError(f"unknown method {method!r}", field="method", fix="use sobol or morris")
    params = make_problem(problem)
    names = [p.name for p in params]
    for p in params:
        spec = exp.model.spec.parameters.get(p.name)
        if spec is None or spec.role in ("covariate", "individual"):
            raise ArgumentError(
                f"{p.name!r} is not a population/fixed parameter of {exp.model.name}",
                field="params",
                fix="choose population or fixed model parameters",
            )
    if months is None:
        months = [m for m in exp.visit_months if m > 0]
    months = [float(m) for m in months]
    pop = sample_population(exp, n_patients, seed)
    outs = experiment_outputs(months)

    def func(X: np.ndarray) -> np.ndarray:
        po = simulate_paired(
            exp, names, X, n=n_patients, seed=seed, arm=arm, months=months, pop=pop, **run_options
        )
        ok = po.ok[..., None]
        cnt = ok.sum(axis=1)
        if (cnt == 0).any():
            raise ArgumentError(
                f"every patient failed to solve at {int((cnt[:, 0] == 0).sum())} design points",
                field="params",
                fix="narrow the ranges (see ranges)",
            )
        ctrl = np.where(ok, po.control, 0.0).sum(axis=1) / cnt
        delta = np.where(ok, po.treg - po.control, 0.0).sum(axis=1) / cnt
        return np.concatenate([ctrl, delta], axis=1)

    if method == "sobol":
        return sobol_indices(func, params, n, seed=seed, outputs=outs, num_resamples=num_resamples)
    return morris_indices(func, params, n, seed=seed, outputs=outs, num_resamples=num_resamples)


def _save_sensitivity(res: SensitivityResult, out_dir) -> Path:
    """Write ``indices.csv``, ``bars_<output>_<m>mo.png``, ``time_<output>.png`` and
    ``manifest.json`` (last) into ``out_dir``."""
    from tregsim.plots import explore as pe
    from tregsim.results import ensure_output_dir, write_manifest

    out = ensure_output_dir(out_dir)
    res.to_csv(out / "indices.csv", header=list(res.ledger))
    foot = pe._ledger_footnote(list(res.ledger))
    index = "ST" if res.method == "sobol" else "mu_star"
    months = [x.month for x in res.outputs]
    for i, o in enumerate(res.outputs):
        if o.month == 12.0 or (12.0 not in months and i == 0):
            ax = pe.plot_sensitivity_bars(res, i)
            pe.add_footnote(ax.figure, foot)
            ax.figure.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
            pe.save(ax.figure, out / f"bars_{o.name}_{o.month:g}mo.png")
    for name in dict.fromkeys(o.name for o in res.outputs):
        ax = pe.plot_indices_vs_time(res, name, index)
        pe.add_footnote(ax.figure, foot)
        ax.figure.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
        pe.save(ax.figure, out / f"time_{name}.png")
    write_manifest(out, res.manifest)
    return out


def sensitivity_study(
    exp,
    *,
    params: Sequence[str] = DEFAULT_PARAMETERS,
    ranges: Sequence[str] = (),
    method: str = "sobol",
    n: int = 512,
    patients: int = 16,
    seed: int = 0,
    arm: str | None = None,
    out_dir=None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 16384,
    argv: list[str] | None = None,
    progress: bool = True,
) -> SensitivityResult:
    """:func:`experiment_sensitivity` over prior-based ranges, with its ledger and manifest:
    the analysis behind ``tregsim sensitivity`` and the report's sensitivity section.

    params : population/fixed model parameters to vary; ranges default to the 5–95 % prior
        quantiles (:func:`default_ranges`); ``ranges`` override some (``NAME=LOW..HIGH[:log]``).
    n : Sobol' base sample (power of 2) or Morris trajectories; ``patients`` fixed virtual
        patients per design point. Parameters vary over their priors, not a posterior.
    """
    import dataclasses

    from tregsim.cohort import start_analysis
    from tregsim.explore.sweep import ledger_lines

    if patients < 1:
        raise ArgumentError(
            f"patients must be ≥ 1, got {patients}", field="patients", fix="use e.g. 16"
        )
    names = [p.strip() for p in params if p.strip()]
    overrides = {r.name: r for r in (parse_range(s, exp.model) for s in ranges)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ArgumentError(
            f"ranges given for {unknown}, which are not in params",
            field="ranges",
            fix="add them to params or drop the range",
        )
    problem = make_problem(
        [overrides.get(nm) or default_ranges(exp.model, [nm])[0] for nm in names]
    )
    check_sample_size(n, "n", power_of_two=method == "sobol")
    arm = exp.treatment_arm(arm)
    settings = {
        "method": method,
        "n": n,
        "patients": patients,
        "arm": arm,
        "problem": [[p.name, p.low, p.high, p.scale] for p in problem],
    }
    st = start_analysis(
        exp,
        command="sensitivity",
        function="tregsim.explore.sensitivity.sensitivity_study",
        seed=seed,
        arguments={"params": names, "ranges": list(ranges), **settings},
        settings=settings,
        use_posterior=False,
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    res = experiment_sensitivity(
        exp,
        problem,
        n,
        seed=seed,
        method=method,
        n_patients=patients,
        arm=arm,
        out_dir=st.out,
        workers=workers,
        scheduler=scheduler,
        chunk_size=chunk_size,
        progress=progress,
    )
    ledger = ledger_lines(exp, arm=arm, swept=[p.name for p in problem], n=patients, seed=seed)
    ledger = [
        ln.replace("# phi: swept (column phi)", "# phi: varied (a sensitivity parameter)")
        for ln in ledger
    ]
    manifest = st.finish(n_model_evaluations=res.n_evaluations)
    return dataclasses.replace(res, ledger=tuple(ledger), manifest=manifest)
