"""Treatment regimens of an arm, turned into per-patient dose records.

* :class:`RoutineCare` — insulin and usual care only (the model's baseline; no doses).
* :class:`TregInfusion` — ``n_infusions`` boluses of Tregs every ``interval_days`` from
  ``infusion_day`` (days after diagnosis), either ``dose_per_kg`` (cells/kg) or
  ``dose_total`` (cells, divided by each patient's weight in kg).
* :class:`Adjuncts` — IL-2 placeholder, validated; the ``treg_t1d`` model has no IL-2 axis, so a
  positive IL-2 dose is rejected at load time until a model with one exists (variant V1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tregsim.population.fields import Table

MAX_DOSE_CELLS_PER_KG = 1e12  # far above any clinical product; catches unit slips (cells vs 1e6)


@dataclass(frozen=True)
class Adjuncts:
    """IL-2 given with the cells: ``il2_dose_iu`` IU per dose on each of ``il2_days``."""

    il2_dose_iu: float = 0.0
    il2_days: tuple[float, ...] = ()

    @property
    def active(self) -> bool:
        return self.il2_dose_iu > 0 and len(self.il2_days) > 0


@dataclass(frozen=True)
class RoutineCare:
    """Routine care only: no infused cells."""

    adjuncts: Adjuncts = field(default_factory=Adjuncts)
    kind = "routine_care"

    def dose_arrays(self, weight_kg: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def doses(self, pop):
        """``None``: nothing is infused."""
        return None

    def describe(self) -> str:
        return "routine care"


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
        """:class:`tregsim.Doses` for a population (uses ``pop.covariates['weight']``, kg)."""
        from tregsim.solve import Doses

        time, amount = self.dose_arrays(pop.covariates["weight"])
        return Doses(time=time, amount=amount, target=self.target)

    def describe(self) -> str:
        d = (
            f"{self.dose_per_kg:.3g} cells/kg"
            if self.dose_per_kg is not None
            else f"{self.dose_total:.3g} cells"
        )
        s = f"Tregs {d} on day {self.infusion_day:g}"
        if self.n_infusions > 1:
            s += f" ×{self.n_infusions} every {self.interval_days:g} d"
        return s


def parse_adjuncts(t: Table) -> Adjuncts:
    t.check_keys(("il2_dose_iu", "il2_days"))
    dose = t.number("il2_dose_iu", default=0.0, lo=0.0, unit="IU")
    days = t.numbers("il2_days", default=[], lo=0.0, increasing=True, min_len=0, unit="days")
    return Adjuncts(dose, tuple(days))


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
