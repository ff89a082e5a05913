"""Virtual trials with the records-fitted structure of individual variability (issue #14):
``variability="records"`` reproduces the placebo records' ANCOVA statistics at 12 months, is
chunk-independent, and leaves the default (``"lumped"``) untouched; ``relative_effect``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tregsim.cohort import simulate_arms
from tregsim.errors import ArgumentError
from tregsim.experiment import load_experiment
from tregsim.population import sample_population
from tregsim.trial.virtual import records_structure, virtual_trials
from tregsim.trial_statistics import trial_statistics

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "nct06708780.toml"
RECORDS = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"
SEED = 11


@pytest.fixture(scope="module")
def exp():
    if not EXP.exists():
        pytest.skip(f"{EXP} not found")
    return load_experiment(EXP)


def _curve_theta():
    """s0, k_re with which the structure was fitted (its ``curve_table``)."""
    import json

    spec = json.loads((ROOT / records_structure()["file"]).read_text(encoding="utf-8"))
    return {k: spec["curve_table"][k] for k in ("s0", "k_re")}


def _control_ancova(d):
    """slope, residual SD (n − 3 df), corr of ln(AUC₁₂+1) on ln(AUC₀+1) and age, control arm."""
    c = ~d.arm
    x0 = np.log1p(d.baseline_auc_nmol_l[c])
    xm = np.log1p(d.endpoint_auc_nmol_l[c])
    age = d.age_years[c]
    ok = np.isfinite(x0) & np.isfinite(xm)
    X = np.column_stack([np.ones(ok.sum()), x0[ok], age[ok]])
    beta, *_ = np.linalg.lstsq(X, xm[ok], rcond=None)
    r = xm[ok] - X @ beta
    return beta[1], float(np.sqrt(r @ r / (ok.sum() - 3))), float(np.corrcoef(x0[ok], xm[ok])[0, 1])


def test_records_structure_reproduces_the_records_ancova(exp):
    """Control arm (pooled over replicates, ≈ 2,000 patients) under ``variability="records"``:
    ANCOVA slope and residual SD at 12 months inside the records' participant-bootstrap 95 %
    intervals (computed here from the records, 400 resamples)."""
    if not RECORDS.exists():
        pytest.skip(f"placebo records not found at ../shared/data ({RECORDS.name}); not shipped")
    rec = pd.read_csv(RECORDS)
    ts = trial_statistics(
        rec.participant_id, rec.age_years, rec.month, rec.auc_mean_cpeptide_nmol_l,
        n_boot=400, seed=1, targets=(12,),
    )  # fmt: skip
    d = virtual_trials(
        exp,
        n_trials=40,
        n_max_per_arm=50,
        seed=SEED,
        theta=_curve_theta(),
        relative_effect=0.0,
        variability="records",
        progress=False,
    )
    slope, sd, _ = _control_ancova(d)
    s_rec, sd_rec = ts.get("ancova_slope", 12), ts.get("ancova_resid_sd", 12)
    assert s_rec["lo"] <= slope <= s_rec["hi"], (slope, s_rec)
    assert sd_rec["lo"] <= sd <= sd_rec["hi"], (sd, sd_rec)


def test_records_mode_is_chunk_independent_and_default_unchanged(exp):
    kw = dict(n_trials=6, n_max_per_arm=4, seed=SEED, theta={"phi": 30.0}, progress=False)
    a = virtual_trials(exp, variability="records", chunk_size=50, **kw)
    b = virtual_trials(exp, variability="records", chunk_size=4, **kw)
    np.testing.assert_array_equal(a.baseline_auc_nmol_l, b.baseline_auc_nmol_l)
    np.testing.assert_array_equal(a.endpoint_auc_nmol_l, b.endpoint_auc_nmol_l)
    default = virtual_trials(exp, **kw)  # records is the default (issue #14)
    lumped = virtual_trials(exp, variability="lumped", **kw)
    np.testing.assert_array_equal(default.endpoint_auc_nmol_l, a.endpoint_auc_nmol_l)
    np.testing.assert_array_equal(default.baseline_auc_nmol_l, a.baseline_auc_nmol_l)
    # same patients and arms, different hazard and observation model
    np.testing.assert_array_equal(lumped.age_years, a.age_years)
    np.testing.assert_array_equal(lumped.arm, a.arm)
    assert not np.allclose(lumped.endpoint_auc_nmol_l, a.endpoint_auc_nmol_l)
    assert lumped.info["variability"] == "lumped" and lumped.info["structure"] is None
    assert default.info["variability"] == "records"
    assert len(a.info["structure"]["sha256"]) == 64
    with pytest.raises(ArgumentError, match="variability"):
        virtual_trials(exp, variability="pooled", **kw)


def test_relative_effect_multiplies_the_routine_care_endpoint(exp):
    """σ = 0: treated slots hold (1 + X) × their own routine-care endpoint (direct
    simulation), baseline unchanged; the true effect is the paired ln-difference."""
    R, nmax, X = 3, 3, 0.3
    theta = {"sigma": 0.0}
    d = virtual_trials(
        exp, n_trials=R, n_max_per_arm=nmax, seed=SEED, theta=theta, relative_effect=X,
        allocation=None, variability="lumped", progress=False,
    )  # fmt: skip
    pop = sample_population(exp, R * 2 * nmax, SEED, theta=theta)
    month12 = int(np.nonzero(exp.visit_months == 12)[0][0])
    c = simulate_arms(exp, pop, arms={exp.control_arm: exp.arms[exp.control_arm]},
                      times=exp.visits_days[[0, month12]])[exp.control_arm]  # fmt: skip
    c = c.reshape(R, 2 * nmax, 2)
    lloq = 0.017  # model parameter LLOQ; censored values are analysed at LLOQ/2
    want_end = np.where(d.arm, (1 + X) * c[:, :, 1], c[:, :, 1])
    want_end = np.where(want_end < lloq, lloq / 2, want_end)
    want_bl = np.where(c[:, :, 0] < lloq, lloq / 2, c[:, :, 0])
    np.testing.assert_allclose(d.endpoint_auc_nmol_l, want_end, rtol=1e-12)
    np.testing.assert_allclose(d.baseline_auc_nmol_l, want_bl, rtol=1e-12)
    want_te = (np.log1p((1 + X) * c[:, :, 1]) - np.log1p(c[:, :, 1])).mean(axis=1)
    np.testing.assert_allclose(d.true_effect, want_te, rtol=1e-12)


def test_relative_effect_on_auc_plus_1_shifts_the_analysis_scale(exp):
    """``effect_scale="auc_plus_1"``, σ = 0: treated slots hold (1 + X)(c + 1) − 1 of their
    own routine-care endpoint c (direct simulation), so every paired difference of ln(AUC + 1)
    — and the true effect — is ln(1 + X) exactly; an unknown scale is refused."""
    R, nmax, X = 3, 3, 0.2
    theta = {"sigma": 0.0}
    kw = dict(n_trials=R, n_max_per_arm=nmax, seed=SEED, theta=theta, relative_effect=X,
              allocation=None, variability="lumped", progress=False)  # fmt: skip
    d = virtual_trials(exp, effect_scale="auc_plus_1", **kw)
    pop = sample_population(exp, R * 2 * nmax, SEED, theta=theta)
    month12 = int(np.nonzero(exp.visit_months == 12)[0][0])
    c = simulate_arms(exp, pop, arms={exp.control_arm: exp.arms[exp.control_arm]},
                      times=exp.visits_days[[0, month12]])[exp.control_arm]  # fmt: skip
    c = c.reshape(R, 2 * nmax, 2)[:, :, 1]
    want = np.where(d.arm, (1 + X) * (c + 1) - 1, c)
    want = np.where(want < 0.017, 0.017 / 2, want)
    np.testing.assert_allclose(d.endpoint_auc_nmol_l, want, rtol=1e-12)
    np.testing.assert_allclose(d.true_effect, np.log(1 + X), rtol=1e-12)
    assert d.info["effect_scale"] == "auc_plus_1"
    with pytest.raises(ArgumentError, match="effect_scale"):
        virtual_trials(exp, effect_scale="log", **kw)


def test_power_command_records_the_structure(tmp_path, exp):
    """``tregsim power`` (default records): the structure file's SHA-256 (hashed here) is in
    the manifest and named in ``power.csv``; ``--variability lumped`` names no structure file
    and says lumped."""
    import hashlib
    import json

    from tregsim.cli import main

    want = hashlib.sha256((ROOT / "calibration/natural_history_structure.json").read_bytes())
    base = [
        "power", str(EXP), "--n-per-arm", "5", "--trials", "10", "--tests", "ancova",
        "--relative-effect", "0.3", "--allocation", "randomized",
        # a lumped posterior: the structure's point values come from its file
        "--posterior", str(ROOT / "calibration/posteriors/natural_history_lumped.nc"),
    ]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "r")]) == 0
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    vs = man["variability_structure"]
    assert vs["variability"] == "records" and vs["source"] == "structure_file"  # lumped .nc
    assert vs["structure_sha256"] == want.hexdigest()
    assert man["inputs"]["variability_structure"]["sha256"] == want.hexdigest()
    df = pd.read_csv(tmp_path / "r" / "power.csv")
    for text in (df.effect_assumption[0], df.variability[0]):
        assert "natural_history_structure.json" in text and want.hexdigest()[:12] in text
    assert main([*base, "--variability", "lumped", "--out", str(tmp_path / "d")]) == 0
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["variability_structure"]["variability"] == "lumped"
    assert man["variability_structure"]["structure_sha256"] is None
    df = pd.read_csv(tmp_path / "d" / "power.csv")
    assert "natural_history_structure" not in df.effect_assumption[0]
    assert df.variability[0].startswith("variability: lumped")
