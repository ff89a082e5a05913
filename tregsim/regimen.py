"""Treatment regimens of an arm, turned into per-patient dose records.

* :class:`RoutineCare` — insulin and usual care only (the model's baseline; no doses).
* :class:`TregInfusion` — ``n_infusions`` boluses of Tregs every ``interval_days`` from
  ``infusion_day`` (days after diagnosis), either ``dose_per_kg`` (cells/kg) or
  ``dose_total`` (cells, divided by each patient's weight in kg).
* :class:`Adjuncts` — low-dose IL-2 given with the cells: ``il2_dose_iu`` IU per injection on
  each of ``il2_days`` (days after diagnosis), dosed into the model state ``IL2`` as IU/kg (the
  dose divided by each patient's weight). Only models declaring ``[doses.IL2]`` take it
  (``treg_t1d_v1_il2``); :func:`check_adjuncts` refuses it for the others at load time.

:func:`regimen_doses` is the one path from a regimen to :class:`tregsim.Doses` (cells and IL-2);
experiments (cohort, power, run) and ``tregsim compare`` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim.schema import Table

MAX_DOSE_CELLS_PER_KG = 1e12  # far above any clinical product; catches unit slips (cells vs 1e6)
IL2_TARGET = "IL2"
"""Model state that receives IL-2 injections (IU/kg), declared by ``[doses.IL2]``."""
IL2_MODEL = "treg_t1d_v1_il2"
"""The shipped model with an IL-2 axis."""
MAX_IL2_DOSE_IU = 1e9  # low-dose IL-2 is 0.3e6-1e6 IU per injection (TILT); catches unit slips


def takes_il2(model) -> bool:
    """True when ``model`` accepts IL-2 doses (declares ``[doses.IL2]``)."""
    return IL2_TARGET in model.spec.doses


@dataclass(frozen=True)
class Adjuncts:
    """IL-2 given with the cells: ``il2_dose_iu`` IU per dose on each of ``il2_days``."""

    il2_dose_iu: float = 0.0
    il2_days: tuple[float, ...] = ()

    @property
    def active(self) -> bool:
        return self.il2_dose_iu > 0 and len(self.il2_days) > 0

    def dose_arrays(self, weight_kg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time days, amount IU/kg), each ``(n, n_days)`` for weights ``(n,)`` kg."""
        w = np.asarray(weight_kg, dtype=float)
        k = len(self.il2_days)
        time = np.broadcast_to(np.asarray(self.il2_days, float), (w.shape[0], k)).copy()
        amount = np.repeat((self.il2_dose_iu / w)[:, None], k, axis=1)
        return time, amount

    def describe(self) -> str:
        if not self.active:
            return ""
        d = self.il2_days
        return f"IL-2 {self.il2_dose_iu:.3g} IU/dose on days {d[0]:g}-{d[-1]:g} ({len(d)} doses)"


def regimen_doses(regimen, weight_kg: np.ndarray):
    """The :class:`tregsim.Doses` of ``regimen`` for patients of weights ``(n,)`` kg.

    Cells (``regimen.dose_arrays``, cells/kg into ``regimen.target``) and, when the regimen's
    adjuncts are active, IL-2 (IU/kg into ``IL2``). Returns ``None`` (nothing given), a single
    ``Doses``, or a list of them (cells and IL-2) for :func:`tregsim.simulate`.
    """
    from tregsim.solve import Doses

    out = []
    cells = regimen.dose_arrays(weight_kg)
    if cells is not None:
        out.append(Doses(time=cells[0], amount=cells[1], target=regimen.target))
    if regimen.adjuncts.active:
        t, a = regimen.adjuncts.dose_arrays(weight_kg)
        out.append(Doses(time=t, amount=a, target=IL2_TARGET))
    if not out:
        return None
    return out[0] if len(out) == 1 else out


def _with_adjuncts(describe: str, adjuncts: Adjuncts) -> str:
    il2 = adjuncts.describe()
    return f"{describe} + {il2}" if il2 else describe


@dataclass(frozen=True)
class RoutineCare:
    """Routine care only: no infused cells."""

    adjuncts: Adjuncts = field(default_factory=Adjuncts)
    kind = "routine_care"
    target = "X"

    def dose_arrays(self, weight_kg: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def doses(self, pop):
        """IL-2 doses of the adjuncts (:func:`regimen_doses`); ``None`` without adjuncts."""
        return regimen_doses(self, pop.covariates["weight"])

    def describe(self) -> str:
        return _with_adjuncts("routine care", self.adjuncts)


@dataclass(frozen=True)
class TregInfusion:
    """Bolus infusions of Tregs into the model state ``target`` (cells/kg)."""

    infusion_day: float
    dose_per_kg: float | None = None
    dose_total: float | None = None
    n_infusions: int = 1
    interval_days: float = 0.0
    target: str = "X"
    adjuncts: Adjuncts = field(default_factory=Adjuncts)
    kind = "treg_infusion"

    @property
    def times_days(self) -> np.ndarray:
        """Infusion times, days after diagnosis, shape ``(n_infusions,)``."""
        return self.infusion_day + self.interval_days * np.arange(self.n_infusions)

    def dose_arrays(self, weight_kg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time days, amount cells/kg), each ``(n, n_infusions)`` for weights ``(n,)`` kg."""
        w = np.asarray(weight_kg, dtype=float)
        n = w.shape[0]
        time = np.broadcast_to(self.times_days, (n, self.n_infusions)).copy()
        if self.dose_per_kg is not None:
            per_kg = np.full(n, self.dose_per_kg)
        else:
            per_kg = self.dose_total / w
        amount = np.repeat(per_kg[:, None], self.n_infusions, axis=1)
        return time, amount

    def doses(self, pop):
        """:class:`tregsim.Doses` for a population (uses ``pop.covariates['weight']``, kg):
        the cells, plus IL-2 when the adjuncts are active (:func:`regimen_doses`)."""
        return regimen_doses(self, pop.covariates["weight"])

    def describe(self) -> str:
        d = (
            f"{self.dose_per_kg:.3g} cells/kg"
            if self.dose_per_kg is not None
            else f"{self.dose_total:.3g} cells"
        )
        s = f"Tregs {d} on day {self.infusion_day:g}"
        if self.n_infusions > 1:
            s += f" ×{self.n_infusions} every {self.interval_days:g} d"
        return _with_adjuncts(s, self.adjuncts)


def parse_adjuncts(t: Table, model=None, *, horizon_days: float | None = None) -> Adjuncts:
    """Parse ``[arms.<name>.adjuncts]``; with ``model`` refuse IL-2 it cannot take."""
    t.check_keys(("il2_dose_iu", "il2_days"))
    dose = t.number("il2_dose_iu", default=0.0, lo=0.0, hi=MAX_IL2_DOSE_IU, unit="IU")
    days = t.numbers(
        "il2_days", default=[], lo=0.0, hi=horizon_days, increasing=True, min_len=0, unit="days"
    )
    adj = Adjuncts(dose, tuple(days))
    if dose > 0 and not days:
        raise t.error(
            "il2_dose_iu > 0 but no il2_days",
            key="il2_days",
            fix="list the injection days after diagnosis, e.g. il2_days = [60, 61, 62, 63, 64]",
        )
    if model is not None:
        check_adjuncts(adj, model, t)
    return adj


def check_adjuncts(adj: Adjuncts, model, t: Table) -> None:
    """Raise (naming ``adjuncts.il2_dose_iu``) if ``adj`` gives IL-2 to a model without IL-2."""
    if adj.active and not takes_il2(model):
        raise t.error(
            f"IL-2 adjunct requested but model {model.spec.name!r} takes no IL-2 doses "
            f"(no [doses.{IL2_TARGET}])",
            key="il2_dose_iu",
            fix=f'set model = "{IL2_MODEL}" (the model with an IL-2 axis) or il2_dose_iu = 0',
        )


def parse_regimen(t: Table, adjuncts: Adjuncts, *, horizon_days: float):
    """Parse ``[arms.<name>.regimen]``."""
    kind = t.string("type", choices=("routine_care", "treg_infusion"))
    if kind == "routine_care":
        t.check_keys(("type",))
        return RoutineCare(adjuncts)
    t.check_keys(
        (
            "type",
            "dose_per_kg",
            "dose_total",
            "infusion_day",
            "n_infusions",
            "interval_days",
            "target",
        ),
        required=("infusion_day",),
    )
    if t.has("dose_per_kg") == t.has("dose_total"):
        raise t.error(
            "give exactly one of dose_per_kg (cells/kg) and dose_total (cells)",
            fix="keep dose_per_kg = 2e7 or dose_total = 1e9, not both / neither",
        )
    per_kg = (
        t.number("dose_per_kg", lo=0.0, hi=MAX_DOSE_CELLS_PER_KG, unit="cells/kg")
        if t.has("dose_per_kg")
        else None
    )
    total = (
        t.number("dose_total", lo=0.0, hi=MAX_DOSE_CELLS_PER_KG * 500, unit="cells")
        if t.has("dose_total")
        else None
    )
    day = t.number("infusion_day", lo=0.0, hi=horizon_days, unit="days")
    n_inf = t.integer("n_infusions", default=1, lo=1, hi=1000)
    interval = t.number("interval_days", default=0.0, lo=0.0, unit="days")
    if n_inf > 1 and interval <= 0:
        raise t.error(
            f"must be > 0 days when n_infusions = {n_inf}",
            key="interval_days",
            fix="set interval_days to the days between infusions",
        )
    last = day + interval * (n_inf - 1)
    if last > horizon_days:
        raise t.error(
            f"last infusion on day {last:g} is after horizon_days = {horizon_days:g}",
            key="n_infusions",
            fix="reduce n_infusions or interval_days",
        )
    return TregInfusion(
        day, per_kg, total, n_inf, interval, t.string("target", default="X"), adjuncts
    )
