"""One regimen → doses path, IL-2 included (tregsim.regimen.regimen_doses).

The IL-2 experiment (experiments/nct06708780_il2.toml, model treg_t1d_v1_il2) is checked
against a direct :func:`tregsim.simulate_arrays` call with hand-built doses, and the refusal of
IL-2 on the core model is checked to carry a fix that, applied, loads.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tregsim.cohort import simulate_arms
from tregsim.errors import ExperimentFileError
from tregsim.experiment import load_experiment
from tregsim.population import sample_population
from tregsim.resources import shipped_path
from tregsim.solve import Doses, simulate_arrays

IL2_EXP = shipped_path("experiments/nct06708780_il2.toml")


@pytest.fixture(scope="module")
def il2_cohort():
    exp = load_experiment(IL2_EXP)
    pop = sample_population(exp, 12, 3)
    return exp, pop, simulate_arms(exp, pop)


def test_il2_arm_matches_hand_built_doses(il2_cohort):
    exp, pop, res = il2_cohort
    w = pop.covariates["weight"]
    n = pop.n
    days = np.array([60.0, 61.0, 62.0, 63.0, 64.0])  # as written in the experiment file
    cells = Doses(time=np.full((n, 1), 60.0), amount=np.full((n, 1), 20e6), target="X")
    il2 = Doses(time=np.tile(days, (n, 1)), amount=np.tile(1e6 / w[:, None], (1, 5)), target="IL2")
    direct = simulate_arrays(exp.model, pop.params, [cells, il2], exp.visits_days)
    np.testing.assert_allclose(res["treg_il2"], direct.observables["cpeptide"], rtol=1e-12)
    no_il2 = simulate_arrays(exp.model, pop.params, cells, exp.visits_days)
    np.testing.assert_allclose(res["treg"], no_il2.observables["cpeptide"], rtol=1e-12)


def test_il2_effect_visible(il2_cohort):
    _, _, res = il2_cohort
    after = slice(1, None)  # every visit after the infusion + IL-2 course (day 60-64)
    d = res["treg_il2"][:, after] - res["treg"][:, after]
    # IL-2 adds Treg proliferation k_T occ_T > 0: every patient gains C-peptide
    assert (d > 0).all()
    np.testing.assert_array_equal(res["treg_il2"][:, 0], res["treg"][:, 0])  # baseline untouched


def test_il2_on_core_model_refused_with_a_fix_that_works(tmp_path):
    text = IL2_EXP.read_text(encoding="utf-8").replace(
        'model = "treg_t1d_v1_il2"', 'model = "treg_t1d"'
    )
    bad = tmp_path / "core_il2.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(bad)
    e = info.value
    assert e.field == "arms.treg_il2.adjuncts.il2_dose_iu"
    assert "\n" not in str(e)
    fix = re.search(r'model = "([^"]+)"', e.fix).group(0)
    good = tmp_path / "fixed.toml"
    good.write_text(text.replace('model = "treg_t1d"', fix), encoding="utf-8")
    assert load_experiment(good).model.name == "treg_t1d_v1_il2"


def test_sweep_gives_the_il2_course_too():
    """A dose sweep on the IL-2 arm simulates cells + IL-2, as a direct solve with the
    regimen's doses does (and differs from the same sweep on the cells-only arm)."""
    from tregsim.explore.sweep import parse_grid, sweep
    from tregsim.regimen import regimen_doses

    exp = load_experiment(IL2_EXP)
    axes = [parse_grid("dose_per_kg=2e7")]
    res = sweep(exp, axes, n=8, seed=3, arm="treg_il2", progress=False)
    pop = sample_population(exp, 8, 3)
    doses = regimen_doses(exp.arms["treg_il2"].regimen, pop.covariates["weight"])
    assert isinstance(doses, list) and {d.target for d in doses} == {"X", "IL2"}
    direct = simulate_arrays(exp.model, pop.params, doses, res.outcomes.times_days)
    np.testing.assert_allclose(res.outcomes.treg[0], direct.observables["cpeptide"], rtol=1e-6)
    cells_only = sweep(exp, axes, n=8, seed=3, arm="treg", progress=False)
    assert (res.outcomes.treg[0] > cells_only.outcomes.treg[0]).all()
