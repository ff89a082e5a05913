"""tregsim.trial_statistics against statsmodels OLS (independent) on the placebo records and
on a simulated table with a known structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tregsim.trial_statistics import to_wide, trial_statistics, wide_statistics

RECORDS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "placebo_cpeptide_individual.csv"
)


@pytest.fixture(scope="module")
def records():
    if not RECORDS.exists():
        pytest.skip(
            f"placebo records not found at ../shared/data ({RECORDS.name}); not shipped (no licence)"
        )
    return pd.read_csv(RECORDS)


def _statsmodels_ancova(d: pd.DataFrame, m: int):
    import statsmodels.formula.api as smf

    w = d.pivot_table(index="participant_id", columns="month", values="auc_mean_cpeptide_nmol_l")
    age = d.sort_values("month").groupby("participant_id").age_years.first()
    s = w[[0.0, float(m)]].dropna()
    df = pd.DataFrame({"x0": np.log1p(s[0.0]), "xm": np.log1p(s[float(m)]), "age": age[s.index]})
    fit = smf.ols("xm ~ x0 + age", df).fit()
    return fit.params["x0"], np.sqrt(fit.scale), np.corrcoef(df.x0, df.xm)[0, 1], len(df)


@pytest.mark.parametrize("month", [6, 12, 24])
def test_ancova_matches_statsmodels_on_records(records, month):
    ts = trial_statistics(
        records.participant_id,
        records.age_years,
        records.month,
        records.auc_mean_cpeptide_nmol_l,
        n_boot=50,
        seed=1,
    )
    slope, sd, corr, n = _statsmodels_ancova(records, month)
    assert ts.get("ancova_slope", month)["n"] == n
    assert ts.get("ancova_slope", month)["estimate"] == pytest.approx(slope, rel=1e-10)
    assert ts.get("ancova_resid_sd", month)["estimate"] == pytest.approx(sd, rel=1e-10)
    assert ts.get("corr_baseline", month)["estimate"] == pytest.approx(corr, rel=1e-10)
    r = ts.get("ancova_resid_sd", month)
    assert r["lo"] < r["estimate"] < r["hi"]


def test_no_cell_below_min_n(records):
    ts = trial_statistics(
        records.participant_id,
        records.age_years,
        records.month,
        records.auc_mean_cpeptide_nmol_l,
        n_boot=20,
        seed=1,
    )
    for r in ts.rows:
        assert r["n"] >= (5 if r["group"] == "all" else 20)


def test_tolerance_window_picks_closest_record():
    pid = ["a", "a", "a", "b", "b"]
    month = [0.0, 11.5, 12.2, 0.0, 12.0]
    y = [1.0, 2.0, 3.0, 4.0, 5.0]
    age = [10, 10, 10, 20, 20]
    _, wide, _age = to_wide(pid, month, y, age, months=(0, 12), tolerance_months=1.0)
    assert wide.tolist() == [[1.0, 3.0], [4.0, 5.0]]
    _, wide0, _ = to_wide(pid, month, y, age, months=(0, 12), tolerance_months=0.0)
    assert np.isnan(wide0[0, 1]) and wide0[1, 1] == 5.0


def test_known_structure_recovered():
    """x_m = 0.9 x_0 + e, e ~ N(0, 0.1²) exactly on the ln(x+1) scale: slope, SD, slopes SD."""
    rng = np.random.default_rng(3)
    P = 4000
    x0 = rng.normal(0.5, 0.2, P)
    months = (0, 6, 12, 18, 24)
    x = np.stack([x0 + 0.0 * m for m in months], 1)
    x[:, 1:] = 0.9 * x0[:, None] + 0.1 * rng.standard_normal((P, 4))
    ts = wide_statistics(np.expm1(x), rng.uniform(8, 40, P), months=months, n_boot=20)
    assert ts.get("ancova_slope", 12)["estimate"] == pytest.approx(0.9, abs=0.02)
    assert ts.get("ancova_resid_sd", 12)["estimate"] == pytest.approx(0.1, abs=0.005)
    rho = 0.9 * 0.2 / np.sqrt(0.9**2 * 0.04 + 0.01)
    assert ts.get("corr_baseline", 24)["estimate"] == pytest.approx(rho, abs=0.02)


def test_natural_history_trial_statistics_acceptance(records, tmp_path):
    """Issue #14 acceptance: simulated observed statistics of the experiment's own virtual
    cohort (default records structure, shipped posterior, records' age mix) lie inside the
    records' bootstrap 95 % intervals (ANCOVA slope, residual SD, baseline correlation at
    6/12/24 months), and the rows round-trip through trial_statistics.csv."""
    import pandas as pd

    from tregsim.cohort import resolve_posterior
    from tregsim.experiment import load_experiment
    from tregsim.placebo import NaturalHistory, cohort_trial_statistics, load_natural_history
    from tregsim.population.structure import resolve_structure
    from tregsim.results import SHIPPED
    from tregsim.trial_statistics import BY_AGE_COLUMNS, COMPARISON_COLUMNS

    exp = load_experiment(Path(__file__).resolve().parents[1] / "experiments/nct06708780.toml")
    draws, path = resolve_posterior(SHIPPED, exp.model)
    st = resolve_structure(None, draws, path, exp.model)
    assert st.variability == "records"
    rows = cohort_trial_statistics(exp, RECORDS, 3, posterior=st.draws, observed=True)
    overall = [r for r in rows if r["group"] == "all"]
    assert len(overall) == 9
    for r in overall:
        assert r["observed_lo"] <= r["simulated"] <= r["observed_hi"], r
    by_age = [r for r in rows if r["group"] != "all"]
    # age-group cells only where the records have >= 20 participants (reported, not asserted
    # inside: the criterion is the overall rows)
    assert by_age and all(r["n"] >= 20 for r in by_age)
    assert {r["group"] for r in by_age} <= {"<13", "13-17", ">=18"}
    nh = NaturalHistory([{"age_group": "all", "month": 0}], {}, np.array([0]), [], {}, rows)
    nh.save(tmp_path)
    df = pd.read_csv(tmp_path / "trial_statistics.csv")
    assert tuple(df.columns) == COMPARISON_COLUMNS
    ba = pd.read_csv(tmp_path / "trial_statistics_by_age.csv")
    assert tuple(ba.columns) == BY_AGE_COLUMNS and len(ba) == len(by_age)
    assert len(load_natural_history(tmp_path).trial_statistics) == len(rows)


def test_outside_summary_names_the_cells_outside_their_interval():
    from tregsim.trial_statistics import outside_summary

    rows = [
        {"month": 6, "statistic": "ancova_slope", "observed": 0.95, "observed_lo": 0.80,
         "observed_hi": 1.09, "simulated": 0.85},
        {"group": "<13", "month": 12, "statistic": "ancova_slope", "observed": 1.30,
         "observed_lo": 0.66, "observed_hi": 1.79, "simulated": 0.43},
        {"group": ">=18", "month": 6, "statistic": "ancova_resid_sd", "observed": 0.117,
         "observed_lo": 0.085, "observed_hi": 0.135, "simulated": 0.135},
    ]  # fmt: skip
    assert outside_summary(rows[:1]) == "all 1 inside the observed 95 % interval"
    text = outside_summary(rows)
    assert text.startswith("1 of 3 outside the observed 95 % interval: ")
    assert "<13 ancova_slope 12 m: 0.430 vs 1.300 (0.660–1.790)" in text
    assert ">=18" not in text  # on the interval's edge is inside


def test_comparison_rows_skip_a_month_the_records_do_not_have():
    """Records of a trial without a 6-month MMTT give rows for 12 and 24 months only (the
    check used to stop with a KeyError)."""
    from tregsim.trial_statistics import POWER_STATISTICS, TrialStatistics, comparison_rows

    obs = TrialStatistics(
        [
            {"month": m, "statistic": s, "group": "all", "n": 30, "estimate": 0.5, "lo": 0.4,
             "hi": 0.6}
            for m in (12, 24)
            for s in POWER_STATISTICS
        ],
        0.95, 10, "nominal month",
    )  # fmt: skip
    sim = {(s, m, "all"): np.array([0.45, 0.55]) for m in (6, 12, 24) for s in POWER_STATISTICS}
    rows = comparison_rows(obs, sim)
    assert [(r["month"], r["statistic"]) for r in rows] == [
        (m, s) for m in (12, 24) for s in POWER_STATISTICS
    ]
    assert all(r["simulated"] == 0.5 and r["n"] == 30 for r in rows)
