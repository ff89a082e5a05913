"""What the evidence says for any experiment: its arm comparison under the treatment-effect
posterior, by direct simulation (no emulator).

``effect_under_posterior(exp, ...)`` draws (φ, FX, F_M, α_X, β_M) jointly from a
treatment-effect posterior file (``phi`` = a new trial's φ from the predictive LN(μ, τ)),
simulates a fixed set of the experiment's virtual patients in the treatment arm at every draw
(common random numbers) and the control arm once, and reports per visit month the
distribution of the true effect (% higher mean C-peptide, and the ln(AUC+1) difference),
P(effect > 10 %) and P(effect > 20 %), and the assurance of the experiment's primary ANCOVA
over N per arm (closed-form power, :func:`tregsim.trial.closed_form.power_ancova`, averaged over
draws; SD and covariate correlation of ln(AUC+1) from the control arm). When ``exp`` is the
calibration's target, the calibration's own tables (leave-one-trial-out, predictive checks,
φ prior vs posterior) are attached from its ``summary.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.calibrate.treatment_effect.designs import THETA_NAMES
from tregsim.resources import shipped_path

DEFAULT_TREATMENT_EFFECT = shipped_path("calibration/posteriors/treatment_effect.nc")
"""The shipped treatment-effect posterior (``calibration/treatment_effect.toml``)."""
DEFAULT_SUMMARY_DIR = shipped_path("calibration/posteriors/treatment_effect")


@dataclass
class EffectUnderPosterior:
    """Per visit month: effect quantiles and exceedance probabilities; assurance over N."""

    experiment: str
    treatment_arm: str
    rows: list  # one dict per visit month
    assurance: list  # one dict per N
    phi_draws: np.ndarray
    calibration: object | None = None  # TreatmentEffectResult of the calibration, if target
    notes: list = field(default_factory=list)
    manifest: dict | None = None

    def report_lines(self) -> list[str]:
        """What ``tregsim check treatment-effect`` prints."""
        lines = [
            f"{self.experiment}: {self.treatment_arm} vs control under the treatment-effect posterior"
        ]
        for r in self.rows:
            lines.append(
                f"  month {r['month']:>4g}: effect median {r['effect_pct_median']:+.2f} % "
                f"(90% {r['effect_pct_q05']:+.2f} to {r['effect_pct_q95']:+.2f}), "
                f"P(>10%) {r['p_effect_gt_10pct']:.3f}, P(>20%) {r['p_effect_gt_20pct']:.3f}"
            )
        lines.append(
            "  assurance: "
            + ", ".join(f"N={a['n_per_arm']} {a['assurance']:.3f}" for a in self.assurance)
        )
        if self.calibration is not None:
            for r in self.calibration.predictions:
                lines.append(
                    f"  calibration {r['evidence']:>18s}: 12-month median "
                    f"{r['effect_12m_pct_median']:+.2f} %, P(>10%) {r['p_effect_12m_gt_10pct']:.3f}"
                )
        lines += [f"  note: {n}" for n in self.notes]
        return lines

    def save(self, out) -> Path:
        """``treatment_effect.csv`` (long format), ``phi_prior_posterior.png`` (when the
        calibration tables are attached) and the calibration's own tables."""
        from tregsim.io import atomic_path

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        lines = ["section,item,statistic,value"]
        for r in self.rows:
            for k, v in r.items():
                if k != "month":
                    lines.append(f"effect_{self.experiment},month={r['month']:g},{k},{v:.6g}")
        for r in self.assurance:
            for k, v in r.items():
                if k != "n_per_arm":
                    lines.append(
                        f"assurance_{self.experiment},n_per_arm={r['n_per_arm']},{k},{v:.6g}"
                    )
        if self.calibration is not None:
            sub = out / "calibration"
            self.calibration.save(sub)
            extra = (sub / "treatment_effect.csv").read_text(encoding="utf-8").splitlines()[1:]
            lines += extra
            import shutil

            shutil.copyfile(sub / "phi_prior_posterior.png", out / "phi_prior_posterior.png")
            shutil.copyfile(sub / "assurance.png", out / "assurance.png")
        with atomic_path(out / "treatment_effect.csv") as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self.calibration is None:
            from tregsim.plots.treatment_effect import plot_phi_draws

            plot_phi_draws(self.phi_draws, out / "phi_prior_posterior.png", self.experiment)
        if self.manifest is not None:
            from tregsim.io import write_json

            write_json(out / "manifest.json", self.manifest)
        return out


def effect_under_posterior(
    exp,
    *,
    posterior=None,
    summary_dir=None,
    natural_history=None,
    n_draws: int = 400,
    n_patients: int = 200,
    n_per_arm=(5, 10, 20, 40, 80, 160),
    seed: int = 1,
    alpha: float = 0.05,
    variability: str = "records",
    argv: list[str] | None = None,
) -> EffectUnderPosterior:
    """See the module docstring. exp : loaded Experiment; posterior : treatment-effect .nc
    (default the shipped one); natural_history : NH posterior .nc (default the shipped one);
    variability : the virtual patients' (``"records"``, default, as the shipped calibration's
    designs, or ``"lumped"``; :mod:`tregsim.calibrate.treatment_effect.designs`)."""
    from tregsim import rng as trng
    from tregsim.calibrate.treatment_effect.constants import outcome_sd_and_rho
    from tregsim.calibrate.treatment_effect.designs import TrialDesign, _Prepared
    from tregsim.calibrate.treatment_effect.summary import TreatmentEffectResult
    from tregsim.cohort import simulate_arms
    from tregsim.posterior import load_posterior
    from tregsim.trial.closed_form import power_ancova

    te_path = Path(posterior or DEFAULT_TREATMENT_EFFECT)
    post = load_posterior(te_path)
    nh = load_posterior(natural_history) if natural_history else None
    k = len(post["phi"])
    idx = trng.draw(
        seed, "treatment_effect.check.draws", 0, n_draws, lambda g, m: g.integers(0, k, m)
    )
    th = np.column_stack([post[n][idx] for n in THETA_NAMES])
    arm = exp.treatment_arms[0]
    design = TrialDesign(
        "check", exp, {arm: 1}, exp.control_arm, 1, tuple(float(m) for m in exp.visit_months[1:])
    )
    prep = _Prepared(design, n_patients, seed, nh, variability)
    n = prep.n
    rep = np.tile(np.arange(n), n_draws)
    pop = dataclasses.replace(
        prep.pop,
        covariates={c: np.asarray(v)[rep] for c, v in prep.pop.covariates.items()},
        params=prep.pop.params.subset(rep).replace(
            **{name: np.repeat(th[:, j], n) for j, name in enumerate(THETA_NAMES)}
        ),
        individual={c: np.asarray(v)[rep] for c, v in prep.pop.individual.items()},
        candidate_index=prep.pop.candidate_index[rep],
    )
    mu_t = simulate_arms(exp, pop, arms={arm: exp.arms[arm]}, rtol=1e-6, atol=1e-9)[arm]
    mu_t = mu_t.reshape(n_draws, n, -1)
    mu_c = prep.control_mu
    rows = []
    for j, m in enumerate(exp.visit_months):
        if j == 0:
            continue
        pct = 100 * (np.nanmean(mu_t[:, :, j], axis=1) / np.nanmean(mu_c[:, j]) - 1)
        d = np.nanmean(np.log1p(mu_t[:, :, j]) - np.log1p(mu_c[None, :, j]), axis=1)
        q = np.quantile(pct, [0.05, 0.5, 0.95])
        rows.append(
            {
                "month": float(m),
                "effect_pct_q05": q[0],
                "effect_pct_median": q[1],
                "effect_pct_q95": q[2],
                "effect_ln_auc_plus_1_mean": float(d.mean()),
                "p_effect_gt_10pct": float(np.mean(pct > 10)),
                "p_effect_gt_20pct": float(np.mean(pct > 20)),
            }
        )
    m12 = 12.0 if any(np.isclose(exp.visit_months, 12.0)) else float(exp.visit_months[-1])
    j12 = design.visit_index(m12)
    d12 = np.nanmean(np.log1p(mu_t[:, :, j12]) - np.log1p(mu_c[None, :, j12]), axis=1)
    sd, rho = outcome_sd_and_rho(design, m12, 5000, seed, nh, variability)
    ass = [
        {
            "n_per_arm": int(N),
            "month": m12,
            "assurance": float(np.mean(power_ancova(N, N, d12, sd, rho, 2, alpha, n_nodes=64))),
        }
        for N in n_per_arm
    ]
    cal, notes = None, []
    if summary_dir is None:
        # the calibration's layout: DIR/treatment_effect.nc beside DIR/treatment_effect/
        sibling = te_path.with_suffix("")
        summary_dir = sibling if (sibling / "summary.json").is_file() else DEFAULT_SUMMARY_DIR
    sdir = Path(summary_dir)
    if (sdir / "summary.json").is_file():
        c = TreatmentEffectResult.load(sdir)
        if c.target == exp.name:
            cal = c
        else:
            notes.append(
                f"leave-one-trial-out and predictive checks are for {c.target}, not {exp.name}"
            )
    from tregsim.results import result_manifest

    inputs = {"experiment": exp.path, "treatment_effect": te_path}
    if natural_history:
        inputs["natural_history"] = natural_history
    manifest = result_manifest(
        command="check treatment-effect",
        function="tregsim.calibrate.treatment_effect.check.effect_under_posterior",
        arguments={"n_draws": n_draws, "n_patients": n_patients, "seed": seed},
        seed=seed,
        inputs=inputs,
        settings={
            "n_draws": n_draws,
            "n_patients": n_patients,
            "n_per_arm": list(n_per_arm),
            "variability": variability,
        },
        argv=argv,
    )
    res = EffectUnderPosterior(exp.name, arm, rows, ass, th[:, 0], cal, notes)
    res.manifest = manifest
    return res
