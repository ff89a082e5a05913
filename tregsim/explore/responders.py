"""Who benefits, and what the product would need to do.

* :func:`rank_predictors` ranks covariates and individual parameters by how they relate to
  the paired benefit ΔC-peptide (Treg arm − the same virtual patient under routine care):
  Spearman ρ (scipy.stats.spearmanr) and a binned partial-dependence summary per predictor.
* :func:`phi_needed` finds the potency × homing factor φ that gives a target *mean relative
  preservation* at a visit month, by a batched bracket + bisection over φ: each bisection
  round simulates all patients at several φ values in one call.

Relative preservation of patient i at month m is
``100 · (C_treg,i(m) − C_ctrl,i(m)) / C_ctrl,i(m)`` (%); the cohort target is its mean.
Every result names the model and the φ it assumed (the assumption ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.results import SHIPPED


@dataclass(frozen=True)
class PredictorRanking:
    """Spearman ranking of predictors against the paired benefit.

    ``table`` (pandas DataFrame) has one row per predictor: ``predictor``, ``unit``,
    ``spearman_rho``, ``p_value``, ``abs_rho``, sorted by ``abs_rho`` (descending).
    ``bins[name]`` holds the binned outcome (``center``, ``median``, ``p25``, ``p75``, ``n``,
    each ``(n_bins,)``) for the partial-dependence figure.
    """

    table: object
    bins: dict[str, dict[str, np.ndarray]]
    outcome: str
    outcome_unit: str
    n: int
    notes: tuple[str, ...] = field(default_factory=tuple)


def rank_predictors(
    outcome: np.ndarray,
    predictors: dict[str, np.ndarray],
    *,
    units: dict[str, str] | None = None,
    outcome_name: str = "delta_cpeptide_12mo_nmol_L",
    outcome_unit: str = "nmol/L",
    n_bins: int = 8,
) -> PredictorRanking:
    """Rank ``predictors`` (name → (n,)) by |Spearman ρ| with ``outcome`` (n,).

    Patients with a non-finite outcome or predictor are left out of that predictor's ρ.
    A constant predictor gets ρ = NaN (and a note) rather than a warning. Bins are quantile
    bins of the predictor (ties merged), so each holds about n / n_bins patients.
    """
    import pandas as pd
    from scipy.stats import spearmanr

    y = np.asarray(outcome, dtype=float)
    if y.ndim != 1:
        raise ArgumentError(
            f"outcome must be 1-D, got shape {y.shape}",
            field="outcome",
            fix="pass one value per patient",
        )
    units = units or {}
    rows, bins, notes = [], {}, []
    for name, x in predictors.items():
        x = np.asarray(x, dtype=float)
        if x.shape != y.shape:
            raise ArgumentError(
                f"predictor {name} has shape {x.shape}, outcome {y.shape}",
                field=name,
                fix="pass one value per patient",
            )
        ok = np.isfinite(x) & np.isfinite(y)
        xo, yo = x[ok], y[ok]
        if ok.sum() < 3 or np.ptp(xo) == 0 or np.ptp(yo) == 0:
            rho, p = np.nan, np.nan
            notes.append(f"{name}: constant or too few values, ρ not defined")
        else:
            r = spearmanr(xo, yo)
            rho, p = float(r.statistic), float(r.pvalue)
        rows.append(
            {
                "predictor": name,
                "unit": units.get(name, "-"),
                "spearman_rho": rho,
                "p_value": p,
                "abs_rho": abs(rho),
                "n": int(ok.sum()),
            }
        )
        if ok.sum() >= 2 and np.ptp(xo) > 0:
            levels = np.unique(xo)
            if len(levels) <= n_bins:
                # few distinct values (binary covariates …): one bin per value
                which, n_b = np.searchsorted(levels, xo), len(levels)
            else:
                edges = np.unique(np.quantile(xo, np.linspace(0, 1, n_bins + 1)))
                which = np.clip(np.searchsorted(edges, xo, side="right") - 1, 0, len(edges) - 2)
                n_b = len(edges) - 1
            cen, med, q1, q3, cnt = [], [], [], [], []
            for b in range(n_b):
                sel = which == b
                if not sel.any():
                    continue
                cen.append(np.median(xo[sel]))
                qs = np.quantile(yo[sel], [0.25, 0.5, 0.75])
                q1.append(qs[0])
                med.append(qs[1])
                q3.append(qs[2])
                cnt.append(int(sel.sum()))
            bins[name] = {
                "center": np.array(cen),
                "median": np.array(med),
                "p25": np.array(q1),
                "p75": np.array(q3),
                "n": np.array(cnt),
            }
    table = pd.DataFrame(rows).sort_values("abs_rho", ascending=False, na_position="last")
    return PredictorRanking(
        table.reset_index(drop=True), bins, outcome_name, outcome_unit, int(y.size), tuple(notes)
    )


# ------------------------------------------------------------------ on a tregsim experiment
def responder_analysis(
    exp,
    *,
    n: int,
    seed: int,
    arm: str | None = None,
    month: float = 12.0,
    n_bins: int = 8,
    posterior: dict | None = None,
    **run_options,
):
    """Paired Treg-arm cohort of ``n`` patients → :class:`PredictorRanking` of ΔC-peptide at
    ``month`` (months after the baseline visit) against covariates and individual parameters.

    Predictors: numeric covariates of the population (age years, weight kg, cpep0 and
    cpep_baseline nmol/L, cpep_fasting pmol/L, sex and aab_positive as 0/1) and the individual
    parameters (e.g. ``f_lambda``), and with ``posterior`` (name → ``(n_draws,)``; patient i
    uses draw i mod n_draws) the population parameters drawn from it. Returns
    ``(ranking, outcomes)`` with the :class:`tregsim.explore.sweep.PairedOutcomes`.
    """
    from tregsim.explore.sweep import population_for, simulate_paired
    from tregsim.population.distributions import COVARIATE_UNITS

    pop = population_for(exp, n, seed, posterior)
    po = simulate_paired(
        exp, [], np.zeros((1, 0)), n=n, seed=seed, arm=arm, months=[month], pop=pop, **run_options
    )
    delta = po.delta[0, :, 0]
    preds, units = {}, {}
    cov_units = COVARIATE_UNITS | {"sex": "1 = male", "aab_positive": "1 = positive"}
    for k, v in pop.covariates.items():
        a = np.asarray(v)
        if a.dtype.kind in "biuf":
            preds[k] = a.astype(float)
            units[k] = cov_units.get(
                k, exp.model.spec.parameters[k].unit if k in exp.model.spec.parameters else "-"
            )
        elif a.dtype.kind in "OUS":
            vals = sorted(set(a.tolist()))
            if len(vals) == 2:
                preds[k] = (a == vals[1]).astype(float)
                units[k] = f"1 = {vals[1]}"
    for k, v in pop.individual.items():
        preds[k] = np.asarray(v, dtype=float)
        units[k] = exp.model.spec.parameters[k].unit
    for k in posterior or {}:
        if k in pop.params:
            preds[k] = np.asarray(pop.params[k], dtype=float) * np.ones(n)
            units[k] = exp.model.spec.parameters[k].unit
    # a covariate fixed by design (e.g. t_baseline) cannot distinguish anyone
    preds = {k: v for k, v in preds.items() if np.ptp(v[np.isfinite(v)]) > 0}
    ranking = rank_predictors(
        delta, preds, units=units, outcome_name=f"delta_cpeptide_{month:g}mo_nmol_L", n_bins=n_bins
    )
    return ranking, po


@dataclass(frozen=True)
class PhiNeeded:
    """Result of :func:`phi_needed`.

    phi : the φ giving the target (NaN if the target is outside what φ in ``bounds`` gives);
    target_pct, month; curve_phi / curve_pct : every φ evaluated and its mean relative
    preservation (%), for the figure; rounds : bisection rounds; note : why NaN, if so.
    """

    phi: float
    phi_low: float
    phi_high: float
    target_pct: float
    month: float
    curve_phi: np.ndarray
    curve_pct: np.ndarray
    rounds: int
    note: str = ""


def phi_needed(
    exp,
    target_preservation_pct: float,
    month: float = 12.0,
    *,
    n: int = 500,
    seed: int = 0,
    arm: str | None = None,
    bounds: tuple[float, float] = (1e-2, 1e4),
    points_per_round: int = 8,
    rel_tol: float = 0.01,
    max_rounds: int = 8,
    posterior: dict | None = None,
    **run_options,
) -> PhiNeeded:
    """The φ at which the cohort's mean relative preservation at ``month`` reaches the target.

    Mean relative preservation = 100 · mean(C_treg − C_ctrl) / mean(C_ctrl) over ``n``
    paired virtual patients (%), at ``month`` months after the baseline visit, under the
    arm's regimen. It increases with φ (infused cells add φ·(X + M)/T_ref to the effective
    Treg pool), so the answer is bracketed on a log grid: each round simulates all patients
    at ``points_per_round`` φ values in one batched call and keeps the sub-interval where
    the curve crosses the target, until ``φ_high / φ_low − 1 < rel_tol``; the result is the
    log-linear interpolation inside the last bracket. ``posterior``: population-parameter
    draws, patient i uses draw i mod n_draws (default: the model file's values).
    """
    from tregsim.explore.sweep import population_for, simulate_paired

    if "phi" not in exp.model.spec.parameters:
        raise ArgumentError(
            f"model {exp.model.name} has no parameter phi",
            field="phi",
            fix="use a model whose infused cells act through phi",
        )
    lo, hi = (float(b) for b in bounds)
    if not (0 < lo < hi) or not np.isfinite(hi):
        raise ArgumentError(
            f"bounds must satisfy 0 < low < high, got {bounds}",
            field="bounds",
            fix="use e.g. (1e-2, 1e4)",
        )
    if not np.isfinite(target_preservation_pct):
        raise ArgumentError(
            "target must be finite",
            field="target_preservation_pct",
            fix="give a percentage such as 10",
        )
    if points_per_round < 2:
        raise ArgumentError(
            "points_per_round must be ≥ 2", field="points_per_round", fix="use e.g. 8"
        )
    pop = population_for(exp, n, seed, posterior)
    t = float(target_preservation_pct)
    all_phi, all_pct = [], []

    def evaluate(phis: np.ndarray) -> np.ndarray:
        po = simulate_paired(
            exp,
            ["phi"],
            phis[:, None],
            n=n,
            seed=seed,
            arm=arm,
            months=[month],
            pop=pop,
            **run_options,
        )
        ok = po.ok
        if not ok.any(axis=1).all():
            bad = phis[~ok.any(axis=1)]
            raise ArgumentError(
                f"every patient failed to solve at φ = {bad[0]:g}",
                field="bounds",
                fix="narrow the φ bounds",
            )
        d = np.where(ok, po.treg[..., 0] - po.control[..., 0], 0.0).sum(1) / ok.sum(1)
        c = np.where(ok, po.control[..., 0], 0.0).sum(1) / ok.sum(1)
        pct = 100.0 * d / c
        all_phi.extend(phis.tolist())
        all_pct.extend(pct.tolist())
        return pct

    grid = np.geomspace(lo, hi, points_per_round)
    pct = evaluate(grid)
    rounds = 1
    while True:
        if rounds == 1 and not (pct[0] <= t <= pct[-1]):
            side = "below" if t < pct[0] else "above"
            return PhiNeeded(
                np.nan,
                lo,
                hi,
                t,
                float(month),
                np.array(all_phi),
                np.array(all_pct),
                rounds,
                f"target {t:g} % is {side} what φ in [{lo:g}, {hi:g}] gives "
                f"({pct[0]:.3g} … {pct[-1]:.3g} %)",
            )
        k = int(np.clip(np.searchsorted(pct, t), 1, len(grid) - 1))
        lo, hi, plo, phi_ = grid[k - 1], grid[k], pct[k - 1], pct[k]
        if hi / lo - 1 < rel_tol or rounds >= max_rounds:
            break
        inner = np.geomspace(lo, hi, points_per_round + 2)[1:-1]
        grid = np.concatenate([[lo], inner, [hi]])
        pct = np.concatenate([[plo], evaluate(inner), [phi_]])  # ends already known
        rounds += 1
    frac = 0.0 if phi_ == plo else (t - plo) / (phi_ - plo)
    phi = float(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo))))
    order = np.argsort(all_phi)
    return PhiNeeded(
        phi,
        float(lo),
        float(hi),
        t,
        float(month),
        np.array(all_phi)[order],
        np.array(all_pct)[order],
        rounds,
    )


@dataclass
class ResponderStudy:
    """Result of :func:`responders_study`: the predictor ranking, the φ needed for a target
    preservation, their ledgers and the manifest."""

    ranking: PredictorRanking
    phi_needed: PhiNeeded
    ledger: list[str]
    ledger_phi: list[str]
    manifest: dict

    def save(self, out_dir) -> Path:
        """Write ``ranking.csv``, ``phi_needed.csv``, ``phi_curve.csv``,
        ``partial_dependence.png``, ``phi_curve.png`` and ``manifest.json`` (last)."""
        import io

        from tregsim.io import write_text
        from tregsim.plots import explore as pe
        from tregsim.results import ensure_output_dir, write_manifest

        out = ensure_output_dir(out_dir)
        ranking, pn = self.ranking, self.phi_needed
        buf = io.StringIO()
        ranking.table.to_csv(buf, index=False, float_format="%.6g")
        head = [*self.ledger, f"# outcome: {ranking.outcome} (paired Treg − control)"]
        head += [f"# note: {x}" for x in ranking.notes]
        write_text(out / "ranking.csv", "\n".join(head) + "\n" + buf.getvalue())
        rows = [
            "phi,phi_low,phi_high,target_preservation_pct,month,rounds,note",
            f"{pn.phi:.6g},{pn.phi_low:.6g},{pn.phi_high:.6g},{pn.target_pct:g},{pn.month:g},"
            f'{pn.rounds},"{pn.note}"',
        ]
        curve = ["phi,mean_rel_preservation_pct"] + [
            f"{a:.6g},{b:.6g}" for a, b in zip(pn.curve_phi, pn.curve_pct, strict=True)
        ]
        head_phi = [
            *self.ledger_phi,
            "# preservation: 100 * mean(C_treg - C_control) / mean(C_control), %",
        ]
        write_text(out / "phi_needed.csv", "\n".join(head_phi + rows) + "\n")
        write_text(out / "phi_curve.csv", "\n".join(head_phi + curve) + "\n")
        pe.save(
            pe.plot_partial_dependence(ranking, ledger=self.ledger), out / "partial_dependence.png"
        )
        pe.save(pe.plot_phi_needed(pn, ledger=self.ledger_phi), out / "phi_curve.png")
        write_manifest(out, self.manifest)
        return out


def responders_study(
    exp,
    *,
    n: int = 2000,
    n_phi: int = 500,
    seed: int = 0,
    arm: str | None = None,
    month: float = 12.0,
    target_pct: float = 10.0,
    posterior=SHIPPED,
    out_dir=None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int = 16384,
    argv: list[str] | None = None,
) -> ResponderStudy:
    """:func:`responder_analysis` and :func:`phi_needed` with the default posterior, ledgers
    and a manifest: the analysis behind ``tregsim responders``.

    posterior : :data:`~tregsim.results.SHIPPED` (default), a netCDF path, or ``None``.
    """
    import math

    from tregsim.cohort import start_analysis
    from tregsim.explore.sweep import ledger_lines

    for name, v, lo in (("n", n, 3), ("n_phi", n_phi, 1)):
        if v < lo:
            raise ArgumentError(
                f"{name} must be ≥ {lo}, got {v}", field=name, fix=f"give a whole number ≥ {lo}"
            )
    if not (math.isfinite(month) and month > 0):
        raise ArgumentError(
            f"month must be > 0, got {month}",
            field="month",
            fix="give months after the baseline visit, e.g. 12",
        )
    if not math.isfinite(target_pct):
        raise ArgumentError(
            "target_pct must be finite", field="target_pct", fix="give a percentage, e.g. 10"
        )
    arm = exp.treatment_arm(arm)
    settings = {"n": n, "n_phi": n_phi, "arm": arm, "month": month, "target_pct": target_pct}
    st = start_analysis(
        exp,
        command="responders",
        function="tregsim.explore.responders.responders_study",
        seed=seed,
        arguments=settings,
        settings=settings,
        posterior=posterior,
        argv=argv,
        out_dir=out_dir,
        overwrite=overwrite,
    )
    draws, label = st.draws, st.label
    opts = {"workers": workers, "scheduler": scheduler, "chunk_size": chunk_size}
    ranking, _ = responder_analysis(
        exp, n=n, seed=seed, arm=arm, month=month, posterior=draws, out_dir=st.out,
        stage="ranking", **opts,
    )  # fmt: skip
    pn = phi_needed(exp, target_pct, month, n=n_phi, seed=seed, arm=arm, posterior=draws, **opts)
    manifest = st.finish()
    ledger = ledger_lines(exp, arm=arm, swept=[], n=n, seed=seed, posterior=label)
    ledger_phi = [
        ln
        for ln in ledger_lines(exp, arm=arm, swept=[], n=n_phi, seed=seed, posterior=label)
        if not ln.startswith("# phi:")
    ]
    ledger_phi.insert(1, "# phi: searched (the model default is replaced by each value tried)")
    return ResponderStudy(ranking, pn, ledger, ledger_phi, manifest)
