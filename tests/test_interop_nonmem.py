"""NONMEM-style and long-format data tables: validation, round trips, converters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tregsim
from tregsim.errors import DataFileError
from tregsim.interop.nonmem import (
    long_to_nonmem,
    nonmem_to_doses,
    nonmem_to_long,
    read_long,
    read_nonmem,
    validate_nonmem,
    write_long,
    write_nonmem,
)

PLACEBO = "../shared/data/placebo_cpeptide_individual.csv"


def records():
    """Two individuals: A dosed twice (days 60, 120), B untreated with a BLQ value."""
    base = {"CMT": 2, "BLQ": 0}
    return [
        {
            "ID": "A",
            "TIME": 0.0,
            "DV": 0.8,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0,
            "AGE": 12.5,
            "WT": 41.0,
            "SEX": "F",
            "CPEP0": 0.8,
            **base,
        },
        {
            "ID": "A",
            "TIME": 60.0,
            "DV": np.nan,
            "MDV": 1,
            "EVID": 1,
            "AMT": 2e7,
            "AGE": 12.5,
            "WT": 41.0,
            "SEX": "F",
            "CPEP0": 0.8,
            "CMT": 1,
            "BLQ": 0,
        },
        {
            "ID": "A",
            "TIME": 60.0,
            "DV": 0.71,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0,
            "AGE": 12.5,
            "WT": 41.0,
            "SEX": "F",
            "CPEP0": 0.8,
            **base,
        },
        {
            "ID": "A",
            "TIME": 120.0,
            "DV": np.nan,
            "MDV": 1,
            "EVID": 1,
            "AMT": 1e7,
            "AGE": 12.5,
            "WT": 41.0,
            "SEX": "F",
            "CPEP0": 0.8,
            "CMT": 1,
            "BLQ": 0,
        },
        {
            "ID": "A",
            "TIME": 365.25,
            "DV": 0.52,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0,
            "AGE": 12.5,
            "WT": 41.0,
            "SEX": "F",
            "CPEP0": 0.8,
            **base,
        },
        {
            "ID": "B",
            "TIME": 0.0,
            "DV": 0.4,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0,
            "AGE": 25.0,
            "WT": 70.0,
            "SEX": "M",
            "CPEP0": 0.4,
            **base,
        },
        {
            "ID": "B",
            "TIME": 730.5,
            "DV": 0.017,
            "MDV": 0,
            "EVID": 0,
            "AMT": 0,
            "AGE": 25.0,
            "WT": 70.0,
            "SEX": "M",
            "CPEP0": 0.4,
            "CMT": 2,
            "BLQ": 1,
        },
    ]


def test_write_then_read_roundtrip(tmp_path):
    path = write_nonmem(records(), tmp_path / "data.csv")
    text = path.read_text()
    assert text.splitlines()[0].startswith("ID,TIME,DV,MDV,EVID,AMT,CMT,BLQ")
    assert ",.," in text  # missing DV on dose rows written NONMEM-style
    df = read_nonmem(path)
    want = validate_nonmem(pd.DataFrame(records()))
    pd.testing.assert_frame_equal(df[want.columns], want, check_dtype=False)
    # and again: writing what was read gives the same bytes
    again = write_nonmem(df, tmp_path / "again.csv")
    assert again.read_text() == text


def test_cens_alias_and_missing_blq(tmp_path):
    df = pd.DataFrame(records()).drop(columns="BLQ")
    df["CENS"] = 0
    out = validate_nonmem(df)
    assert "BLQ" in out and (out["BLQ"] == 0).all()
    out2 = validate_nonmem(pd.DataFrame(records()).drop(columns="BLQ"))
    assert (out2["BLQ"] == 0).all()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda d: d.drop(columns=["MDV", "AMT"]),
            r"\[header\] missing column\(s\) \['MDV', 'AMT'\]",
        ),
        (
            lambda d: d.assign(DV=d["DV"].where(d.index != 2, -0.1)),
            r"line 4, column DV\] negative DV",
        ),
        (
            lambda d: d.assign(TIME=d["TIME"].where(d.index != 4, 30.0)),
            r"line 6, column TIME\] TIME 30.0 of ID A is earlier",
        ),
        (
            lambda d: d.assign(AMT=d["AMT"].where(d.index != 1, np.nan)),
            r"line 3, column AMT\] dose row with AMT nan",
        ),
        (lambda d: d.assign(EVID=d["EVID"].where(d.index != 0, 4)), r"line 2, column EVID\]"),
        (
            lambda d: d.assign(MDV=d["MDV"].where(d.index != 1, 0)),
            r"line 3, column MDV\] a dose row",
        ),
        (
            lambda d: d.assign(TIME=d["TIME"].where(d.index != 0, -3.0)),
            r"line 2, column TIME\].*< 0",
        ),
        (
            lambda d: d.assign(DV=d["DV"].astype(object).where(d.index != 5, "high")),
            r"line 7, column DV\] DV value 'high' is not a number",
        ),
        (lambda d: d.assign(BLQ=d["BLQ"].where(d.index != 5, 2)), r"line 7, column BLQ\]"),
    ],
)
def test_validation_names_line_column_and_fix(tmp_path, change, match):
    df = change(pd.DataFrame(records()))
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False, na_rep=".")
    with pytest.raises(DataFileError, match=match) as e:
        read_nonmem(path)
    msg = str(e.value)
    assert str(path) in msg and "fix:" in msg
    with pytest.raises(DataFileError, match=match):  # the writer validates first, writes nothing
        write_nonmem(df, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_unreadable_file(tmp_path):
    with pytest.raises(DataFileError, match="file not found"):
        read_nonmem(tmp_path / "nope.csv")


def test_to_doses_and_covariates_simulate():
    df = validate_nonmem(pd.DataFrame(records()))
    model = tregsim.load_model("treg_t1d")
    ids, doses, over = nonmem_to_doses(df, model)
    assert list(ids) == ["A", "B"]
    np.testing.assert_array_equal(doses.time, [[60.0, 120.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(doses.amount, [[2e7, 1e7], [0.0, 0.0]])
    assert doses.target == "X"
    assert set(over) == {"age", "weight", "cpep0"}
    np.testing.assert_array_equal(over["age"], [12.5, 25.0])
    np.testing.assert_array_equal(over["weight"], [41.0, 70.0])
    np.testing.assert_array_equal(over["cpep0"], [0.8, 0.4])
    P = model.parameters(len(ids), **over)
    res = tregsim.simulate_arrays(model, P, doses=doses, times=np.array([0.0, 59.0, 61.0, 121.0]))
    X = res.state("X")
    assert X[0, 1] == 0 and X[0, 2] > 1e7 and (X[1] == 0).all()


def test_long_format_roundtrip(tmp_path):
    df = validate_nonmem(pd.DataFrame(records()))
    long = nonmem_to_long(df)
    assert list(long.columns) == ["id", "day", "cpeptide_nmol_l", "age", "censored"]
    assert len(long) == 5 and long["censored"].tolist() == [0, 0, 0, 0, 1]
    assert long["age"].tolist() == [12.5] * 3 + [25.0] * 2
    path = write_long(long, tmp_path / "long.csv")
    back = read_long(path)
    pd.testing.assert_frame_equal(back, long, check_dtype=False)
    # long (+ doses) → NONMEM → long is the identity on the observations
    nm = long_to_nonmem(
        nonmem_to_long(df, extra_covariates=True), doses={"A": [(60.0, 2e7), (120.0, 1e7)]}
    )
    assert (nm["EVID"] == 1).sum() == 2
    pd.testing.assert_frame_equal(nonmem_to_long(nm), long, check_dtype=False)
    _, d2, _ = nonmem_to_doses(nm)
    np.testing.assert_array_equal(d2.amount[0], [2e7, 1e7])


def test_long_format_validation(tmp_path):
    bad = pd.DataFrame(
        {"id": ["a", "a"], "day": [0.0, 90.0], "cpeptide_nmol_l": [0.3, -0.1], "age": [10.0] * 2}
    )
    p = tmp_path / "bad.csv"
    bad.to_csv(p, index=False)
    with pytest.raises(DataFileError, match=r"line 3, column cpeptide_nmol_l\] C-peptide must"):
        read_long(p)
    with pytest.raises(DataFileError, match=r"missing column\(s\) \['age'\]"):
        write_long(bad.drop(columns="age"), tmp_path / "x.csv")


def test_long_format_one_set_of_rules(tmp_path):
    """The calibration loader and the interop reader are the same reader: a screening visit
    before day 0 counts as day 0 in both, and a bad row names its line in both."""
    from tregsim.calibrate.data import load_patient_data

    p = tmp_path / "d.csv"
    p.write_text("id,day,cpeptide_nmol_l,age\na,-7,0.8,12\na,90,0.6,12\nb,0,0.5,30\n")
    assert read_long(p)["day"].tolist() == [0.0, 90.0, 0.0]
    d = load_patient_data(p)
    assert d.visit_day.tolist() == [0.0, 90.0, 0.0] and d.age_years.tolist() == [12.0, 30.0]
    p.write_text("id,day,cpeptide_nmol_l,age\na,0,0.8,12\nb,0,0.5,abc\n")
    for reader in (read_long, load_patient_data):
        with pytest.raises(DataFileError, match=r"line 3, column age"):
            reader(p)


def test_placebo_individual_data_to_long(tmp_path):
    """The shared individual placebo data converts and round-trips (read from ../shared only;
    the file is never copied into the project)."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / PLACEBO
    if not src.exists():
        pytest.skip(f"{PLACEBO} is absent (it stays outside the project)")
    raw = pd.read_csv(src)
    day = raw["study_day"] - raw.groupby("participant_id")["study_day"].transform("min")
    long = pd.DataFrame(
        {
            "id": raw["participant_id"],
            "day": day,
            "cpeptide_nmol_l": raw["auc_mean_cpeptide_nmol_l"],
            "age": raw["age_years"],
            "censored": 0,
        }
    )
    nm = long_to_nonmem(long)
    write_nonmem(nm, tmp_path / "placebo_nm.csv")
    back = nonmem_to_long(read_nonmem(tmp_path / "placebo_nm.csv"))
    assert len(back) == len(raw) and back["id"].nunique() == raw["participant_id"].nunique()
    np.testing.assert_allclose(
        np.sort(back["cpeptide_nmol_l"]), np.sort(raw["auc_mean_cpeptide_nmol_l"]), rtol=1e-9
    )


def test_roundtrip_is_exact_for_arbitrary_floats(tmp_path, rng):
    n = 40
    t = np.sort(rng.uniform(0, 730, n))
    df = pd.DataFrame(
        {
            "ID": "X1",
            "TIME": t,
            "DV": rng.lognormal(-1, 0.5, n),
            "MDV": 0,
            "EVID": 0,
            "AMT": 0.0,
            "AGE": rng.uniform(5, 40),
        }
    )
    back = read_nonmem(write_nonmem(df, tmp_path / "f.csv"))
    np.testing.assert_array_equal(back["TIME"], t)
    np.testing.assert_array_equal(back["DV"], df["DV"])
    assert back["AGE"].iloc[0] == df["AGE"].iloc[0]
    assert (tmp_path / "f.csv").read_text().splitlines()[1].split(",")[3:5] == ["0", "0"]
    long = nonmem_to_long(back)
    again = read_long(write_long(long, tmp_path / "l.csv"))
    np.testing.assert_array_equal(again["day"], t)
    np.testing.assert_array_equal(again["cpeptide_nmol_l"], df["DV"])
