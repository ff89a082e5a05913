"""The twin inside virtual trials and `tregsim power` / `tregsim twin`: pre-randomization data
only, both tests in power.csv, one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tregsim.cli import main
from tregsim.errors import ArgumentError
from tregsim.experiment import load_experiment
from tregsim.posterior import load_posterior
from tregsim.resources import shipped_path
from tregsim.trial.endpoints import analyse_trials
from tregsim.trial.virtual import virtual_trials
from tregsim.twin import BaselinePrior, Twin, TwinGrid

# the lumped twin of this test needs the lumped posterior (one residual sigma)
LUMPED = shipped_path("calibration/posteriors/natural_history_lumped.nc")


@pytest.fixture(scope="module")
def exp():
    return load_experiment("experiments/nct06708780.toml")


def test_prognostic_score_uses_pre_randomization_data_only(exp):
    post = load_posterior(LUMPED)
    theta = {k: float(np.median(v)) for k, v in post.items()}
    twin = Twin(
        exp.model, post, n_draws=16, seed=2, baseline_prior=BaselinePrior.from_experiment(exp)
    )
    grid = TwinGrid(twin, np.geomspace(8, 65, 21), exp.baseline_day, [12.0])
    kw = dict(n_trials=6, n_max_per_arm=6, seed=4, twin=grid, progress=False, chunk_size=3)
    a = virtual_trials(exp, theta={**theta, "phi": 2.0}, **kw)
    b = virtual_trials(exp, theta={**theta, "phi": 500.0}, **kw)
    # the endpoints differ with the effect, the baseline-derived scores do not
    assert not np.allclose(a.endpoint_auc_nmol_l, b.endpoint_auc_nmol_l)
    np.testing.assert_array_equal(a.prognostic_ln_auc_plus_1, b.prognostic_ln_auc_plus_1)
    # and they are exactly the twin of the observed baseline and age
    want = grid.mean(a.baseline_auc_nmol_l.ravel(), a.age_years.ravel())[:, 0]
    np.testing.assert_allclose(a.prognostic_ln_auc_plus_1.ravel(), want, rtol=1e-12)
    res = analyse_trials(
        a.endpoint_auc_nmol_l,
        a.baseline_auc_nmol_l,
        a.age_years,
        a.arm,
        tests=("ancova", "ancova_prognostic"),
        prognostic_ln_auc_plus_1=a.prognostic_ln_auc_plus_1,
    )
    assert res["ancova_prognostic"].df[0] == res["ancova"].df[0] - 1


def test_ancova_prognostic_without_score_is_refused(rng):
    y = rng.lognormal(size=(2, 8))
    with pytest.raises(ArgumentError, match="prognostic score"):
        analyse_trials(y, y, y * 10, np.arange(8) % 2 == 0, tests=("ancova_prognostic",))


def test_power_cli_writes_both_tests(tmp_path):
    out = tmp_path / "p"
    argv = ["power", "experiments/nct06708780.toml", "--tests", "ancova,ancova_prognostic",
            "--trials", "10", "--n-per-arm", "4,6", "--no-assurance", "--twin-draws", "16",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out / "power.csv")
    assert {"power_ancova", "power_ancova_prognostic"} <= set(df.columns)
    assert (out / "power_curve.png").is_file()


def test_power_synthetic_refuses_ancova_prognostic(tmp_path, capsys):
    argv = ["power", "--synthetic", "--tests", "ancova_prognostic", "--trials", "10",
            "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ancova_prognostic needs an experiment" in err[0]


def test_twin_cli_bad_rows_one_line_exit_2(tmp_path, capsys):
    f = tmp_path / "twin.csv"
    f.write_text("id,day,cpeptide_nmol_l,age\np1,60,-0.3,12\n")
    assert main(["twin", str(f), "--experiment", "nct06708780", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2, column cpeptide_nmol_l" in err[0] and "fix:" in err[0]


def test_twin_cli_writes_predictions(tmp_path, capsys):
    f = tmp_path / "twin.csv"
    # c: a baseline far below the records' law at 14 y (the twin flags it, docs/twin.md)
    f.write_text(
        "ID,TIME,DV,MDV,EVID,AMT,AGE\na,60,0.7,0,0,0,14\nb,45,0.3,0,0,0,30\nc,60,0.03,0,0,0,14\n"
    )
    out = tmp_path / "o"
    assert (
        main(["twin", str(f), "--experiment", "nct06708780", "--draws", "16", "--out", str(out)])
        == 0
    )
    df = pd.read_csv(out / "twin_predictions.csv")
    assert list(pd.unique(df["participant"])) == ["a", "b", "c"]
    assert df.groupby("participant")["month"].count().tolist() == [6, 6, 6]
    flag = df.groupby("participant")["baseline_conflict"].first()
    assert flag.tolist() == [False, False, True]
    assert "1 with a baseline MMTT in the outer 1%" in capsys.readouterr().out
