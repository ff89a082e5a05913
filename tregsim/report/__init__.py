"""The self-contained HTML report (:mod:`tregsim.report.html`) and the ``tregsim run``
orchestrator (:mod:`tregsim.report.run`, sections in :mod:`tregsim.report.sections`)."""

from tregsim.report.html import (
    Figure,
    KeyNumber,
    LedgerEntry,
    Section,
    SummaryItem,
    Table,
    build_report,
)

__all__ = [
    "Figure",
    "KeyNumber",
    "LedgerEntry",
    "Section",
    "SummaryItem",
    "Table",
    "build_report",
]
