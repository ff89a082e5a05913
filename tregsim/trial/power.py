"""Simulated power, sample size, minimal detectable effect and assurance.

Power at N per arm is the fraction of R replicate trials whose two-sided test rejects at
``alpha``, analysing the first N patients of each arm of every replicate (nested sub-samples:
common random numbers across N, so the curve is smooth and monotone up to MC noise). When the
true effect varies across replicates (draws from a prior or a posterior), the same fraction is
the *assurance* (O'Hagan, Stevens & Campbell, Pharm Stat 2005;4:187, doi:10.1002/pst.175).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tregsim.errors import ArgumentError
from tregsim.grid import parse_values
from tregsim.trial import endpoints as _ep
from tregsim.trial.allocation import first_n_per_arm
from tregsim.trial.design import TrialData

DEFAULT_TESTS = ("ancova", "welch", "ranksum")


@dataclass(frozen=True)
class PowerResult:
    """Rejections of R replicate trials at K sample sizes, for each analysis.

    n_per_arm : (K,) patients enrolled per arm.
    reject : test → (R, K) bool, two-sided p < alpha.
    estimate : test → (R, K) estimate (ln(AUC+1) scale for ancova / t-tests).
    true_effect : (R,) true effect per replicate (ln(AUC+1) scale) or None.
    n_analysed : (R, K, 2) patients with an endpoint, [control, treatment].
    """

    n_per_arm: np.ndarray
    tests: tuple[str, ...]
    reject: dict[str, np.ndarray]
    estimate: dict[str, np.ndarray]
    true_effect: np.ndarray | None
    alpha: float
    effect_label: str = ""
    n_analysed: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return int(next(iter(self.reject.values())).shape[0])

    def power(self, test: str = "ancova", favourable: bool = False) -> np.ndarray:
        """(K,) fraction of replicates rejecting; ``favourable`` also requires estimate > 0
        (for the rank test: probabilistic index > 0.5)."""
        return self.successes(test, favourable) / self.n_trials

    def successes(self, test: str = "ancova", favourable: bool = False) -> np.ndarray:
        self._check_test(test)
        rej = self.reject[test]
        if favourable:
            centre = 0.5 if test == "ranksum" else 0.0
            rej = rej & (np.nan_to_num(self.estimate[test], nan=centre) > centre)
        return rej.sum(axis=0)

    def interval(
        self,
        test: str = "ancova",
        level: float = 0.95,
        method: str = "wilson",
        favourable: bool = False,
    ):
        """(K,), (K,) Monte-Carlo interval of the power (Wilson or Clopper–Pearson)."""
        x = self.successes(test, favourable)
        a = 1 - level
        if method == "wilson":
            return _ep.wilson_interval(x, self.n_trials, a)
        if method == "clopper-pearson":
            return _ep.clopper_pearson_interval(x, self.n_trials, a)
        raise ArgumentError(
            f"unknown interval method {method!r}",
            field="method",
            fix="use 'wilson' or 'clopper-pearson'",
        )

    def n_for_power(self, target: float, test: str = "ancova") -> int | None:
        """Smallest N per arm of the grid whose estimated power ≥ target (None if none)."""
        hit = np.nonzero(self.power(test) >= target)[0]
        return int(self.n_per_arm[hit[0]]) if hit.size else None

    def mean_bias(self, test: str = "ancova") -> np.ndarray:
        """(K,) mean(estimate − true effect) over replicates (NaN estimates skipped)."""
        if self.true_effect is None:
            return np.full(len(self.n_per_arm), np.nan)
        d = self.estimate[test] - self.true_effect[:, None]
        return _nanmean0(d)

    def table(self, level: float = 0.95) -> dict[str, np.ndarray]:
        """Columns (each (K,)) for ``power.csv``: one row per N per arm, units in names."""
        cols: dict[str, np.ndarray] = {"n_per_arm": self.n_per_arm}
        cols["n_trials"] = np.full(len(self.n_per_arm), self.n_trials)
        if self.n_analysed is not None:
            cols["mean_analysed_control"] = self.n_analysed[:, :, 0].mean(axis=0)
            cols["mean_analysed_treatment"] = self.n_analysed[:, :, 1].mean(axis=0)
        for t in self.tests:
            lo, hi = self.interval(t, level)
            cols[f"power_{t}"] = self.power(t)
            cols[f"power_{t}_mc_low"] = lo
            cols[f"power_{t}_mc_high"] = hi
            cols[f"power_{t}_favourable"] = self.power(t, favourable=True)
        if "ancova" in self.tests:
            est = self.estimate["ancova"]
            med = np.array(
                [np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in est.T]
            )
            cols["median_ancova_ratio_auc_plus_1"] = np.exp(med)
            cols["mean_bias_ancova_ln_auc_plus_1"] = self.mean_bias("ancova")
        return cols

    def _check_test(self, test):
        if test not in self.reject:
            raise ArgumentError(
                f"test {test!r} was not run", field="test", fix=f"use one of {list(self.tests)}"
            )


def _nanmean0(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (not a warning) where a column has no finite value."""
    ok = np.isfinite(x)
    n = ok.sum(axis=0)
    s = np.where(ok, x, 0.0).sum(axis=0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def parse_grid(text: str) -> np.ndarray:
    """N per arm in the grid grammar of :mod:`tregsim.grid` (``5..60:5``, ``10,20,40``,
    ``10..80:log:5`` rounded to whole N); ``start:stop:step`` is read as ``start..stop:step``."""
    fix = "write a..b:step (e.g. 5..60:5, or 5:60:5) or a comma list (10,20,40)"
    parts = text.split(":")
    if ".." not in text and len(parts) in (2, 3):
        text = f"{parts[0]}..{parts[1]}:{parts[2] if len(parts) == 3 else 1}"
    values, spacing = parse_values(text, field="n_per_arm", name="N per arm", fix=fix)
    grid = np.unique(np.rint(values)).astype(int) if spacing == "log" else values.astype(int)
    if spacing != "log" and np.any(grid != values):
        raise ArgumentError(f"N grid {text!r} has non-whole N", field="n_per_arm", fix=fix)
    if np.any(grid < 2):
        raise ArgumentError(
            f"N grid {text!r} has N < 2", field="n_per_arm", fix="use N ≥ 2 per arm"
        )
    return grid


def simulated_power(
    data: TrialData,
    n_per_arm: Sequence[int] | np.ndarray,
    *,
    tests: Sequence[str] = DEFAULT_TESTS,
    alpha: float = 0.05,
    progress: bool = False,
) -> PowerResult:
    """Power of each test at each N per arm by nested sub-sampling of ``data``.

    Parameters
    ----------
    data : R replicate trials (see :class:`TrialData`); must enrol ≥ max(n_per_arm) per arm.
    n_per_arm : (K,) sample sizes per arm.
    tests : analyses (see :func:`tregsim.trial.endpoints.analyse_trials`).
    alpha : two-sided level.
    progress : tqdm bar on stderr over the K sample sizes.
    """
    grid = np.asarray(n_per_arm, dtype=int)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid < 2):
        raise ArgumentError(
            f"n_per_arm must be a 1-D list of N ≥ 2, got {n_per_arm}",
            field="n_per_arm",
            fix="e.g. [5, 10, 20]",
        )
    if grid.max() > data.max_per_arm():
        raise ArgumentError(
            f"data enrol only {data.max_per_arm()} per arm, grid asks {grid.max()}",
            field="n_per_arm",
            fix="generate the trials with n_max_per_arm ≥ the largest N",
        )
    if not 0 < alpha < 1:
        raise ArgumentError(
            f"alpha must be in (0, 1), got {alpha}", field="alpha", fix="use e.g. 0.05"
        )
    R, K = data.n_trials, grid.size
    tests = tuple(tests)
    reject = {t: np.zeros((R, K), dtype=bool) for t in tests}
    estimate = {t: np.full((R, K), np.nan) for t in tests}
    n_an = np.zeros((R, K, 2))
    arm = np.asarray(data.arm, dtype=bool)
    it = range(K)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="power: N per arm", file=sys.stderr, unit="N")
    for k in it:
        # Slots beyond the last enrolled patient are never used: trim for speed.
        inc = first_n_per_arm(arm, int(grid[k]))
        width = int(np.max(np.nonzero(inc.any(axis=0))[0])) + 1
        sl = np.s_[:, :width]
        res = _ep.analyse_trials(
            data.endpoint_auc_nmol_l[sl],
            data.baseline_auc_nmol_l[sl],
            data.age_years[sl],
            arm[sl],
            include=inc[sl],
            alpha=alpha,
            tests=tests,
            prognostic_ln_auc_plus_1=None
            if data.prognostic_ln_auc_plus_1 is None
            else data.prognostic_ln_auc_plus_1[sl],
        )
        for t, r in res.items():
            reject[t][:, k] = r.reject
            estimate[t][:, k] = r.estimate
        first = res[tests[0]]
        n_an[:, k, 0] = first.n_control
        n_an[:, k, 1] = first.n_treatment
    return PowerResult(
        n_per_arm=grid,
        tests=tests,
        reject=reject,
        estimate=estimate,
        true_effect=None if data.true_effect is None else np.asarray(data.true_effect),
        alpha=alpha,
        effect_label=data.effect_label,
        n_analysed=n_an,
        info=dict(data.info),
    )


def simulated_mde(
    make_data: Callable[[float], TrialData],
    n_per_arm: int,
    effects: Sequence[float] | np.ndarray,
    *,
    target: float = 0.8,
    test: str = "ancova",
    alpha: float = 0.05,
) -> tuple[float, np.ndarray]:
    """Minimal detectable effect at ``n_per_arm``: the effect whose simulated power = target.

    make_data(effect) must return replicate trials with that true effect (ln(AUC+1) scale)
    from the same seed (common random numbers), so power is monotone in the effect grid.
    Returns (mde by linear interpolation on the grid, or NaN if the target is not reached;
    (len(effects),) power on the grid).
    """
    effects = np.sort(np.asarray(effects, dtype=float))
    pw = np.array(
        [
            simulated_power(make_data(float(e)), [n_per_arm], tests=(test,), alpha=alpha).power(
                test
            )[0]
            for e in effects
        ]
    )
    mono = np.maximum.accumulate(pw)
    if mono[-1] < target:
        return float("nan"), pw
    i = int(np.argmax(mono >= target))
    if i == 0:
        return float(effects[0]), pw
    x0, x1, y0, y1 = effects[i - 1], effects[i], mono[i - 1], mono[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0)), pw


def allocation_bias(
    data: TrialData,
    n_per_arm: int,
    *,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Bias of the naive (unadjusted Welch difference of ln(AUC+1)) vs the ANCOVA estimate.

    Returns ``{"naive": {...}, "ancova": {...}}`` with ``mean_bias``, ``mc_se`` (of the mean
    bias), ``rmse`` and ``coverage`` (fraction of (1−alpha) CIs containing the true effect),
    all on the ln(AUC+1) scale, over the replicates of ``data`` at ``n_per_arm``.
    """
    if data.true_effect is None:
        raise ArgumentError(
            "the trial data carry no true effect",
            field="true_effect",
            fix="generate trials with a known effect (synthetic_trials(effect=...))",
        )
    arm = np.asarray(data.arm, dtype=bool)
    inc = first_n_per_arm(arm, n_per_arm)
    res = _ep.analyse_trials(
        data.endpoint_auc_nmol_l,
        data.baseline_auc_nmol_l,
        data.age_years,
        arm,
        include=inc,
        alpha=alpha,
        tests=("welch", "ancova"),
    )
    out = {}
    truth = np.asarray(data.true_effect)
    for name, key in (("naive", "welch"), ("ancova", "ancova")):
        r = res[key]
        ok = np.isfinite(r.estimate)
        d = r.estimate[ok] - truth[ok]
        cover = (r.ci_low[ok] <= truth[ok]) & (truth[ok] <= r.ci_high[ok])
        out[name] = {
            "mean_bias": float(d.mean()),
            "mc_se": float(d.std(ddof=1) / np.sqrt(d.size)),
            "rmse": float(np.sqrt((d**2).mean())),
            "coverage": float(cover.mean()),
            "n_trials": int(d.size),
        }
    return out


def variance_components(data: TrialData) -> dict[str, float]:
    """SD of ln(AUC+1) at the endpoint and its multiple correlation ρ with the ANCOVA covariates
    (ln(baseline AUC+1), age) *within one trial* (round 21). Returns ``{"sd", "rho", "n"}``.

    Feeds the closed-form power / MDE of :mod:`tregsim.trial.closed_form` with numbers taken
    from the virtual population instead of assumed ones. Within, not pooled: replicates differ
    in their parameter draw (one posterior draw per trial, as one real trial has one true θ),
    and pooling their patients adds the differences between draws to the SD a trial sees
    (and, under a heavy-tailed deviation, flattens the pooled slope; docs/calibration.md,
    "Sample size (item 4)", round 21).

    When at least half the replicates have ≥ 5 control patients with an endpoint, each of
    those fits its own ANCOVA and the variances (of y and of the residual, unbiased) are
    averaged: the expected within-trial variance, the plug-in of a closed-form N. Smaller
    trials cannot fit one: then all control patients are pooled with an intercept per
    replicate and common slopes (the within-replicate estimator), which still removes the
    differences in level between the replicates' draws.
    """
    arm = np.asarray(data.arm, dtype=bool)
    y = np.log1p(np.asarray(data.endpoint_auc_nmol_l, dtype=float))
    xb = np.log1p(np.asarray(data.baseline_auc_nmol_l, dtype=float))
    age = np.asarray(data.age_years, dtype=float)
    ok = ~arm & np.isfinite(y) & np.isfinite(xb) & np.isfinite(age)
    n = int(ok.sum())
    n_r = ok.sum(axis=1)
    used = n_r >= 2  # a replicate's own mean needs two patients to leave a deviation
    if n - int(used.sum()) - 2 < 1 or n < 10:
        raise ArgumentError(
            f"only {n} control patients with an endpoint",
            field="data",
            fix="simulate more replicate trials",
        )
    if (n_r >= 5).sum() >= 0.5 * (n_r > 0).sum():
        var_y, var_res = [], []
        for r in np.flatnonzero(n_r >= 5):
            m = ok[r]
            X = np.column_stack([np.ones(int(m.sum())), xb[r, m], age[r, m]])
            yy = y[r, m]
            beta, *_ = np.linalg.lstsq(X, yy, rcond=None)
            resid = yy - X @ beta
            var_y.append(yy.var(ddof=1))
            var_res.append(resid @ resid / (yy.size - X.shape[1]))
        sd2, res2 = float(np.mean(var_y)), float(np.mean(var_res))
    else:
        keep = ok & used[:, None]

        def within(v):  # deviations from each replicate's own mean, (n_kept,)
            mean = np.where(keep, v, 0.0).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
            return (v - mean[:, None])[keep]

        dy, dx, da = within(y), within(xb), within(age)
        X = np.column_stack([dx, da])
        beta, *_ = np.linalg.lstsq(X, dy, rcond=None)
        resid = dy - X @ beta
        dof = dy.size - int(used.sum())
        sd2 = float(dy @ dy / dof)
        res2 = float(resid @ resid / (dof - 2))
    r2 = 1.0 - res2 / sd2
    return {"sd": float(np.sqrt(sd2)), "rho": float(np.sqrt(min(max(r2, 0.0), 0.999))), "n": n}


def closed_form_mde_table(
    sd: float, rho: float, n_per_arm, *, alpha: float = 0.05, targets=(0.8, 0.9)
) -> dict[str, np.ndarray]:
    """Minimal detectable effects (ln(AUC+1) scale and % higher (AUC+1)) for the ANCOVA
    (2 covariates) and the t-test at each N per arm; columns of ``mde.csv``."""
    from tregsim.trial import closed_form as cf

    grid = np.asarray(n_per_arm, dtype=int)
    cols: dict[str, np.ndarray] = {"n_per_arm": grid}
    for t in targets:
        pct = round(100 * t)
        # ANCOVA with 2 covariates needs 2N − 4 ≥ 1 residual df
        a = np.array(
            [
                cf.minimal_detectable_effect(int(n), sd, t, alpha, rho=rho, n_covariates=2)
                if 2 * n - 4 >= 1
                else np.nan
                for n in grid
            ]
        )
        w = np.array([cf.minimal_detectable_effect(int(n), sd, t, alpha) for n in grid])
        cols[f"mde{pct}_ancova_ln_auc_plus_1"] = a
        cols[f"mde{pct}_ancova_percent_auc_plus_1"] = 100 * np.expm1(a)
        cols[f"mde{pct}_t_test_ln_auc_plus_1"] = w
        cols[f"mde{pct}_t_test_percent_auc_plus_1"] = 100 * np.expm1(w)
    return cols
