"""Global sensitivity (tregsim.explore.sensitivity) against analytic indices.

References: Ishigami & Homma 1990 (analytic Sobol' indices for a = 7, b = 0.1, as tabulated
e.g. in Saltelli et al. 2008 "Global Sensitivity Analysis: The Primer", §4.5); Sobol' G
function (Saltelli & Sobol' 1995) whose importance order follows its coefficients a_i;
closed-form elementary effects and variance shares of linear functions.
"""

from __future__ import annotations

import numpy as np
import pytest

from tregsim.errors import ArgumentError
from tregsim.explore.sensitivity import (
    Output,
    ParameterRange,
    morris_indices,
    read_indices,
    sobol_indices,
)

ISHIGAMI_S1 = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])
PI_PROBLEM = [{"name": f"x{i + 1}", "bounds": [-np.pi, np.pi]} for i in range(3)]


def ishigami(X, a=7.0, b=0.1):
    return np.sin(X[:, 0]) + a * np.sin(X[:, 1]) ** 2 + b * X[:, 2] ** 4 * np.sin(X[:, 0])


class CountingFunc:
    """Records how often and on how many rows it is called (batch-first check)."""

    def __init__(self, f):
        self.f = f
        self.calls = []

    def __call__(self, X):
        self.calls.append(X.shape)
        return self.f(X)


def test_ishigami_sobol_within_bootstrap_ci():
    func = CountingFunc(lambda X: ishigami(X)[:, None])
    res = sobol_indices(func, PI_PROBLEM, 8192, seed=20240601, outputs=["ishigami"])
    # one call on the whole Saltelli design, N·(d + 2) rows
    assert func.calls == [(8192 * 5, 3)]
    S1, S1c = res.index("S1", "ishigami"), res.index("S1_conf", "ishigami")
    ST, STc = res.index("ST", "ishigami"), res.index("ST_conf", "ishigami")
    # the CIs must be tight enough for the check to bite
    assert np.all(S1c < 0.03) and np.all(STc < 0.04)
    assert np.all(np.abs(S1 - ISHIGAMI_S1) <= S1c), (S1, S1c)
    assert np.all(np.abs(ST - ISHIGAMI_ST) <= STc), (ST, STc)


def test_sobol_same_seed_same_numbers_and_seed_matters():
    f = lambda X: ishigami(X)[:, None]  # noqa: E731
    a = sobol_indices(f, PI_PROBLEM, 512, seed=3)
    b = sobol_indices(f, PI_PROBLEM, 512, seed=3)
    c = sobol_indices(f, PI_PROBLEM, 512, seed=4)
    for k in a.indices:
        np.testing.assert_array_equal(a.indices[k], b.indices[k])
    assert not np.array_equal(a.indices["S1"], c.indices["S1"])


def test_log_scale_linear_in_log_closed_form():
    # y = log x1 + 2 log x2 with x log-uniform: log x_i uniform on width r_i, so
    # S1_i = ST_i = c_i² r_i² / Σ c_j² r_j² (additive model).
    problem = [
        ParameterRange("x1", 1e-3, 1e1, "log"),  # r = ln 1e4
        ParameterRange("x2", 1.0, 10.0, "log"),  # r = ln 10
    ]
    c = np.array([1.0, 2.0])
    r = np.log([1e4, 10.0])
    want = (c * r) ** 2 / np.sum((c * r) ** 2)

    def f(X):
        assert np.all(X[:, 0] >= 1e-3) and np.all(X[:, 0] <= 10)
        return (np.log(X) @ c)[:, None]

    res = sobol_indices(f, problem, 4096, seed=1)
    np.testing.assert_allclose(res.index("S1", 0), want, atol=0.01)
    np.testing.assert_allclose(res.index("ST", 0), want, atol=0.01)


def test_morris_linear_closed_form():
    # EE on the unit scale is exactly c·(hi − lo) (linear) or c·ln(hi/lo) (log); σ = 0.
    problem = [
        ParameterRange("a", 0.0, 2.0),
        ParameterRange("b", -1.0, 1.0),
        ParameterRange("k", 0.01, 1.0, "log"),
    ]

    def f(X):
        return (3.0 * X[:, 0] - 0.5 * X[:, 1] + 2.0 * np.log(X[:, 2]))[:, None]

    res = morris_indices(f, problem, 20, seed=5)
    np.testing.assert_allclose(res.index("mu", 0), [6.0, -1.0, 2.0 * np.log(100.0)], rtol=1e-10)
    np.testing.assert_allclose(res.index("mu_star", 0), [6.0, 1.0, 2.0 * np.log(100.0)], rtol=1e-10)
    np.testing.assert_allclose(res.index("sigma", 0), 0.0, atol=1e-9)


def test_morris_ranks_sobol_g_function():
    # G function: importance decreases with a_i (Campolongo et al. 2007 Table 1 uses this).
    a = np.array([0.0, 1.0, 4.5, 9.0, 99.0])

    def g(X):
        return np.prod((np.abs(4 * X - 2) + a) / (1 + a), axis=1)[:, None]

    problem = [{"name": f"x{i + 1}", "bounds": [0.0, 1.0]} for i in range(5)]
    res = morris_indices(g, problem, 200, seed=11, num_levels=4)
    mu_star = res.index("mu_star", 0)
    assert list(np.argsort(-mu_star)) == [0, 1, 2, 3, 4], mu_star
    # x5 (a = 99) is essentially non-influential
    assert mu_star[4] < 0.02 * mu_star[0]


def test_time_resolved_outputs_csv_roundtrip(tmp_path):
    months = [3.0, 6.0, 12.0]

    def f(X):
        # weight of x1 grows with time, x2 fixed: S1_x1(t) increases
        return np.stack([t * X[:, 0] + 6.0 * X[:, 1] for t in months], axis=1)

    outs = [Output("y", "nmol/L", m) for m in months]
    res = sobol_indices(
        f,
        [{"name": "x1", "bounds": [0, 1]}, {"name": "x2", "bounds": [0, 1]}],
        1024,
        seed=2,
        outputs=outs,
    )
    s1 = res.indices["S1"][:, 0]
    want = np.array([t**2 / (t**2 + 36.0) for t in months])
    np.testing.assert_allclose(s1, want, atol=0.02)
    path = res.to_csv(tmp_path / "indices.csv", header=["model: test"])
    text = path.read_text()
    assert "# model: test" in text and "# method: sobol" in text
    back = read_indices(path)
    assert back.outputs == res.outputs and back.parameters == res.parameters
    for k in res.indices:
        np.testing.assert_allclose(back.indices[k], res.indices[k], rtol=1e-5)


def test_plots_render(tmp_path):
    pytest.importorskip("matplotlib")
    from tregsim.plots import explore as pe

    months = [3.0, 12.0]
    outs = [Output("y", "nmol/L", m) for m in months]
    res = sobol_indices(
        lambda X: np.stack([X[:, 0] + m * X[:, 1] for m in months], axis=1),
        [{"name": "x1", "bounds": [0, 1]}, {"name": "x2", "bounds": [0, 1]}],
        256,
        seed=0,
        outputs=outs,
    )
    ax = pe.plot_sensitivity_bars(res, 0)
    pe.save(ax.figure, tmp_path / "bars.png")
    ax = pe.plot_indices_vs_time(res, "y", "ST")
    pe.save(ax.figure, tmp_path / "time.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    assert (tmp_path / "time.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("problem", "n", "match"),
    [
        ([{"name": "x", "bounds": [1, 0]}], 64, r"\[problem.x.bounds\].*low < high"),
        ([{"name": "x", "bounds": [0, 1], "scale": "log"}], 64, r"log-scaled bounds must be > 0"),
        ([{"name": "x", "bounds": [0, 1], "scale": "exp"}], 64, r"scale must be one of"),
        ([{"name": "x", "bounds": [0, 1]}], 500, r"power of 2.*fix: use 256 or 512"),
        ([{"name": "x", "bounds": [0, 1]}, {"name": "x", "bounds": [0, 1]}], 64, "duplicate"),
    ],
)
def test_bad_problem_errors(problem, n, match):
    with pytest.raises(ArgumentError, match=match):
        sobol_indices(lambda X: X[:, :1], problem, n, seed=0)


def test_nonfinite_outputs_rejected():
    def f(X):
        y = X[:, :1].copy()
        y[::7] = np.nan
        return y

    with pytest.raises(ArgumentError, match=r"non-finite values for \d+ of"):
        sobol_indices(f, [{"name": "x", "bounds": [0, 1]}], 64, seed=0)


# ---------------------------------------------------------------- on the treg_t1d model
EXP = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml"


@pytest.fixture(scope="module")
def exp():
    from tregsim.experiment import load_experiment

    if not EXP.exists():
        pytest.skip(f"{EXP} is not present")
    return load_experiment(EXP)


def test_default_ranges_are_prior_quantiles(exp):
    from scipy import stats

    from tregsim.explore.sensitivity import default_ranges

    lam, q, w = default_ranges(exp.model, ["lambda_ref", "q", "w"])
    # independent reference: scipy's own distributions with the model file's numbers
    np.testing.assert_allclose(
        [lam.low, lam.high], stats.lognorm(s=0.5, scale=1.7e-3).ppf([0.05, 0.95])
    )
    np.testing.assert_allclose([q.low, q.high], stats.beta(2, 2).ppf([0.05, 0.95]))
    assert (lam.scale, q.scale, w.scale) == ("log", "linear", "linear")
    np.testing.assert_allclose([w.low, w.high], [0.05, 0.95])
    with pytest.raises(ArgumentError, match=r"'age' is a covariate parameter"):
        default_ranges(exp.model, ["age"])
    with pytest.raises(ArgumentError, match=r"has no prior.*fix: give --range eta_S="):
        default_ranges(exp.model, ["eta_S"])


def test_treg_t1d_sobol_indices_are_coherent(exp):
    from tregsim.explore.sensitivity import default_ranges, experiment_sensitivity

    names = ["lambda_ref", "q", "phi", "FX", "psi"]
    res = experiment_sensitivity(
        exp,
        default_ranges(exp.model, names),
        32,
        seed=3,
        n_patients=3,
        months=[12.0],
        progress=False,
    )
    assert res.n_evaluations == 32 * (len(names) + 2)
    for i, o in enumerate(res.outputs):
        S1, S1c = res.indices["S1"][i], res.indices["S1_conf"][i]
        ST, STc = res.indices["ST"][i], res.indices["ST_conf"][i]
        assert S1.sum() <= 1 + S1c.sum(), (o, S1, S1c)
        assert np.all(ST >= S1 - np.hypot(S1c, STc)), (o, S1, ST)
    ctrl = res.index("ST", "cpeptide_control", 12.0)
    # infused-cell parameters cannot act on routine care: exactly zero there
    np.testing.assert_array_equal(ctrl[[2, 3, 4]], 0.0)
    # the loss hazard dominates the control arm; φ dominates the treatment effect
    assert np.argmax(ctrl) == 0
    assert np.argmax(res.index("ST", "delta_cpeptide", 12.0)) == 2


def test_cli_sensitivity_morris(tmp_path):
    from tregsim.cli import main

    out = tmp_path / "sa"
    rc = main(
        [
            "sensitivity",
            str(EXP),
            "--params",
            "lambda_ref,phi",
            "--method",
            "morris",
            "--n",
            "4",
            "--patients",
            "2",
            "--range",
            "phi=0.5..50:log",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    back = read_indices(out / "indices.csv")
    assert back.method == "morris" and back.parameter_names == ("lambda_ref", "phi")
    assert back.parameters[1].low == 0.5 and back.parameters[1].scale == "log"
    text = (out / "indices.csv").read_text()
    assert "# model: treg_t1d" in text and "# phi: varied" in text
    for f in (
        "time_cpeptide_control.png",
        "time_delta_cpeptide.png",
        "bars_delta_cpeptide_12mo.png",
        "manifest.json",
    ):
        assert (out / f).exists(), f


def test_cli_sensitivity_rejects_bad_n(tmp_path, capsys):
    from tregsim.cli import main

    rc = main(["sensitivity", str(EXP), "--n", "100", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "power of 2" in err[0] and "use 64 or 128" in err[0]
    assert not (tmp_path / "x").exists()
