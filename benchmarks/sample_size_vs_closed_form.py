"""Model-based sample size against the closed-form ANCOVA calculation (issue #14, item 4).

Two-arm randomized trial of NCT06708780's population, ANCOVA of ln(AUC₁₂ + 1) on arm,
ln(AUC₀ + 1) and age, two-sided α = 0.05, N per arm for 80 % power. For each relative effect X
(+20 / +30 / +50 % on the AUC) this prints, side by side:

* **closed form, control SD**: :func:`tregsim.trial.closed_form.n_per_arm_for_power` (exact
  ANCOVA, 2 covariates) with the records' month-12 ANCOVA residual SD in both arms and
  Δ = mean over the records' month-12 values of ln((1+X)y + 1) − ln(y + 1) (the usual
  TrialNet-style calculation: a constant shift Δ with a common SD);
* **closed form, each arm's records SD**: the same with the pooled SD of the control arm and of
  the records under the effect (the residual SD of ln((1+X)·y₁₂ + 1) in the same ANCOVA): what
  a multiplicative effect on the AUC does to the records themselves;
* **model, AUC scale**: ``tregsim power --relative-effect X`` (treated AUC = (1 + X) × the
  patient's routine-care AUC, noise-free; the shipped records-structure posterior);
* **where the AUC-scale ratio goes** (round 20): N ∝ (residual SD / Δ)², so the ratio to the
  control-SD closed form is about (records' Δ / the model's mean true Δ)² × (the model's
  control residual SD / the records')², printed as ``factor_effect_size`` (the virtual
  population's AUC distribution: a relative effect on the AUC moves ln(AUC + 1) less where
  the AUC is low) and ``factor_control_resid_sd`` (the structure), the rest being the treated
  arm's own spread;
* **model, AUC + 1 scale**: ``--relative-effect X' --effect-scale auc-plus-1`` with
  ln(1 + X') = Δ: the closed form's own effect model (a constant shift Δ of ln(AUC + 1)).

``--population records`` (round 21) runs the model on the records' own age mix instead of the
experiment's assumed one (a mixture of one-year uniform components, one per whole year of age
of the records' month-12 participants, weighted by their count; built in memory, never
written): the like-for-like comparison with a closed form that takes its Δ and residual SD
from the records. The experiment's population is the default.

``--population structure`` (round 25) leaves the experiment out altogether: each virtual trial
draws its patients' ages from the records' month-12 participants and simulates them with the
calibration's own simulator of the records
(:func:`tregsim.calibrate.variability.ancova_power_by_simulation`: the structure's baseline law
μ_c + μ_a·ln(age/10) + s_c·ζ, its hazard and its Student-t visits; the curve table of the
structure config). This is the model of the records' population itself, so the comparison
with a closed form taken from the records is like for like in the population too; the
experiment's populations above differ from it in their baseline law (lognormal per age group
from the month-0 aggregates, deconvolved; one baseline day). AUC scale only.

``--theta map`` (round 21): every virtual trial takes the shipped posterior's MAP
(``calibration/natural_history_structure.json``, with the posterior's s₀, k_re) instead of
posterior draw r for trial r: power at the point estimate, like the closed form's plug-in of
the records' estimates. The default (``posterior``) averages the power over the posterior's
uncertainty, the structure's tail included.

``closed_form_each_arm_sd_95pct`` (round 21): the closed form's own participant-bootstrap
95 % interval (``--bootstrap`` resamples of the records' month-12 participants, Δ and both
residual SDs re-estimated): the precision with which the records fix the N the model is
compared against.

``--analysis huber`` (round 27) runs the same ANCOVA by Huber M-estimation
(:func:`tregsim.trial.endpoints.ancova_huber`, statsmodels' ``RLM`` defaults) on both sides: the model's
virtual trials are analysed with it, and the closed form takes the Huber fit's own effective
SD (the per-observation SD its H1 covariance implies) in place of the residual SD, from the
records (control) and from the records stacked with their copy under the effect (Δ = that
fit's arm coefficient, SD = its effective SD: "each arm's SD"). A bounded influence function
makes a trial's variance follow the deviation's bulk, not its tail, so the comparison tells
whether the OLS gap is the tail (a design choice) or the structure.

Model N = the first grid point (step 1–4) with power ≥ 0.8 over ``--trials`` virtual trials
(Monte-Carlo SE of a power ≈ 0.009 at 2,000 trials). Reads the records from
``../shared/data/`` (never copied); prints only aggregates of ≥ 100 participants.

    OMP_NUM_THREADS=1 python benchmarks/sample_size_vs_closed_form.py --trials 2000 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from tregsim.experiment import load_experiment
from tregsim.population.distributions import AGE_LIMITS_YEARS, parse_scalar
from tregsim.resources import project_root
from tregsim.schema import Table
from tregsim.trial.closed_form import n_per_arm_for_power
from tregsim.trial.study import power_study

RECORDS = project_root().parent / "shared" / "data" / "placebo_cpeptide_individual.csv"


def records_month12():
    """(y₀, y₁₂, age) of the records' participants seen at months 0 and 12 (nmol/L, years)."""
    d = pd.read_csv(RECORDS)
    w = d.pivot_table(index="participant_id", columns="month", values="auc_mean_cpeptide_nmol_l")
    age = d.groupby("participant_id").age_years.first()
    ok = w[0].notna() & w[12].notna()
    return w[0][ok].to_numpy(), w[12][ok].to_numpy(), age[w.index[ok]].to_numpy()


def with_records_age_mix(exp, age: np.ndarray):
    """``exp`` with its age distribution replaced by the records' age mix: one uniform
    component on [y, y + 1) years per whole year y of ``age`` (years, ``(P,)``), weight = the
    number of participants in that year. In memory only (per-year counts are not aggregates
    to write)."""
    years, counts = np.unique(np.floor(age).astype(int), return_counts=True)
    spec = {
        "distribution": "mixture",
        "components": [
            {"weight": float(c), "distribution": "uniform", "low": float(y), "high": float(y + 1)}
            for y, c in zip(years, counts)
        ],
    }
    lo, hi = AGE_LIMITS_YEARS
    dist = parse_scalar(
        Table(spec, "records age mix", "population.age"), lo=lo, hi=hi, unit="years"
    )
    return dataclasses.replace(exp, population=dataclasses.replace(exp.population, age=dist))


def ancova_resid_sd(y: np.ndarray, x0: np.ndarray, age: np.ndarray) -> float:
    X = sm.add_constant(np.column_stack([x0, age]))
    return float(np.sqrt(sm.OLS(y, X).fit().scale))


def map_posterior(path) -> None:
    """A one-draw posterior file at ``path``: the structure file's MAP of every parameter of
    the shipped posterior, the posterior's own value where the file has none (s₀, k_re)."""
    import json

    from tregsim.posterior import DEFAULT_POSTERIOR, load_posterior, save_posterior

    post = load_posterior(DEFAULT_POSTERIOR)
    st = json.loads((project_root() / "calibration" / "natural_history_structure.json").read_text())
    th = st["theta"]
    draws = {k: np.array([th[k] if k in th else float(np.median(v))]) for k, v in post.items()}
    save_posterior(path, draws, units=dict.fromkeys(draws, "see the structure file"))


def huber_sd(y, x0, age) -> float:
    """The Huber ANCOVA's effective SD on (y, ln(AUC₀+1), age): the closed form's SD for
    ``--analysis huber``."""
    from tregsim.trial.robust import huber_regression

    X = np.column_stack([np.ones_like(x0), x0 - x0.mean(), age - age.mean()])
    fit = huber_regression(X[None], y[None], np.ones((1, y.size), bool))
    return float(fit.effective_sd[0])


def closed_form_huber(y0, y12, age, X):
    """(Δ, effective SD control, N control SD, N each arm's SD) of the closed form for the
    Huber ANCOVA: the records' month-12 participants as the control arm and their copy under
    the effect as the treated arm, fitted together (Δ = the arm coefficient; "each arm's SD" =
    that fit's effective SD); "control SD" = the control records' own effective SD."""
    from tregsim.trial.endpoints import ancova_huber

    x0 = np.log1p(y0)
    sd_c = huber_sd(np.log1p(y12), x0, age)
    two = lambda v: np.r_[v, v][None]  # noqa: E731
    arm = np.r_[np.zeros(y12.size, bool), np.ones(y12.size, bool)][None]
    y = np.r_[np.log1p(y12), np.log1p((1 + X) * y12)][None]
    res = ancova_huber(y, arm, [two(x0), two(age)])
    delta = float(res.estimate[0])
    # SE² = s²·(1/n_t + 1/n_c) for a balanced arm orthogonal to the covariates
    sd_pooled = float(res.se[0] / np.sqrt(2.0 / y12.size))
    n_cf = n_per_arm_for_power(0.8, delta, sd_c, rho=0.0, n_covariates=2)
    n_cf2 = n_per_arm_for_power(0.8, delta, sd_pooled, rho=0.0, n_covariates=2)
    return delta, sd_pooled, n_cf, n_cf2


def model_n(exp, X, scale, grid, trials, seed, posterior=None, test="ancova") -> dict:
    """``n``: the model's N per arm for 80 % power (None beyond the grid); ``delta``: the mean
    true effect on ln(AUC₁₂ + 1) of its virtual patients; ``resid_sd``: its control arms'
    month-12 ANCOVA residual SD within a trial (√ of the mean over trials of each trial's
    residual variance, :func:`tregsim.trial.power.variance_components`; before round 21 all
    trials' patients pooled, 1–2 % higher)."""
    with tempfile.TemporaryDirectory() as tmp:
        st = power_study(
            exp,
            n_per_arm=grid,
            trials=trials,
            seed=seed,
            tests=(test,),
            assurance=False,
            allocation="randomized",
            relative_effect=X,
            effect_scale=scale,
            out_dir=tmp,
            progress=False,
            **({} if posterior is None else {"posterior": posterior}),
        )
        sd, rho = st.mde_meta["sd_ln_auc_plus_1_control"], st.mde_meta["rho_covariates"]
        return {
            "n": st.summary["fixed"]["n_per_arm_for_80pct"],
            "delta": float(st.meta["fixed"]["mean_true_effect_ln_auc_plus_1"]),
            "resid_sd": float(sd * np.sqrt(1.0 - rho**2)),
        }


def structure_setup() -> tuple:
    """(curve table to month 12, baseline day) of the shipped structure config: built once,
    shared by :func:`structure_n` and :func:`structure_components`."""
    from tregsim.calibrate import structure_run as R
    from tregsim.calibrate.config import load_config
    from tregsim.model import load_model

    cfg = load_config(project_root() / "calibration" / "placebo_records_structure.toml")
    return R._curve_table(cfg, load_model(cfg.model), 12 * 30.4375 + 1.0), cfg.baseline_day


def structure_n(setup, thetas, age, X, grid, trials, seed, analysis="ols") -> dict:
    """The structure's own N per arm for 80 % power (None beyond ``grid``, a ``lo:hi:step``
    string; ``setup`` from :func:`structure_setup`): trials of ages drawn from ``age``
    (years), trial r with ``thetas[r % len]``
    (:func:`~tregsim.calibrate.variability.ancova_power_by_simulation`; one generator per N,
    seeded from ``seed`` and N, so adding grid points leaves the others' power unchanged;
    ``analysis = "huber"``: the same trials analysed by the Huber ANCOVA)."""
    from tregsim.calibrate import variability as V
    from tregsim.trial.endpoints import ancova_trialnet_huber

    table, baseline_day = setup
    lo, hi, step = (int(v) for v in grid.split(":"))
    power = {}
    for n in range(lo, hi + 1, step):
        rng = np.random.default_rng([seed, n])
        if analysis == "huber":
            y, ages = V.simulate_two_arm_trials(
                table, thetas, age, n, X, rng, n_trials=trials, baseline_day=baseline_day
            )
            arm = np.broadcast_to(np.r_[np.zeros(n, bool), np.ones(n, bool)], ages.shape)
            res = ancova_trialnet_huber(y[:, :, 1], y[:, :, 0], ages, arm)
            power[n] = float(np.mean(res.reject))
        else:
            power[n] = float(
                V.ancova_power_by_simulation(
                    table,
                    thetas,
                    age,
                    np.array([n]),
                    X,
                    rng,
                    n_trials=trials,
                    baseline_day=baseline_day,
                )[0]
            )
        if power[n] >= 0.8:
            return {"n": n, "power": power[n]}
    return {"n": None, "power": power[hi]}


def structure_components(setup, thetas, age, X, n, trials, seed) -> dict:
    """Where the structure's N goes (round 25): over ``trials`` control arms of 2·``n``
    patients (ages drawn from ``age``, years; trial r with ``thetas[r % len]``), the mean Δ
    of a relative effect ``X`` on the observed month-12 AUC (as the closed form takes it from
    the records) and the month-12 ANCOVA residual SD of the median trial and the root mean
    residual variance. Under a heavy-tailed deviation the median trial's residual variance
    rises with the trial's size towards the mean, so a closed form that plugs in a smaller
    study's residual SD needs fewer patients than the model for larger trials."""
    from tregsim.calibrate import variability as V

    table, baseline_day = setup
    rng = np.random.default_rng([seed, n, 1])
    var, delta = np.empty(trials), np.empty(trials)
    for r in range(trials):
        a = rng.choice(age, 2 * n)
        y = V.simulate_observed(
            table, thetas[r % len(thetas)], a, np.array([0, 12]), rng, baseline_day=baseline_day
        )[0]
        var[r] = ancova_resid_sd(np.log1p(y[:, 1]), np.log1p(y[:, 0]), a) ** 2
        delta[r] = np.mean(np.log1p((1 + X) * y[:, 1]) - np.log1p(y[:, 1]))
    return {
        "delta": float(delta.mean()),
        "resid_sd_median_trial": float(np.sqrt(np.median(var))),
        "resid_sd_rms": float(np.sqrt(var.mean())),
    }


def structure_thetas(theta: str) -> list[dict]:
    """The shipped records-structure posterior's draws (or its MAP alone) as structures."""
    import json

    from tregsim.posterior import DEFAULT_POSTERIOR, load_posterior

    post = load_posterior(DEFAULT_POSTERIOR)
    fixed = {"sigma_bio": 0.0, "tau_bio": 180.0}
    if theta == "map":
        st = project_root() / "calibration" / "natural_history_structure.json"
        return [json.loads(st.read_text())["theta"] | fixed]
    n = len(next(iter(post.values())))
    return [{k: float(v[i]) for k, v in post.items()} | fixed for i in range(n)]


def closed_form(y0, y12, age, X):
    """(Δ, treated residual SD, N control SD, N each arm's SD) of the closed form for a
    relative effect ``X`` on the AUC, from records (y₀, y₁₂ nmol/L, age years)."""
    x0 = np.log1p(y0)
    sd_c = ancova_resid_sd(np.log1p(y12), x0, age)
    delta = float(np.mean(np.log1p((1 + X) * y12) - np.log1p(y12)))
    sd_t = ancova_resid_sd(np.log1p((1 + X) * y12), x0, age)
    n_cf = n_per_arm_for_power(0.8, delta, sd_c, rho=0.0, n_covariates=2)
    sd_pooled = float(np.sqrt((sd_c**2 + sd_t**2) / 2))
    n_cf2 = n_per_arm_for_power(0.8, delta, sd_pooled, rho=0.0, n_covariates=2)
    return delta, sd_t, n_cf, n_cf2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--experiment", default="experiments/nct06708780.toml")
    ap.add_argument(
        "--population",
        choices=("experiment", "records", "structure"),
        default="experiment",
        help="the model's virtual population: the experiment's (default), the experiment's "
        "with the records' age mix, or the records' participants' ages under the calibrated "
        "structure's own baseline law (the calibration's simulator; AUC scale only)",
    )
    ap.add_argument(
        "--theta",
        choices=("posterior", "map"),
        default="posterior",
        help="the virtual trials' parameters: posterior draw r for trial r (default) or the "
        "shipped posterior's MAP for every trial (power at the point estimate)",
    )
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="participant-bootstrap resamples of the records for the closed form's 95 %% "
        "interval (its own uncertainty: the records' Δ and residual SDs are estimates)",
    )
    ap.add_argument(
        "--analysis",
        choices=("ols", "huber"),
        default="ols",
        help="the ANCOVA of both sides: OLS (TrialNet's, default) or Huber M-estimation "
        "(tregsim.trial.endpoints.ancova_huber; the closed form with the Huber fit's effective SD)",
    )
    a = ap.parse_args(argv)
    if a.bootstrap < 0 or a.trials < 10:
        ap.error("--bootstrap must be ≥ 0 and --trials ≥ 10")
    exp = load_experiment(project_root() / a.experiment)
    y0, y12, age = records_month12()
    thetas = None
    if a.population == "structure":
        thetas, setup = structure_thetas(a.theta), structure_setup()
        print(
            "model population: the records' month-12 participants' ages, the calibrated "
            f"structure's own baseline law ({len(thetas)} parameter set(s))"
        )
    elif a.population == "records":
        exp = with_records_age_mix(exp, age)
        print("model population: the experiment's, with the records' age mix (whole years)")
    post = None
    if a.theta == "map" and thetas is None:
        tmp_post = tempfile.TemporaryDirectory()
        post = Path(tmp_post.name) / "map.nc"
        map_posterior(post)
        print("model parameters: the shipped posterior's MAP in every virtual trial")
    x0 = np.log1p(y0)
    huber = a.analysis == "huber"
    cf = closed_form_huber if huber else closed_form
    sd_c = (huber_sd if huber else ancova_resid_sd)(np.log1p(y12), x0, age)
    what_sd = "Huber effective SD" if huber else "residual SD"
    print(
        f"records: {y12.size} participants at months 0 and 12; control {what_sd} {sd_c:.4f}"
        f" (analysis: {'Huber M-estimation' if huber else 'OLS'} ANCOVA)"
    )
    grids = {0.2: "120:200:2", 0.3: "56:100:1", 0.5: "22:46:1"}
    if huber:  # the robust fit needs fewer patients: start lower, same steps
        grids = {0.2: "90:200:2", 0.3: "40:100:1", 0.5: "16:46:1"}
    rows = []
    boot = np.random.default_rng(a.seed).integers(0, y12.size, (a.bootstrap, y12.size))
    for X, grid in grids.items():
        delta, sd_t, n_cf, n_cf2 = cf(y0, y12, age, X)
        nb = np.array([cf(y0[b], y12[b], age[b], X)[3] for b in boot])
        lo, hi = np.quantile(nb, [0.025, 0.975]) if nb.size else (np.nan, np.nan)
        if thetas is not None:
            n_auc = structure_n(setup, thetas, age, X, grid, a.trials, a.seed, a.analysis)["n"]
            edge = {None: "beyond the grid", int(grid.split(":")[0]): "at the grid's start"}
            what = (
                f"{n_auc} (ratio {n_auc / n_cf2:.2f} to each arm's SD, "
                f"{n_auc / n_cf:.2f} to the control SD)"
                if n_auc not in edge
                else f"{edge[n_auc]} {grid}: widen it"
            )
            print(
                f"+{100 * X:.0f}%: closed form {n_cf} (control SD) / {n_cf2} (each arm's SD, "
                f"95 % {lo:.0f}-{hi:.0f}); structure {what}",
                flush=True,
            )
            if n_auc not in edge and not huber:
                c = structure_components(setup, thetas, age, X, n_auc, a.trials, a.seed)
                print(
                    f"  at {n_auc} per arm: model Δ {c['delta']:.4f} (records {delta:.4f}; "
                    f"factor {(delta / c['delta']) ** 2:.3f}); control residual SD of the "
                    f"median trial {c['resid_sd_median_trial']:.4f}, root mean variance "
                    f"{c['resid_sd_rms']:.4f} (records {sd_c:.4f}; factors "
                    f"{(c['resid_sd_median_trial'] / sd_c) ** 2:.3f} / "
                    f"{(c['resid_sd_rms'] / sd_c) ** 2:.3f})",
                    flush=True,
                )
            continue
        test = "ancova_huber" if huber else "ancova"
        m_auc = model_n(exp, X, "auc", grid, a.trials, a.seed, post, test)
        m_gm = model_n(
            exp, float(np.expm1(delta)), "auc_plus_1", grid, a.trials, a.seed, post, test
        )
        n_auc, n_gm = m_auc["n"], m_gm["n"]
        rows.append(
            {
                "effect_auc": f"+{100 * X:.0f}%",
                "delta_ln_auc_plus_1": round(delta, 4),
                ("records_sd_each_arm_huber" if huber else "records_sd_treated"): round(sd_t, 4),
                "n_closed_form_control_sd": n_cf,
                "n_closed_form_each_arm_sd": n_cf2,
                "closed_form_each_arm_sd_95pct": f"{lo:.0f}-{hi:.0f}",
                "n_model_auc_scale": n_auc,
                "ratio_auc_to_control_sd": None if n_auc is None else round(n_auc / n_cf, 2),
                "ratio_auc_to_each_arm_sd": None if n_auc is None else round(n_auc / n_cf2, 2),
                "n_model_auc_plus_1_scale": n_gm,
                "ratio_auc_plus_1_to_control_sd": None if n_gm is None else round(n_gm / n_cf, 2),
                # where the AUC-scale ratio goes: N ∝ (residual SD / Δ)²
                "model_delta_ln_auc_plus_1": round(m_auc["delta"], 4),
                "model_control_resid_sd": round(m_auc["resid_sd"], 4),
                "factor_effect_size": round((delta / m_auc["delta"]) ** 2, 3),
                "factor_control_resid_sd": round((m_auc["resid_sd"] / sd_c) ** 2, 3),
            }
        )
        print(pd.DataFrame(rows[-1:]).T.to_string(header=False), flush=True)
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
