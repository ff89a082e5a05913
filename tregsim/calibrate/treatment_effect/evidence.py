"""The treated-arm evidence file: one row per reported result, validated against its trial.

``calibration/treatment_effect_evidence.csv`` holds what the Treg trials report (the rows of
``treg_treated_arm_evidence.csv`` in the shared data, with their sources) in a form each row
can become one likelihood term on its trial's experiment file: columns ``term``, ``trial``,
``experiment`` (path relative to the evidence file), ``treated_arms`` (``;``-separated arm names,
pooled), ``control_arm`` (empty: none), ``month`` (months after baseline = infusion),
``statistic`` (one of :data:`STATISTICS`), ``value``, ``n_treated``, ``n_control``, ``source``,
``note``. Conversions are documented in docs/treatment_effect.md.

Every problem is one :class:`~tregsim.errors.DataFileError` naming the file, the row (1-based,
header = row 1) and the field, with the fix.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from tregsim.errors import DataFileError, TregsimError

COLUMNS = (
    "term",
    "trial",
    "experiment",
    "treated_arms",
    "control_arm",
    "month",
    "statistic",
    "value",
    "n_treated",
    "n_control",
    "source",
    "note",
)

STATISTICS = {
    "p_two_sided": "two-sided p of the treated − control comparison, direction not reported",
    "not_significant": "the comparison was not significant at two-sided 5 %",
    "significantly_higher": "treated significantly higher than control (two-sided p < value)",
    "correlation_r": "Pearson r of infused dose (cells/kg) vs change in C-peptide, treated",
    "count_no_decline": "number of treated patients whose C-peptide did not fall below baseline",
    "fraction_of_peak_at_most": "infused cells in blood, fraction of peak, at most value",
    "fraction_of_peak_below": "infused cells in blood, fraction of peak, below value",
    "fraction_of_peak_at_least": "infused cells in blood, fraction of peak, at least value",
}
COMPARISONS = ("p_two_sided", "not_significant", "significantly_higher")
KINETIC = ("fraction_of_peak_at_most", "fraction_of_peak_below", "fraction_of_peak_at_least")


@dataclass(frozen=True)
class EvidenceRow:
    """One reported result. month: months after the infusion; value: see :data:`STATISTICS`."""

    row: int
    term: str
    trial: str
    experiment_path: Path
    treated_arms: tuple
    control_arm: str | None
    month: float
    statistic: str
    value: float
    n_treated: int
    n_control: int
    source: str
    note: str

    @property
    def z_obs(self) -> float:
        """|z| of a two-sided p (``p_two_sided``); the 0.975 normal quantile for a
        significance statement at 5 %."""
        from scipy.stats import norm

        if self.statistic == "p_two_sided":
            return float(norm.isf(self.value / 2))
        return float(norm.isf(0.025))


def _err(path, row, field, problem, fix):
    return DataFileError(problem, file=path, field=f"row {row}, {field}", fix=fix)


def load_evidence(path, *, experiments: dict | None = None) -> list[EvidenceRow]:
    """Read and validate the evidence file.

    experiments : optional cache path → loaded Experiment (filled as files are loaded), so each
        experiment file is parsed once.

    Raises DataFileError for a missing column, an unknown statistic, a p-value outside (0, 1],
    a correlation outside (−1, 1), a count outside [0, n_treated], a fraction outside (0, 1),
    an experiment file that does not load, or an arm the experiment lacks.
    """
    from tregsim.experiment import load_experiment

    path = Path(path)
    if not path.is_file():
        raise DataFileError("evidence file not found", file=path, fix="give the CSV's path")
    experiments = {} if experiments is None else experiments
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(
                f"missing columns {missing}",
                file=path,
                fix=f"the header must hold {', '.join(COLUMNS)}",
            )
        rows = list(reader)
    out, seen = [], set()
    for i, r in enumerate(rows, start=2):
        term = (r["term"] or "").strip()
        if not term or term in seen:
            raise _err(
                path,
                i,
                "term",
                f"term {term!r} is empty or repeated",
                "give each row a unique term name",
            )
        seen.add(term)
        stat = (r["statistic"] or "").strip()
        if stat not in STATISTICS:
            raise _err(
                path,
                i,
                "statistic",
                f"unknown statistic {stat!r}",
                f"use one of {', '.join(STATISTICS)}",
            )
        exp_path = (path.parent / (r["experiment"] or "").strip()).resolve()
        if exp_path not in experiments:
            try:
                experiments[exp_path] = load_experiment(exp_path)
            except TregsimError as e:
                raise _err(
                    path,
                    i,
                    "experiment",
                    f"experiment does not load ({e})",
                    "name a valid experiment file relative to the evidence file",
                ) from e
        exp = experiments[exp_path]
        arms = tuple(a.strip() for a in (r["treated_arms"] or "").split(";") if a.strip())
        control = (r["control_arm"] or "").strip() or None
        for field, names in (
            ("treated_arms", arms),
            ("control_arm", (control,) if control else ()),
        ):
            for a in names:
                if a not in exp.arms:
                    raise _err(
                        path,
                        i,
                        field,
                        f"arm {a!r} is not in {exp_path.name}",
                        f"use arms of that experiment: {', '.join(exp.arms)}",
                    )
        if not arms:
            raise _err(
                path,
                i,
                "treated_arms",
                "no treated arm",
                "name the pooled treated arms, ';'-separated",
            )
        if control is None and stat in COMPARISONS:
            raise _err(
                path,
                i,
                "control_arm",
                f"statistic {stat} needs a control arm",
                f"name the control arm of {exp_path.name}",
            )
        try:
            month = float(r["month"])
        except (TypeError, ValueError):
            raise _err(
                path,
                i,
                "month",
                f"month {r['month']!r} is not a number",
                "give months after the infusion, e.g. 12",
            ) from None
        if stat not in KINETIC and not any(math.isclose(month, m) for m in exp.visit_months[1:]):
            raise _err(
                path,
                i,
                "month",
                f"month {month:g} is not a post-baseline visit of {exp_path.name}",
                f"use one of {[float(m) for m in exp.visit_months[1:]]}",
            )
        value = _value(path, i, stat, r["value"])
        n_t = _count(path, i, "n_treated", r["n_treated"], required=True)
        n_c = _count(path, i, "n_control", r["n_control"], required=stat in COMPARISONS)
        if stat == "count_no_decline" and not (value == int(value) and 0 <= value <= n_t):
            raise _err(
                path,
                i,
                "value",
                f"count {value:g} is not an integer in [0, n_treated = {n_t}]",
                "give the number of patients",
            )
        out.append(
            EvidenceRow(
                i,
                term,
                (r["trial"] or "").strip(),
                exp_path,
                arms,
                control,
                month,
                stat,
                value,
                n_t,
                n_c,
                r["source"] or "",
                r["note"] or "",
            )
        )
    return out


def _value(path, i, stat, text) -> float:
    text = (text or "").strip()
    if stat == "not_significant":
        return 0.05 if not text else _num(path, i, text)
    v = _num(path, i, text)
    if stat in ("p_two_sided", "significantly_higher") and not 0 < v <= 1:
        raise _err(
            path,
            i,
            "value",
            f"p = {v:g} is outside (0, 1]",
            "give the p-value as a fraction, e.g. 0.39",
        )
    if stat == "correlation_r" and not -1 < v < 1:
        raise _err(
            path, i, "value", f"r = {v:g} is outside (-1, 1)", "give the correlation coefficient"
        )
    if stat in KINETIC and not 0 < v < 1:
        raise _err(
            path,
            i,
            "value",
            f"fraction {v:g} is outside (0, 1)",
            "give a fraction of the peak, e.g. 0.25",
        )
    return v


def _num(path, i, text) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _err(
            path, i, "value", f"value {text!r} is not a number", "write a plain number, e.g. 0.39"
        ) from None
    if not math.isfinite(v):
        raise _err(path, i, "value", f"value {text!r} is not finite", "write a finite number")
    return v


def _count(path, i, field, text, *, required: bool) -> int:
    text = (text or "").strip()
    if not text:
        if required:
            raise _err(
                path, i, field, "missing patient count", "give the number of patients analysed"
            )
        return 0
    try:
        v = int(text)
    except ValueError:
        raise _err(
            path, i, field, f"{text!r} is not a whole number", "give the number of patients"
        ) from None
    if v < 2 and required:
        raise _err(path, i, field, f"{v} patients", "give at least 2")
    return v
