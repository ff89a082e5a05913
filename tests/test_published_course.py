"""Published median (IQR) courses: reading, the score, the simulated cohorts, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from tregsim.errors import DataFileError
from tregsim.experiment import load_experiment
from tregsim.published_course import (
    NMOL_L_PER_NG_ML,
    dawid_sebastiani,
    load_published_course,
    published_course,
    read_course_table,
)

ROOT = Path(__file__).resolve().parents[1]
HALLER = ROOT.parent / "shared" / "data" / "young_children_cpeptide_haller2011.csv"
EXP = ROOT / "experiments" / "haller2011.toml"
needs_haller = pytest.mark.skipif(
    not HALLER.exists(), reason=f"Haller 2011 table absent at {HALLER}"
)


@needs_haller
def test_haller_table_in_nmol_per_litre():
    t = read_course_table(HALLER)
    raw = pd.read_csv(HALLER)
    # the curated file's own conversion of the medians (rounded to 3 decimals) is reproduced
    # by the molar mass of C-peptide
    np.testing.assert_allclose(
        raw.auc_cpeptide_median_ng_ml * NMOL_L_PER_NG_ML,
        raw.auc_median_nmol_l_converted,
        atol=6e-4,
    )
    assert list(t.month) == [0, 3, 6, 9, 12, 18, 24]
    assert t.n.min() >= 5
    assert np.all(t.q25_nmol_L <= t.median_nmol_L) and np.all(t.median_nmol_L <= t.q75_nmol_L)
    np.testing.assert_allclose(t.q25_nmol_L.iloc[0], 0.51 / 3.0203)


@pytest.mark.parametrize(
    "rows, field",
    [
        ({"month": [3, 6], "n": [10, 10]}, "month"),
        ({"month": [0, 6], "n": [10, 4]}, "n"),
        ({"visit": [0, 6], "n": [10, 10]}, "header"),
    ],
)
def test_bad_tables_name_the_field(tmp_path, rows, field):
    d = pd.DataFrame(rows)
    if "month" in d:
        d["median_nmol_L"], d["q25_nmol_L"], d["q75_nmol_L"] = 0.3, 0.2, 0.4
    p = tmp_path / "course.csv"
    d.to_csv(p, index=False)
    with pytest.raises(DataFileError) as e:
        read_course_table(p)
    assert e.value.field == field


def test_dawid_sebastiani_equals_the_gaussian_log_density(rng):
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + np.eye(3)
    s = rng.multivariate_normal([0.1, -0.4, 1.0], cov, size=200_000)
    y = np.array([0.5, 0.0, 0.3])
    ref = -2 * multivariate_normal([0.1, -0.4, 1.0], cov).logpdf(y) - 3 * np.log(2 * np.pi)
    assert dawid_sebastiani(s, y) == pytest.approx(ref, abs=0.03)


@pytest.fixture(scope="module")
def haller():
    return load_experiment(EXP)


@pytest.fixture(scope="module")
def table():
    return pd.DataFrame(
        {
            "month": [0.0, 6.0, 12.0],
            "n": [12, 12, 10],
            "median_nmol_L": [0.3, 0.2, 0.1],
            "q25_nmol_L": [0.2, 0.1, 0.05],
            "q75_nmol_L": [0.45, 0.3, 0.2],
        }
    )


def test_seeded_and_a_floor_below_every_age_changes_nothing(haller, table):
    a = published_course(haller, table, 3, n_rep=40)
    b = published_course(haller, table, 3, n_rep=40, age_floor=0.5)  # ages are ≥ 1.5 y
    np.testing.assert_array_equal(a.ratios, b.ratios)
    assert np.all(a.ratios[:, 0] == 1.0)
    c = published_course(haller, table, 4, n_rep=40)
    assert not np.array_equal(a.ratios, c.ratios)


def test_a_higher_age_floor_slows_the_loss(haller, table):
    # gamma_a > 0 in the model file: a child's hazard falls with the age it is given
    assert haller.model.defaults()["gamma_a"] > 0
    young = published_course(haller, table, 5, n_rep=40)
    old = published_course(haller, table, 5, n_rep=40, age_floor=10.0)
    assert np.median(old.ratios[:, 2]) > np.median(young.ratios[:, 2])


@needs_haller
def test_cli_published_course(tmp_path):
    out = tmp_path / "pc"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tregsim",
            "check",
            "published-course",
            str(EXP),
            "--data",
            str(HALLER),
            "--replicates",
            "40",
            "--posterior",
            "none",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "Dawid–Sebastiani score" in r.stdout
    for f in ("published_course.csv", "published_course.png", "manifest.json"):
        assert (out / f).exists(), f
    d = pd.read_csv(out / "published_course.csv")
    assert list(d.month) == [0, 3, 6, 9, 12, 18, 24]
    assert d.loc[d.month == 24, "obs_below_lloq"].item()
    text = (out / "manifest.json").read_text()
    assert str(tmp_path) not in text and "/root" not in text
    assert "dawid_sebastiani_score" in json.loads(text)["results"]
    back = load_published_course(out)
    assert [r["month"] for r in back.rows] == list(d.month)
    assert f"{back.score:.3f}" in r.stdout


@pytest.mark.parametrize(
    "extra, word",
    [([], "--data"), (["--data", str(HALLER), "--replicates", "5"], "--replicates")],
)
def test_cli_published_course_bad_input_is_one_line(tmp_path, extra, word):
    r = subprocess.run(
        [sys.executable, "-m", "tregsim", "check", "published-course", str(EXP),
         "--out", str(tmp_path / "o"), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and word in r.stderr
    assert not (tmp_path / "o").exists()
