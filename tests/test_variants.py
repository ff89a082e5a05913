"""Model variants V0 (empirical yardstick) and V1 (IL-2 axis), `tregsim models`, `tregsim compare`.

Units: days, nmol/L (MMTT C-peptide AUC mean), cells/kg (Treg doses), IU/kg (IL-2 doses).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tregsim
from tregsim.explore.compare import (
    MONTH_DAYS,
    ArmSpec,
    builtin_population,
    compare_models,
    default_arms,
)

V0 = "treg_t1d_v0_empirical"
V1 = "treg_t1d_v1_il2"
TIMES = np.arange(25) * MONTH_DAYS  # days


@pytest.fixture(scope="module")
def core():
    return tregsim.load_model("treg_t1d")


@pytest.fixture(scope="module")
def v0():
    return tregsim.load_model(V0)


@pytest.fixture(scope="module")
def v1():
    return tregsim.load_model(V1)


def _patients(n, seed=3):
    rng = np.random.default_rng(seed)
    return dict(
        age=rng.uniform(8, 45, n),
        cpep0=0.7 * np.exp(0.4 * rng.standard_normal(n)),
        f_lambda=np.exp(0.6 * rng.standard_normal(n)),
        weight=rng.uniform(25, 90, n),
    )


def _treg(n, day=60.0, dose=2e7):
    return tregsim.Doses(time=np.full((n, 1), day), amount=np.full((n, 1), dose), target="X")


def _il2(n, iu_per_kg, start=60.0, days=5):
    t = np.broadcast_to(start + np.arange(days, dtype=float), (n, days))
    return tregsim.Doses(time=t, amount=np.full((n, days), iu_per_kg), target="IL2")


# ------------------------------------------------------------------------------------- V0
def test_v0_untreated_equals_closed_form(v0):
    """Without a dose, C(t) = cpep0 (1 + q lambda0 t)^(-1/q), lambda0 = lambda_ref (a/10)^-g f."""
    n = 6
    cov = _patients(n)
    q = np.array([0.05, 0.2, 0.5, 0.7, 0.95, 0.5])
    lam_ref = np.array([1e-3, 1.7e-3, 3e-3, 1.7e-3, 5e-4, 1e-2])
    gam = np.array([0.0, 0.5, 1.0, 0.3, 0.8, 0.5])
    P = v0.parameters(n, q=q, lambda_ref=lam_ref, gamma_a=gam, **cov)
    # a check of the equations, so solve tightly (the default rtol is 1e-7)
    r = tregsim.simulate_arrays(v0, P, times=TIMES, rtol=1e-10, atol=1e-12)
    assert (r.status == 0).all()
    lam0 = lam_ref * (cov["age"] / 10) ** (-gam) * cov["f_lambda"]
    closed = cov["cpep0"][:, None] * (1 + q[:, None] * lam0[:, None] * TIMES) ** (-1 / q[:, None])
    np.testing.assert_allclose(r.observables["cpeptide"], closed, rtol=1e-7, atol=0)
    # and the decline is real: the closed form falls by > 5 % for each patient at 24 months
    assert (closed[:, -1] < 0.95 * closed[:, 0]).all()


def test_v0_effect_vanishes_at_phi0_and_grows_with_phi(v0):
    n = 4
    cov = _patients(n, seed=5)
    out = {}
    for phi in (0.0, 2.0, 20.0, 200.0):
        P = v0.parameters(n, phi=phi, **cov)
        out[phi] = tregsim.simulate_arrays(v0, P, doses=_treg(n), times=TIMES)
    ctrl = tregsim.simulate_arrays(v0, v0.parameters(n, **cov), times=TIMES)
    np.testing.assert_allclose(
        out[0.0].observables["cpeptide"], ctrl.observables["cpeptide"], rtol=1e-7
    )  # the dose restarts the integration: equal to solver tolerance (rtol 1e-8)
    d = {
        p: out[p].observables["cpeptide"][:, 12] - ctrl.observables["cpeptide"][:, 12] for p in out
    }
    assert (d[2.0] > 0).all() and (d[20.0] > d[2.0]).all() and (d[200.0] > d[20.0]).all()
    # infusion on day 60: nothing changes before it
    np.testing.assert_allclose(
        out[200.0].observables["cpeptide"][:, :2], ctrl.observables["cpeptide"][:, :2], rtol=1e-12
    )


def test_v0_shares_names_units_and_observable(core, v0):
    shared = [
        "lambda_ref",
        "gamma_a",
        "omega_lambda",
        "f_lambda",
        "q",
        "sigma",
        "phi",
        "LLOQ",
        "T_ref",
        "FX",
        "T_max",
        "alpha_X",
        "F_M",
        "beta_M",
        "eps_gate",
        "age",
        "weight",
        "cpep0",
    ]
    for name in shared:
        a, b = core.spec.parameters[name], v0.spec.parameters[name]
        assert (a.unit, a.role, a.value) == (b.unit, b.role, b.value), name
    assert v0.spec.variant_of == "treg_t1d"
    assert v0.spec.doses["X"].clock == "tau"
    oc, o0 = core.spec.observables["cpeptide"], v0.spec.observables["cpeptide"]
    assert (oc.unit, oc.noise, oc.sigma, oc.lloq) == (o0.unit, o0.noise, o0.sigma, o0.lloq)


# ------------------------------------------------------------------------------------- V1
def test_v1_without_il2_equals_core(core, v1):
    n = 8
    cov = _patients(n, seed=11)
    # V1 has one more state in its error norm, so its steps differ: compare at a tight tolerance
    tight = {"rtol": 1e-11, "atol": 1e-13}
    a = tregsim.simulate_arrays(core, core.parameters(n, **cov), _treg(n), TIMES, **tight)
    b = tregsim.simulate_arrays(v1, v1.parameters(n, **cov), _treg(n), TIMES, **tight)
    assert (a.status == 0).all() and (b.status == 0).all()
    np.testing.assert_allclose(
        b.observables["cpeptide"], a.observables["cpeptide"], rtol=1e-9, atol=0
    )
    for s in core.state_names:
        np.testing.assert_allclose(b.state(s), a.state(s), rtol=1e-9, atol=1e-9 * 2e7)
    assert np.all(b.state("IL2") == 0)


def test_v1_il2_depot_is_first_order(v1):
    """One injection: IL2(t) = D exp(-k_a (t - t_d)) (closed form of the depot)."""
    n = 2
    P = v1.parameters(n, **_patients(n, seed=2))
    t = np.array([0.0, 60.0, 60.1, 60.25, 60.5, 61.0, 62.0])
    r = tregsim.simulate_arrays(v1, P, doses=_il2(n, 2e4, days=1), times=t)
    ka = v1.spec.parameters["k_a_IL2"].value
    expect = np.where(t >= 60, 2e4 * np.exp(-ka * (t - 60)), 0.0)
    np.testing.assert_allclose(
        r.state("IL2"), np.broadcast_to(expect, (n, t.size)), rtol=1e-6, atol=1e-6
    )
    # half-life documented in the file: ~5 h absorption, 85 min elimination
    assert np.log(2) / ka * 24 == pytest.approx(5.0, rel=0.01)
    kel = v1.spec.parameters["k_el_IL2"].value
    assert np.log(2) / kel * 1440 == pytest.approx(85.0, rel=0.01)


def test_v1_il2_raises_endogenous_tregs_dose_dependently(v1):
    n = 3
    P = v1.parameters(n, **_patients(n, seed=4))
    t = np.array([0.0, 59.0, 62.0, 65.0, 70.0, 90.0])
    peaks, e_peaks = [], []
    for iu_per_kg in (0.0, 1e3, 6e3, 2e4, 6e4):
        r = tregsim.simulate_arrays(v1, P, doses=[_treg(n), _il2(n, iu_per_kg)], times=t)
        assert (r.status == 0).all()
        R, E = r.state("R"), r.state("E")
        np.testing.assert_allclose(R[:, :2], 1.0, rtol=1e-9)  # nothing before day 60
        peaks.append(R.max(axis=1))
        e_peaks.append(E[:, 2:].max(axis=1) / E[:, 1])
    peaks = np.array(peaks)
    assert (np.diff(peaks, axis=0) > 1e-4).all()  # strictly increasing with the dose
    assert (peaks[-1] > 1.3).all()  # a clear expansion at the highest dose
    # selectivity: at a low dose Tregs rise far more than effectors (EC50 0.0032 vs 0.32 nM)
    e_peaks = np.array(e_peaks)
    assert ((peaks[1] - 1) > 10 * (e_peaks[1] - e_peaks[0])).all()
    # but effectors are boosted too as the dose grows
    assert (e_peaks[-1] > e_peaks[0] + 0.01).all()


def test_v1_parameters_documented(v1):
    for name, p in v1.spec.parameters.items():
        assert p.unit and p.source and p.description, name
    for name in ("k_a_IL2", "F_IL2", "V_IL2", "EC50_T", "EC50_E", "k_T_IL2", "k_E_IL2"):
        assert v1.spec.parameters[name].prior is not None, name
    assert v1.spec.parameters["EC50_T"].value == 0.0032
    assert v1.spec.parameters["EC50_E"].value == 0.32
    assert v1.spec.doses["IL2"].unit == "IU/kg"
    assert v1.spec.variant_of == "treg_t1d"


# ----------------------------------------------------------------------------- CLI models
def test_models_cli_lists_every_model(capsys):
    from tregsim.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [n for n, _ in tregsim.list_models()]
    assert len(out) == len(names)
    by_name = {line.split()[0]: line for line in out}
    assert "6 states" in by_name["treg_t1d"]
    assert "3 states" in by_name[V0] and "7 states" in by_name[V1]


# ------------------------------------------------------------------------------- compare
def test_builtin_population_chunk_invariant_and_in_range():
    a, b = builtin_population(10, 7), builtin_population(4, 7)
    np.testing.assert_array_equal(a.age[:4], b.age)
    np.testing.assert_array_equal(a.z_lambda[:4], b.z_lambda)
    big = builtin_population(2000, 1)
    # f_lambda = exp(omega_lambda · z) with z standard normal (omega_lambda = 0.6 in treg_t1d)
    np.testing.assert_allclose(big.f_lambda, np.exp(0.6 * big.z_lambda), rtol=1e-12)
    assert abs(big.z_lambda.mean()) < 4 / np.sqrt(2000) and abs(big.z_lambda.std() - 1) < 0.07
    assert big.age.min() >= 8 and big.age.max() <= 45
    assert np.median(big.cpep0) == pytest.approx(0.7, rel=0.05)
    assert (big.weight > 15).all() and (big.weight < 150).all()


def test_compare_models_same_patients_and_table(core, v0, v1):
    n = 12
    pop = builtin_population(n, 2)
    arms = default_arms(2e7, 60.0, il2_iu_per_dose=1e6)
    res = compare_models([core, v0, v1], arms, pop, seed=2)
    t = res.table
    # control arms of treg_t1d and V1 are the same patients on the same equations
    np.testing.assert_allclose(
        res.cpeptide[(V1, "control")], res.cpeptide[("treg_t1d", "control")], rtol=1e-9
    )
    np.testing.assert_allclose(
        res.cpeptide[(V1, "treg")], res.cpeptide[("treg_t1d", "treg")], rtol=1e-9
    )
    assert ("treg_t1d", "treg_il2") in res.skipped and (V0, "treg_il2") in res.skipped
    # summaries are those of the arrays
    c = res.cpeptide[(V0, "treg")]
    row = t[(t.model == V0) & (t.arm == "treg") & (t.month == 12.0)].iloc[0]
    assert row.median_cpeptide_nmol_L == pytest.approx(np.median(c[:, 12]))
    assert row.p5_cpeptide_nmol_L == pytest.approx(np.quantile(c[:, 12], 0.05))
    d = np.mean(c[:, 12] - res.cpeptide[(V0, "control")][:, 12])
    assert row.mean_delta_vs_control_nmol_L == pytest.approx(d)
    assert (t[t.arm == "control"].mean_delta_vs_control_nmol_L == 0).all()
    # V0's control at month 0 is cpep0 exactly
    np.testing.assert_allclose(res.cpeptide[(V0, "control")][:, 0], pop.cpep0, rtol=1e-12)
    text = res.to_csv_text()
    assert sum(line.startswith("# model: ") for line in text.splitlines()) == 3
    assert sum(line.startswith("# phi: ") for line in text.splitlines()) == 3


def test_compare_rejects_bad_arms(core):
    with pytest.raises(tregsim.ArgumentError, match="control"):
        compare_models([core], [ArmSpec("a", "a")], builtin_population(2, 0))
    with pytest.raises(tregsim.ArgumentError, match=r"dose per kg"):
        default_arms(-1.0, 60.0)


def test_compare_cli_writes_outputs(tmp_path, capsys):
    import pandas as pd

    from tregsim.cli import main

    out = tmp_path / "cmp"
    rc = main(
        [
            "compare",
            "--models",
            f"treg_t1d,{V0}",
            "--n",
            "6",
            "--seed",
            "1",
            "--months",
            "12",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    for f in ("compare.csv", "compare.png", "manifest.json"):
        assert (out / f).is_file()
    df = pd.read_csv(out / "compare.csv", comment="#")
    assert set(df.model) == {"treg_t1d", V0} and set(df.arm) == {"control", "treg"}
    assert df.month.max() == 12
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "compare" and man["seed"] == 1
    # an unknown model: one-line error, exit 2, nothing written
    bad = tmp_path / "bad"
    assert main(["compare", "--models", "no_such_model", "--out", str(bad)]) == 2
    assert "error" in capsys.readouterr().err
    assert not bad.exists()


def test_compare_with_experiment_file(tmp_path):
    from pathlib import Path

    from tregsim.experiment import load_experiment
    from tregsim.explore.compare import population_from_experiment

    path = Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml"
    if not path.is_file():
        pytest.skip("experiments/nct06708780.toml not present")
    exp = load_experiment(path)
    pop, arms = population_from_experiment(exp, 5, 3)
    assert {a.name for a in arms} == set(exp.arms)
    assert sum(a.control for a in arms) == 1
    res = compare_models(["treg_t1d", V0], arms, pop, seed=3, times_days=np.array([0.0, 365.25]))
    assert np.isfinite(res.table.median_cpeptide_nmol_L).all()


def test_compare_set_replaces_a_value_in_every_model_that_has_it(tmp_path, capsys):
    """``--set phi=20`` runs each model as if its file said phi = 20 (checked against a direct
    solve of the same patients with phi passed to ``model.parameters``); a parameter only one
    model has is applied to that model only; unknown names and out-of-support values exit 2
    with one line and write nothing."""
    import pandas as pd

    from tregsim.cli import main
    from tregsim.explore.compare import _arm_doses

    out = tmp_path / "cmp"
    args = ["compare", "--models", f"treg_t1d,{V0}", "--n", "5", "--seed", "1", "--months", "12"]
    assert main([*args, "--set", "phi=20", "--out", str(out)]) == 0
    df = pd.read_csv(out / "compare.csv", comment="#")
    pop = builtin_population(5, 1)
    arm = next(a for a in default_arms(2e7, 60.0) if a.name == "treg")
    for name in ("treg_t1d", V0):
        m = tregsim.load_model(name)
        names = set(m.parameter_names)
        ov = {k: getattr(pop, k) for k in ("age", "weight", "cpep0") if k in names}
        if "f_lambda" in names:
            ov["f_lambda"] = np.exp(m.defaults().get("omega_lambda", 0.0) * pop.z_lambda)
        doses, _ = _arm_doses(m, arm, pop)
        r = tregsim.simulate_arrays(
            m, m.parameters(5, phi=20.0, **ov), doses=doses, times=[365.25], rtol=1e-8, atol=1e-10
        )
        row = df[(df.model == name) & (df.arm == "treg") & (df.month == 12)].iloc[0]
        assert row.median_cpeptide_nmol_L == pytest.approx(
            np.median(r.observables["cpeptide"][:, 0]), rel=1e-5
        )
    text = (out / "compare.csv").read_text()
    assert "# set: treg_t1d: phi = 20" in text and "20 (set; file value" in text
    assert json.loads((out / "manifest.json").read_text())["settings"]["set"] == {"phi": 20.0}
    capsys.readouterr()
    for bad in ("no_such=1", "phi=-3", "phi=abc"):
        dest = tmp_path / bad.replace("=", "_")
        assert main([*args, "--set", bad, "--out", str(dest)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "set." in err[0], err
        assert not dest.exists()
