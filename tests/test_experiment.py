"""Experiment files: loading, validation errors (file, field, fix), regimens → doses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tregsim.errors import ExperimentFileError
from tregsim.experiment import DAYS_PER_MONTH, load_experiment

ROOT = Path(__file__).resolve().parents[1]
NCT = ROOT / "experiments" / "nct06708780.toml"
TEXT = NCT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def exp():
    return load_experiment(NCT)


def write_variant(tmp_path, old: str, new: str, name="bad.toml") -> Path:
    assert old in TEXT, old
    p = tmp_path / name
    p.write_text(TEXT.replace(old, new, 1), encoding="utf-8")
    return p


def test_registered_design(exp):
    assert exp.control_arm == "routine_care"
    assert exp.treatment_arms == ["treg"]
    assert exp.trial == {
        "n_total": 20,
        "allocation": "non-randomized",
        "n_per_arm": {"treg": 10, "routine_care": 10},
    }
    np.testing.assert_array_equal(exp.visit_months, [0, 3, 6, 12, 18, 24])
    np.testing.assert_allclose(exp.visits_days, 60 + DAYS_PER_MONTH * exp.visit_months)
    assert exp.horizon_days >= exp.visits_days[-1]
    reg = exp.arms["treg"].regimen
    assert (reg.dose_per_kg, reg.infusion_day, reg.n_infusions) == (20e6, 60.0, 1)
    assert exp.sections["sections"] == [
        "cohort",
        "natural_history",
        "power",
        "treatment_effect",
        "sweep",
        "sensitivity",
    ]
    assert exp.run_quick["n_patients"] == 500
    assert exp.variability.sd_log == {"f_lambda": "omega_lambda"}
    assert "age" in exp.eligibility.describe()


def test_regimen_doses_per_kg_and_total(exp, tmp_path):
    from tregsim.regimen import TregInfusion

    w = np.array([20.0, 50.0, 80.0])
    t, a = TregInfusion(30.0, dose_total=1e9, n_infusions=3, interval_days=14.0).dose_arrays(w)
    np.testing.assert_array_equal(t, np.tile([30.0, 44.0, 58.0], (3, 1)))
    np.testing.assert_allclose(a, np.repeat((1e9 / w)[:, None], 3, axis=1))
    t, a = exp.arms["treg"].regimen.dose_arrays(w)
    assert t.shape == a.shape == (3, 1) and (a == 20e6).all()
    assert exp.arms["routine_care"].regimen.dose_arrays(w) is None


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "n_infusions = 1",
            "n_infusions = 1\nspeed = 3",
            "arms.treg.regimen.speed",
            "unknown key 'speed'; fix: use one of: dose_per_kg, dose_total",
        ),
        (
            "dose_per_kg = 20e6",
            "dose_per_kg = -2e6",
            "arms.treg.regimen.dose_per_kg",
            "must be ≥ 0.0 cells/kg, got -2000000.0",
        ),
        (
            "dose_per_kg = 20e6",
            "dose_per_kg = nan",
            "arms.treg.regimen.dose_per_kg",
            "must be finite",
        ),
        (
            "mean = 28.0, sd = 12.0, low = 18.0, high = 65.0",
            "mean = 28.0, sd = 12.0, low = 18.0, high = 130.0",
            "population.age.components[1].high",
            "outside the allowed range [0.0, 120.0]",
        ),
        (
            "visits_months = [0, 3, 6, 12, 18, 24]",
            "visits_months = [0, 6, 3, 12]",
            "visits_months[2]",
            "strictly increasing",
        ),
        ('model = "treg_t1d"', 'model = "no_such_model"', "model", "no_such_model"),
        (
            '{ covariate = "age", min = 8.0, max = 65.0 }',
            '{ covariate = "age", min = 70.0, max = 90.0 }',
            "eligibility",
            "acceptance 0 < min_acceptance",
        ),
        (
            '{ covariate = "age", min = 8.0, max = 65.0 }',
            '{ covariate = "height", min = 8.0 }',
            "eligibility.all_of[0].covariate",
            "unknown value 'height'",
        ),
        ("p = 0.9", "p = 1.5", "population.aab_positive.p", "must be ≤ 1.0"),
        (
            "n_per_arm = { treg = 10, routine_care = 10 }",
            "n_per_arm = { treg = 12, routine_care = 10 }",
            "trial.n_per_arm",
            "sum to 22",
        ),
        ("control = true", "control = false", "arms", "0 arms are marked control"),
        (
            "interval_days = 0.0",
            "interval_days = 0.0\n[arms.treg.adjuncts]\nil2_dose_iu = 1e6\nil2_days = [61.0]",
            "arms.treg.adjuncts.il2_dose_iu",
            "takes no IL-2 doses",
        ),
        ("schema_version = 1", "schema_version = 2", "schema_version", "unsupported"),
    ],
)
def test_bad_files_name_file_field_fix(tmp_path, old, new, field, words):
    p = write_variant(tmp_path, old, new)
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(p)
    e = info.value
    assert e.file == str(p)
    assert e.field == field
    assert e.fix
    assert words in str(e)


def test_unknown_top_level_key_lists_valid(tmp_path):
    p = write_variant(tmp_path, "schema_version = 1", "schema_version = 1\nhorizon = 3")
    with pytest.raises(
        ExperimentFileError,
        match=r"\[horizon\] unknown key 'horizon'; fix: use "
        r"one of: arms, baseline_day",
    ):
        load_experiment(p)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ExperimentFileError, match="file not found"):
        load_experiment(tmp_path / "nope.toml")
    p = tmp_path / "x.toml"
    p.write_text("schema_version = = 1")
    with pytest.raises(ExperimentFileError, match="not valid TOML"):
        load_experiment(p)


CLI_CASES = [
    ("dose_per_kg = 20e6", "dose_per_kg = -2e6", "arms.treg.regimen.dose_per_kg"),
    ("n_infusions = 1", "n_infusions = 1\nspeed = 3", "arms.treg.regimen.speed"),
    ('model = "treg_t1d"', 'model = "no_such_model"', "model"),
    ("low = 8.0, high = 18.0", "low = -1.0, high = 18.0", "population.age.components[0].low"),
    (
        '{ covariate = "age", min = 8.0, max = 65.0 }',
        '{ covariate = "age", min = 70.0 }',
        "eligibility",
    ),
]


@pytest.mark.parametrize(("old", "new", "field"), CLI_CASES)
def test_cli_main_one_line_exit_2(tmp_path, capsys, old, new, field):
    from tregsim.cli import main

    p = write_variant(tmp_path, old, new)
    out = tmp_path / "out"
    assert main(["cohort", str(p), "--n", "10", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"tregsim cohort: error: {p}: [{field}]")
    assert "; fix: " in err[0]
    assert not out.exists()


def test_cli_subprocess_one_line_exit_2(tmp_path):
    p = write_variant(tmp_path, "dose_per_kg = 20e6", "dose_per_kg = -2e6")
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "tregsim", "cohort", str(p), "--n", "10", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(p) in lines[0] and "[arms.treg.regimen.dose_per_kg]" in lines[0]
    assert "fix:" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.stem
)
def test_every_shipped_experiment_loads(path):
    e = load_experiment(path)
    # haller2011 is a natural-history cohort (a check of the age effect): control arm only
    assert e.control_arm in e.arms and (e.treatment_arms or path.stem == "haller2011")
    assert sum(e.trial["n_per_arm"].values()) == e.trial["n_total"]


def test_trex_eligibility_holds():
    from tregsim.population import sample_population

    e = load_experiment(ROOT / "experiments" / "trex_children.toml")
    c = sample_population(e, 2000, seed=0).covariates
    assert (c["weight"] >= 30).all() and (c["cpep_baseline"] >= 0.2).all()
    assert ((c["age"] >= 8) & (c["age"] <= 18)).all()
    assert e.treatment_arms == ["high", "low"] and e.control_arm == "placebo"
