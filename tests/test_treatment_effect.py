"""Treatment-effect synthesis (docs/treatment_effect.md): evidence validation, the closed-form
persistence against the solver, the GP emulator against a known function, the likelihood
terms against direct numerical integration, and importance-sampling SBC on a toy set."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from tregsim.calibrate.treatment_effect.emulator import fit_gp
from tregsim.calibrate.treatment_effect.evidence import load_evidence
from tregsim.calibrate.treatment_effect.hierarchy import fraction_of_peak
from tregsim.errors import DataFileError

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "calibration" / "treatment_effect_evidence.csv"


def test_shipped_evidence_loads():
    rows = load_evidence(EVIDENCE)
    assert {r.trial for r in rows} == {"trex", "gdansk", "poltreg", "tilt", "bluestone"}
    p = next(r for r in rows if r.statistic == "p_two_sided")
    assert p.z_obs == pytest.approx(stats.norm.isf(0.39 / 2))


def _bad_copy(tmp_path, old, new):
    d = tmp_path / "calibration"
    d.mkdir()
    text = EVIDENCE.read_text(encoding="utf-8")
    assert old in text
    (d / EVIDENCE.name).write_text(text.replace(old, new, 1), encoding="utf-8")
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    return d / EVIDENCE.name


@pytest.mark.parametrize(
    "old,new,field,match",
    [
        (",p_two_sided,0.39,", ",p_value,0.39,", "row 2, statistic", "unknown statistic 'p_value'"),
        (
            ",p_two_sided,0.39,",
            ",p_two_sided,1.39,",
            "row 2, value",
            r"p = 1.39 is outside \(0, 1\]",
        ),
        (",p_two_sided,0.39,", ",p_two_sided,0,", "row 2, value", r"p = 0 is outside \(0, 1\]"),
        (
            "low;high,placebo,24,p_two",
            "low;medium,placebo,24,p_two",
            "row 2, treated_arms",
            "arm 'medium' is not in trex_children.toml",
        ),
        (
            "treg,control,24",
            "treg,routine,24",
            "row 6, control_arm",
            "arm 'routine' is not in poltreg.toml",
        ),
    ],
)
def test_bad_evidence_rows(tmp_path, old, new, field, match):
    path = _bad_copy(tmp_path, old, new)
    with pytest.raises(DataFileError, match=match) as e:
        load_evidence(path)
    msg = str(e.value)
    assert f"[{field}]" in msg and "fix:" in msg and "\n" not in msg


def test_fraction_of_peak_matches_the_solver():
    """Closed form of X + M (fraction of its peak) vs the model's own ODE solution."""
    from tregsim import Doses, load_model, simulate_arrays

    m = load_model("treg_t1d")
    rng = np.random.default_rng(3)
    n = 40
    kin = {
        "FX": np.exp(rng.uniform(np.log(0.5), np.log(4.0), n)),
        "F_M": rng.uniform(0.02, 0.3, n),
        "alpha_X": np.exp(rng.uniform(np.log(0.01), np.log(0.2), n)),
        "beta_M": np.exp(rng.uniform(np.log(5e-4), np.log(6e-3), n)),
    }
    days = np.r_[np.arange(0.0, 30.0, 0.05), 91.3125, 365.25]
    r = simulate_arrays(
        m, m.parameters(n, **kin), Doses(time=[0.0], amount=[1e7]), days, rtol=1e-9, atol=1e-6
    )
    cells = r.states[m.state_names.index("X")] + r.states[m.state_names.index("M")]
    frac = cells / cells.max(axis=1, keepdims=True)
    for j, day in ((-2, 91.3125), (-1, 365.25)):
        cf = fraction_of_peak(day, kin["FX"], kin["F_M"], kin["alpha_X"], kin["beta_M"])
        # the closed form neglects the feed of M inside the 0.5-day gate; what matters is
        # the error against the persistence terms' log-scale SD of 0.5: 2 % is 0.04 SD
        np.testing.assert_allclose(cf, frac[:, j], rtol=0.02)


def test_gp_recovers_a_smooth_function():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (100, 5))
    f = lambda x: np.tanh(2 * x[:, 0]) + 0.3 * x[:, 1] ** 2 + 0.1 * x[:, 2]  # noqa: E731
    gp = fit_gp(x, f(x), "d", seed=1)
    xt = rng.uniform(-0.9, 0.9, (200, 5))
    err = gp.predict(xt) - f(xt)
    assert np.sqrt(np.mean(err**2)) < 0.02


def test_p_without_direction_term_is_a_density_of_abs_z():
    """A lone two-sided p term (folded normal in |z|) integrates to 1 over |z| ≥ 0 and puts
    P(|z| ≥ 1.96) = power of the two-sided test."""
    lik = _toy_likelihood(keep=("trex_p_24m",))
    p = _toy_params(lik, mu=5.0)
    pred = lik.predict(p)
    m, _ = lik._z_mean(lik.rows[0], pred)

    def dens(z):
        return np.exp(
            lik.loglik_terms(p, pred, {"trex_p_24m": 2 * stats.norm.sf(z)})["trex_p_24m"][0]
        )

    assert integrate.quad(dens, 0, 12)[0] == pytest.approx(1.0, abs=1e-6)
    power = stats.norm.sf(1.96 - m[0]) + stats.norm.cdf(-1.96 - m[0])
    assert integrate.quad(dens, 1.96, 12)[0] == pytest.approx(power, abs=1e-6)


class _Analytic:
    """A known smooth function of the features in place of a fitted GP (toy problem)."""

    def __init__(self, kind):
        self.kind = kind

    def predict(self, f):
        x = f[:, 0]  # log(φ·FX)
        eff = 0.15 / (1 + np.exp(-(x - 4.0)))
        return {
            "d": eff,
            "se": np.full_like(x, 0.05),
            "nodecline": 0.2 + eff,
            "r_dose": 0.5 * eff,
        }[self.kind]


def _toy_params(lik, mu=3.0):
    p = {
        "mu": np.array([mu]),
        "tau": np.array([0.5]),
        "FX": np.array([1.5]),
        "F_M": np.array([0.1]),
        "alpha_X": np.array([0.05]),
        "beta_M": np.array([0.002]),
    }
    for t in lik.trials:
        p[f"eta_{t}"] = np.array([0.3])
    return p


def _toy_likelihood(keep=None):
    from tregsim.calibrate.treatment_effect.designs import TrialDesign
    from tregsim.calibrate.treatment_effect.hierarchy import Likelihood

    rows = [r for r in load_evidence(EVIDENCE) if keep is None or r.term in keep]
    designs = {
        "trex": TrialDesign("trex", None, {"low": 40, "high": 24}, "placebo", 46, (12.0, 24.0)),
        "gdansk": TrialDesign("gdansk", None, {"dose10": 4, "dose20": 6}, "untreated", 10, (4.5,)),
        "poltreg": TrialDesign("poltreg", None, {"treg": 13}, "control", 11, (24.0,)),
        "tilt": TrialDesign(
            "tilt", None, {"treg_il2_low": 4, "treg_il2_high": 5}, None, 0, (12.0,)
        ),
    }
    lik = Likelihood(
        rows, designs, {}, {"gdansk": True}, {"trex": 0.6}, bias_sd=0.1, persistence_sd=0.5
    )
    lik.emus = {n: _Analytic(n.rsplit(".", 1)[1]) for n in lik.output_names()}
    return lik


def test_joint_p_and_not_significant_term_matches_bivariate_normal():
    """Joint term (|z24| = z_obs, |z12| < 1.96) vs finite differences of the bivariate CDF."""
    lik = _toy_likelihood()
    p = {
        "mu": np.array([3.0]),
        "tau": np.array([0.5]),
        "FX": np.array([1.5]),
        "F_M": np.array([0.1]),
        "alpha_X": np.array([0.05]),
        "beta_M": np.array([0.002]),
    }
    for t in lik.trials:
        p[f"eta_{t}"] = np.array([0.3])
    pred = lik.predict(p)
    ll = lik.loglik_terms(p, pred)["trex_p_24m"][0]
    trex = next(u for u in lik.units if len(u) == 2)
    m2, _ = lik._z_mean(trex[0], pred)
    m1, _ = lik._z_mean(trex[1], pred)
    rho, c, z, h = 0.6, stats.norm.isf(0.025), stats.norm.isf(0.39 / 2), 1e-4
    mvn = stats.multivariate_normal([m1[0], m2[0]], [[1, rho], [rho, 1]])

    def box(a1, b1, a2, b2):
        return mvn.cdf([b1, b2]) - mvn.cdf([a1, b2]) - mvn.cdf([b1, a2]) + mvn.cdf([a1, a2])

    dens = sum(box(-c, c, s * z - h, s * z + h) for s in (1, -1)) / (2 * h)
    assert ll == pytest.approx(np.log(dens), abs=2e-3)


def test_sbc_on_a_toy_problem():
    """Evidence sets generated by Likelihood.simulate and summarised as the sources report
    them are recovered by importance sampling: central 50 % / 90 % coverage within ±10 points
    on 120 sets (binomial SE 4.6 / 2.7 points)."""
    from tregsim.calibrate.treatment_effect.hierarchy import KINETICS, Prior
    from tregsim.calibrate.treatment_effect.inference import coverage, sbc
    from tregsim.model import load_model

    lik = _toy_likelihood()
    spec = load_model("treg_t1d").spec.parameters
    prior = Prior(0.69, 1.2, 1.0, {k: spec[k].prior for k in KINETICS})
    res = sbc(lik, prior, n_sets=120, n_bank=8000, seed=5)
    for k in ("mu", "tau", "F_M", "beta_M"):
        assert abs(coverage(res["ranks"][k], 0.5) - 0.5) < 0.10, k
        assert abs(coverage(res["ranks"][k], 0.9) - 0.9) < 0.10, k


def test_result_save_and_load_round_trip(tmp_path):
    from tregsim.calibrate.treatment_effect import TreatmentEffectResult

    c = np.linspace(-3, 5, 80)
    res = TreatmentEffectResult(
        target="nct06708780",
        posterior_summary=[{"parameter": "mu", "posterior_median": 0.8, "contraction": 0.1}],
        predictions=[{"evidence": "all", "effect_12m_pct_median": 0.4, "ess": 1000.0}],
        predictive_checks=[{"term": "trex_p_24m (posterior)", "what": "P", "p": 0.39}],
        assurance={
            "n_per_arm": [5, 10],
            "assurance_posterior": [0.05, 0.06],
            "assurance_prior": [0.05, 0.05],
            "mde_ln_auc_plus_1": [0.5, 0.3],
            "phi_needed": [float("inf"), 900.0],
        },
        phi_hist={
            "centres_log10_phi": c,
            "prior": np.ones(80),
            "new_trial_prior": np.ones(80),
            "new_trial": np.ones(80),
            "trial:trex": np.ones(80),
        },
        trial_reach=[{"term": "trex_p_24m", "phi_for_power_80": 2400.0}],
    )
    res.save(tmp_path)
    for f in ("treatment_effect.csv", "summary.json", "phi_prior_posterior.png", "assurance.png"):
        assert (tmp_path / f).is_file()
    back = TreatmentEffectResult.load(tmp_path)
    assert back.predictions == res.predictions
    assert back.assurance["phi_needed"][0] is None  # inf is written as null
    np.testing.assert_array_equal(back.phi_hist["centres_log10_phi"], c)
    text = (tmp_path / "treatment_effect.csv").read_text()
    assert "prediction,all,effect_12m_pct_median,0.4" in text


@pytest.mark.slow
def test_calibrate_treatment_effect_small(tmp_path):
    """The whole pipeline on a small budget: files, ArviZ posterior, manifest without
    absolute paths, SBC coverage roughly nominal."""
    import json

    import arviz as az

    from tregsim.calibrate.treatment_effect import calibrate_treatment_effect

    cfg = (ROOT / "calibration" / "treatment_effect.toml").read_text()
    for old, new in (
        ("n_points = 200", "n_points = 24"),
        ("n_holdout = 40", "n_holdout = 6"),
        ("n_patients = 1000", "n_patients = 200"),
        ("n_prior_draws = 200000", "n_prior_draws = 5000"),
        ("n_sbc = 1000", "n_sbc = 100"),
        ("n_sbc_prior_draws = 50000", "n_sbc_prior_draws = 5000"),
    ):
        assert old in cfg
        cfg = cfg.replace(old, new)
    path = ROOT / "calibration" / f"_test_{tmp_path.name}.toml"
    path.write_text(cfg)
    try:
        res = calibrate_treatment_effect(path, tmp_path / "out")
    finally:
        path.unlink()
    out = tmp_path / "out"
    idata = az.from_netcdf(out / "treatment_effect.nc")
    assert {"mu", "tau", "phi", "FX", "F_M", "alpha_X", "beta_M"} <= set(idata.posterior.data_vars)
    # the shipped layout: DIR/treatment_effect.nc + DIR/treatment_effect/ (tables, manifest)
    man = json.loads((out / "treatment_effect" / "manifest.json").read_text())
    assert all(not v["path"].startswith("/") for v in man["inputs"].values())
    assert man["settings"]["variability"] == "records"
    assert len(man["variability_structure"]["sha256"]) == 64
    assert "model_treg_t1d_v1_il2" in man["inputs"]  # TILT's model
    for f in ("sbc.csv", "emulator_check.csv", "summary.json", "treatment_effect.csv"):
        assert (out / "treatment_effect" / f).is_file(), f
    assert man["git_commit"] is None or len(man["git_commit"].split("-")[0]) == 40
    for r in res.diagnostics["sbc"]:
        assert 0.3 < r["coverage_50"] < 0.7 and 0.78 < r["coverage_90"] < 0.98, r


@pytest.mark.slow
def test_effect_under_posterior_at_phi_70_matches_the_documented_effect(tmp_path):
    """A posterior concentrated at φ = 70 (kinetics at the model file's values) gives the
    effect the experiment file documents for φ = 70 (experiments/nct06708780.toml, from
    `tregsim responders`): the responders' φ search, another code path (paired simulation,
    mean relative preservation), finds that the treatment-effect check's 12-month effect needs
    φ within ±20 % of 70. The assurance grows with N from above α."""
    from tregsim.calibrate.treatment_effect.check import effect_under_posterior
    from tregsim.experiment import load_experiment
    from tregsim.explore.responders import responders_study
    from tregsim.posterior import save_posterior

    k = 4
    draws = {
        "phi": np.full(k, 70.0),
        "FX": np.full(k, 1.5),
        "F_M": np.full(k, 0.1),
        "alpha_X": np.full(k, 0.05),
        "beta_M": np.full(k, 0.00189903),
    }
    post = save_posterior(tmp_path / "te.nc", draws, units={n: "1" for n in draws})
    exp = load_experiment(ROOT / "experiments" / "nct06708780.toml")
    r = effect_under_posterior(
        exp, posterior=post, summary_dir=tmp_path, n_draws=4, n_patients=400, n_per_arm=(5, 40, 160)
    )
    row12 = next(x for x in r.rows if x["month"] == 12.0)
    rs = responders_study(
        exp, n=10, n_phi=400, target_pct=row12["effect_pct_median"], out_dir=tmp_path / "resp"
    )
    assert 56.0 < rs.phi_needed.phi < 84.0, (row12["effect_pct_median"], rs.phi_needed.phi)
    a = [x["assurance"] for x in r.assurance]
    assert 0.05 < a[0] < a[1] < a[2]


def _bad_config_tree(tmp_path, old, new):
    """A copy of the calibration config, evidence (with one edit) and experiments."""
    cal = tmp_path / "calibration"
    (cal / "posteriors").mkdir(parents=True)
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    shutil.copyfile(ROOT / "calibration" / "treatment_effect.toml", cal / "treatment_effect.toml")
    shutil.copyfile(
        ROOT / "calibration" / "posteriors" / "natural_history.nc",
        cal / "posteriors" / "natural_history.nc",
    )
    text = EVIDENCE.read_text(encoding="utf-8")
    assert old in text
    (cal / EVIDENCE.name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return cal / "treatment_effect.toml"


@pytest.mark.parametrize(
    "old,new,expect",
    [
        (",p_two_sided,0.39,", ",p_two_sided,1.39,", "[row 2, value] p = 1.39 is outside (0, 1]"),
        (",p_two_sided,0.39,", ",p_value,0.39,", "[row 2, statistic] unknown statistic 'p_value'"),
        (
            "low;high,placebo,24,p_two",
            "low;mid,placebo,24,p_two",
            "[row 2, treated_arms] arm 'mid'",
        ),
    ],
)
def test_cli_calibrate_bad_evidence_exits_2(tmp_path, capsys, old, new, expect):
    from tregsim.cli import main

    cfg = _bad_config_tree(tmp_path, old, new)
    status = main(["calibrate", str(cfg), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert expect in err and "treatment_effect_evidence.csv" in err and "fix:" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_check_treatment_effect(tmp_path, capsys):
    from tregsim.cli import main

    out = tmp_path / "te"
    status = main(
        [
            "check",
            "treatment-effect",
            str(ROOT / "experiments" / "nct06708780.toml"),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    for f in ("treatment_effect.csv", "phi_prior_posterior.png", "manifest.json"):
        assert (out / f).is_file()
    text = (out / "treatment_effect.csv").read_text()
    assert "prediction,without poltreg,p_effect_12m_gt_10pct" in text
    assert "effect_nct06708780,month=12,p_effect_gt_10pct" in text


def _control_ancova_12m(prep, design, n_cohort: int):
    """Slope on ln(AUC₀+1) and residual SD (n − 3 df) of the ANCOVA of ln(AUC₁₂+1) on
    ln(AUC₀+1) and age in a prepared design's observed control arm: the medians over its
    consecutive cohorts of ``n_cohort`` patients (the records' size: under the Student-t
    deviation a cohort's OLS slope and residual SD are skewed by the few visits far off course,
    so one pooled cohort of 2,000 is not like the records' 100; docs/calibration.md,
    "Round 19")."""
    j = design.visit_index(12.0)
    y, x0 = np.log1p(prep.control_y[:, j]), np.log1p(prep.control_y[:, 0])
    age = np.asarray(prep.pop.covariates["age"], float)
    slopes, sds = [], []
    for lo in range(0, len(y) - n_cohort + 1, n_cohort):
        k = slice(lo, lo + n_cohort)
        ok = np.isfinite(y[k]) & np.isfinite(x0[k])
        X = np.column_stack([np.ones(ok.sum()), x0[k][ok], age[k][ok]])
        beta, *_ = np.linalg.lstsq(X, y[k][ok], rcond=None)
        r = y[k][ok] - X @ beta
        slopes.append(beta[1])
        sds.append(np.sqrt(r @ r / (ok.sum() - 3)))
    return float(np.median(slopes)), float(np.median(sds))


def test_designs_use_the_records_structure_by_default():
    """The designs' virtual patients vary like the placebo records unless told otherwise: the
    shipped config and the code default say "records"; the target design's observed control
    arm (2,000 patients, shipped natural-history posterior; the median over cohorts of the
    records' size) has its 12-month ANCOVA slope and residual SD inside the records'
    participant-bootstrap 95 % intervals (400 resamples, computed here from the records); and T-Rex's standard error at φ = 70 is smaller than with
    the lumped residual (the #14 finding: lumped residual SD 0.21 vs 0.165 in the records)."""
    import pandas as pd

    from tregsim.calibrate.treatment_effect.designs import _Prepared, design_outputs
    from tregsim.calibrate.treatment_effect.settings import load_config
    from tregsim.calibrate.treatment_effect.setup import build_designs
    from tregsim.model import load_model
    from tregsim.posterior import load_posterior
    from tregsim.trial_statistics import trial_statistics

    cfg = load_config(ROOT / "calibration" / "treatment_effect.toml")
    assert cfg.variability == "records"
    exps: dict = {}
    designs, _ = build_designs(cfg, load_evidence(cfg.evidence, experiments=exps), exps)
    nh = load_posterior(cfg.natural_history)
    target = designs["target"]
    prep = _Prepared(target, 2000, 3, nh)  # no variability argument: the default
    assert prep.variability == "records" and prep.structure is not None
    records = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"
    if records.exists():
        rec = pd.read_csv(records)
        ts = trial_statistics(
            rec.participant_id, rec.age_years, rec.month, rec.auc_mean_cpeptide_nmol_l,
            n_boot=400, seed=1, targets=(12,),
        )  # fmt: skip
        s_rec, sd_rec = ts.get("ancova_slope", 12), ts.get("ancova_resid_sd", 12)
        slope, sd = _control_ancova_12m(prep, target, int(s_rec["n"]))
        assert s_rec["lo"] <= slope <= s_rec["hi"], (slope, s_rec)
        assert sd_rec["lo"] <= sd <= sd_rec["hi"], (sd, sd_rec)
    m = load_model("treg_t1d").defaults()
    theta = np.array([[70.0] + [m[k] for k in ("FX", "F_M", "alpha_X", "beta_M")]])
    kw = dict(n_patients=1000, seed=cfg.seed, nh_draws=nh)
    se_default = design_outputs([designs["trex"]], theta, **kw)["trex.m12.se"][0]
    lumped = load_posterior(ROOT / "calibration" / "posteriors" / "natural_history_lumped.nc")
    se_lumped = design_outputs(
        [designs["trex"]], theta, variability="lumped", n_patients=1000, seed=cfg.seed,
        nh_draws=lumped,
    )  # fmt: skip
    assert se_default < se_lumped["trex.m12.se"][0]


@pytest.mark.parametrize("sigma_bio, inv_nu", [(0.0, 0.0), (0.2, 0.0), (0.0, 0.3), (0.0, 0.45)])
def test_no_decline_probability_matches_observe_visits(sigma_bio, inv_nu):
    """TILT's no-decline probability under the records observation model equals the frequency
    of y₁ ≥ y₀ in 200,000 draws of :func:`tregsim.observe.observe_visits`: a normal white
    deviation, one with an OU deviation σ_bio = 0.2, τ_bio = 180 d (both Φ(ln(μ₁/μ₀)/s)), and
    Student-t deviations of ν 3.3 (the chosen structure's) and 2.2 (the quadrature)."""
    from tregsim.calibrate.treatment_effect.designs import TrialDesign, _Prepared
    from tregsim.experiment import load_experiment
    from tregsim.observe import observe_visits, visit_normals

    exp = load_experiment(ROOT / "experiments" / "tilt.toml")
    prep = _Prepared(TrialDesign("tilt", exp, {"treg_il2_low": 9}, None, 0, (12.0,)), 100, 1, None)
    obs = {
        "sigma_meas": float(prep.obs["sigma_meas"][0]),
        "kappa": float(prep.obs["kappa"][0]),
        "sigma_bio": sigma_bio,
        "tau_bio": 180.0,
        "inv_nu": inv_nu,
    }
    prep.obs = obs
    m = 200_000
    mu = np.tile([0.6, 0.45], (m, 1))  # nmol/L at baseline and one year later
    days = np.array([0.0, 365.0])
    y, _ = observe_visits(mu, days, visit_normals(7, "test", 0, m, 2), lloq=0.0, **obs)
    freq = np.mean(y[:, 1] >= y[:, 0])
    want = float(prep.no_decline_probability(0.6, 0.45, 365.0))
    assert freq == pytest.approx(want, abs=4 * np.sqrt(want * (1 - want) / m))


def test_design_cache_is_reused_and_invalidated_by_any_package_change(tmp_path, monkeypatch):
    """The design cache serves the stored outputs while key, θ and package source match, and
    recomputes when the source of any tregsim module changes (not only designs.py). The real
    design outputs (T-Rex, 40 patients) run underneath; the wrapper only counts the calls."""
    import hashlib
    from pathlib import Path

    import tregsim
    from tregsim.calibrate.treatment_effect import designs as D
    from tregsim.calibrate.treatment_effect.settings import load_config
    from tregsim.calibrate.treatment_effect.setup import build_designs
    from tregsim.model import load_model
    from tregsim.posterior import load_posterior

    cfg = load_config(ROOT / "calibration" / "treatment_effect.toml")
    exps: dict = {}
    designs, _ = build_designs(cfg, load_evidence(cfg.evidence, experiments=exps), exps)
    trex = [designs["trex"]]
    m = load_model("treg_t1d").defaults()
    th = np.array([[70.0] + [m[k] for k in ("FX", "F_M", "alpha_X", "beta_M")]])
    kw = dict(n_patients=40, seed=cfg.seed, nh_draws=load_posterior(cfg.natural_history))
    real = D.design_outputs
    direct = real(trex, th, **kw)
    calls = []

    def outputs(designs, thetas, **kw):
        calls.append(1)
        return real(designs, thetas, **kw)

    monkeypatch.setattr(D, "design_outputs", outputs)
    path = tmp_path / "c.npz"
    a = D.cached_design_outputs(path, {"seed": 1}, trex, th, **kw)
    b = D.cached_design_outputs(path, {"seed": 1}, trex, th, **kw)
    assert len(calls) == 1
    assert sorted(a) == sorted(b) == sorted(direct)
    assert all(np.array_equal(a[k], direct[k]) and np.array_equal(b[k], direct[k]) for k in a)
    D.cached_design_outputs(path, {"seed": 2}, trex, th, **kw)
    assert len(calls) == 2
    # the package hash covers every module: recompute it independently over the sources
    root = Path(tregsim.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    assert D.package_source_sha256() == h.hexdigest()
    assert any("population" in f.as_posix() for f in root.rglob("*.py"))
    monkeypatch.setattr(D, "package_source_sha256", lambda: "another source")
    D.cached_design_outputs(path, {"seed": 2}, trex, th, **kw)
    assert len(calls) == 3
