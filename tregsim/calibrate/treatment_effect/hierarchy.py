"""The hierarchical model of φ and the infused-cell kinetics, its likelihood terms and its
generator of whole evidence sets (docs/treatment_effect.md).

Parameters (one row per draw): ``mu`` (population mean of log φ), ``tau`` (between-trial SD of
log φ), the kinetics ``FX``, ``F_M``, ``alpha_X`` (1/day), ``beta_M`` (1/day) shared by every
trial, and ``eta_<trial>`` ~ N(0, 1) per efficacy trial: log φ_trial = mu + tau·eta_trial
(non-centred). Each evidence row is one term:

* two-sided p, direction not reported → density of |z| (folded normal), z ~ N(d/se, v);
* "not significant" → P(|z| < 1.96); "significantly higher" → P(z > 1.96);
* a p and a "not significant" on the same trial's patients at two months → their joint
  density with the correlation ρ of the two estimates across replicate virtual trials;
* non-randomized comparison → z = (d + b)/se + ε, b ~ N(0, σ_b²) integrated: v = 1 + σ_b²/se²;
* correlation r (n patients) → atanh r ~ N(atanh r_model, 1/(n − 3)) (Fisher);
* count k of n → binomial(k; n, p_model);
* persistence statements → log f_obs = log f_model(κ) + N(0, s²): P(f_obs ≤ value) etc., with
  f_model the closed-form fraction of peak of X + M (:func:`fraction_of_peak`).

d (ln(AUC+1) effect), se, r_model and p_model come from the emulators of each trial's design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from tregsim.calibrate.treatment_effect.emulator import features
from tregsim.units import DAYS_PER_MONTH

KINETICS = ("FX", "F_M", "alpha_X", "beta_M")
Z_CRIT = float(stats.norm.isf(0.025))


def fraction_of_peak(days_after_infusion, FX, F_M, alpha_X, beta_M, T_max=7.0, eps_gate=0.5):
    """Infused cells in blood (X + M) as a fraction of their peak, closed form.

    models/treg_t1d.toml: X grows at ρ_X·χ − α_X·(1 − χ) with ρ_X = ln(FX)/T_max and the gate
    χ = logistic((T_max − τ)/ε); M is fed at (1 − χ)·F_M·(α_X − β_M)·X and decays at β_M.
    Long after the gate (s = t − T_max ≫ ε) X + M = FX·dose·[(1 − F_M) e^{−α_X s} + F_M e^{−β_M s}].
    The peak of X is where ρ_X·χ = α_X·(1 − χ), i.e. τ* = T_max − ε·ln(α_X/ρ_X), with
    ln X(τ*)/dose = (ρ_X + α_X)·I(τ*) − α_X·τ*, I(τ) = ∫₀^τ χ = τ − ε ln(1 + e^{(τ−T_max)/ε})
    + ε ln(1 + e^{−T_max/ε}); for FX ≤ 1 (no net expansion) the peak is the dose. The smooth
    gate lowers the peak by up to ~10 % below FX·dose, which this accounts for. Arrays
    broadcast; days ≫ T_max.
    """
    s = np.asarray(days_after_infusion, float) - T_max
    FX = np.asarray(FX, float)
    a = np.asarray(alpha_X, float)
    rho = np.log(np.maximum(FX, 1.0)) / T_max
    shape = (1 - F_M) * np.exp(-a * s) + F_M * np.exp(-beta_M * s)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.clip(T_max - eps_gate * np.log(a / rho), 0.0, None)
    integral = (
        tau
        - eps_gate * np.logaddexp(0.0, (tau - T_max) / eps_gate)
        + eps_gate * np.logaddexp(0.0, -T_max / eps_gate)
    )
    log_peak = np.where(rho > 0, (rho + a) * integral - a * tau, 0.0)
    return FX * shape / np.exp(np.maximum(log_peak, 0.0))


@dataclass
class Prior:
    """Priors: mu ~ N(mu_mean, mu_sd²), tau ~ half-normal(tau_scale), kinetics from the
    model file, eta ~ N(0, 1)."""

    mu_mean: float
    mu_sd: float
    tau_scale: float
    kinetics: dict  # name → tregsim Prior

    def sample(self, rng, n: int, trials) -> dict[str, np.ndarray]:
        out = {
            "mu": rng.normal(self.mu_mean, self.mu_sd, n),
            "tau": np.abs(rng.normal(0.0, self.tau_scale, n)),
        }
        for k in KINETICS:
            out[k] = self.kinetics[k].ppf(rng.random(n))
        for t in trials:
            out[f"eta_{t}"] = rng.standard_normal(n)
        return out


class Likelihood:
    """Evidence rows → log-likelihood of parameter draws, and the generator of evidence sets.

    emulators : output name → GP; designs : trial → TrialDesign; nonrandomized : trial → bool;
    rho : trial → correlation of the two z statistics of a joint p + not-significant pair.
    """

    def __init__(self, rows, designs, emulators, nonrandomized, rho, *, bias_sd, persistence_sd):
        self.rows = list(rows)
        self.designs = designs
        self.emus = emulators
        self.nonrand = nonrandomized
        self.rho = rho
        self.bias_sd = float(bias_sd)
        self.s = float(persistence_sd)
        self.trials = sorted({r.trial for r in self.rows if r.trial in designs})
        self.units = self._units()

    # ------------------------------------------------------------------ structure
    def _units(self):
        """Likelihood units: a joint (p, not significant) pair of a trial, or a single row."""
        units, used = [], set()
        for r in self.rows:
            if r.term in used:
                continue
            if r.statistic == "p_two_sided":
                mate = [
                    q
                    for q in self.rows
                    if q.trial == r.trial
                    and q.statistic == "not_significant"
                    and q.treated_arms == r.treated_arms
                    and q.term not in used
                ]
                if mate:
                    units.append((r, mate[0]))
                    used |= {r.term, mate[0].term}
                    continue
            units.append((r,))
            used.add(r.term)
        return units

    def output_names(self) -> list[str]:
        names = set()
        for r in self.rows:
            if r.trial not in self.designs:
                continue
            key = f"{r.trial}.m{r.month:g}"
            if r.statistic in ("p_two_sided", "not_significant", "significantly_higher"):
                names |= {f"{key}.d", f"{key}.se"}
            elif r.statistic == "correlation_r":
                names.add(f"{key}.r_dose")
            elif r.statistic == "count_no_decline":
                names.add(f"{key}.nodecline")
        return sorted(names)

    # ------------------------------------------------------------------ predictions
    def predict(self, params: dict) -> dict[str, np.ndarray]:
        """Emulated outputs per draw: output name → (n,)."""
        kin = np.column_stack([params[k] for k in KINETICS])
        out = {}
        for t in self.trials:
            phi = np.exp(params["mu"] + params["tau"] * params[f"eta_{t}"])
            f = features(np.column_stack([phi, kin]))
            for name in self.output_names():
                if name.startswith(t + "."):
                    out[name] = self.emus[name].predict(f)
        return out

    def _z_mean(self, r, pred):
        d = self.designs[r.trial]
        key = f"{r.trial}.m{r.month:g}"
        n_t = sum(d.treated.values())
        scale = np.sqrt((1 / r.n_treated + 1 / r.n_control) / (1 / n_t + 1 / d.n_control))
        se = pred[f"{key}.se"] * scale
        m = pred[f"{key}.d"] / se
        v = 1.0 + (self.bias_sd / se) ** 2 if self.nonrand.get(r.trial) else np.ones_like(m)
        return m, v

    def _frac(self, r, params):
        return fraction_of_peak(r.month * DAYS_PER_MONTH, *(params[k] for k in KINETICS))

    # ------------------------------------------------------------------ likelihood
    def loglik_terms(self, params, pred, data=None) -> dict[str, np.ndarray]:
        """Log-likelihood of each unit (named by its first term) per draw.

        data : term → observed value (p, r, count, or bool 'statement holds'); None = the rows'
        own values (every statement as reported).
        """
        data = data or {}
        out = {}
        for unit in self.units:
            r = unit[0]
            obs = data.get(r.term, _reported(r))
            if len(unit) == 2:
                ns = unit[1]
                holds = data.get(ns.term, True)
                m2, _ = self._z_mean(r, pred)
                m1, _ = self._z_mean(ns, pred)
                rho = self.rho[r.trial]
                z = float(stats.norm.isf(obs / 2))
                c = float(stats.norm.isf(ns.value / 2))
                tot = 0.0
                for s in (1.0, -1.0):
                    cm = m1 + rho * (s * z - m2)
                    sd = np.sqrt(1 - rho**2)
                    p_ns = special.ndtr((c - cm) / sd) - special.ndtr((-c - cm) / sd)
                    p_ns = p_ns if holds else 1 - p_ns
                    tot = tot + stats.norm.pdf(s * z - m2) * p_ns
                out[r.term] = np.log(np.maximum(tot, 1e-300))
                continue
            st = r.statistic
            if st in ("p_two_sided", "not_significant", "significantly_higher"):
                m, v = self._z_mean(r, pred)
                sv = np.sqrt(v)
                c = float(stats.norm.isf(r.value / 2)) if st != "p_two_sided" else None
                if st == "p_two_sided":
                    z = float(stats.norm.isf(obs / 2))
                    lik = (stats.norm.pdf((z - m) / sv) + stats.norm.pdf((z + m) / sv)) / sv
                elif st == "not_significant":
                    p = special.ndtr((c - m) / sv) - special.ndtr((-c - m) / sv)
                    lik = p if obs else 1 - p
                else:
                    p = special.ndtr((m - c) / sv)
                    lik = p if obs else 1 - p
            elif st == "correlation_r":
                rm = pred[f"{r.trial}.m{r.month:g}.r_dose"]
                lik = stats.norm.pdf(np.arctanh(obs), np.arctanh(rm), 1 / np.sqrt(r.n_treated - 3))
            elif st == "count_no_decline":
                p = pred[f"{r.trial}.m{r.month:g}.nodecline"]
                lik = stats.binom.pmf(int(obs), r.n_treated, p)
            else:
                f = self._frac(r, params)
                ln = (np.log(r.value) - np.log(f)) / self.s
                p = special.ndtr(ln) if st != "fraction_of_peak_at_least" else special.ndtr(-ln)
                lik = p if obs else 1 - p
            out[r.term] = np.log(np.maximum(lik, 1e-300))
        return out

    # ------------------------------------------------------------------ generator
    def simulate(self, params, pred, rng) -> dict[str, np.ndarray]:
        """One synthetic evidence set per draw, summarised exactly as the sources report:
        term → (n,) p-values, booleans ('statement holds'), r or counts."""
        n = len(params["mu"])
        out = {}
        for unit in self.units:
            r = unit[0]
            st = r.statistic
            if st in ("p_two_sided", "not_significant", "significantly_higher"):
                m, v = self._z_mean(r, pred)
                if len(unit) == 2:
                    ns = unit[1]
                    m1, _ = self._z_mean(ns, pred)
                    rho = self.rho[r.trial]
                    e2 = rng.standard_normal(n)
                    e1 = rho * e2 + np.sqrt(1 - rho**2) * rng.standard_normal(n)
                    z2, z1 = m + e2, m1 + e1
                    out[r.term] = np.maximum(2 * special.ndtr(-np.abs(z2)), 1e-300)
                    out[ns.term] = np.abs(z1) < float(stats.norm.isf(ns.value / 2))
                    continue
                z = m + np.sqrt(v) * rng.standard_normal(n)
                if st == "p_two_sided":
                    out[r.term] = np.maximum(2 * special.ndtr(-np.abs(z)), 1e-300)
                elif st == "not_significant":
                    out[r.term] = np.abs(z) < float(stats.norm.isf(r.value / 2))
                else:
                    out[r.term] = z > float(stats.norm.isf(r.value / 2))
            elif st == "correlation_r":
                rm = pred[f"{r.trial}.m{r.month:g}.r_dose"]
                zz = np.arctanh(rm) + rng.standard_normal(n) / np.sqrt(r.n_treated - 3)
                out[r.term] = np.tanh(zz)
            elif st == "count_no_decline":
                p = pred[f"{r.trial}.m{r.month:g}.nodecline"]
                out[r.term] = rng.binomial(r.n_treated, p)
            else:
                f = self._frac(r, params)
                fo = np.log(f) + self.s * rng.standard_normal(n)
                out[r.term] = (
                    fo >= np.log(r.value)
                    if st == "fraction_of_peak_at_least"
                    else fo <= np.log(r.value)
                )
        return out


def _reported(r):
    if r.statistic in ("p_two_sided", "correlation_r", "count_no_decline"):
        return r.value
    return True
