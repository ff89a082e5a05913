"""`tregsim export sbml|petab` and `tregsim data check|import|export` end to end."""

from __future__ import annotations

import pandas as pd
import pytest
from test_interop_nonmem import records

from tregsim.cli import main

# petab 0.8 itself calls pandas APIs deprecated in pandas 3.x; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(inplace|float_precision).*")


def test_export_sbml_with_doses(tmp_path, capsys):
    libsbml = pytest.importorskip("libsbml")
    out = tmp_path / "m.xml"
    rc = main(
        [
            "export",
            "sbml",
            "treg_t1d",
            "-o",
            str(out),
            "--dose-day",
            "60,240",
            "--dose-per-kg",
            "2e7",
            "--dose-per-kg",
            "1e7",
        ]
    )
    assert rc == 0
    assert "0 errors" in capsys.readouterr().out
    doc = libsbml.readSBMLFromFile(str(out))  # keep: the model lives in the doc
    m = doc.getModel()
    assert m.getNumEvents() == 2
    assert m.getParameter("dose_2_day").getValue() == 240.0
    assert m.getParameter("dose_2_amount").getValue() == 1e7


def test_export_sbml_argument_errors(tmp_path, capsys):
    rc = main(["export", "sbml", "treg_t1d", "-o", str(tmp_path / "m.xml"), "--dose-day", "60"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--dose-day/--dose-per-kg" in err and "fix:" in err
    rc = main(
        [
            "export",
            "sbml",
            "treg_t1d",
            "-o",
            str(tmp_path / "m.xml"),
            "--dose-day",
            "x",
            "--dose-per-kg",
            "1",
        ]
    )
    assert rc == 2 and "not a number: 'x'" in capsys.readouterr().err
    assert not (tmp_path / "m.xml").exists()


def test_export_petab_from_nonmem(tmp_path, capsys):
    pytest.importorskip("petab.v1")
    from tregsim.interop.nonmem import write_nonmem
    from tregsim.interop.petab import lint_petab

    data = write_nonmem(records(), tmp_path / "nm.csv")
    rc = main(
        [
            "export",
            "petab",
            "treg_t1d",
            "--data",
            str(data),
            "-o",
            str(tmp_path / "pe"),
            "--estimate",
            "lambda_ref,q,sigma",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert lint_petab(tmp_path / "pe" / "problem.yaml") is False
    cond = pd.read_csv(tmp_path / "pe" / "conditions.tsv", sep="\t", index_col=0)
    assert cond.loc["c_A", "dose_2_amount"] == 1e7 and cond.loc["c_A", "cpep0"] == 0.8
    meas = pd.read_csv(tmp_path / "pe" / "measurements.tsv", sep="\t")
    assert len(meas) == 4  # 5 observations, 1 below the LLOQ left out


def test_data_check_import_export(tmp_path, capsys):
    from tregsim.interop.nonmem import read_long, read_nonmem, write_nonmem

    nm = write_nonmem(records(), tmp_path / "nm.csv")
    assert main(["data", "check", str(nm)]) == 0
    assert "2 individuals, 5 observations, 2 doses, 1 below LLOQ" in capsys.readouterr().out
    assert main(["data", "import", str(nm), "-o", str(tmp_path / "long.csv")]) == 0
    long = read_long(tmp_path / "long.csv")
    assert list(long.columns[:5]) == ["id", "day", "cpeptide_nmol_l", "age", "censored"]
    assert main(["data", "check", str(tmp_path / "long.csv")]) == 0
    assert (
        main(["data", "export", str(tmp_path / "long.csv"), "-o", str(tmp_path / "nm2.csv")]) == 0
    )
    back = read_nonmem(tmp_path / "nm2.csv")
    assert (back["EVID"] == 0).all() and len(back) == 5
    assert main(["data", "import", str(tmp_path / "long.csv"), "-o", str(tmp_path / "x")]) == 2
    assert "not a NONMEM-style table" in capsys.readouterr().err
    bad = pd.DataFrame(records())
    bad.loc[2, "DV"] = -1.0
    bad.to_csv(tmp_path / "bad.csv", index=False, na_rep=".")
    assert main(["data", "check", str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: [line 4, column DV] negative DV -1.0 nmol/L; fix:" in err
