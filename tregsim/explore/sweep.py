"""Grid sweeps over regimen fields and model parameters (dose × timing and beyond).

For every grid point the *same* virtual patients (common random numbers: one population
sample, one seed) receive the Treg regimen of that point, and each is paired with itself
under routine care, so ΔC-peptide = C_treg − C_control is a within-patient difference free
of between-patient noise. All grid points × patients are simulated in a few batched
``simulate_arrays`` calls: rows (grid point, patient) are stacked along the patient axis and
cut into chunks (``tregsim.parallel.run_chunks``, so ``--workers``/resume work), never a
Python loop of cohorts.

What may be swept
-----------------
* regimen fields of the treatment arm (:class:`tregsim.regimen.TregInfusion`):
  ``dose_per_kg`` (cells/kg), ``dose_total`` (cells), ``infusion_day`` (days since
  diagnosis), ``n_infusions`` (integer ≥ 1), ``interval_days`` (days);
* any model parameter of role ``population`` or ``fixed`` (e.g. ``phi``, ``psi``, ``FX``,
  ``lambda_ref``). Covariates and individual parameters come from the population and cannot
  be swept. Sweeping an IIV SD (e.g. ``omega_lambda``) rescales each patient's own
  log-deviation, keeping the common random numbers.

Model parameters that cannot act without infused cells (found symbolically: they vanish from
the routine-care dynamics when the dose-fed states are 0 — φ, ψ, FX, …) share one control
cohort; others (e.g. ``lambda_ref``) get their own control per value.

Endpoints are at visit months counted, like the experiment's visits, from its baseline visit:
day = ``baseline_day + 30.4375 · month``.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.grid import GRID_FIX as _GRID_FIX
from tregsim.grid import parse_values
from tregsim.results import SHIPPED
from tregsim.units import DAYS_PER_MONTH

DEFAULT_MONTHS = (12.0, 24.0)
RESPONDER_THRESHOLD_NMOL_L = 0.05
"""Default responder threshold: paired ΔC-peptide ≥ 0.05 nmol/L (MMTT 2-h AUC mean).

Why 0.05: about 10 % of a typical 12-month routine-care value (~0.5 nmol/L in the placebo
arms of Dufort 2019, ../shared/data/placebo_cpeptide_by_age_month.csv). It is a convention
of this tool, not a validated clinical cut-off; change it with ``threshold_nmol_L`` /
``--responder-threshold``."""

REGIMEN_FIELDS = {
    "dose_per_kg": "cells/kg",
    "dose_total": "cells",
    "infusion_day": "days",
    "n_infusions": "count",
    "interval_days": "days",
}


@dataclass(frozen=True)
class GridAxis:
    """One swept quantity: ``name`` takes ``values`` (natural units); ``spacing`` is
    ``"log"``, ``"linear"`` or ``"list"`` (plots use a log axis for ``"log"``)."""

    name: str
    values: np.ndarray
    spacing: str

    def __len__(self) -> int:
        return len(self.values)


def parse_grid(spec: str) -> GridAxis:
    """Parse one ``--grid`` argument.

    Syntax
    ------
    ``name=a..b:log:k``  k values log-spaced from a to b (both > 0, inclusive);
    ``name=a..b:lin:k``  k values evenly spaced from a to b (inclusive);
    ``name=a..b:step``   a, a + step, … up to b (inclusive within 1e-9·step);
    ``name=v1,v2,…``     the listed values (a single value is allowed).

    Values are floats; duplicates are rejected. Whether ``name`` exists is checked later
    against the experiment (regimen fields) and model (parameters).
    """
    name, eq, rhs = spec.partition("=")
    name = name.strip()
    if not eq or not name or not rhs.strip():
        raise ArgumentError(f"cannot parse grid {spec!r}", field="grid", fix=_GRID_FIX)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ArgumentError(f"grid name {name!r} is not an identifier", field="grid", fix=_GRID_FIX)
    values, spacing = parse_values(rhs, field="grid", name=name)
    return GridAxis(name, values.astype(float), spacing)


# ------------------------------------------------------------------------ what can be swept
def sweepable(exp) -> dict[str, str]:
    """Name → unit of everything that may be swept for ``exp`` (regimen fields first)."""
    out = dict(REGIMEN_FIELDS)
    for name, p in exp.model.spec.parameters.items():
        if p.role in ("population", "fixed"):
            out[name] = p.unit
    return out


def _unit_suffix(unit: str) -> str:
    u = {
        "1": "",
        "-": "",
        "count": "",
        "cells/kg": "cells_per_kg",
        "1/day": "per_day",
        "day": "days",
        "nmol/L": "nmol_L",
        "mg/dL": "mg_dL",
    }.get(unit, unit)
    u = re.sub(r"[^A-Za-z0-9]+", "_", u).strip("_")
    return f"_{u}" if u else ""


def column_name(name: str, unit: str) -> str:
    """CSV column of a swept quantity with its unit, e.g. ``dose_per_kg_cells_per_kg``."""
    suffix = _unit_suffix(unit)
    return name if name.endswith(suffix) else name + suffix


def control_free_parameters(model) -> frozenset[str]:
    """Parameters that cannot change the routine-care (no-dose) trajectory.

    The dose-fed states (initial value 0, whose right-hand sides vanish when all of them are
    0 — X and M of treg_t1d) stay at 0 without doses; a parameter that appears neither in
    the other states' right-hand sides with those states set to 0, nor in any initial value
    or observable, cannot act on the control arm. Found once per model with sympy.
    """
    import sympy as sp

    key = id(model)
    hit = _CONTROL_FREE_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    spec = model.spec
    names = list(model.state_names)
    rhs = dict(zip(names, model.rhs_exprs))
    sym = spec.symbols
    # no simplify(): a zero that sympy does not see at once only costs extra controls
    cand = {s for s in names if sp.sympify(spec.states[s].initial) == 0}
    while True:
        zero = {sym[s]: 0 for s in cand}
        keep = {s for s in cand if rhs[s].subs(zero) == 0}
        if keep == cand:
            break
        cand = keep
    zero = {sym[s]: 0 for s in cand}
    used: set[str] = set()
    exprs = [rhs[s].subs(zero) for s in names if s not in cand]
    exprs += [spec.expand(spec.states[s].initial) for s in names]
    exprs += [spec.expand(o.expr).subs(zero) for o in spec.observables.values()]
    for e in exprs:
        used |= {str(x) for x in e.free_symbols}
    free = frozenset(p for p in model.parameter_names if p not in used)
    _CONTROL_FREE_CACHE[key] = (model, free)
    return free


_CONTROL_FREE_CACHE: dict = {}


# ------------------------------------------------------------------------ the paired engine
@dataclass
class _Plan:
    """Everything a chunk of rows needs (picklable, shipped once to Dask workers).

    Rows ``[0, n_ctrl_groups·n)`` are control (no doses), then ``n_points·n`` treated rows;
    row r of a section is patient ``r % n`` of group ``r // n``.
    """

    model: object
    base: dict  # name → (n,) base parameter values of the n patients
    n: int
    model_axes: tuple  # names of swept model parameters
    ctrl_values: np.ndarray  # (n_ctrl_groups, n_model_axes)
    treg_values: np.ndarray  # (n_points, n_model_axes)
    # dose target → (time days, amount per kg), each (n_points, n, K), NaN time = no dose:
    # the cells of every point and, with an IL-2 adjunct, its IL-2 course (regimen_doses)
    doses: dict
    times: np.ndarray  # (n_times,) days since diagnosis
    iiv: dict  # sd-parameter name → list of individual parameter names it scales
    rtol: float
    atol: float
    backend: str = "auto"

    @property
    def n_ctrl_rows(self) -> int:
        return len(self.ctrl_values) * self.n

    @property
    def n_rows(self) -> int:
        return self.n_ctrl_rows + len(self.treg_values) * self.n


def _chunk_params(plan: _Plan, rows: np.ndarray):
    from tregsim.model.compile import ParameterBatch

    ctrl = rows < plan.n_ctrl_rows
    local = np.where(ctrl, rows, rows - plan.n_ctrl_rows)
    group, patient = local // plan.n, local % plan.n
    values = {k: v[patient] for k, v in plan.base.items()}
    if plan.model_axes:
        over = np.where(
            ctrl[:, None],
            plan.ctrl_values[np.minimum(group, len(plan.ctrl_values) - 1)],
            plan.treg_values[np.minimum(group, len(plan.treg_values) - 1)],
        )
        for j, name in enumerate(plan.model_axes):
            new = over[:, j]
            for ind in plan.iiv.get(name, ()):
                # individual = typical · exp(sd · η): rescale η·sd to the new sd exactly
                typical = plan.model.spec.parameters[ind].value
                old = values[name]
                values[ind] = typical * (values[ind] / typical) ** (new / old)
            values[name] = new
    tr = ~ctrl
    doses = {}
    for target, (time, amount) in plan.doses.items():
        K = time.shape[2]
        t = np.full((len(rows), K), np.nan)
        a = np.zeros((len(rows), K))
        t[tr] = time[group[tr], patient[tr]]
        a[tr] = amount[group[tr], patient[tr]]
        doses[target] = (t, a)
    return ParameterBatch(values, len(rows)), doses


def _as_list(doses) -> list:
    return [] if doses is None else [doses] if not isinstance(doses, list) else doses


def _paired_chunk(start: int, stop: int, plan: _Plan) -> dict:
    from tregsim.solve import Doses, simulate_arrays

    rows = np.arange(start, stop)
    params, arrays = _chunk_params(plan, rows)
    doses = [Doses(time=t, amount=a, target=k) for k, (t, a) in arrays.items() if t.shape[1]]
    res = simulate_arrays(
        plan.model, params, doses, plan.times, rtol=plan.rtol, atol=plan.atol, backend=plan.backend
    )
    return {"cpeptide": res.observables["cpeptide"], "status": res.status.astype(np.int8)}


@dataclass
class PairedOutcomes:
    """Paired C-peptide of the same patients under each regimen point and under control.

    treg : (n_points, n, n_months) MMTT C-peptide AUC mean, nmol/L, Treg arm;
    control : (n_points, n, n_months) the same patients under routine care, nmol/L;
    ok : (n_points, n) both solves succeeded; months : (n_months,) visit months after the
    baseline visit; times_days : (n_months,) days since diagnosis.
    """

    treg: np.ndarray
    control: np.ndarray
    ok: np.ndarray
    months: np.ndarray
    times_days: np.ndarray
    n_shared_controls: int

    @property
    def delta(self) -> np.ndarray:
        """ΔC-peptide = treg − control, nmol/L, (n_points, n, n_months); NaN where failed."""
        d = self.treg - self.control
        return np.where(self.ok[..., None], d, np.nan)


def _validated_points(exp, arm: str, names: list[str], points: np.ndarray):
    """Split axes into regimen/model, build one regimen per point (validated)."""
    from tregsim.regimen import MAX_DOSE_CELLS_PER_KG, TregInfusion

    valid = sweepable(exp)
    spec = exp.model.spec.parameters
    for nme in names:
        if nme not in valid:
            if nme in spec:
                why = (
                    f"{nme!r} is a {spec[nme].role} parameter (it comes from the population "
                    "of the experiment)"
                )
            else:
                why = f"unknown name {nme!r}"
            raise ArgumentError(why, field=f"--grid {nme}", fix=f"sweep one of: {', '.join(valid)}")
    arm = exp.treatment_arm(arm)
    reg = exp.arms[arm].regimen
    reg_axes = [i for i, nme in enumerate(names) if nme in REGIMEN_FIELDS]
    if not isinstance(reg, TregInfusion):
        raise ArgumentError(
            f"arm {arm!r} has regimen {reg.kind!r}, which infuses no cells",
            file=exp.path,
            field="--arm",
            fix="choose an arm with a treg_infusion regimen",
        )
    regimens = []
    for g in range(len(points)):
        kw = {}
        for i in reg_axes:
            nme, v = names[i], float(points[g, i])
            if nme == "n_infusions":
                if v != round(v) or v < 1:
                    raise ArgumentError(
                        f"n_infusions must be a whole number ≥ 1, got {v:g}",
                        field="--grid n_infusions",
                        fix="use e.g. 1,2,3",
                    )
                kw[nme] = int(v)
            elif nme in ("dose_per_kg", "dose_total"):
                hi = MAX_DOSE_CELLS_PER_KG * (500 if nme == "dose_total" else 1)
                if not 0 <= v <= hi:
                    raise ArgumentError(
                        f"{nme} must be in [0, {hi:g}] {REGIMEN_FIELDS[nme]}, got {v:g}",
                        field=f"--grid {nme}",
                        fix="use doses in cells/kg such as 1e6..1e8",
                    )
                kw[nme] = v
                kw["dose_total" if nme == "dose_per_kg" else "dose_per_kg"] = None
            else:
                if v < 0:
                    raise ArgumentError(
                        f"{nme} must be ≥ 0 days, got {v:g}",
                        field=f"--grid {nme}",
                        fix="use days ≥ 0",
                    )
                kw[nme] = v
        r = dataclasses.replace(reg, **kw)
        if r.n_infusions > 1 and r.interval_days <= 0:
            raise ArgumentError(
                f"n_infusions = {r.n_infusions} needs interval_days > 0 (arm {arm!r} has "
                f"{reg.interval_days:g})",
                field="--grid n_infusions",
                fix="also sweep or set interval_days, e.g. --grid interval_days=30",
            )
        regimens.append(r)
    return regimens


def _rows_of_model_axes(names, points, control_free):
    """Indices of model axes and the unique control groups they induce."""
    m_idx = [i for i, nme in enumerate(names) if nme not in REGIMEN_FIELDS]
    m_names = tuple(names[i] for i in m_idx)
    treg_values = points[:, m_idx] if m_idx else np.zeros((len(points), 0))
    # control groups: unique values of the model axes that can act without cells
    acts = [j for j, nme in enumerate(m_names) if nme not in control_free]
    if acts:
        keyvals = treg_values[:, acts]
        _uniq, first, inverse = np.unique(keyvals, axis=0, return_index=True, return_inverse=True)
        # a control row takes the point's values; the cell-only axes do not matter there
        ctrl_values = treg_values[first].copy()
    else:
        inverse = np.zeros(len(points), dtype=int)
        ctrl_values = treg_values[:1].copy()
    return m_names, treg_values, ctrl_values, np.asarray(inverse).ravel()


def simulate_paired(
    exp,
    names: list[str],
    points: np.ndarray,
    *,
    n: int,
    seed: int,
    arm: str | None = None,
    months=DEFAULT_MONTHS,
    pop=None,
    chunk_size: int = 16384,
    out_dir=None,
    stage: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    backend: str = "auto",
) -> PairedOutcomes:
    """Simulate ``n`` virtual patients under the Treg regimen at each of ``points`` and under
    routine care, in batched chunks.

    Parameters
    ----------
    exp : a loaded experiment.
    names : swept quantities (regimen fields and/or model parameters; see module docstring).
    points : (n_points, len(names)) values in natural units (cells/kg, days, …).
    n, seed : the virtual patients ``sample_population(exp, n, seed)`` (or pass ``pop``).
    arm : treatment arm whose regimen is modified (default: the first treatment arm).
    months : visit months after the baseline visit at which C-peptide is returned.
    chunk_size : rows (point × patient) per ``simulate_arrays`` call.
    out_dir, stage, workers, scheduler : checkpointing and execution, see
        :func:`tregsim.parallel.run_chunks`.
    rtol, atol, backend : solver settings of :func:`tregsim.simulate_arrays` (defaults: its
        defaults; ``backend="auto"`` takes the compiled numba solver when installed).
    """
    from tregsim.parallel import run_chunks
    from tregsim.population.sampling import sample_population
    from tregsim.solve import DEFAULT_ATOL, DEFAULT_RTOL

    names = list(names)
    points = np.atleast_2d(np.asarray(points, dtype=float))
    if points.shape[1] != len(names):
        raise ArgumentError(
            f"points have {points.shape[1]} columns for {len(names)} names",
            field="points",
            fix="give one column per swept name",
        )
    arm = arm or exp.treatment_arms[0]
    regimens = _validated_points(exp, arm, names, points)
    model = exp.model
    if pop is None:
        pop = sample_population(exp, n, seed)
    n = pop.n
    months = np.atleast_1d(np.asarray(months, dtype=float))
    times = exp.baseline_day + DAYS_PER_MONTH * months
    if np.any(np.diff(times) < 0) or times[0] < 0:
        raise ArgumentError(
            f"months must be increasing and ≥ 0, got {months.tolist()}",
            field="months",
            fix="list visit months in increasing order",
        )
    # an IIV SD acts on every patient's own parameters, with or without cells
    iiv_sds = {sd for sd in exp.variability.sd_log.values() if isinstance(sd, str)}
    free = control_free_parameters(model) - iiv_sds
    m_names, treg_values, ctrl_values, ctrl_of_point = _rows_of_model_axes(names, points, free)
    for j, nme in enumerate(m_names):
        v = treg_values[:, j]
        p = model.spec.parameters[nme]
        if p.prior is not None:
            lo, hi = p.prior.bounds
            bad = (v < lo) | (v > hi)
            if bad.any():
                raise ArgumentError(
                    f"{nme} = {v[bad][0]:g} is outside the support [{lo:g}, {hi:g}] of its "
                    f"prior {p.prior.describe()}",
                    field=f"--grid {nme}",
                    fix="sweep values inside the parameter's support",
                )
    # dose arrays of every point by target, (n_points, n, K), NaN-padded to the largest schedule
    from tregsim.regimen import regimen_doses

    per_point = [_as_list(regimen_doses(r, pop.covariates["weight"])) for r in regimens]
    doses = {}
    for target in dict.fromkeys(d.target for ds in per_point for d in ds):
        K = max(d.time.shape[1] for ds in per_point for d in ds if d.target == target)
        time = np.full((len(points), n, K), np.nan)
        amount = np.zeros((len(points), n, K))
        for g, ds in enumerate(per_point):
            for d in (d for d in ds if d.target == target):
                time[g, :, : d.time.shape[1]] = d.time
                amount[g, :, : d.amount.shape[1]] = d.amount
        doses[target] = (time, amount)
    iiv = {}
    for ind, sd in exp.variability.sd_log.items():
        if isinstance(sd, str) and sd in m_names:
            iiv.setdefault(sd, []).append(ind)
            if np.any(pop.params[sd] <= 0):
                raise ArgumentError(
                    f"cannot sweep {sd}: its base value is 0",
                    field=f"--grid {sd}",
                    fix="give it a positive default",
                )
    plan = _Plan(
        model=model,
        base={k: np.asarray(v, dtype=float) for k, v in pop.params.items()},
        n=n,
        model_axes=m_names,
        ctrl_values=ctrl_values,
        treg_values=treg_values,
        doses=doses,
        times=times,
        iiv=iiv,
        rtol=DEFAULT_RTOL if rtol is None else rtol,
        atol=DEFAULT_ATOL if atol is None else atol,
        backend=backend,
    )
    out = run_chunks(
        _paired_chunk,
        plan.n_rows,
        chunk_size=int(chunk_size),
        args=(plan,),
        out_dir=out_dir,
        stage=stage,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="paired simulations (point × patient rows)",
    )
    c = out["cpeptide"]
    st = out["status"]
    nc = plan.n_ctrl_rows
    ctrl = c[:nc].reshape(len(ctrl_values), n, len(times))
    ctrl_ok = st[:nc].reshape(len(ctrl_values), n) == 0
    treg = c[nc:].reshape(len(points), n, len(times))
    treg_ok = st[nc:].reshape(len(points), n) == 0
    return PairedOutcomes(
        treg=treg,
        control=ctrl[ctrl_of_point],
        ok=treg_ok & ctrl_ok[ctrl_of_point],
        months=months,
        times_days=times,
        n_shared_controls=len(ctrl_values),
    )


# ------------------------------------------------------------------------ summaries
def _month_tag(m: float) -> str:
    return f"{m:g}mo"


def summarize_delta(
    delta: np.ndarray,
    control: np.ndarray,
    treg: np.ndarray,
    ok: np.ndarray,
    threshold_nmol_L: float,
) -> dict[str, np.ndarray]:
    """Per-point summaries of paired differences at one month.

    delta, control, treg : (n_points, n) nmol/L; ok : (n_points, n) bool.
    Returns name → (n_points,): ``median``, ``p05``, ``p95``, ``mean`` of Δ (nmol/L);
    ``responder_fraction`` (share of patients with Δ ≥ threshold among solved ones);
    ``rel_preservation_pct`` = 100 · mean Δ / mean control (ratio of means: robust to
    patients whose control C-peptide is near 0); ``control_mean``, ``treg_mean`` (nmol/L).
    """
    G = delta.shape[0]
    out = {
        k: np.full(G, np.nan)
        for k in (
            "median",
            "p05",
            "p95",
            "mean",
            "responder_fraction",
            "rel_preservation_pct",
            "control_mean",
            "treg_mean",
        )
    }
    for g in range(G):
        sel = ok[g]
        if not sel.any():
            continue
        d = delta[g, sel]
        out["p05"][g], out["median"][g], out["p95"][g] = np.percentile(d, [5, 50, 95])
        out["mean"][g] = d.mean()
        out["responder_fraction"][g] = np.mean(d >= threshold_nmol_L)
        cm = control[g, sel].mean()
        out["control_mean"][g] = cm
        out["treg_mean"][g] = treg[g, sel].mean()
        out["rel_preservation_pct"][g] = 100.0 * d.mean() / cm if cm > 0 else np.nan
    return out


def population_for(exp, n: int, seed: int, posterior: dict | None = None):
    """``sample_population(exp, n, seed)``; with ``posterior`` (name → ``(n_draws,)``) patient
    i takes draw ``i mod n_draws`` of the population parameters, as cohorts do."""
    from tregsim.cohort import posterior_rows
    from tregsim.population.sampling import sample_population

    return sample_population(exp, n, seed, theta=posterior_rows(posterior, 0, n))


def ledger_lines(
    exp, *, arm: str, swept: list[str], n: int, seed: int, posterior: str | None = None
) -> list[str]:
    """The assumption ledger as ``# key: value`` lines for every arm-comparison CSV.

    ``posterior``: a description of the population-parameter posterior the patients drew
    from (``None``: the model file's values).
    """
    spec = exp.model.spec
    variant = f"variant of {spec.variant_of}" if spec.variant_of else "core model"
    lines = [f"# model: {spec.name} ({variant})", f"# experiment: {exp.name}"]
    lines.append(
        f"# population parameters: {posterior} (patient i uses draw i mod n_draws)"
        if posterior
        else "# population parameters: the model file's values (no posterior)"
    )
    overrides = getattr(exp, "parameter_overrides", None) or {}
    if overrides:
        lines.append(
            "# parameter overrides: "
            + ", ".join(f"{k} = {v:g}" for k, v in overrides.items())
            + " (--set or the experiment's [parameters] table)"
        )
    if "phi" in spec.parameters:
        p = spec.parameters["phi"]
        prior = p.prior.describe() if p.prior is not None else "no prior"
        if "phi" in swept:
            lines.append(f"# phi: swept (column phi); model default {p.value:g}, prior {prior}")
        else:
            lines.append(
                f"# phi: {overrides.get('phi', p.value):g} "
                f"({'overridden' if 'phi' in overrides else 'model default'}, prior-driven {prior}; potency × "
                "homing of infused vs endogenous Tregs, the least known number)"
            )
    reg = exp.arms[arm].regimen
    lines += [
        f"# arm: {arm} ({reg.describe()}; swept fields replace these) vs control {exp.control_arm}",
        f"# n_patients: {n}; seed: {seed} (the same virtual patients at every grid point)",
        "# delta: C-peptide of the Treg arm − the same patient under routine care "
        "(MMTT 2-h AUC mean, nmol/L)",
        f"# months: counted from the baseline visit (day {exp.baseline_day:g} after diagnosis)",
    ]
    return lines


@dataclass
class SweepResult:
    """Result of :func:`sweep`: one table row per grid point.

    ``axes`` in grid order (the first varies slowest); ``points`` (n_points, n_axes);
    ``outcomes`` the paired C-peptide arrays; ``table`` a pandas DataFrame with the grid
    columns (with units) and, per month m, ``delta_cpeptide_{m}mo_{median,p05,p95,mean}_nmol_L``,
    ``responder_fraction_{m}mo``, ``rel_preservation_{m}mo_pct``,
    ``{control,treg}_cpeptide_{m}mo_mean_nmol_L``, plus ``n_patients``, ``n_failed``.
    """

    axes: tuple[GridAxis, ...]
    units: dict[str, str]
    points: np.ndarray
    outcomes: PairedOutcomes
    threshold_nmol_L: float
    table: object
    ledger: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    def column(self, name: str) -> str:
        return column_name(name, self.units[name])

    def grid_array(self, column: str) -> np.ndarray:
        """Table column reshaped to the grid, shape ``tuple(len(a) for a in axes)``."""
        return self.table[column].to_numpy(float).reshape([len(a) for a in self.axes])

    def to_csv(self, path) -> Path:
        """Write ``sweep.csv`` atomically, with the assumption ledger as ``#`` lines."""
        from tregsim.io import write_text

        buf = io.StringIO()
        self.table.to_csv(buf, index=False, float_format="%.6g")
        head = [*self.ledger, f"# responder: delta >= {self.threshold_nmol_L:g} nmol/L"]
        return write_text(path, "\n".join(head) + "\n" + buf.getvalue())

    def save(self, out_dir) -> Path:
        """Write ``sweep.csv``, ``heatmap.png`` (2+ axes) or ``lines.png`` (1 axis) and
        ``manifest.json`` (last) into ``out_dir``."""
        from tregsim.plots import explore as pe
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        self.to_csv(out / "sweep.csv")
        if len(self.axes) >= 2:
            pe.save(pe.plot_sweep_heatmap(self, month=self.outcomes.months[0]), out / "heatmap.png")
        else:
            pe.save(pe.plot_sweep_lines(self), out / "lines.png")
        write_manifest(out, self.manifest)
        return out


def grid_points(axes: list[GridAxis]) -> np.ndarray:
    """Cartesian product of the axes' values, (n_points, n_axes); the first varies slowest."""
    return np.array(list(itertools.product(*[a.values for a in axes])), dtype=float)


def validate_sweep(exp, axes: list[GridAxis], *, arm: str | None = None, n: int = 1) -> str:
    """Check names, values and the arm before anything runs; returns the arm used."""
    if not axes:
        raise ArgumentError(
            "no grid given", field="grid", fix="add e.g. --grid dose_per_kg=1e6..1e8:log:9"
        )
    names = [a.name for a in axes]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ArgumentError(
            f"grid names repeated: {dup}", field="grid", fix="give each swept name once"
        )
    if isinstance(n, bool) or not (isinstance(n, int | np.integer) and n >= 1):
        raise ArgumentError(f"n must be ≥ 1, got {n}", field="n", fix="use e.g. n = 1000")
    arm = arm or exp.treatment_arms[0]
    _validated_points(exp, arm, names, grid_points(axes))
    return arm


def sweep(
    exp,
    axes: list[GridAxis],
    *,
    n: int,
    seed: int,
    arm: str | None = None,
    months=DEFAULT_MONTHS,
    threshold_nmol_L: float = RESPONDER_THRESHOLD_NMOL_L,
    posterior: dict | None = None,
    posterior_label: str | None = None,
    **run_options,
) -> SweepResult:
    """Cartesian sweep of ``axes`` (see :func:`parse_grid`) with paired controls.

    Parameters
    ----------
    exp : a loaded experiment; ``arm`` its treatment arm (default: the first).
    axes : grid axes; every combination is one point (first axis varies slowest).
    n, seed : virtual patients (the same at every point).
    months : visit months (after the baseline visit) of the Δ endpoints.
    threshold_nmol_L : responder threshold on Δ (nmol/L).
    posterior : name → ``(n_draws,)`` population-parameter draws (e.g.
        :func:`tregsim.cohort.load_posterior_draws`); patient i uses draw ``i mod n_draws``, as
        in cohorts, and swept model parameters override it. ``posterior_label`` names it in
        the ledger.
    run_options : ``chunk_size``, ``out_dir``, ``workers``, ``scheduler``, ``progress``,
        ``rtol``, ``atol``, ``backend`` (see :func:`simulate_paired`).
    """
    import pandas as pd

    arm = validate_sweep(exp, axes, arm=arm, n=n)
    names = [a.name for a in axes]
    points = grid_points(axes)
    if posterior:
        run_options["pop"] = population_for(exp, n, seed, posterior)
    po = simulate_paired(exp, names, points, n=n, seed=seed, arm=arm, months=months, **run_options)
    units = {nm: sweepable(exp)[nm] for nm in names}
    cols = {column_name(nm, units[nm]): points[:, i] for i, nm in enumerate(names)}
    delta = po.delta
    for k, m in enumerate(po.months):
        s = summarize_delta(
            delta[:, :, k], po.control[:, :, k], po.treg[:, :, k], po.ok, threshold_nmol_L
        )
        tag = _month_tag(m)
        for stat in ("median", "p05", "p95", "mean"):
            cols[f"delta_cpeptide_{tag}_{stat}_nmol_L"] = s[stat]
        cols[f"responder_fraction_{tag}"] = s["responder_fraction"]
        cols[f"rel_preservation_{tag}_pct"] = s["rel_preservation_pct"]
        cols[f"control_cpeptide_{tag}_mean_nmol_L"] = s["control_mean"]
        cols[f"treg_cpeptide_{tag}_mean_nmol_L"] = s["treg_mean"]
    cols["n_patients"] = np.full(len(points), po.ok.shape[1])
    cols["n_failed"] = (~po.ok).sum(axis=1)
    table = pd.DataFrame(cols)
    label = posterior_label or ("posterior draws" if posterior else None)
    ledger = ledger_lines(exp, arm=arm, swept=names, n=po.ok.shape[1], seed=seed, posterior=label)
    return SweepResult(tuple(axes), units, points, po, float(threshold_nmol_L), table, ledger)


def sweep_study(
    exp,
    grid: list[str | GridAxis],
    *,
    n: int = 1000,
    seed: int = 0,
    arm: str | None = None,
    months=DEFAULT_MONTHS,
    threshold_nmol_L: float = RESPONDER_THRESHOLD_NMOL_L,
    posterior=SHIPPED,
    out_dir=None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 16384,
    argv: list[str] | None = None,
    progress: bool = True,
) -> SweepResult:
    """:func:`sweep` with the default posterior and a manifest: the analysis behind
    ``tregsim sweep`` and the report's sweep section.

    grid : axes as :func:`parse_grid` strings (``"dose_per_kg=1e6,2e7"``) or :class:`GridAxis`.
    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path, or ``None``.
    out_dir, overwrite : checkpoint folder (prepared here) and whether to replace another run.
    argv : the command line that asked for it (``None``: the call is recorded).
    """
    from tregsim.cohort import start_analysis

    if not threshold_nmol_L == threshold_nmol_L:  # NaN
        raise ArgumentError(
            "threshold_nmol_L is NaN",
            field="threshold_nmol_L",
            fix="give a number in nmol/L, e.g. 0.05",
        )
    axes = [a if isinstance(a, GridAxis) else parse_grid(a) for a in grid]
    months = [float(m) for m in months]
    arm = validate_sweep(exp, axes, arm=arm, n=n)
    grid_text = [f"{a.name}=" + ",".join(f"{v:.10g}" for v in a.values) for a in axes]
    settings = {
        "grid": grid_text,
        "n": n,
        "arm": arm,
        "months": months,
        "responder_threshold_nmol_L": threshold_nmol_L,
    }
    st = start_analysis(
        exp,
        command="sweep",
        function="tregsim.explore.sweep.sweep_study",
        seed=seed,
        arguments=settings,
        settings=settings,
        posterior=posterior,
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    res = sweep(
        exp,
        axes,
        n=n,
        seed=seed,
        arm=arm,
        months=months,
        threshold_nmol_L=threshold_nmol_L,
        posterior=st.draws,
        posterior_label=st.label,
        out_dir=st.out,
        workers=workers,
        scheduler=scheduler,
        chunk_size=chunk_size,
        progress=progress,
    )
    n_patients = res.outcomes.ok.shape[1]
    res.manifest = st.finish(
        n_points=len(res.points),
        n_rows=int((res.points.shape[0] + res.outcomes.n_shared_controls) * n_patients),
    )
    return res


def load_sweep(out_dir) -> dict:
    """A sweep saved by :meth:`SweepResult.save`: ``{"table": DataFrame, "ledger": [...],
    "manifest": {...}}`` (the paired arrays are not saved)."""
    import pandas as pd

    from tregsim.results import read_manifest

    out = Path(out_dir)
    text = (out / "sweep.csv").read_text(encoding="utf-8").splitlines()
    ledger = [ln for ln in text if ln.startswith("#")]
    return {
        "table": pd.read_csv(out / "sweep.csv", comment="#"),
        "ledger": ledger,
        "manifest": read_manifest(out),
    }
