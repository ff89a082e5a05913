"""The held-out comparison's helpers (benchmarks/structure_extension_loso.py, _power.py) on
made-up records and draws."""

from __future__ import annotations

import numpy as np
from test_agreement import _benchmark_module

from tregsim.calibrate import variability as V


def _records():
    # three made-up participants: a child (2 visits), a teenager (3), an adult (1)
    return V.Records(
        ids=np.array(["a", "b", "c"]),
        study=np.array(["S1", "S2", "S1"]),
        age_years=np.array([9.0, 15.0, 30.0]),
        visit_patient=np.array([0, 1, 0, 1, 1, 2]),
        visit_day=np.array([0.0, 0.0, 182.0, 182.0, 365.0, 0.0]),
        visit_month=np.array([0.0, 0.0, 6.0, 6.0, 12.0, 0.0]),
        y=np.array([0.5, 0.8, 0.3, 0.7, 0.6, 0.9]),
    )


def test_more_children_repeats_each_child_with_its_visits():
    pw = _benchmark_module("structure_extension_power")
    rec = _records()
    same = pw.with_more_children(rec, 1)
    for f in ("ids", "study", "age_years", "visit_patient", "visit_day", "y"):
        np.testing.assert_array_equal(getattr(same, f), getattr(rec, f))
    out = pw.with_more_children(rec, 3)
    assert list(out.ids) == ["a", "b", "c", "a~1", "a~2"]
    assert list(out.study) == ["S1", "S2", "S1", "S1", "S1"]
    for k in (3, 4):  # each copy has the child's two visits, days and months
        v = out.visit_patient == k
        np.testing.assert_array_equal(out.visit_day[v], [0.0, 182.0])
        np.testing.assert_array_equal(out.visit_month[v], [0.0, 6.0])
    # the original participants keep theirs
    np.testing.assert_array_equal(out.visit_patient[: rec.y.size], rec.visit_patient)


def test_paired_interval_against_the_normal_approximation():
    lo_mod = _benchmark_module("structure_extension_loso")
    d = np.random.default_rng(3).normal(0.02, 0.3, 400)
    p = lo_mod.paired_interval(d)
    se = np.sqrt(d.size) * d.std(ddof=1)
    assert np.isclose(p["total"], d.sum()) and np.isclose(p["se"], se)
    assert p["better"] + p["worse"] == d.size
    # the sum of 400 iid draws is close to normal: the bootstrap 2.5/97.5 % ends are
    # total ∓ 1.96·SE up to the bootstrap's Monte-Carlo error (2,000 resamples)
    assert abs(p["lo"] - (d.sum() - 1.96 * se)) < 0.15 * se
    assert abs(p["hi"] - (d.sum() + 1.96 * se)) < 0.15 * se
