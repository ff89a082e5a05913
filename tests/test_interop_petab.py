"""PEtab export: accepted by petab's linter; its conditions and noise model mean what tregsim means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

petab = pytest.importorskip("petab.v1")
pytest.importorskip("libsbml")

import tregsim  # noqa: E402
from tregsim.errors import ArgumentError, DataFileError  # noqa: E402
from tregsim.interop.petab import FILES, export_petab, lint_petab  # noqa: E402

# petab 0.8 itself calls pandas APIs deprecated in pandas 3.x; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(inplace|float_precision).*")

PLACEBO = Path(__file__).resolve().parents[1] / "../shared/data/placebo_cpeptide_individual.csv"


@pytest.fixture(scope="module")
def model():
    return tregsim.load_model("treg_t1d")


def synthetic_long(rng, n=5):
    """Long-format data simulated from the model (lognormal noise), incl. one censored value."""
    ids = [f"P-{i:02d}" for i in range(n)]
    days = np.array([0.0, 91.3, 182.6, 365.25, 547.9, 730.5])
    rows = []
    for i, pid in enumerate(ids):
        for d in days:
            rows.append(
                {
                    "id": pid,
                    "day": d,
                    "cpeptide_nmol_l": float(rng.uniform(0.1, 1.0)),
                    "age": 8.0 + 3 * i,
                    "censored": 0,
                }
            )
    rows[-1]["censored"] = 1
    rows[-1]["cpeptide_nmol_l"] = 0.017
    return pd.DataFrame(rows)


def test_export_passes_petab_lint(model, tmp_path, rng):
    long = synthetic_long(rng)
    y = export_petab(model, long, tmp_path / "petab", doses={"P-01": [(60.0, 2e7)]})
    assert y.name == FILES["yaml"]
    for f in FILES.values():
        assert (y.parent / f).exists()
    assert lint_petab(y) is False
    prob = petab.Problem.from_yaml(str(y))
    assert len(prob.measurement_df) == len(long) - 1  # the censored row is left out
    assert set(prob.condition_df.index) == {f"c_P_{i:02d}" for i in range(5)}
    assert prob.condition_df.loc["c_P_01", "dose_1_day"] == 60.0
    assert prob.condition_df.loc["c_P_00", "dose_1_day"] > 1e20  # no dose
    est = set(prob.parameter_df.index[prob.parameter_df["estimate"] == 1])
    assert {"lambda_ref", "gamma_a", "q", "sigma"} <= est
    assert "omega_lambda" not in est  # a random-effect SD: not expressible in PEtab
    assert {f"f_lambda_P_{i:02d}" for i in range(5)} <= est
    import json

    man = json.loads((y.parent / "manifest.json").read_text())
    assert man["settings"]["n_censored_dropped"] == 1


def test_fixed_effects_mode(model, tmp_path, rng):
    y = export_petab(
        model,
        synthetic_long(rng),
        tmp_path / "fx",
        individual="fixed",
        estimate=["lambda_ref", "q"],
    )
    assert lint_petab(y) is False
    prob = petab.Problem.from_yaml(str(y))
    assert "f_lambda" not in prob.condition_df.columns
    assert sorted(prob.parameter_df.index[prob.parameter_df["estimate"] == 1]) == [
        "lambda_ref",
        "q",
    ]


def test_bad_inputs(model, tmp_path, rng):
    long = synthetic_long(rng)
    with pytest.raises(ArgumentError, match="no prior"):
        export_petab(model, long, tmp_path / "a", estimate=["C_cap"])
    with pytest.raises(ArgumentError, match="individual must be"):
        export_petab(model, long, tmp_path / "a", individual="random")
    with pytest.raises(DataFileError, match="no cpep0 column"):
        export_petab(model, long, tmp_path / "a", cpep0="column")
    assert not (tmp_path / "a").exists()


def test_petab_likelihood_matches_tregsim_lognormal(model, tmp_path, rng):
    """petab's own log-likelihood of tregsim predictions equals the log-normal likelihood
    written out by hand: the observable, transformation and noise parameter are right."""
    long = synthetic_long(rng)
    y = export_petab(model, long, tmp_path / "p", individual="fixed")
    prob = petab.Problem.from_yaml(str(y))
    m = prob.measurement_df
    cond = prob.condition_df
    sims = np.empty(len(m))
    for cid, g in m.groupby("simulationConditionId"):
        P = model.parameters(1, age=cond.loc[cid, "age"], cpep0=cond.loc[cid, "cpep0"])
        t = np.unique(g["time"].to_numpy())
        c = tregsim.simulate_arrays(model, P, times=t).observables["cpeptide"][0]
        sims[g.index.to_numpy()] = c[np.searchsorted(t, g["time"].to_numpy())]
    sim_df = m.rename(columns={"measurement": "simulation"}).assign(simulation=sims)
    llh = petab.calculate_llh(m, sim_df, prob.observable_df, prob.parameter_df)
    sigma = model.spec.parameters["sigma"].value
    yv = m["measurement"].to_numpy()
    want = np.sum(
        -0.5 * np.log(2 * np.pi * sigma**2)
        - np.log(yv)
        - 0.5 * ((np.log(yv) - np.log(sims)) / sigma) ** 2
    )
    assert llh == pytest.approx(want, rel=1e-10)


def test_petab_conditions_drive_the_sbml_like_tregsim(model, tmp_path, rng):
    """Simulating model.xml in libRoadRunner with a condition's overrides reproduces tregsim
    for that individual (covariates, per-individual f_lambda, dose schedule)."""
    pytest.importorskip("roadrunner")
    from tregsim.interop.roadrunner import load_roadrunner

    long = synthetic_long(rng, n=3)
    y = export_petab(model, long, tmp_path / "p", doses={"P-02": [(45.0, 3e7), (200.0, 1e7)]})
    prob = petab.Problem.from_yaml(str(y))
    r = load_roadrunner(str(y.parent / FILES["model"]), rtol=1e-12, atol=1e-16)
    times = np.array([0.0, 30.0, 100.0, 365.25, 730.5])
    for i, (_cid, row) in enumerate(prob.condition_df.iterrows()):
        f_lambda = float(np.exp(0.3 * (i - 1)))  # a stand-in for the fitted individual value
        r.resetAll()
        for k, v in row.items():
            if k == "conditionName":
                continue
            r[k] = f_lambda if isinstance(v, str) else float(v)
        r.reset()
        r.timeCourseSelections = ["cpeptide", "X"]
        rr = np.asarray(r.simulate(times=times))
        P = model.parameters(1, age=row["age"], cpep0=row["cpep0"], f_lambda=f_lambda)
        d = row[["dose_1_day", "dose_2_day"]].to_numpy(float)
        a = row[["dose_1_amount", "dose_2_amount"]].to_numpy(float)
        doses = tregsim.Doses(time=np.where(d > 1e20, np.nan, d)[None], amount=a[None])
        ts = tregsim.simulate_arrays(model, P, doses=doses, times=times, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rr[:, 0], ts.observables["cpeptide"][0], rtol=1e-7)
        np.testing.assert_allclose(rr[:, 1], ts.state("X")[0], rtol=1e-6, atol=1.0)


def test_placebo_individual_data_exports(model, tmp_path):
    """The shared individual placebo data (read from ../shared, written only to tmp)."""
    if not PLACEBO.exists():
        pytest.skip("../shared/data/placebo_cpeptide_individual.csv is absent")
    raw = pd.read_csv(PLACEBO)
    # study days count from randomisation; the export needs days ≥ 0, so this test counts
    # from each participant's first visit (an assumption of the test, not of the exporter)
    day = raw["study_day"] - raw.groupby("participant_id")["study_day"].transform("min")
    cp = raw["auc_mean_cpeptide_nmol_l"]
    long = pd.DataFrame(
        {
            "id": raw["participant_id"],
            "day": day,
            "cpeptide_nmol_l": cp.clip(lower=0.017),
            "age": raw["age_years"],
            "censored": (cp < 0.017).astype(int),
        }
    )
    y = export_petab(
        model, long, tmp_path / "placebo", estimate=["lambda_ref", "gamma_a", "q", "sigma"]
    )
    assert lint_petab(y) is False
    prob = petab.Problem.from_yaml(str(y))
    assert len(prob.condition_df) == raw["participant_id"].nunique()
    assert len(prob.measurement_df) == int((cp >= 0.017).sum())
