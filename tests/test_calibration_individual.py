"""`tregsim calibrate` with `[method] kind = "likelihood"`: config, CLI run, output files.

The records are synthetic: 30 participants with visits at days 0/91/182/365/730 after the
baseline visit, simulated with ``tregsim.simulate_arrays`` from a known θ plus log-normal
assay noise. The config uses a coarse curve table (``[method] table``) and a short chain so
the whole file runs in well under a minute; recovery of θ is checked only loosely (MAP within
a factor of the truth), the posterior's accuracy is the slow tests' business.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tregsim
from tregsim.cli import main

MODEL = tregsim.load_model("treg_t1d")
NAMES = (
    "lambda_ref",
    "gamma_a",
    "omega_lambda",
    "q",
    "sigma",
    "mu_log_cpep0",
    "sd_log_cpep0",
)
TRUTH = {"lambda_ref": 3e-3, "gamma_a": 0.8, "omega_lambda": 0.5, "q": 0.3, "sigma": 0.2}
BASELINE_DAY = 30.0
VISITS = np.array([0.0, 91.0, 182.0, 365.0, 730.0])

CONFIG = """\
schema_version = 1
name = "synthetic_records"
model = "treg_t1d"
seed = 11

[data]
records = "visits.csv"

[data.columns]
id = "pid"
day = "study_day"
cpeptide_nmol_l = "cpep"
age = "age_years"

[cohort]
baseline_day = 30.0

[parameters]
calibrate = ["lambda_ref", "gamma_a", "omega_lambda", "q", "sigma"]

[method]
kind = "likelihood"
n_walkers = 14
n_steps = 60
burn = 20
thin = 2
n_starts = 2
table = {n_loglam = 41, n_q = 11, day_step = 10}
min_ess = 0
"""


def _records(path: Path, n: int = 30, seed: int = 5) -> Path:
    """Long-format visits simulated from TRUTH (model C-peptide x log-normal noise)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(8.0, 40.0, n)
    f_lambda = np.exp(TRUTH["omega_lambda"] * rng.standard_normal(n))
    cpep_b = np.exp(np.log(0.6) + 0.4 * rng.standard_normal(n))  # noise-free, at data day 0
    res = tregsim.simulate_arrays(
        MODEL,
        MODEL.parameters(
            n,
            lambda_ref=TRUTH["lambda_ref"],
            gamma_a=TRUTH["gamma_a"],
            q=TRUTH["q"],
            age=age,
            f_lambda=f_lambda,
            cpep0=1.0,
        ),
        times=BASELINE_DAY + VISITS,
    )
    c = res.observables["cpeptide"]
    y = cpep_b[:, None] * c / c[:, :1] * np.exp(TRUTH["sigma"] * rng.standard_normal(c.shape))
    y = np.where(y < 0.017, 0.0085, y)  # below the LLOQ: coded LLOQ/2, as in real records
    rows = [
        {"pid": f"P{i:02d}", "study_day": d, "cpep": y[i, j], "age_years": age[i], "sex": "F"}
        for i in range(n)
        for j, d in enumerate(VISITS)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("lik")
    _records(d / "visits.csv")
    (d / "lik.toml").write_text(CONFIG)
    return d


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def run_a(folder):
    out = folder / "out_a"
    rc = main(["calibrate", str(folder / "lik.toml"), "--out", str(out), "--quiet"])
    return rc, out / "synthetic_records"  # published layout: NAME/ beside NAME.nc


def test_cli_writes_posterior_map_trace_manifest(run_a, folder):
    import arviz as az

    from tregsim.posterior import load_posterior, open_posterior

    rc, out = run_a
    assert rc == 0
    # posterior.nc: 7 parameters, (walker, kept step) draws, units, data hash
    post = load_posterior(out.with_suffix(".nc"))
    assert tuple(post) == NAMES
    n_kept = len(range(20 + 2 - 1, 60, 2))
    assert all(v.shape == (14 * n_kept,) and np.all(np.isfinite(v)) for v in post.values())
    ds = open_posterior(out.with_suffix(".nc"))
    assert ds["lambda_ref"].attrs["units"] == "1/day"
    assert ds["mu_log_cpep0"].attrs["units"] == "ln(nmol/L)"
    sha = tregsim.io.file_sha256(folder / "visits.csv")
    assert ds.attrs["data_sha256"] == sha and ds.attrs["seed"] == 11
    assert (
        "likelihood" in ds.attrs["method"]
        and json.loads(ds.attrs["settings"])["method"]["n_steps"] == 60
    )
    idata = az.from_netcdf(out.with_suffix(".nc"))
    assert set(idata.posterior.data_vars) == set(NAMES)
    assert idata.posterior.sizes["chain"] == 14 and idata.posterior.sizes["draw"] == n_kept

    # map.csv: units, MAP inside the prior support, quantiles ordered
    m = pd.read_csv(out / "map.csv")
    assert list(m["parameter"]) == list(NAMES)
    assert list(m["unit"])[:5] == ["1/day", "1", "1", "1", "1"]
    assert {"map", "posterior_mean", "posterior_sd", "q05", "q50", "q95"} <= set(m.columns)
    assert "autocorr_time_steps" in m.columns
    assert np.all(m["q05"] <= m["q50"]) and np.all(m["q50"] <= m["q95"])
    lam = float(m.loc[m.parameter == "lambda_ref", "map"].iloc[0])
    assert TRUTH["lambda_ref"] / 3 < lam < TRUTH["lambda_ref"] * 3  # loose: 30 patients

    # figure and manifest
    assert (out / "figures" / "trace.png").stat().st_size > 10_000
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "calibrate" and man["seed"] == 11
    assert man["inputs"]["data"]["sha256"] == sha
    assert len(man["inputs"]["model"]["sha256"]) == 64
    assert man["settings"]["method"]["kind"] == "likelihood"
    assert man["versions"]["numpy"]
    assert not list(out.glob(".*.tmp*"))  # atomic writes leave no temporaries


def test_same_seed_gives_identical_draws(run_a, folder, capsys):
    from tregsim.posterior import load_posterior

    out_b = folder / "out_b"
    rc, stdout, _ = _run(["calibrate", str(folder / "lik.toml"), "--out", str(out_b)], capsys)
    assert rc == 0
    # summary table on stdout: every parameter with its unit
    rows = {ln.split()[0]: ln.split() for ln in stdout.splitlines() if ln.startswith("  ")}
    assert "posterior:" in stdout and rows["parameter"][1:3] == ["unit", "MAP"]
    assert rows["lambda_ref"][1] == "1/day" and rows["mu_log_cpep0"][1] == "ln(nmol/L)"
    assert all(len(rows[n]) == 8 for n in NAMES)  # name, unit, MAP, mean, SD, q05, q95, τ
    assert "acceptance" in stdout
    a, b = (
        load_posterior(run_a[1].with_suffix(".nc")),
        load_posterior(out_b / "synthetic_records.nc"),
    )
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name])


def test_cli_draws_equal_the_python_api(run_a, folder):
    """The CLI's kept draws are exactly IndividualCalibration.sample(burn, thin)'s chains
    (the runner takes the whole chain for the trace plot and thins it itself)."""
    from tregsim.calibrate.data import load_patient_data
    from tregsim.calibrate.likelihood import CurveTable, IndividualCalibration
    from tregsim.posterior import open_posterior

    cols = {"id": "pid", "day": "study_day", "cpeptide_nmol_l": "cpep", "age": "age_years"}
    data = load_patient_data(folder / "visits.csv", columns=cols)
    table = CurveTable(MODEL, n_loglam=41, n_q=11, max_day=760.0, day_step=10.0)
    cal = IndividualCalibration(MODEL, data, table=table, baseline_day=BASELINE_DAY)
    post = cal.sample(11, n_walkers=14, n_steps=60, burn=20, thin=2, n_starts=2, progress=False)
    ds = open_posterior(run_a[1].with_suffix(".nc"))
    for k, name in enumerate(NAMES):
        np.testing.assert_array_equal(ds[name].values, post.chains[:, :, k])
    m = pd.read_csv(run_a[1] / "map.csv")
    np.testing.assert_allclose(m["map"], post.map_theta, rtol=1e-12)
    np.testing.assert_allclose(m["autocorr_time_steps"], post.autocorr_steps, rtol=1e-6)


def test_ensemble_ess_of_an_ar1_ensemble():
    """An ensemble of independent AR(1) walkers, ρ = 0.8: τ = (1 + ρ)/(1 − ρ) = 9, so the
    ESS of W walkers × n steps is W·n/9 (emcee's estimator is within ≈ 10 % at n = 20,000)."""
    from tregsim.calibrate.likelihood import ensemble_ess

    rng = np.random.default_rng(3)
    n, w, rho = 20_000, 8, 0.8
    x = np.empty((n, w, 2))
    x[0] = rng.standard_normal((w, 2))
    e = rng.standard_normal((n, w, 2)) * np.sqrt(1 - rho**2)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    assert ensemble_ess(x) == pytest.approx(n * w / 9.0, rel=0.1)
    assert ensemble_ess(x[:1]) == 0.0


def test_ess_floor_runs_the_same_chain_on(run_a, folder, tmp_path, capsys):
    """With an unreachable floor the run goes to max_steps with the same move: its first
    n_steps steps are run_a's, step for step, and the shortfall is reported."""
    from tregsim.posterior import open_posterior

    cfg = _bad(folder, tmp_path, "min_ess = 0", "min_ess = 1e9\nmax_steps = 100")
    out = tmp_path / "out"
    rc, stdout, err = _run(["calibrate", str(cfg), "--out", str(out), "--quiet"], capsys)
    # a warning with its fix, printed with --quiet too (as the structure path does)
    line = next(ln for ln in err.splitlines() if "below min_ess" in ln)
    assert rc == 0 and "fix: raise max_steps" in line and cfg.name in line
    assert "14 walkers x 100 steps" in stdout and "ensemble ESS" in stdout
    man = json.loads((out / "synthetic_records" / "manifest.json").read_text())
    assert man["results"]["n_steps_run"] == 100 and man["results"]["min_ess"] == 1e9
    a = open_posterior(run_a[1].with_suffix(".nc"))
    b = open_posterior(out / "synthetic_records.nc")
    n_a = a.sizes["draw"]
    assert b.sizes["draw"] == len(range(20 + 2 - 1, 100, 2)) > n_a
    for name in NAMES:
        np.testing.assert_array_equal(b[name].values[:, :n_a], a[name].values)


def _bad(folder: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = CONFIG
    assert text.count(old) == 1, old
    (tmp_path / "visits.csv").write_bytes((folder / "visits.csv").read_bytes())
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(old, new))
    return p


@pytest.mark.parametrize(
    "old, new, field",
    [
        ('records = "visits.csv"', 'records = "absent.csv"', "data.records"),
        ('id = "pid"', 'id = "pid"\nvisit = "visit"', "data.columns.visit"),
        ('"q", "sigma"]', '"q", "sigma", "phi"]', "parameters.calibrate"),
        ("n_steps = 60", "n_steps = 20", "method.n_steps"),
        ('records = "visits.csv"', 'records = "visits.csv"\nmonths = [0, 3]', "data.months"),
        ("n_walkers = 14", "n_walkers = 8", "method.n_walkers"),
        ("min_ess = 0", "min_ess = -1", "method.min_ess"),
        ("min_ess = 0", "min_ess = 400\nmax_steps = 30", "method.max_steps"),
    ],
)
def test_bad_config_is_one_line_exit_2(folder, tmp_path, capsys, old, new, field):
    cfg = _bad(folder, tmp_path, old, new)
    out = tmp_path / "out"
    rc, stdout, err = _run(["calibrate", str(cfg), "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert lines[0].startswith("tregsim calibrate: error: ") and "bad.toml" in lines[0]
    assert f"[{field}]" in lines[0] and "; fix: " in lines[0]
    assert "Traceback" not in stdout + err and not out.exists()


def test_records_column_missing_is_data_error(folder, tmp_path, capsys):
    cfg = _bad(folder, tmp_path, 'age = "age_years"', 'age = "age_at_entry"')
    rc, _, err = _run(["calibrate", str(cfg), "--out", str(tmp_path / "out")], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "visits.csv" in lines[0]
    assert "[age_at_entry]" in lines[0] and not (tmp_path / "out").exists()


def test_npe_only_argument_and_keys_are_refused(folder, capsys):
    from tregsim.calibrate.config import load_config

    rc, _, err = _run(
        ["calibrate", str(folder / "lik.toml"), "--out", str(folder / "o"), "--budget", "500"],
        capsys,
    )
    assert rc == 2 and "[--budget]" in err and "n_steps" in err
    assert not (folder / "o").exists()
    cfg = load_config(folder / "lik.toml")
    assert cfg.kind == "likelihood" and cfg.method["n_zeta"] == 16
    assert cfg.method["table"] == {"n_loglam": 41, "n_q": 11, "day_step": 10.0}
    assert cfg.records_path == (folder / "visits.csv").resolve()


def test_example_config_points_at_shared_records():
    """The shipped example references ../../shared/data (never copies it into the project)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    p = root / "calibration" / "placebo_records_likelihood.toml"
    raw = tomllib.loads(p.read_text())
    assert raw["method"]["kind"] == "likelihood" and raw["cohort"]["baseline_day"] == 60.0
    target = (p.parent / raw["data"]["records"]).resolve()
    shared = (root.parent / "shared" / "data" / "placebo_cpeptide_individual.csv").resolve()
    assert target == shared
    for d in ("calibration", "tests", "tregsim", "docs", "experiments", "benchmarks"):
        assert not list((root / d).rglob("placebo_cpeptide_individual.*")), d
    if target.is_file():
        from tregsim.calibrate.config import load_config

        assert load_config(p).columns["day"] == "study_day"
