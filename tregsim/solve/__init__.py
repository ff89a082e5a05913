"""Batched simulation: one call for every patient, per-patient step control and status."""

from tregsim.solve.rosenbrock import STATUS_OK, STATUS_TEXT
from tregsim.solve.simulate import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    MONTH_DAYS,
    Doses,
    SimulationArrays,
    simulate,
    simulate_arrays,
)

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "MONTH_DAYS",
    "STATUS_OK",
    "STATUS_TEXT",
    "Doses",
    "SimulationArrays",
    "simulate",
    "simulate_arrays",
]
