"""NPE on within-patient statistics (``kind = "npe_structure"``): batched statistics against
``tregsim.trial_statistics``, the simulator against the records likelihood's own evaluation of
the structure, chunk independence, config validation. Synthetic records only (written to a
temporary folder), so nothing here needs ../shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tregsim.calibrate.config import load_config
from tregsim.calibrate.structure_statistics import StatisticsPlan, bootstrap
from tregsim.errors import ConfigFileError
from tregsim.trial_statistics import VISIT_MONTHS, wide_statistics
from tregsim.units import LLOQ_NMOL_L

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "calibration" / "natural_history_structure_npe.toml"
MONTHS = (0, 3, 6, 12, 18, 24)
MAP = {  # calibration/natural_history_structure.json (rounded)
    "lambda_ref": 0.00297,
    "gamma_a": 0.76,
    "omega_lambda": 0.70,
    "q": 0.067,
    "beta_c": -0.45,
    "beta_lin": 2.27,
    "sigma_meas": 0.25,
    "kappa": 0.26,
    "mu_c": -0.49,
    "mu_a": 0.20,
    "s_c": 0.42,
}


def _wide_tables(rng, n_rep=3, P=90):
    """Log-normal tables with a patient effect, random missed visits and some values at
    LLOQ/2: (n_rep, P, S) and ages (P,)."""
    age = rng.uniform(7.0, 40.0, P)
    lev = rng.normal(-0.5, 0.5, (n_rep, P, 1)) - 0.03 * np.arange(len(MONTHS))
    y = np.exp(lev + rng.normal(0, 0.3, (n_rep, P, len(MONTHS))))
    y = np.where(y < 0.05, 0.0085, y)
    present = rng.random((P, len(MONTHS))) > 0.15
    present[:, 0] |= rng.random(P) > 0.05
    return np.where(present, y, np.nan), present, age


def test_batched_statistics_equal_trial_statistics(rng):
    y, present, age = _wide_tables(rng)
    plan = StatisticsPlan(present, age, MONTHS, min_group_n=20)
    x = plan(y)
    cols = [MONTHS.index(m) for m in VISIT_MONTHS]
    n_checked = 0
    for r in range(y.shape[0]):
        ts = wide_statistics(y[r][:, cols], age, months=VISIT_MONTHS, n_boot=2, min_group_n=20)
        for row in ts.rows:
            f = f"{row['statistic']}|{row['group']}|{row['month']}"
            if f == "corr_previous_visit|all|6":  # = corr_baseline|all|6, not a feature
                continue
            assert x[r, plan.feature_names.index(f)] == pytest.approx(row["estimate"], abs=1e-12)
            n_checked += 1
        # per-visit moments against numpy
        for m in MONTHS:
            v = np.log1p(y[r][present[:, MONTHS.index(m)], MONTHS.index(m)])
            k = plan.feature_names.index(f"mean_ln_x_plus_1|all|{m}")
            assert x[r, k] == pytest.approx(v.mean(), abs=1e-12)
            assert x[r, k + 1] == pytest.approx(v.std(ddof=1), abs=1e-12)
    assert n_checked >= 3 * 20  # overall + age-group ANCOVA rows, correlations, slopes


def test_level_statistics_match_a_per_replicate_lstsq(rng):
    """The structure summaries against np.linalg.lstsq and np.corrcoef, one replicate at a
    time (an independent computation of the same definitions)."""
    y, present, age = _wide_tables(rng, n_rep=4)
    plan = StatisticsPlan(present, age, MONTHS, structure=True)
    x = plan(y)
    lx = np.log1p(y)
    for r in range(y.shape[0]):
        for m in (6, 12, 24):
            ok = present[:, 0] & present[:, MONTHS.index(m)]
            x0, xm = lx[r, ok, 0], lx[r, ok, MONTHS.index(m)]
            X = np.column_stack([np.ones_like(x0), x0, age[ok]])
            res = xm - X @ np.linalg.lstsq(X, xm, rcond=None)[0]
            low = x0 < np.median(x0)
            for name, sel in (("low", low), ("high", ~low)):
                k = plan.feature_names.index(f"resid_rms_{name}_baseline|all|{m}")
                assert x[r, k] == pytest.approx(np.sqrt(np.mean(res[sel] ** 2)), abs=1e-12)
        cols = [MONTHS.index(m) for m in VISIT_MONTHS]
        t = np.array(VISIT_MONTHS) / 12.0
        slopes, base = [], []
        for p in range(len(age)):
            okp = present[p, cols]
            if okp.sum() >= 3 and present[p, 0]:
                slopes.append(np.polyfit(t[okp], lx[r, p, cols][okp], 1)[0])
                base.append(lx[r, p, 0])
        k = plan.feature_names.index("corr_slope_baseline|all|24")
        assert x[r, k] == pytest.approx(np.corrcoef(slopes, base)[0, 1], abs=1e-10)
        seen = present[:, cols]
        k = plan.feature_names.index("max_ln_x_plus_1|all|24")
        assert x[r, k] == np.max(lx[r][:, cols][seen])
        change = [
            lx[r, p, c] - lx[r, p, 0]
            for c in cols[1:]
            for p in range(len(age))
            if present[p, 0] and present[p, c]
        ]
        k = plan.feature_names.index("q05_change_from_baseline|all|24")
        assert x[r, k : k + 2] == pytest.approx(np.percentile(change, [5, 95]), abs=1e-12)


def test_log_scale_statistics_match_a_per_replicate_numpy_computation(rng):
    """The log-scale summaries against np.percentile, np.linalg.lstsq, np.polyfit and
    np.corrcoef on z = ln(max(x, LLOQ)), one replicate and one participant at a time."""
    y, present, age = _wide_tables(rng, n_rep=4)
    y = np.where(y < 0.2, LLOQ_NMOL_L / 2, y)  # code a few % below the LLOQ, as the records
    assert 0.01 < np.mean(y[np.isfinite(y)] < LLOQ_NMOL_L) < 0.2
    plan = StatisticsPlan(present, age, MONTHS, structure=True, log_scale=True)
    x = plan(y)
    z = np.log(np.maximum(y, LLOQ_NMOL_L))
    col = {m: k for k, m in enumerate(MONTHS)}

    def feat(r, name):
        return x[r, plan.feature_names.index(name)]

    def slope(p, r, months):
        ms = [m for m in months if present[p, col[m]]]
        if len(ms) < 2:
            return None
        return np.polyfit(np.array(ms) / 12.0, [z[r, p, col[m]] for m in ms], 1)[0]

    for r in range(y.shape[0]):
        for m in MONTHS:
            v = z[r, present[:, col[m]], col[m]]
            for name, pct in (("median", 50), ("q25", 25), ("q75", 75)):
                assert feat(r, f"{name}_ln_x|all|{m}") == pytest.approx(np.percentile(v, pct))
        for m in (6, 12, 24):
            ok = present[:, 0] & present[:, col[m]]
            X = np.column_stack([np.ones(ok.sum()), z[r, ok, 0], age[ok]])
            coef, rss = np.linalg.lstsq(X, z[r, ok, col[m]], rcond=None)[:2]
            assert feat(r, f"log_ancova_slope|all|{m}") == pytest.approx(coef[1], abs=1e-12)
            sd = np.sqrt(rss[0] / (ok.sum() - 3))
            assert feat(r, f"log_ancova_resid_sd|all|{m}") == pytest.approx(sd, abs=1e-12)
        for m in (6, 12, 18, 24):
            ok = present[:, 0] & present[:, col[m]]
            dz = z[r, ok, col[m]] - z[r, ok, 0]
            for name, pct in (("q10", 10), ("q50", 50), ("q90", 90)):
                assert feat(r, f"{name}_log_change|all|{m}") == pytest.approx(
                    np.percentile(dz, pct)
                )
        early = [slope(p, r, (0, 6, 12)) for p in range(len(age))]
        late = [slope(p, r, (12, 18, 24)) for p in range(len(age))]
        for name, s_, month in (("early", early, 12), ("late", late, 24)):
            s_ = [v for v in s_ if v is not None]
            assert feat(r, f"mean_log_slope_{name}|all|{month}") == pytest.approx(np.mean(s_))
            sd = np.std(s_, ddof=1)
            assert feat(r, f"sd_log_slope_{name}|all|{month}") == pytest.approx(sd)
        both = [(e, lt) for e, lt in zip(early, late) if e is not None and lt is not None]
        e, lt = np.array(both).T
        assert feat(r, "mean_log_slope_change|all|24") == pytest.approx(np.mean(lt - e))
        assert feat(r, "corr_log_slopes|all|24") == pytest.approx(np.corrcoef(e, lt)[0, 1])
        rss, df, z0 = [], [], []
        for p in range(len(age)):
            ms = [m for m in VISIT_MONTHS if present[p, col[m]]]
            if len(ms) >= 4 and present[p, 0]:
                t, v = np.array(ms) / 12.0, np.array([z[r, p, col[m]] for m in ms])
                res = v - np.polyval(np.polyfit(t, v, 1), t)
                rss.append(np.sum(res**2))
                df.append(len(ms) - 2)
                z0.append(z[r, p, 0])
        rss, df, z0 = map(np.array, (rss, df, z0))
        low = z0 < np.median(z0)
        for name, sel in (("low", low), ("high", ~low)):
            want = np.sqrt(rss[sel].sum() / df[sel].sum())
            assert feat(r, f"log_resid_rms_{name}_baseline|all|24") == pytest.approx(want)


def test_excluded_statistics_are_left_out_and_the_rest_unchanged(rng):
    y, present, age = _wide_tables(rng, n_rep=2)
    full = StatisticsPlan(present, age, MONTHS, structure=True, log_scale=True)
    drop = ("corr_log_slopes", "log_resid_rms_high_baseline")
    part = StatisticsPlan(present, age, MONTHS, structure=True, log_scale=True, exclude=drop)
    keep = [k for k, f in enumerate(full.feature_names) if f.split("|")[0] not in drop]
    assert len(keep) == len(full.feature_names) - 2
    assert part.feature_names == tuple(full.feature_names[k] for k in keep)
    np.testing.assert_array_equal(part(y), full(y)[:, keep])


def test_batched_statistics_do_not_depend_on_the_batch(rng):
    y, present, age = _wide_tables(rng, n_rep=9)
    plan = StatisticsPlan(present, age, MONTHS, structure=True, log_scale=True)
    whole = plan(y)
    parts = np.concatenate([plan(y[:1]), plan(y[1:5]), plan(y[5:])])
    assert np.array_equal(whole, parts)


def test_bootstrap_interval_brackets_the_estimate(rng):
    y, present, age = _wide_tables(rng, n_rep=1, P=120)
    plan = StatisticsPlan(present, age, MONTHS)
    lo, hi = bootstrap(y[0], present, age, MONTHS, plan.feature_names, n_boot=200, seed=3)
    est = plan(y[0])[0]
    assert np.all(lo <= est) and np.all(est <= hi) and np.all(hi > lo)


# ----------------------------------------------------------------------- simulator
def _synthetic_records(tmp_path, rng, P=60) -> Path:
    """Long-format records in the layout of placebo_cpeptide_individual.csv (made up here)."""
    rows = []
    for i in range(P):
        age = rng.uniform(8.0, 40.0)
        d0 = rng.integers(-50, 1)
        for m in MONTHS:
            if m and rng.random() < 0.15:
                continue
            day = d0 + (m * 30.4375 + rng.integers(-20, 21) if m else 0)
            y = float(np.exp(rng.normal(-0.6 - 0.04 * m, 0.4)))
            rows.append(("SYN", f"S{i:03d}", age, "F", float(day), float(m), max(y, 0.0085)))
    df = pd.DataFrame(
        rows,
        columns=[
            "study",
            "participant_id",
            "age_years",
            "sex",
            "study_day",
            "month",
            "auc_mean_cpeptide_nmol_l",
        ],
    )
    path = tmp_path / "records.csv"
    df.to_csv(path, index=False)
    return path


def _age_text() -> str:
    """The shipped config with the candidate "lincovariate+age+power" (γ_β calibrated, prior
    N(0, 1) as variability.PARAMS)."""
    text = CONFIG.read_text().replace(
        'candidate = "lincovariate+power+t"', 'candidate = "lincovariate+age+power"'
    )
    text = text.replace('"sigma_meas", "inv_nu",', '"sigma_meas",').replace(
        "inv_nu = {", "# inv_nu = {"
    )
    text = text.replace('"q", "beta_c", "beta_lin",', '"q", "beta_c", "gamma_beta", "beta_lin",')
    return text.replace(
        "beta_lin = { dist",
        'gamma_beta = { dist = "normal", mean = 0.0, sd = 1.0 }\nbeta_lin = { dist',
    )


def _config(tmp_path, records: Path, text: str | None = None) -> Path:
    text = CONFIG.read_text() if text is None else text
    text = text.replace(
        'records = "../../shared/data/placebo_cpeptide_individual.csv"',
        f'records = "{records.name}"',
    ).replace("n_loglam = 121, n_q = 21", "n_loglam = 41, n_q = 6")
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    from tregsim.calibrate.structure_simulator import build_problem

    tmp = tmp_path_factory.mktemp("structure")
    rec = _synthetic_records(tmp, np.random.default_rng(5))
    return build_problem(load_config(_config(tmp, rec, _age_text())))


def test_simulator_is_chunk_independent(problem):
    from tregsim.calibrate.structure_simulator import simulate_summaries

    th = problem.theta_from_z(problem.prior_z(11, 1000, 1040))  # crosses an rng block (1024)
    whole = simulate_summaries(problem, th, 11, 1000)
    parts = np.concatenate(
        [
            simulate_summaries(problem, th[:3], 11, 1000),
            simulate_summaries(problem, th[3:27], 11, 1003),
            simulate_summaries(problem, th[27:], 11, 1027),
        ]
    )
    assert np.array_equal(whole, parts)
    assert np.all(np.isfinite(whole))


@pytest.mark.parametrize(
    "change",
    [
        {"gamma_beta": 0.0},
        # the age-dependent covariate β_c·(a/10)^(−γ_β) (candidate "lincovariate+age+power");
        # μ_c away from log 0.6 so that the covariate term is not ≈ 0
        {"gamma_beta": 0.8, "beta_c": -0.9, "mu_c": -0.1},
        {"gamma_beta": -1.2, "beta_c": 0.7, "mu_c": -1.0},
    ],
)
def test_simulator_course_matches_the_records_likelihood(problem, change):
    """With no between-patient spread (s_c = ω_λ = 0) and a negligible deviation, every
    simulated visit equals exp(log μ) that StructureLikelihood computes for the same records
    at its ζ = η = 0 node: the two paths evaluate the same structure."""
    from tregsim.calibrate.structure_simulator import simulate_wide
    from tregsim.calibrate.variability import StructureLikelihood, load_records

    assert problem.config.candidate == "lincovariate+age+power"
    th = MAP | {"s_c": 0.0, "omega_lambda": 0.0, "sigma_meas": 1e-9, "kappa": 0.0} | change
    theta = np.array([[th[n] for n in problem.names]])
    y = simulate_wide(problem, theta, 1, 0)[0]  # (P, S)
    if change["gamma_beta"] != 0:  # γ_β acts: the course differs from γ_β = 0
        g0 = np.array([[(th | {"gamma_beta": 0.0})[n] for n in problem.names]])
        y0 = simulate_wide(problem, g0, 1, 0)[0]
        ok = np.isfinite(y) & (y0 > problem.config.lloq_nmol_l)
        assert np.max(np.abs(np.log(y[ok] / y0[ok]))) > 0.01
    rec = load_records(problem.config.records_path)
    like = StructureLikelihood(problem.table, rec, baseline_day=problem.config.baseline_day)
    lm = like.log_mu(th | {"sigma_bio": 0.0, "tau_bio": 180.0})
    node = (len(like.zeta) // 2) * len(like.eta) + len(like.eta) // 2
    assert like.zeta[len(like.zeta) // 2] == 0 and like.eta[len(like.eta) // 2] == 0
    d = problem.data
    sim = y[d.visit_patient, d.visit_slot]
    # match each design visit to the likelihood's visit of the same participant and month
    col = {m: k for k, m in enumerate(d.months)}
    ref = np.full(sim.shape, np.nan)
    for v in range(len(rec.y)):
        k = col.get(int(rec.visit_month[v]))
        hit = np.flatnonzero((d.visit_patient == rec.visit_patient[v]) & (d.visit_slot == k))
        if hit.size:
            ref[hit[0]] = np.exp(lm[v, node])
    keep = ref >= problem.config.lloq_nmol_l
    assert keep.sum() > 100
    np.testing.assert_allclose(sim[keep], ref[keep], rtol=1e-8)


def test_simulator_draws_the_student_t_deviation(tmp_path):
    """The shipped config's candidate ("lincovariate+power+t"): with no between-patient spread
    and κ = 0, the simulated visits' deviations (ln y − ln y at σ_meas → 0) / σ_meas follow
    scipy's t with ν = 1/inv_nu (KS at the 1 % level over 400 cohorts' uncensored visits)."""
    from scipy import stats

    from tregsim.calibrate.structure_simulator import build_problem, simulate_wide

    rec = _synthetic_records(tmp_path, np.random.default_rng(6))
    problem = build_problem(load_config(_config(tmp_path, rec)))
    assert "inv_nu" in problem.names
    th = MAP | {"s_c": 0.0, "omega_lambda": 0.0, "kappa": 0.0, "mu_c": 0.5, "inv_nu": 0.3}
    n = 400
    rows = np.array([[(th | {"sigma_meas": sm})[k] for k in problem.names] for sm in (0.2, 1e-9)])
    y = simulate_wide(problem, np.repeat(rows[:1], n, axis=0), 3, 0)
    mu = simulate_wide(problem, rows[1:], 3, 0)[0]
    ok = np.isfinite(y) & (y > problem.config.lloq_nmol_l) & np.isfinite(mu)[None]
    e = (np.log(y) - np.log(mu)[None])[ok] / 0.2
    assert stats.kstest(e, stats.t(1 / 0.3).cdf).pvalue > 0.01


def test_visit_record_points_at_the_records_visit_of_each_cell(problem):
    """Values simulated at every record visit (the likelihood's order) fill the NPE's table
    through ``visit_record``, as benchmarks/structure_agreement_null.py does."""
    from tregsim.calibrate.variability import load_records

    d = problem.data
    rec = load_records(problem.config.records_path)
    v = d.visit_record
    assert len(np.unique(v)) == v.size
    np.testing.assert_array_equal(rec.visit_patient[v], d.visit_patient)
    np.testing.assert_array_equal(rec.visit_month[v], np.asarray(d.months)[d.visit_slot])
    np.testing.assert_array_equal(rec.visit_day[v], d.visit_day)
    np.testing.assert_array_equal(rec.y[v], d.values_nmol_l[d.visit_patient, d.visit_slot])


def test_observed_summaries_come_from_the_plan(problem):
    d = problem.data
    np.testing.assert_array_equal(d.observed, problem.plan(d.values_nmol_l)[0])
    assert len(d.feature_names) == d.observed.size > 20


# -------------------------------------------------------------------------- config
def test_shipped_config_loads():
    if not (CONFIG.parent / "../../shared/data/placebo_cpeptide_individual.csv").exists():
        pytest.skip("placebo records not at ../shared/data (not shipped: no licence)")
    cfg = load_config(CONFIG)
    assert cfg.kind == "npe_structure" and len(cfg.calibrate) == 12
    # the likelihood path's (shipped) structure, so that the two paths can be compared
    assert cfg.candidate == "lincovariate+power+t" and "gamma_beta" not in cfg.structure_names
    assert (
        cfg.candidate
        == load_config(ROOT / "calibration" / "placebo_records_structure.toml").candidate
    )


def test_config_with_the_age_covariate(tmp_path, rng):
    """candidate "lincovariate+age+power" needs gamma_beta in calibrate; without the candidate
    gamma_beta is rejected (the simulator uses γ_β = 0)."""
    rec = _synthetic_records(tmp_path, rng, P=8)
    cfg = load_config(_config(tmp_path, rec, _age_text()))
    assert cfg.candidate == "lincovariate+age+power" and "gamma_beta" in cfg.structure_names
    text = _age_text().replace('"gamma_beta", ', "").replace("gamma_beta = { dist", "# x = {")
    with pytest.raises(ConfigFileError) as e:  # neither calibrated nor fixed
        load_config(_config(tmp_path, rec, text))
    assert e.value.field == "parameters.fixed" and "gamma_beta" in str(e.value)
    text = _age_text().replace(
        'candidate = "lincovariate+age+power"', 'candidate = "lincovariate+power"'
    )
    with pytest.raises(ConfigFileError) as e:
        load_config(_config(tmp_path, rec, text))
    assert e.value.field == "parameters.calibrate" and "gamma_beta" in str(e.value)


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("seed = 20261205", "seed = 20261205\nsede = 1", "sede"),
        ('"mu_a", "s_c"]', '"mu_a", "s_cc"]', "parameters.calibrate"),
        ('"mu_a", "s_c"]', '"mu_a"]', "parameters.fixed"),
        ("targets = [6, 12, 24]", "targets = [0, 12]", "summaries.targets"),
        ('candidate = "lincovariate+power+t"', 'candidate = "lumped"', "structure.candidate"),
        ("n_q = 21", "n_q = 21, n_eta = 3", "structure.curve_table.n_eta"),
        ('below_lloq = "half_lloq"', 'below_lloq = "zero"', "observation.below_lloq"),
        ('exclude = ["corr_log_slopes"', 'exclude = ["corr_slopes"', "summaries.exclude"),
        ("chunk_size = 1000", "chunk_size = 0", "budget.chunk_size"),
        ('kappa = { dist = "normal"', 'kappa = { dist = "gauss"', "parameters.priors.kappa"),
    ],
)
def test_config_rejects_bad_input(tmp_path, rng, old, new, field):
    text = CONFIG.read_text()
    assert old in text
    rec = _synthetic_records(tmp_path, rng, P=8)
    with pytest.raises(ConfigFileError) as e:
        load_config(_config(tmp_path, rec, text.replace(old, new, 1)))
    assert e.value.field == field and e.value.fix and "c.toml" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_records_name_the_field(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(CONFIG.read_text().replace("../../shared/data/", "nowhere/"))
    with pytest.raises(ConfigFileError) as e:
        load_config(p)
    assert e.value.field == "data.records" and "relative to this file" in e.value.fix


def test_cli_bad_structure_config_is_one_line_exit_2(tmp_path, rng):
    rec = _synthetic_records(tmp_path, rng, P=8)
    p = _config(tmp_path, rec, CONFIG.read_text().replace("s_c = { dist", "s_c = { dis"))
    r = subprocess.run(
        [sys.executable, "-m", "tregsim", "calibrate", str(p), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "parameters.priors.s_c" in r.stderr and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ tiny end-to-end run
@pytest.mark.slow  # ~35 s on a loaded 2-core machine (figures, sbi set-up)
def test_tiny_structure_npe_run_writes_every_file(tmp_path, rng):
    """bank → training → posterior (with s0, k_re constant) → SBC → predictive checks."""
    from tregsim.calibration import calibration_study
    from tregsim.posterior import load_posterior

    rec = _synthetic_records(tmp_path, rng, P=40)
    text = CONFIG.read_text()
    for old, new in (
        ("max_num_epochs = 400", "max_num_epochs = 3"),
        ("n_sbc_datasets = 1000", "n_sbc_datasets = 20"),
        ("n_predictive_draws = 500", "n_predictive_draws = 20"),
        ("n_posterior_draws = 2000", "n_posterior_draws = 100"),
        ("n_boot = 1000", "n_boot = 20"),
    ):
        assert old in text
        text = text.replace(old, new)
    cal = calibration_study(_config(tmp_path, rec, text), tmp_path / "o", budget=60, progress=False)
    name = "natural_history_structure_npe"  # the layout DIR/NAME.nc + DIR/NAME/
    out = tmp_path / "o" / name
    for f in ("sbc_coverage.csv", "predictive_check.csv", "manifest.json"):
        assert (out / f).is_file(), f
    post = load_posterior(tmp_path / "o" / f"{name}.nc")
    assert set(post) >= {"beta_lin", "sigma_meas", "kappa", "mu_c", "s0", "k_re"}
    assert np.all(post["s0"] == 0.41) and np.all(post["k_re"] == 0.02)
    ppc = pd.read_csv(out / "predictive_check.csv")
    assert {"ancova_resid_sd", "corr_baseline", "mean_nmol_l"} <= set(ppc.statistic)
    assert ppc.predictive_p.between(0, 1).all()
    assert any("SBC" in line for line in cal.report_lines())


_SAMPLE_A_FLOW = """
import warnings, numpy as np, torch
from tregsim.calibrate import npe
torch.manual_seed(0)
net = npe._builder({"density_estimator": "nsf", "hidden_features": 8, "num_transforms": 1})(
    torch.randn(50, 2), torch.randn(50, 3))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    if RAW:
        with torch.no_grad():
            net.sample(torch.Size((3,)), condition=torch.zeros(1, 3))
    else:
        est = npe.Estimator([net], {})
        est.sample_z(np.zeros(3), 10, seed=1)
        est.log_prob_z(np.zeros((4, 2)), np.zeros(3))
print(sum("triangular_solve" in str(m.message) for m in w))
"""


def test_sampling_a_flow_prints_no_nflows_deprecation_warning():
    """nflows' LU transform (inside sbi's NSF) calls the deprecated torch.triangular_solve;
    tregsim's sampling keeps that warning off the user's terminal. torch warns once per
    process, so each case runs in its own; the raw call shows the warning is there to hide."""

    def count(raw: bool) -> int:
        code = f"RAW = {raw}\n" + _SAMPLE_A_FLOW
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return int(r.stdout.strip().splitlines()[-1])

    assert count(raw=True) >= 1
    assert count(raw=False) == 0
