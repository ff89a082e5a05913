"""Virtual populations: marginals against their specification, eligibility, chunk invariance."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tregsim import rng as _rng
from tregsim.errors import ArgumentError, ExperimentFileError
from tregsim.experiment import load_experiment
from tregsim.population import sample_population
from tregsim.population.sampling import acceptance_rate

ROOT = Path(__file__).resolve().parents[1]
NCT = ROOT / "experiments" / "nct06708780.toml"
TEXT = NCT.read_text(encoding="utf-8")
ELIG = TEXT[TEXT.index("all_of = [") : TEXT.index("[arms.treg]")]


@pytest.fixture(scope="module")
def exp():
    return load_experiment(NCT)


@pytest.fixture(scope="module")
def exp_all(tmp_path_factory):
    """The NCT population without eligibility rules: the raw covariate distribution."""
    p = tmp_path_factory.mktemp("exp") / "all.toml"
    p.write_text(TEXT.replace(ELIG, "all_of = []\n\n"), encoding="utf-8")
    return load_experiment(p)


@pytest.fixture(scope="module")
def raw(exp_all):
    return sample_population(exp_all, 20000, seed=11)


def test_age_marginal_matches_mixture(raw, exp_all):
    age = raw.covariates["age"]
    ks = stats.kstest(age, exp_all.population.age.cdf)
    assert ks.pvalue > 1e-3
    assert age.min() >= 8.0 and age.max() <= 65.0
    # the mixture puts half its mass below 18 y
    assert abs((age < 18).mean() - 0.5) < 4 * np.sqrt(0.25 / age.size)


def test_binary_marginals(raw):
    n = raw.n
    for name, p in (("sex", 0.55), ("aab_positive", 0.9)):
        k = int(np.sum(raw.covariates[name]))
        assert stats.binomtest(k, n, p).pvalue > 1e-3, name


def test_weight_for_age(raw, exp_all):
    c = raw.covariates
    w = exp_all.population.weight
    # independent reference medians (CDC 50th percentile at 10 y: boys 31.9, girls 32.6 kg)
    np.testing.assert_allclose(w.median(np.array([10.0, 10.0]), np.array([1, 0])), [31.9, 32.6])
    z = np.log(c["weight"] / w.median(c["age"], c["sex"])) / w.sd_log(c["age"])
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_cpeptide_by_age_group_matches_placebo_month0(raw):
    c = raw.covariates
    age, x = c["age"], c["cpep_baseline"]
    # month-0 means and SDs of placebo_cpeptide_by_age_month.csv (Dufort 2019)
    for (lo, hi), mean, sd in (
        ((0, 13), 0.5918, 0.2192),
        ((13, 18), 0.8322, 0.4165),
        ((18, 121), 0.7508, 0.3576),
    ):
        g = x[(age >= lo) & (age < hi)]
        assert abs(g.mean() - mean) < 4 * sd / np.sqrt(g.size)
        # SD of a log-normal sample: compare on the log scale where it is normal
        s2 = np.log1p((sd / mean) ** 2)
        assert (
            stats.kstest(np.log(g), "norm", args=(np.log(mean) - s2 / 2, np.sqrt(s2))).pvalue > 1e-3
        )
    # cpep0 (at diagnosis) is derived from cpep_baseline: see
    # test_simulated_baseline_visit_equals_sampled_baseline_mmtt
    ratio = c["cpep_fasting"] / (1000 * x)
    assert abs(ratio.mean() - 0.45) < 4 * ratio.std() / np.sqrt(ratio.size)


def test_iiv_f_lambda_sd_is_model_omega(raw, exp_all):
    lf = np.log(raw.individual["f_lambda"])
    omega = exp_all.model.defaults()["omega_lambda"]
    assert abs(lf.mean()) < 4 * omega / np.sqrt(lf.size)
    assert stats.chi2(lf.size - 1).cdf((lf.size - 1) * lf.var(ddof=1) / omega**2) > 1e-4
    np.testing.assert_array_equal(raw.params["f_lambda"], raw.individual["f_lambda"])
    np.testing.assert_array_equal(raw.params["age"], raw.covariates["age"])


def test_eligibility_holds_for_everyone(exp):
    pop = sample_population(exp, 5000, seed=3)
    c = pop.covariates
    assert ((c["age"] >= 8) & (c["age"] <= 65)).all()
    assert (c["aab_positive"] | (c["cpep_fasting"] <= 300)).all()
    assert pop.acceptance_rate < 1


def test_acceptance_rate_matches_closed_form(exp):
    # P(eligible) = p_aab + (1 − p_aab) · P(fasting ≤ 300 pmol/L); log fasting is normal within
    # each age group: log(450 · cpep) + 0.3 z − 0.045 with log cpep ~ N(mu_g, s_g²).
    popm = exp.population
    mu, sig = popm.cpep_baseline.log_params()
    cdf = popm.age.cdf
    pg = np.diff([0.0, cdf(13.0), cdf(18.0), 1.0])
    s = popm.fasting_sd_log
    p_low = sum(
        pg[g]
        * stats.norm.cdf(
            np.log(300.0),
            np.log(1000 * popm.fasting_ratio) + mu[g] - s * s / 2,
            np.hypot(sig[g], s),
        )
        for g in range(3)
    )
    expected = popm.p_aab + (1 - popm.p_aab) * p_low
    n = 40000
    rate = acceptance_rate(exp, 5, n)
    m = n / rate
    assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / m)


def test_patient_i_is_ith_eligible_candidate(exp):
    pop = sample_population(exp, 3000, seed=8)
    cand = exp.population.sample(8, 0, 4 * _rng.BLOCK)
    ok = np.flatnonzero(exp.eligibility(cand))[:3000]
    np.testing.assert_array_equal(pop.candidate_index, ok)
    np.testing.assert_array_equal(pop.covariates["age"], cand["age"][ok])


@pytest.mark.parametrize("cuts", [[0, 1, 1024, 3000], [0, 700, 701, 2047, 2048, 3000], [0, 3000]])
def test_chunk_invariance(exp, cuts):
    whole = sample_population(exp, 3000, seed=4)
    parts = [sample_population(exp, b - a, seed=4, start=a) for a, b in pairwise(cuts)]
    for k, v in whole.covariates.items():
        np.testing.assert_array_equal(v, np.concatenate([p.covariates[k] for p in parts]))
    np.testing.assert_array_equal(
        whole.params["f_lambda"], np.concatenate([p.params["f_lambda"] for p in parts])
    )


def test_seed_changes_patients_and_same_seed_repeats(exp):
    a = sample_population(exp, 500, seed=1)
    b = sample_population(exp, 500, seed=1)
    c = sample_population(exp, 500, seed=2)
    np.testing.assert_array_equal(a.covariates["weight"], b.covariates["weight"])
    assert not np.array_equal(a.covariates["weight"], c.covariates["weight"])


def test_theta_overrides_population_parameters(exp):
    th = {"omega_lambda": np.full(2000, 0.3), "phi": 7.0}
    a = sample_population(exp, 2000, seed=9)
    b = sample_population(exp, 2000, seed=9, theta=th)
    np.testing.assert_array_equal(a.covariates["age"], b.covariates["age"])
    np.testing.assert_allclose(
        np.log(b.individual["f_lambda"]), 0.5 * np.log(a.individual["f_lambda"])
    )  # 0.3 / 0.6
    assert (b.params["phi"] == 7.0).all()
    with pytest.raises(ArgumentError, match="theta sets covariate parameter 'age'"):
        sample_population(exp, 10, seed=9, theta={"age": 3.0})
    with pytest.raises(ArgumentError, match="unknown parameter 'nope'"):
        sample_population(exp, 10, seed=9, theta={"nope": 3.0})


def test_correlated_iiv_against_specification(tmp_path):
    """Two correlated individual parameters: log-SDs and correlation as specified."""
    model_text = (ROOT / "models" / "treg_t1d.toml").read_text(encoding="utf-8")
    sec = model_text.index("[parameters.phi]")
    end = model_text.index("[parameters.", sec + 5)
    phi_sec = model_text[sec:end]
    new_sec = "\n".join(
        ln.replace('role = "population"', 'role = "individual"')
        for ln in phi_sec.splitlines()
        if not ln.startswith("prior")
    )
    (tmp_path / "m.toml").write_text(model_text[:sec] + new_sec + "\n" + model_text[end:])
    var = (
        '[variability]\ncorrelations = [["f_lambda", "phi", 0.6]]\n'
        '[variability.f_lambda]\nsd_log = "model"\n[variability.phi]\nsd_log = 0.5\n\n'
    )
    text = TEXT.replace('model = "treg_t1d"', 'model = "m.toml"')
    i, j = text.index("[variability]"), text.index("[eligibility]")
    text = text[:i] + var + text[j:]
    (tmp_path / "e.toml").write_text(text)
    e = load_experiment(tmp_path / "e.toml")
    pop = sample_population(e, 20000, seed=2)
    lf, lp = np.log(pop.individual["f_lambda"]), np.log(pop.individual["phi"] / 2.0)
    n = lf.size
    assert abs(lf.std() - 0.6) < 4 * 0.6 / np.sqrt(2 * n)
    assert abs(lp.std() - 0.5) < 4 * 0.5 / np.sqrt(2 * n)
    r = np.corrcoef(lf, lp)[0, 1]
    assert abs(np.arctanh(r) - np.arctanh(0.6)) < 4 / np.sqrt(n - 3)  # Fisher z
    np.testing.assert_array_equal(pop.params["phi"], pop.individual["phi"])


def test_simulated_baseline_visit_equals_sampled_baseline_mmtt():
    """cpep0 (at diagnosis) is chosen so that the untreated model hits the patient's noise-free
    baseline MMTT at the baseline visit, despite stunning recovery before it."""
    import tregsim
    from tregsim.experiment import load_experiment
    from tregsim.population import sample_population

    exp = load_experiment(ROOT / "experiments" / "nct06708780.toml")
    pop = sample_population(exp, 200, seed=5)
    r = tregsim.simulate_arrays(exp.model, pop.params, None, np.array([0.0, exp.baseline_day]))
    sim = r.observables["cpeptide"][:, -1]
    np.testing.assert_allclose(sim, pop.covariates["cpep_baseline_true"], rtol=1e-6)
    assert np.all(pop.covariates["cpep0"] != pop.covariates["cpep_baseline_true"])
    np.testing.assert_array_equal(pop.params["cpep_bl"], pop.covariates["cpep_baseline_true"])


def test_measured_baseline_reproduces_the_configured_distribution(exp_all):
    """A measurement of each patient's noise-free baseline with the observation model has the
    configured (measured) log-normal per age group again: the aggregate's error is not added
    twice. Independent reference: the log-mean and log-SD of the experiment file's arithmetic
    mean and SD, with Monte-Carlo bounds (4 SE)."""
    from tregsim.observe import observe_visits, visit_normals
    from tregsim.population.structure import observation_parameters

    pop = sample_population(exp_all, 40000, seed=21)
    cov = pop.covariates
    true, meas = cov["cpep_baseline_true"], cov["cpep_baseline"]
    z = visit_normals(21, "test.measured_baseline", 0, pop.n, 1)
    y, _ = observe_visits(
        true[:, None], np.zeros(1), z, lloq=1e-9, **observation_parameters(pop.params)
    )
    spec = exp_all.population.cpep_baseline
    mu, sig = spec.log_params()
    g = spec.group(cov["age"])
    for k in range(mu.size):
        ly, lt = np.log(y[g == k, 0]), np.log(true[g == k])
        n = ly.size
        assert n > 2000
        assert abs(ly.mean() - mu[k]) < 4 * sig[k] / np.sqrt(n)
        assert abs(ly.std() - sig[k]) < 4 * sig[k] / np.sqrt(2 * n)
        # the noise-free spread is narrower by the observation error (σ_meas ≈ 0.25)
        assert lt.std() < sig[k] - 0.05
        # each patient keeps its rank within its group
        assert stats.spearmanr(lt, np.log(meas[g == k])).statistic > 0.9999


def test_measured_false_takes_the_values_as_noise_free(tmp_path):
    p = tmp_path / "nf.toml"
    p.write_text(TEXT.replace("\nmeasured = true\n", "\nmeasured = false\n"), encoding="utf-8")
    pop = sample_population(load_experiment(p), 300, seed=2)
    cov = pop.covariates
    np.testing.assert_array_equal(cov["cpep_baseline_true"], cov["cpep_baseline"])


def test_baseline_sd_narrower_than_the_observation_error_is_refused(tmp_path):
    p = tmp_path / "narrow.toml"
    p.write_text(
        TEXT.replace("sd_nmol_L = [0.2192, 0.4165, 0.3576]", "sd_nmol_L = [0.05, 0.4165, 0.3576]"),
        encoding="utf-8",
    )
    with pytest.raises(ExperimentFileError, match="sd_nmol_L") as e:
        sample_population(load_experiment(p), 300, seed=2)
    assert "narrow.toml" in str(e.value) and "fix:" in str(e.value)
