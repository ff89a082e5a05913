"""Sweeps, paired controls and responders (tregsim.explore.sweep / .responders).

References: direct ``tregsim.simulate_arrays`` calls with hand-built doses (the sweep must
reproduce them exactly); model properties that follow from the equations of treg_t1d
(φ = ψ = 0 makes infused cells inert; with φ ≥ ψ more cells never lower C-peptide);
numpy's own geomspace/arange for the grid syntax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tregsim.errors import ArgumentError
from tregsim.explore.sweep import GridAxis, parse_grid, simulate_paired, sweep

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "nct06708780.toml"


@pytest.fixture(scope="module")
def exp():
    from tregsim.experiment import load_experiment

    if not EXP.exists():
        pytest.skip(f"{EXP} is not present")
    return load_experiment(EXP)


# ---------------------------------------------------------------- grid syntax
@pytest.mark.parametrize(
    ("spec", "want", "spacing"),
    [
        ("dose_per_kg=1e6..1e8:log:9", np.geomspace(1e6, 1e8, 9), "log"),
        ("infusion_day=14..180:7", np.arange(14, 181, 7.0), "linear"),
        ("infusion_day=14..179:lin:12", np.linspace(14, 179, 12), "linear"),
        ("n_infusions=1,2,3", np.array([1.0, 2.0, 3.0]), "list"),
        ("phi=1,10,100", np.array([1.0, 10.0, 100.0]), "list"),
        ("x=0.5..1.0:0.25", np.array([0.5, 0.75, 1.0]), "linear"),
    ],
)
def test_parse_grid(spec, want, spacing):
    g = parse_grid(spec)
    np.testing.assert_allclose(g.values, want, rtol=1e-12)
    assert g.spacing == spacing
    assert g.name == spec.split("=")[0]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            "dose_per_kg",
            r"\[grid\] cannot parse grid 'dose_per_kg'; fix: write NAME=a\.\.b:log:k",
        ),
        ("x=0..1:log:3", r"log-spaced grid needs a, b > 0"),
        ("x=2..1:1", r"step > 0 and a ≤ b"),
        ("x=1,1", r"repeats values"),
        ("x=a,b", r"cannot parse grid"),
        ("1x=1,2", r"not an identifier"),
    ],
)
def test_parse_grid_errors(spec, match):
    with pytest.raises(ArgumentError, match=match):
        parse_grid(spec)


def test_unknown_name_lists_valid_ones(exp):
    with pytest.raises(ArgumentError, match=r"unknown name 'dose'.*fix: sweep one of: dose_per_kg"):
        sweep(exp, [parse_grid("dose=1,2")], n=2, seed=0, progress=False)
    with pytest.raises(ArgumentError, match=r"'age' is a covariate parameter"):
        sweep(exp, [parse_grid("age=10,20")], n=2, seed=0, progress=False)
    with pytest.raises(ArgumentError, match=r"needs interval_days > 0"):
        sweep(exp, [parse_grid("n_infusions=1,2")], n=2, seed=0, progress=False)


# ---------------------------------------------------------------- against direct simulation
def test_sweep_matches_direct_simulation(exp):
    from tregsim import Doses, ParameterBatch, simulate_arrays
    from tregsim.population.sampling import sample_population

    n, seed = 6, 3
    axes = [
        parse_grid("dose_per_kg=1e7,1e8"),
        parse_grid("infusion_day=30,120"),
        parse_grid("phi=2,50"),
    ]
    res = sweep(exp, axes, n=n, seed=seed, progress=False)
    po = res.outcomes
    assert po.treg.shape == (8, n, 2) and po.n_shared_controls == 1  # φ needs no own control
    pop = sample_population(exp, n, seed)
    times = exp.baseline_day + 30.4375 * np.array([12.0, 24.0])
    ctrl = simulate_arrays(exp.model, pop.params, None, times).observables["cpeptide"]
    # all points in one hand-built batch: point g is rows g·n … g·n + n − 1
    G = len(res.points)
    P = ParameterBatch.concat([pop.params.replace(phi=phi) for _, _, phi in res.points])
    d = Doses(
        time=np.repeat(res.points[:, 1], n)[:, None],
        amount=np.repeat(res.points[:, 0], n)[:, None],
        target="X",
    )
    direct = simulate_arrays(exp.model, P, d, times).observables["cpeptide"]
    np.testing.assert_allclose(po.treg, direct.reshape(G, n, 2), rtol=1e-12, atol=0)
    for g in range(G):
        np.testing.assert_allclose(po.control[g], ctrl, rtol=1e-12, atol=0)
    # table columns carry units and agree with the arrays
    d12 = po.treg[:, :, 0] - po.control[:, :, 0]
    np.testing.assert_allclose(
        res.table["delta_cpeptide_12mo_median_nmol_L"], np.median(d12, axis=1), rtol=1e-12
    )
    assert list(res.table.columns[:3]) == ["dose_per_kg_cells_per_kg", "infusion_day_days", "phi"]
    # dose × timing is the first two grid dimensions of grid_array
    assert res.grid_array("delta_cpeptide_12mo_mean_nmol_L").shape == (2, 2, 2)


def test_chunking_does_not_change_results(exp):
    pts = np.array([[1e7], [5e7]])
    a = simulate_paired(exp, ["dose_per_kg"], pts, n=8, seed=1, chunk_size=10, progress=False)
    b = simulate_paired(exp, ["dose_per_kg"], pts, n=8, seed=1, chunk_size=1000, progress=False)
    np.testing.assert_allclose(a.treg, b.treg, rtol=1e-13)
    np.testing.assert_allclose(a.control, b.control, rtol=1e-13)


def test_control_acting_parameter_gets_own_control(exp):
    from tregsim import simulate_arrays
    from tregsim.population.sampling import sample_population

    po = simulate_paired(
        exp,
        ["lambda_ref", "phi"],
        np.array([[1e-3, 2.0], [1e-3, 20.0], [3e-3, 2.0]]),
        n=6,
        seed=2,
        months=[12.0],
        progress=False,
    )
    assert po.n_shared_controls == 2
    np.testing.assert_array_equal(po.control[0], po.control[1])
    pop = sample_population(exp, 6, 2)
    t = exp.baseline_day + 30.4375 * np.array([12.0])
    want = simulate_arrays(exp.model, pop.params.replace(lambda_ref=3e-3), None, t)
    np.testing.assert_allclose(po.control[2], want.observables["cpeptide"], rtol=1e-12)


def test_iiv_sd_sweep_rescales_individual_factor(exp):
    from tregsim import simulate_arrays
    from tregsim.population.sampling import sample_population

    n = 6
    default = exp.model.spec.parameters["omega_lambda"].value
    po = simulate_paired(
        exp,
        ["omega_lambda"],
        np.array([[default], [0.0]]),
        n=n,
        seed=4,
        months=[12.0],
        progress=False,
    )
    pop = sample_population(exp, n, 4)
    t = exp.baseline_day + 30.4375 * np.array([12.0])
    base = simulate_arrays(exp.model, pop.params, None, t).observables["cpeptide"]
    flat = simulate_arrays(
        exp.model, pop.params.replace(f_lambda=1.0, omega_lambda=0.0), None, t
    ).observables["cpeptide"]
    np.testing.assert_allclose(po.control[0], base, rtol=1e-12)
    np.testing.assert_allclose(po.control[1], flat, rtol=1e-12)


def test_sweep_with_posterior_matches_the_cohort_module(exp):
    """Patients draw posterior parameters exactly as `run_cohort` does (draw i mod n_draws):
    the sweep's paired control and Treg C-peptide equal the cohort's, patient by patient."""
    from tregsim.cohort import run_cohort

    post = {"lambda_ref": np.array([1e-3, 4e-3, 2e-3]), "k_re": np.array([0.02, 0.05, 0.01])}
    reg = exp.arms[exp.treatment_arms[0]].regimen
    dose = reg.dose_per_kg if reg.dose_per_kg is not None else 2e7
    res = sweep(
        exp,
        [parse_grid(f"dose_per_kg={dose:.10g}")],
        n=8,
        seed=3,
        months=[12.0, 24.0],
        posterior=post,
        progress=False,
    )
    coh = run_cohort(exp, 8, 3, posterior=post, progress=False, spaghetti_n=0)
    arms = list(exp.arms)
    cols = [list(exp.visit_months).index(m) for m in (12.0, 24.0)]
    ctrl = coh.patients["cpeptide"][:, arms.index(exp.control_arm)][:, cols]
    treg = coh.patients["cpeptide"][:, arms.index(exp.treatment_arms[0])][:, cols]
    np.testing.assert_allclose(res.outcomes.control[0], ctrl, rtol=1e-9)
    np.testing.assert_allclose(res.outcomes.treg[0], treg, rtol=1e-9)
    plain = sweep(exp, [parse_grid(f"dose_per_kg={dose:.10g}")], n=8, seed=3, progress=False)
    assert not np.allclose(plain.outcomes.control[0], res.outcomes.control[0])
    assert any("posterior draws" in ln for ln in res.ledger)


# ---------------------------------------------------------------- CLI
def test_cli_sweep_writes_ledger_and_figures(tmp_path, capsys):
    from tregsim.cli import main

    out = tmp_path / "sw"
    rc = main(
        [
            "sweep",
            str(EXP),
            "--grid",
            "dose_per_kg=1e6..1e8:log:3",
            "--grid",
            "infusion_day=30,90",
            "--n",
            "8",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = (out / "sweep.csv").read_text()
    assert text.startswith("# model: treg_t1d")
    assert "\n# phi: 2 (model default" in text and "# responder: delta >= 0.05 nmol/L" in text
    import pandas as pd

    df = pd.read_csv(out / "sweep.csv", comment="#")
    assert len(df) == 6 and "responder_fraction_12mo" in df
    assert (out / "heatmap.png").stat().st_size > 5000
    import json

    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "sweep" and man["seed"] == 1
    assert set(man["inputs"]) >= {"experiment", "model"}
    # 1-D sweep → line plot; with the shipped posterior, named in the ledger and manifest
    from tregsim.posterior import DEFAULT_POSTERIOR

    rc = main(
        ["sweep", str(EXP), "--grid", "phi=1,10", "--n", "4", "--out", str(tmp_path / "l"),
         "--posterior", str(DEFAULT_POSTERIOR)]
    )  # fmt: skip
    assert rc == 0 and (tmp_path / "l" / "lines.png").exists()
    assert f"from {DEFAULT_POSTERIOR.name}" in (tmp_path / "l" / "sweep.csv").read_text()
    man = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert "posterior" in man["inputs"]
    capsys.readouterr()
    rc = main(["sweep", str(EXP), "--grid", "phi=1", "--out", str(tmp_path / "m"),
               "--posterior", str(tmp_path / "missing.nc")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--posterior" in err[0]
    assert not (tmp_path / "m").exists()


def test_cli_sweep_bad_name_one_line_exit_2(tmp_path, capsys):
    from tregsim.cli import main

    rc = main(["sweep", str(EXP), "--grid", "dosage=1,2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "unknown name 'dosage'" in err[0] and "dose_per_kg" in err[0]
    assert not (tmp_path / "x").exists()  # validated before anything was written


# ---------------------------------------------------------------- responders
def test_rank_predictors_against_known_relations():
    from scipy.stats import spearmanr

    from tregsim.explore.responders import rank_predictors

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 400)
    noise = rng.normal(size=400)
    binary = (rng.uniform(size=400) < 0.5).astype(float)
    y = np.exp(3 * x) + 0.3 * binary
    r = rank_predictors(y, {"noise": noise, "x": x, "binary": binary, "const": np.ones(400)})
    assert list(r.table["predictor"][:3]) == ["x", "binary", "noise"]
    np.testing.assert_allclose(
        r.table.set_index("predictor").loc["noise", "spearman_rho"], spearmanr(noise, y).statistic
    )
    assert np.isnan(r.table.set_index("predictor").loc["const", "spearman_rho"])
    np.testing.assert_array_equal(r.bins["binary"]["center"], [0.0, 1.0])
    assert np.all(np.diff(r.bins["x"]["median"]) > 0)


def test_phi_needed_reproduces_target(exp):
    from tregsim.explore.responders import phi_needed

    n, seed = 24, 7
    res = phi_needed(
        exp, 5.0, 12.0, n=n, seed=seed, progress=False, rel_tol=0.03, points_per_round=6
    )
    assert np.isfinite(res.phi) and res.phi_low <= res.phi <= res.phi_high
    assert res.phi_high / res.phi_low - 1 < 0.03
    # independent check: simulate the cohort at the φ found
    po = simulate_paired(
        exp, ["phi"], np.array([[res.phi]]), n=n, seed=seed, months=[12.0], progress=False
    )
    pct = 100 * (po.treg - po.control)[0, :, 0].mean() / po.control[0, :, 0].mean()
    assert abs(pct - 5.0) < 0.1, pct
    # an unreachable target is reported, not invented
    far = phi_needed(exp, 500.0, 12.0, n=4, seed=seed, progress=False, bounds=(0.1, 10.0))
    assert np.isnan(far.phi) and "above" in far.note


def test_grid_axis_len():
    assert len(GridAxis("x", np.arange(3.0), "list")) == 3


def test_cli_responders(tmp_path):
    from tregsim.cli import main

    out = tmp_path / "r"
    rc = main(
        [
            "responders",
            str(EXP),
            "--out",
            str(out),
            "--n",
            "40",
            "--n-phi",
            "6",
            "--target-pct",
            "5",
        ]
    )
    assert rc == 0
    import pandas as pd

    rank = pd.read_csv(out / "ranking.csv", comment="#")
    assert {"predictor", "unit", "spearman_rho", "p_value"} <= set(rank.columns)
    assert "age" in set(rank["predictor"]) and "f_lambda" in set(rank["predictor"])
    phi = pd.read_csv(out / "phi_needed.csv", comment="#")
    assert np.isfinite(phi["phi"].iloc[0]) and phi["phi_low"].iloc[0] <= phi["phi"].iloc[0]
    text = (out / "phi_needed.csv").read_text()
    assert text.startswith("# model: treg_t1d") and "# phi: searched" in text
    assert (out / "partial_dependence.png").exists() and (out / "phi_curve.png").exists()
    # with the shipped posterior its parameters join the predictors and the ledger names it
    from tregsim.posterior import DEFAULT_POSTERIOR

    out = tmp_path / "rp"
    rc = main(["responders", str(EXP), "--out", str(out), "--n", "40", "--n-phi", "6",
               "--target-pct", "5", "--posterior", str(DEFAULT_POSTERIOR)])  # fmt: skip
    assert rc == 0
    rank = pd.read_csv(out / "ranking.csv", comment="#")
    assert "lambda_ref" in set(rank["predictor"])
    assert f"from {DEFAULT_POSTERIOR.name}" in (out / "phi_needed.csv").read_text()


def test_same_seed_same_table_other_seed_other_patients(exp):
    axes = [parse_grid("dose_per_kg=1e7,1e8")]
    a = sweep(exp, axes, n=5, seed=11, progress=False)
    b = sweep(exp, axes, n=5, seed=11, progress=False)
    c = sweep(exp, axes, n=5, seed=12, progress=False)
    np.testing.assert_array_equal(a.table.to_numpy(), b.table.to_numpy())
    assert not np.array_equal(a.outcomes.control, c.outcomes.control)
