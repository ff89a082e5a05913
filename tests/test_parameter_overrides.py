"""``[parameters]`` in experiment files and :func:`tregsim.experiment.with_parameters`.

Reference: the same experiment on a copy of the model file whose ``phi`` value is edited by
text replacement (an independent route to "this parameter has that value").
"""

from __future__ import annotations

import numpy as np
import pytest

from tregsim.cohort import run_cohort
from tregsim.errors import ArgumentError, ExperimentFileError
from tregsim.experiment import load_experiment, with_parameters
from tregsim.population import sample_population
from tregsim.resources import shipped_path

EXP = shipped_path("experiments/nct06708780.toml")
MODEL = shipped_path("models/treg_t1d.toml")
N, SEED = 40, 5


def _cohort(exp):
    return run_cohort(exp, N, SEED, progress=False, spaghetti_n=0).summary_frame()


@pytest.fixture(scope="module")
def edited_model_cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("edited")
    text = MODEL.read_text(encoding="utf-8")
    block = "[parameters.phi]\nvalue = 2.0\n"
    assert block in text  # the edit below must hit phi's value
    (d / "edited.toml").write_text(text.replace(block, "[parameters.phi]\nvalue = 20.0\n"))
    exp_text = EXP.read_text(encoding="utf-8").replace(
        'model = "treg_t1d"', 'model = "edited.toml"'
    )
    (d / "exp.toml").write_text(exp_text, encoding="utf-8")
    return _cohort(load_experiment(d / "exp.toml"))


def test_parameters_table_equals_editing_the_model_file(tmp_path, edited_model_cohort):
    text = EXP.read_text(encoding="utf-8") + "\n[parameters]\nphi = 20\n"
    p = tmp_path / "exp.toml"
    p.write_text(text, encoding="utf-8")
    exp = load_experiment(p)
    assert exp.parameter_overrides == {"phi": 20.0}
    got = _cohort(exp)
    cols = [c for c in got.columns if c.endswith("nmol_L") or c.startswith("diff")]
    np.testing.assert_allclose(
        got[cols].to_numpy(float), edited_model_cohort[cols].to_numpy(float), rtol=1e-12
    )
    # and the override matters: the default phi = 2 gives a different treatment arm
    base = _cohort(load_experiment(EXP))
    assert not np.allclose(base[cols].to_numpy(float), got[cols].to_numpy(float), equal_nan=True)


def test_with_parameters_equals_editing_the_model_file(edited_model_cohort):
    exp = with_parameters(load_experiment(EXP), {"phi": "20"})
    got = _cohort(exp)
    cols = [c for c in got.columns if c.endswith("nmol_L")]
    np.testing.assert_allclose(
        got[cols].to_numpy(float), edited_model_cohort[cols].to_numpy(float), rtol=1e-12
    )


def test_override_wins_over_posterior_draws():
    exp = with_parameters(load_experiment(EXP), {"phi": 20.0})
    pop = sample_population(exp, 6, 0, theta={"phi": np.linspace(1.0, 3.0, 6)})
    np.testing.assert_array_equal(pop.params["phi"], np.full(6, 20.0))


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"nosuch": 1.0}, "unknown parameter"),
        ({"phi": "abc"}, "not a number"),
        ({"phi": "nan"}, "not finite"),
        ({"phi": -1.0}, "outside the support"),
        ({"age": 30.0}, "covariate"),
        ({"phi": True}, "not a number"),
    ],
)
def test_bad_overrides_one_line(overrides, words):
    exp = load_experiment(EXP)
    with pytest.raises(ArgumentError) as info:
        with_parameters(exp, overrides)
    e = info.value
    name = next(iter(overrides))
    assert e.field == f"parameters.{name}" and e.fix
    assert words in str(e) and "\n" not in str(e)
    assert exp.parameter_overrides == {}  # the original is untouched


def test_bad_parameters_table_names_file_field_fix(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text(EXP.read_text(encoding="utf-8") + '\n[parameters]\nphi = "lots"\n')
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(p)
    e = info.value
    assert e.file == str(p) and e.field == "parameters.phi" and "not a number" in str(e)
