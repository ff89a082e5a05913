"""Virtual cohorts: paired arms, chunk invariance, summary statistics, CLI, natural history."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tregsim.cohort import (
    CALIBRATED_AGES_YEARS,
    DIFF_EDGES_NMOL_L,
    EDGES_NMOL_L,
    CohortResult,
    hist_quantiles,
    run_cohort,
    simulate_arms,
)
from tregsim.experiment import load_experiment
from tregsim.placebo import natural_history
from tregsim.population import sample_population

ROOT = Path(__file__).resolve().parents[1]
NCT = ROOT / "experiments" / "nct06708780.toml"
TEXT = NCT.read_text(encoding="utf-8")
DATA = ROOT.parent / "shared" / "data" / "placebo_cpeptide_by_age_month.csv"


@pytest.fixture(scope="module")
def exp():
    return load_experiment(NCT)


@pytest.fixture(scope="module")
def exp_sham(tmp_path_factory):
    """NCT design plus a 'sham' arm whose regimen is routine care, like the control."""
    p = tmp_path_factory.mktemp("exp") / "sham.toml"
    p.write_text(
        TEXT.replace(
            "[trial]",
            '[arms.sham]\nlabel = "sham"\n[arms.sham.regimen]\ntype = "routine_care"\n\n[trial]',
        )
        .replace("n_total = 20", "n_total = 30")
        .replace(
            "n_per_arm = { treg = 10, routine_care = 10 }",
            "n_per_arm = { treg = 10, routine_care = 10, sham = 10 }",
        ),
        encoding="utf-8",
    )
    return load_experiment(p)


@pytest.fixture(scope="module")
def cohort(exp_sham):
    return run_cohort(exp_sham, 300, seed=5, chunk_size=1024, progress=False, spaghetti_n=3)


def test_simulate_arms_matches_direct_solver_call(exp):
    from tregsim.solve import Doses, simulate_arrays

    pop = sample_population(exp, 20, seed=1)
    res = simulate_arms(exp, pop)
    w = pop.covariates["weight"]
    direct = simulate_arrays(
        exp.model,
        pop.params,
        doses=Doses(time=np.full((20, 1), 60.0), amount=np.full((20, 1), 20e6), target="X"),
        times=exp.visits_days,
    )
    np.testing.assert_array_equal(res["treg"], direct.observables["cpeptide"])
    assert res["treg"].shape == (20, 6) and (res.status["treg"] == 0).all()
    assert w.shape == (20,)
    # before the infusion (the baseline visit is the infusion day) arms coincide
    np.testing.assert_array_equal(res["treg"][:, 0], res["routine_care"][:, 0])


def test_paired_difference_exactly_zero_for_identical_arm(cohort):
    rows = [r for r in cohort.summary if r["arm"] == "sham"]
    ctrl = [r for r in cohort.summary if r["arm"] == "routine_care"]
    for r, c in zip(rows, ctrl):
        for k in (
            "diff_mean_nmol_L",
            "diff_sd_nmol_L",
            "diff_ci95_low_nmol_L",
            "diff_ci95_high_nmol_L",
            "diff_q05_nmol_L",
            "diff_median_nmol_L",
            "diff_q95_nmol_L",
        ):
            assert r[k] == 0.0, k
        assert r["mean_nmol_L"] == c["mean_nmol_L"]


def test_summary_against_numpy_on_all_patients(cohort, exp_sham):
    p = cohort.patients
    assert p["cpeptide"].shape == (300, 3, 6)
    arms = list(exp_sham.arms)
    for r in cohort.summary:
        a = arms.index(r["arm"])
        t = list(exp_sham.visit_months).index(r["visit_month"])
        x = p["cpeptide"][:, a, t]
        assert r["n_patients"] == 300
        np.testing.assert_allclose(r["mean_nmol_L"], x.mean(), rtol=1e-12)
        np.testing.assert_allclose(r["sd_nmol_L"], x.std(ddof=1), rtol=1e-9)
        np.testing.assert_allclose(r["mean_ln_x_plus_1"], np.log1p(x).mean(), rtol=1e-12)
        assert r["frac_ge_0_2_nmol_L"] == (x >= 0.2).mean()
        # the histogram interpolates the empirical CDF: compare with that definition
        qs = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95], method="interpolated_inverted_cdf")
        got = [
            r[k] for k in ("q05_nmol_L", "q25_nmol_L", "median_nmol_L", "q75_nmol_L", "q95_nmol_L")
        ]
        np.testing.assert_allclose(got, qs, atol=1e-3)  # bins are 0.0005 nmol/L
        if r["arm"] == "treg":
            d = x - p["cpeptide"][:, arms.index("routine_care"), t]
            np.testing.assert_allclose(r["diff_mean_nmol_L"], d.mean(), rtol=1e-9, atol=1e-15)
            half = 1.959963984540054 * d.std(ddof=1) / np.sqrt(d.size)
            np.testing.assert_allclose(
                r["diff_ci95_high_nmol_L"], d.mean() + half, rtol=1e-6, atol=1e-12
            )
            np.testing.assert_allclose(
                r["diff_median_nmol_L"],
                np.quantile(d, 0.5, method="interpolated_inverted_cdf"),
                atol=1e-3,
            )


def test_histogram_quantiles_against_numpy():
    x = np.random.default_rng(0).gamma(2.0, 0.3, 50000)
    counts = np.bincount(
        np.searchsorted(EDGES_NMOL_L, x, side="right"), minlength=len(EDGES_NMOL_L) + 1
    )
    q = hist_quantiles(counts, EDGES_NMOL_L, (0.05, 0.5, 0.95), x.min(), x.max())
    np.testing.assert_allclose(q, np.quantile(x, [0.05, 0.5, 0.95]), atol=5e-4)
    assert DIFF_EDGES_NMOL_L[10000] == 0.0


def test_same_seed_and_other_chunk_sizes_identical(exp):
    # 1030 patients: two chunks of 1024 + 6, or one chunk of 2048
    a = run_cohort(exp, 1030, seed=5, chunk_size=1000, progress=False, spaghetti_n=0)
    b = run_cohort(exp, 1030, seed=5, chunk_size=2048, progress=False, spaghetti_n=0)
    for k, v in a.patients.items():
        if k != "cpeptide":  # the virtual patients themselves: bitwise identical
            np.testing.assert_array_equal(v, b.patients[k], err_msg=k)
    # The batched solver's result for a patient can differ in the last bit with the batch it
    # is solved in (seen: 8e-17 nmol/L for 1 of 12,360 values), so values agree to rounding.
    np.testing.assert_allclose(a.patients["cpeptide"], b.patients["cpeptide"], rtol=1e-13)
    for ra, rb in zip(a.summary, b.summary):
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            if isinstance(v, str):
                assert v == rb[k]
            else:
                np.testing.assert_allclose(v, rb[k], rtol=1e-9, atol=1e-15, err_msg=k)


def test_same_seed_identical_other_seed_differs(exp):
    a = run_cohort(exp, 100, seed=5, progress=False, spaghetti_n=0)
    again = run_cohort(exp, 100, seed=5, progress=False, spaghetti_n=0)
    assert _same_rows(a.summary, again.summary)  # same seed, same chunks: bitwise
    np.testing.assert_array_equal(a.patients["cpeptide"], again.patients["cpeptide"])
    c = run_cohort(exp, 100, seed=6, progress=False, spaghetti_n=0, keep=10)
    assert not _same_rows(a.summary, c.summary)
    assert c.patients["cpeptide"].shape == (10, 2, 6)


def _same_rows(a, b):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and np.isnan(va) and np.isnan(vb):
                continue
            if va != vb:
                return False
    return True


def test_cli_cohort_writes_outputs(tmp_path):
    out = tmp_path / "c"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tregsim",
            "cohort",
            str(NCT),
            "--n",
            "20",
            "--seed",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    for f in ("summary.csv", "cohort.nc", "cpeptide_by_arm.png", "manifest.json"):
        assert (out / f).exists(), f
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 12 and "diff_ci95_low_nmol_L" in rows[0]
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "cohort" and man["seed"] == 2
    assert "experiment" in man["inputs"] and man["settings"]["n"] == 20
    import xarray as xr

    with xr.open_dataset(out / "cohort.nc", engine="h5netcdf") as ds:
        assert ds["cpeptide"].shape == (20, 2, 6)
        assert ds["cpeptide"].attrs["units"] == "nmol/L"
        assert ds["weight"].attrs["units"] == "kg"
        exp = load_experiment(NCT)
        pop = sample_population(exp, 20, seed=2)
        np.testing.assert_array_equal(ds["age"].values, pop.covariates["age"])
        # the fractions outside the calibrated ages are those of the simulated patients
        lo, hi = CALIBRATED_AGES_YEARS
        age = ds["age"].values
        assert ds.attrs["fraction_younger_than_calibrated"] == np.mean(age < lo)
        assert ds.attrs["fraction_older_than_calibrated"] == np.mean(age > hi)
    older = np.mean(age > hi)
    assert ("older than 45 y" in r.stderr) == (older > 0), r.stderr
    assert man["results"]["fraction_older_than_calibrated"] == older


def test_age_warning_names_both_sides():
    res = CohortResult(None, 10, 1, [], {}, 1.0, ages_outside=(0.1, 0.0))
    assert res.age_warning().startswith("10.0% younger than 8 y")
    assert CohortResult(None, 10, 1, [], {}, 1.0).age_warning() is None
    both = CohortResult(None, 10, 1, [], {}, 1.0, ages_outside=(0.1, 0.2)).age_warning()
    assert "younger than 8 y and 20.0% older than 45 y" in both


@pytest.mark.skipif(
    not DATA.exists(),
    reason=f"placebo table absent at {DATA} (../shared/data is not part of the project)",
)
def test_natural_history_table_and_stats(exp):
    nh = natural_history(exp, DATA, seed=0, scale=2)
    rows = {(r["age_group"], r["month"]): r for r in nh.rows}
    # observed columns are the table's own numbers
    assert rows[("<13", 0.0)]["obs_n"] == 29 and rows[("<13", 0.0)]["obs_mean_nmol_L"] == 0.5918
    assert rows[(">=18", 24.0)]["obs_mean_nmol_L"] == 0.4671
    # simulated age mix: month-0 n per group × scale
    assert {g: v.shape[0] for g, v in nh.sim.items()} == {"<13": 58, "13-17": 90, ">=18": 82}
    x = nh.sim["13-17"][:, list(nh.months).index(12.0)]
    r = rows[("13-17", 12.0)]
    np.testing.assert_allclose(r["sim_mean_nmol_L"], x.mean())
    np.testing.assert_allclose(r["sim_frac_ge_0_2"], (x >= 0.2).mean())
    assert r["sim_n"] == 90


@pytest.mark.skipif(not DATA.exists(), reason=f"placebo table absent at {DATA}")
def test_cli_check_natural_history(tmp_path):
    out = tmp_path / "nh"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tregsim",
            "check",
            "natural-history",
            str(NCT),
            "--out",
            str(out),
            "--scale",
            "1",
            "--data",
            str(DATA),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    for f in ("natural_history.csv", "natural_history_vpc.png", "manifest.json"):
        assert (out / f).exists(), f


def test_cli_check_missing_data_is_one_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tregsim",
            "check",
            "natural-history",
            str(NCT),
            "--out",
            str(tmp_path / "o"),
            "--data",
            str(tmp_path / "none.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "fix:" in r.stderr


@pytest.mark.parametrize(
    "text, names",
    [
        ("participant_id,age_years,auc_mean_cpeptide_nmol_l\nA,12,0.5\nA,12,0.4\n", "month"),
        (
            "participant_id,age_years,month,auc_mean_cpeptide_nmol_l\nA,12,0,0.5\nA,12,6,-0.4\n",
            "line 3, column auc_mean_cpeptide_nmol_l",
        ),
    ],
    ids=["missing-column", "negative-cpeptide"],
)
def test_cli_check_bad_records_is_one_line(tmp_path, text, names):
    """Individual records beside the placebo table are read with their schema checked: one
    line naming the file and the column (and line), exit 2, no output folder. The records
    are made up here (no row of the shared records is copied)."""
    if not DATA.exists():
        pytest.skip("../shared/data/placebo_cpeptide_by_age_month.csv is absent")
    shutil.copy(DATA, tmp_path / DATA.name)
    (tmp_path / "placebo_cpeptide_individual.csv").write_text(text, encoding="utf-8")
    out = tmp_path / "o"
    r = subprocess.run(
        [sys.executable, "-m", "tregsim", "check", "natural-history", str(NCT), "--out",
         str(out), "--data", str(tmp_path / DATA.name)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "fix:" in line, line
    assert "placebo_cpeptide_individual.csv" in line and names in line
    assert not out.exists()


def test_check_of_a_children_only_experiment_compares_the_groups_it_covers():
    """An experiment of 8–17-year-olds is checked against the placebo table's < 13 y and
    13–17 y rows only (the table's "all" rows mix in the adults), and its trial statistics
    against the records' participants under 18: the overall rows' n are the number of those
    participants with a baseline and that month's visit, counted here with pandas."""
    import pandas as pd

    from tregsim.placebo import RECORDS_NAME, natural_history_check

    records = DATA.parent / RECORDS_NAME
    if not records.exists():
        pytest.skip("../shared/data/ is absent")
    kids = load_experiment(ROOT / "experiments" / "trex_children.toml")
    nh = natural_history_check(kids, data=DATA, seed=0, scale=1)
    assert nh.age_groups == ("<13", "13-17")
    assert {r["age_group"] for r in nh.rows} == {"<13", "13-17"}
    rec = pd.read_csv(records)
    rec = rec[rec.age_years < 18]
    w = rec.pivot_table(index="participant_id", columns="month", values="auc_mean_cpeptide_nmol_l")
    overall = [r for r in nh.trial_statistics if r.get("group", "all") == "all"]
    assert {r["month"] for r in overall} == {6, 12, 24}
    for r in overall:
        assert r["n"] == len(w[[0, r["month"]]].dropna()), r
    assert {r["group"] for r in nh.trial_statistics} == {"all", "<13", "13-17"}
    assert any(
        ln.startswith("age groups compared: <13, 13-17 (not >=18") for ln in nh.report_lines()
    )


def test_posterior_draws_assigned_per_patient(exp, tmp_path):
    import xarray as xr

    from tregsim.cohort import load_posterior_draws

    phi = np.array([[1.0, 50.0, 400.0]])  # (chain, draw)
    ds = xr.Dataset(
        {
            "phi": (("chain", "draw"), phi),
            "omega_lambda": (("chain", "draw"), np.array([[0.6, 0.6, 0.3]])),
            "not_a_parameter": (("chain", "draw"), np.zeros((1, 3))),
        }
    )
    path = tmp_path / "posterior.nc"
    ds.to_netcdf(path, group="posterior", engine="h5netcdf")
    draws = load_posterior_draws(path, exp.model)
    assert set(draws) == {"phi", "omega_lambda"}
    res = run_cohort(exp, 6, seed=1, posterior=draws, progress=False, spaghetti_n=0)
    np.testing.assert_array_equal(res.patients["theta_phi"], [1, 50, 400, 1, 50, 400])
    d = res.patients["cpeptide"][:, 0, -1] - res.patients["cpeptide"][:, 1, -1]  # treg − control
    # the same patients re-simulated with φ = 1: larger φ gives a larger paired benefit
    pop = sample_population(
        exp,
        6,
        seed=1,
        theta={"phi": np.full(6, 1.0), "omega_lambda": draws["omega_lambda"][np.arange(6) % 3]},
    )
    base = simulate_arms(exp, pop)
    d1 = base["treg"][:, -1] - base["routine_care"][:, -1]
    assert (d[[1, 2, 4, 5]] > d1[[1, 2, 4, 5]]).all()
    np.testing.assert_allclose(d[[0, 3]], d1[[0, 3]], rtol=1e-9, atol=1e-15)
