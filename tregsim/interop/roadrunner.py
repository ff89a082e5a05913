"""Simulate an exported SBML model in libRoadRunner, patient by patient.

The independent check of tregsim's own solver (``tests/test_interop_sbml.py``) and the
comparison in ``benchmarks/bench_roadrunner.py``. The model is loaded (JIT-compiled) once; per
patient the parameters are set, the model reset (initial assignments re-evaluated) and
simulated with CVODE (BDF).

Requires the ``interop`` extra (``pip install tregsim[interop]``: libroadrunner).
"""

from __future__ import annotations

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.interop.sbml import NEVER_DOSED, clock_parameter

NO_DOSE_DAY = 1.0e30
"""``dose_<i>_day`` for a patient without an i-th dose (the event never fires)."""


def load_roadrunner(sbml: str, *, rtol: float = 1e-8, atol: float = 1e-12):
    """A ``roadrunner.RoadRunner`` for SBML text or a path, CVODE with the given tolerances.

    ``atol`` is absolute in the state's units (roadrunner does not scale it per state).
    """
    try:
        import roadrunner
    except ImportError as e:  # pragma: no cover
        raise ImportError("libRoadRunner is needed: pip install 'tregsim[interop]'") from e
    r = roadrunner.RoadRunner(str(sbml))
    r.setIntegrator("cvode")
    r.integrator.relative_tolerance = float(rtol)
    r.integrator.absolute_tolerance = float(atol)
    r.integrator.stiff = True
    r.integrator.maximum_num_steps = 100_000
    return r


def simulate_roadrunner(
    r, model, params, times, *, doses=None, selections: tuple[str, ...] | None = None
) -> np.ndarray:
    """Simulate every patient of ``params`` in roadrunner ``r`` (built from ``model``'s export).

    Parameters
    ----------
    r : from :func:`load_roadrunner` on :func:`tregsim.interop.sbml.export_sbml` of ``model``
        with at least as many dose events as the largest per-patient schedule.
    model : the tregsim CompiledModel (names of states and clocks).
    params : ParameterBatch or mapping name → (n,) values (only SBML parameter ids are set).
    times : (n_times,) output days since diagnosis, increasing, ≥ 0 (t0 = 0 is prepended
        internally if missing).
    doses : a :class:`tregsim.Doses` ((n, k) or (k,) days / cells/kg; NaN = no dose) or None.
    selections : SBML ids to return (default: the model's states).

    Returns
    -------
    (n_selections, n, n_times) float64; a failed patient gets NaN.
    """
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or (np.diff(times) <= 0).any() or times[0] < 0:
        raise ArgumentError(
            "times must be increasing days ≥ 0",
            field="times",
            fix="pass e.g. np.arange(25) * 30.4375",
        )
    selections = tuple(selections or model.state_names)
    ids = list(r.model.getGlobalParameterIds())
    pos = {k: i for i, k in enumerate(ids)}
    names = [k for k in params if k in pos]
    idx = np.array([pos[k] for k in names], dtype=np.int32)
    vals = np.stack([np.asarray(params[k], dtype=float) for k in names])  # (n_set, n)
    n = vals.shape[1]
    n_events = sum(1 for k in ids if k.startswith("dose_") and k.endswith("_day"))
    if doses is not None:
        dt, da = doses.for_batch(n)
        if dt.shape[1] > n_events:
            raise ArgumentError(
                f"{dt.shape[1]} doses per patient but the SBML file has {n_events} dose events",
                field="doses",
                fix="export the model with as many doses as the longest schedule",
            )
        ev_idx = np.array(
            [[pos[f"dose_{i + 1}_day"], pos[f"dose_{i + 1}_amount"]] for i in range(n_events)],
            dtype=np.int32,
        ).reshape(-1)
    elif n_events:
        dt = np.full((n, 0), np.nan)
        da = dt
        ev_idx = np.array(
            [[pos[f"dose_{i + 1}_day"], pos[f"dose_{i + 1}_amount"]] for i in range(n_events)],
            dtype=np.int32,
        ).reshape(-1)
    t_out = times if times[0] == 0 else np.concatenate([[0.0], times])
    skip = 0 if times[0] == 0 else 1
    r.timeCourseSelections = list(selections)
    out = np.full((len(selections), n, len(times)), np.nan)
    clocks = model.clock_names
    tlast = [clock_parameter(c, len(clocks)) for c in clocks]
    for j in range(n):
        r.resetAll()
        r.model.setGlobalParameterValues(idx, vals[:, j])
        if n_events:
            ev = np.empty((n_events, 2))
            ev[:, 0], ev[:, 1] = NO_DOSE_DAY, 0.0
            if doses is not None:
                k = dt.shape[1]
                given = ~np.isnan(dt[j])
                ev[:k][given, 0] = dt[j][given]
                ev[:k][given, 1] = da[j][given]
            r.model.setGlobalParameterValues(ev_idx, ev.reshape(-1))
        for c in tlast:
            r[c] = NEVER_DOSED
        r.reset()  # re-evaluates initial assignments with this patient's parameters
        try:
            res = np.asarray(r.simulate(times=t_out))
        except RuntimeError:
            continue
        out[:, j, :] = res[skip:].T
    return out


__all__ = ["NO_DOSE_DAY", "load_roadrunner", "simulate_roadrunner"]
