"""Covariate distributions of a virtual population, parsed from ``[population]``.

Every distribution is sampled by inverse CDF from a fixed number of uniforms (or standard
normals) per patient, so a block of patients always consumes its generator the same way —
the condition for chunk-invariant streams (:func:`tregsim.rng.draw`).

Covariates (all arrays of shape ``(n,)``):

===============  ========  =================================================================
name             unit      meaning
===============  ========  =================================================================
age              years     age at diagnosis
sex              –         1 = male, 0 = female (int8)
weight           kg        body weight
cpep_baseline    nmol/L    MMTT 2-h AUC mean C-peptide at the baseline visit as drawn from
                           ``[population.cpep_baseline]`` (a measured law; eligibility and
                           allocation use it; a rank-preserving stretch of the noise-free
                           ``cpep_baseline_true``, not an independent measurement)
cpep0            nmol/L    model covariate (value at diagnosis, sets M0); after
                           :func:`~tregsim.population.sampling.complete_baseline` the value
                           whose untreated course passes through ``cpep_baseline_true``
cpep_fasting     pmol/L    fasting C-peptide at baseline
aab_positive     –         ≥ 1 islet autoantibody positive (bool)
t_baseline       days      diagnosis → baseline visit
===============  ========  =================================================================

Set by :func:`~tregsim.population.sampling.sample_population` (it depends on the patient's
observation model, so eligibility rules cannot use it): ``cpep_baseline_true`` (nmol/L), the
noise-free MMTT at the baseline visit (equal to ``cpep_baseline`` when ``measured = false``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from tregsim import rng as _rng
from tregsim.errors import ArgumentError
from tregsim.schema import Table

COVARIATES = (
    "age",
    "sex",
    "weight",
    "cpep_baseline",
    "cpep0",
    "cpep_fasting",
    "aab_positive",
    "t_baseline",
)
"""Covariate names every population provides (see the module docstring for units)."""

COVARIATE_UNITS = {
    "age": "years",
    "sex": "1 = male, 0 = female",
    "weight": "kg",
    "cpep_baseline": "nmol/L",
    "cpep0": "nmol/L",
    "cpep_fasting": "pmol/L",
    "aab_positive": "bool",
    "t_baseline": "days",
    "cpep_baseline_true": "nmol/L",
}

AGE_LIMITS_YEARS = (0.0, 120.0)


# --------------------------------------------------------------------------- scalar laws
@dataclass(frozen=True)
class Fixed:
    value: float
    n_uniforms = 1

    def transform(self, u: np.ndarray) -> np.ndarray:
        return np.full(u.shape[0], self.value)

    @property
    def support(self) -> tuple[float, float]:
        return self.value, self.value

    def mean(self) -> float:
        return self.value


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    n_uniforms = 1

    def transform(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * u[:, 0]

    @property
    def support(self):
        return self.low, self.high

    def cdf(self, x):
        return np.clip((np.asarray(x) - self.low) / (self.high - self.low), 0.0, 1.0)


@dataclass(frozen=True)
class TruncNormal:
    mean: float
    sd: float
    low: float
    high: float
    n_uniforms = 1

    def _frozen(self):
        from scipy import stats  # scipy.stats costs ~1 s to import; only truncnormal needs it

        a, b = (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd
        return stats.truncnorm(a, b, loc=self.mean, scale=self.sd)

    def transform(self, u: np.ndarray) -> np.ndarray:
        return self._frozen().ppf(u[:, 0])

    @property
    def support(self):
        return self.low, self.high

    def cdf(self, x):
        return self._frozen().cdf(x)


@dataclass(frozen=True)
class LogNormal:
    """Log-normal with ``median`` and ``sd_log``, truncated to ``[low, high]``."""

    median: float
    sd_log: float
    low: float = 0.0
    high: float = np.inf
    n_uniforms = 1

    def _z(self, x):
        with np.errstate(divide="ignore"):
            return (np.log(x) - np.log(self.median)) / self.sd_log

    def transform(self, u: np.ndarray) -> np.ndarray:
        lo, hi = special.ndtr(self._z(self.low)), special.ndtr(self._z(self.high))
        return self.median * np.exp(self.sd_log * special.ndtri(lo + (hi - lo) * u[:, 0]))

    @property
    def support(self):
        return self.low, self.high

    def cdf(self, x):
        lo, hi = special.ndtr(self._z(self.low)), special.ndtr(self._z(self.high))
        return np.clip((special.ndtr(self._z(np.asarray(x))) - lo) / (hi - lo), 0, 1)


@dataclass(frozen=True)
class Mixture:
    weights: tuple[float, ...]
    components: tuple
    n_uniforms = 2

    def transform(self, u: np.ndarray) -> np.ndarray:
        cum = np.cumsum(self.weights) / np.sum(self.weights)
        k = np.minimum(np.searchsorted(cum, u[:, 0], side="right"), len(cum) - 1)
        out = np.empty(u.shape[0])
        for j, comp in enumerate(self.components):
            sel = k == j
            out[sel] = comp.transform(u[sel, 1:2])
        return out

    @property
    def support(self):
        s = [c.support for c in self.components]
        return min(a for a, _ in s), max(b for _, b in s)

    def cdf(self, x):
        w = np.asarray(self.weights) / np.sum(self.weights)
        return sum(wi * c.cdf(x) for wi, c in zip(w, self.components))


_SCALAR_KEYS = {
    "fixed": ("value",),
    "uniform": ("low", "high"),
    "truncnormal": ("mean", "sd", "low", "high"),
    "lognormal": ("median", "sd_log", "low", "high"),
    "mixture": ("components",),
}


def parse_scalar(t: Table, *, lo: float, hi: float, unit: str, allow_mixture: bool = True):
    """Parse a scalar distribution table whose support must lie within ``[lo, hi]``."""
    kinds = list(_SCALAR_KEYS) if allow_mixture else [k for k in _SCALAR_KEYS if k != "mixture"]
    kind = t.string("distribution", choices=kinds)
    extra = ("weight",) if t.has("weight") and not allow_mixture else ()
    t.check_keys(
        ("distribution", *_SCALAR_KEYS[kind], *extra),
        required=[
            k for k in _SCALAR_KEYS[kind] if not (kind == "lognormal" and k in ("low", "high"))
        ],
    )
    fix_range = f"keep the distribution within [{lo}, {hi}] {unit}"
    if kind == "fixed":
        return Fixed(t.number("value", lo=lo, hi=hi, unit=unit))
    if kind == "mixture":
        comps = t.data["components"]
        if not isinstance(comps, list) or not comps:
            raise t.error(
                "expected a non-empty list of component tables",
                key="components",
                fix="write components = [{ weight = 1.0, distribution = ... }]",
            )
        ws, cs = [], []
        for i, c in enumerate(comps):
            ct = Table(c, t.file, t.sub(f"components[{i}]"))
            ws.append(ct.number("weight", lo=0.0, lo_open=True))
            cs.append(parse_scalar(ct, lo=lo, hi=hi, unit=unit, allow_mixture=False))
        return Mixture(tuple(ws), tuple(cs))
    if kind == "uniform" or kind == "truncnormal":
        low = t.number("low", unit=unit)
        high = t.number("high", unit=unit)
        for key, v in (("low", low), ("high", high)):
            if not lo <= v <= hi:
                raise t.error(
                    f"{v} {unit} is outside the allowed range [{lo}, {hi}] {unit}",
                    key=key,
                    fix=fix_range,
                )
        if high <= low:
            raise t.error(
                f"high ({high}) must exceed low ({low})", key="high", fix="swap or widen the bounds"
            )
        if kind == "uniform":
            return Uniform(low, high)
        return TruncNormal(
            t.number("mean", unit=unit), t.number("sd", lo=0.0, lo_open=True), low, high
        )
    # lognormal
    low = t.number("low", default=max(lo, 0.0), lo=0.0, unit=unit)
    high = t.number("high", default=hi if np.isfinite(hi) else 1e300, unit=unit)
    if low < lo or high > hi:
        raise t.error(
            f"support [{low}, {high}] {unit} exceeds [{lo}, {hi}] {unit}",
            key="low" if low < lo else "high",
            fix=fix_range,
        )
    if high <= low:
        raise t.error(
            f"high ({high}) must exceed low ({low})", key="high", fix="swap or widen the bounds"
        )
    return LogNormal(
        t.number("median", lo=0.0, lo_open=True, unit=unit),
        t.number("sd_log", lo=0.0, lo_open=True),
        low,
        high,
    )


# --------------------------------------------------------------------- covariate model
@dataclass(frozen=True)
class WeightForAge:
    """kg = median(age, sex) · exp(sd_log · z); medians linearly interpolated in age."""

    ages_years: tuple[float, ...]
    median_male_kg: tuple[float, ...]
    median_female_kg: tuple[float, ...]
    sd_log_child: float
    sd_log_adult: float
    adult_from_years: float

    def median(self, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
        m = np.interp(age, self.ages_years, self.median_male_kg)
        f = np.interp(age, self.ages_years, self.median_female_kg)
        return np.where(sex == 1, m, f)

    def sd_log(self, age: np.ndarray) -> np.ndarray:
        return np.where(age >= self.adult_from_years, self.sd_log_adult, self.sd_log_child)

    def transform(self, age, sex, z):
        return self.median(age, sex) * np.exp(self.sd_log(age) * z)


@dataclass(frozen=True)
class LogNormalByAge:
    """Log-normal per age group, parameterised by the group's arithmetic mean and SD.

    ``measured``: the mean and SD describe *measured* baseline MMTTs (as every published
    aggregate does), so they include the visit's observation error; :meth:`noise_free` gives
    the noise-free value whose measurement reproduces them. ``False``: they describe the
    noise-free value itself.
    """

    age_breaks_years: tuple[float, ...]
    mean: tuple[float, ...]
    sd: tuple[float, ...]
    measured: bool = True

    def group(self, age: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.age_breaks_years), age, side="right")

    def log_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of log x per group: sigma² = ln(1 + sd²/mean²), mu = ln mean − sigma²/2."""
        m, s = np.asarray(self.mean), np.asarray(self.sd)
        s2 = np.log1p((s / m) ** 2)
        return np.log(m) - s2 / 2, np.sqrt(s2)

    def transform(self, age, z):
        mu, sig = self.log_params()
        g = self.group(age)
        return np.exp(mu[g] + sig[g] * z)

    def noise_free(self, age, measured_nmol_l, noise_var, inv_nu=0.0) -> np.ndarray:
        """Noise-free baseline MMTT (nmol/L, ``(n,)``) of patients whose measured value drawn
        from this distribution is ``measured_nmol_l``.

        Each patient keeps its rank in its group: ln c = μ_g + r·(ln y − μ_g) with
        r = s/σ_g, s = :func:`tregsim.observe.deconvolved_sd` (σ_g, √v, ``inv_nu``), where v
        is ``noise_var`` (``(n,)`` or scalar: the variance of ln(observed) about
        ln(noise-free) at the group's median level for a normal deviation, e.g.
        :func:`tregsim.observe.visit_variance_log`; the squared scale of a Student-t one with
        ν = 1/``inv_nu``). For a normal deviation r = √(σ_g² − v)/σ_g and a measurement with
        that error has the group's log-mean μ_g and log-SD σ_g again, i.e. the configured mean
        and SD; for a t deviation it has their interquartile range. The identity when not
        ``measured``.

        Raises
        ------
        ArgumentError : when a group's SD is no wider than the observation error of its median
            patient (a patient whose own draw has a wider error sits at the group median).
        """
        y = np.asarray(measured_nmol_l, float)
        if not self.measured:
            return y.copy()
        from tregsim.observe import deconvolved_sd

        mu, sig = self.log_params()
        g = self.group(np.asarray(age, float))
        v = np.broadcast_to(np.asarray(noise_var, float), y.shape)
        inv = np.broadcast_to(np.asarray(inv_nu, float), y.shape)
        s = deconvolved_sd(sig[g], np.sqrt(v), inv)
        for k in np.unique(g):
            typical = float(np.median(v[g == k]))
            at_median = deconvolved_sd(sig[k], np.sqrt(typical), float(np.median(inv[g == k])))
            if not (typical < sig[k] ** 2 and np.isfinite(at_median)):
                raise ArgumentError(
                    f"age group {k}: the log-SD of the baseline MMTT ({sig[k]:.3f}) is no wider "
                    f"than the observation error alone ({np.sqrt(typical):.3f} on the log scale, "
                    "median over patients)",
                    field="population.cpep_baseline.sd_nmol_L",
                    fix="give the SD of measured baseline MMTTs, or set measured = false if the "
                    "values describe the noise-free C-peptide",
                )
        # a single pathological draw (observation error wider than the group) sits at the median
        r = np.where(np.isfinite(s), s, 0.0) / sig[g]
        return np.exp(mu[g] + r * (np.log(y) - mu[g]))


@dataclass(frozen=True)
class CovariateModel:
    """The joint covariate distribution of ``[population]``."""

    age: object
    p_male: float
    weight: WeightForAge
    cpep_baseline: LogNormalByAge
    fasting_ratio: float
    fasting_sd_log: float
    p_aab: float
    t_baseline: object

    def sample(self, seed: int, start: int, stop: int) -> dict[str, np.ndarray]:
        """Covariates of candidates ``[start, stop)`` (chunk-invariant), each ``(stop-start,)``."""
        age = _rng.draw(
            seed,
            "population.age",
            start,
            stop,
            lambda g, n: self.age.transform(g.random((n, self.age.n_uniforms))),
        )
        sex = _rng.draw(
            seed,
            "population.sex",
            start,
            stop,
            lambda g, n: (g.random(n) < self.p_male).astype(np.int8),
        )
        zw = _rng.draw(seed, "population.weight", start, stop, lambda g, n: g.standard_normal(n))
        zc = _rng.draw(
            seed, "population.cpep_baseline", start, stop, lambda g, n: g.standard_normal(n)
        )
        zf = _rng.draw(
            seed, "population.cpep_fasting", start, stop, lambda g, n: g.standard_normal(n)
        )
        aab = _rng.draw(
            seed, "population.aab_positive", start, stop, lambda g, n: g.random(n) < self.p_aab
        )
        tb = _rng.draw(
            seed,
            "population.t_baseline",
            start,
            stop,
            lambda g, n: self.t_baseline.transform(g.random((n, self.t_baseline.n_uniforms))),
        )
        cpep = self.cpep_baseline.transform(age, zc)
        s = self.fasting_sd_log
        # mean-preserving scatter: E[fasting] = ratio · AUC mean
        fasting = self.fasting_ratio * cpep * 1000.0 * np.exp(s * zf - s * s / 2)
        return {
            "age": age,
            "sex": sex,
            "weight": self.weight.transform(age, sex, zw),
            "cpep_baseline": cpep,
            "cpep0": cpep.copy(),
            "cpep_fasting": fasting,
            "aab_positive": aab,
            "t_baseline": tb,
        }


def parse_population(t: Table) -> CovariateModel:
    """Parse ``[population]`` (see ``experiments/nct06708780.toml`` for every key)."""
    t.check_keys(
        ("age", "sex", "weight", "cpep_baseline", "cpep_fasting", "aab_positive", "t_baseline"),
        required=("age", "weight", "cpep_baseline"),
    )
    lo, hi = AGE_LIMITS_YEARS
    age = parse_scalar(t.table("age"), lo=lo, hi=hi, unit="years")

    sx = t.table("sex", default={})
    sx.check_keys(("p_male",))
    p_male = sx.number("p_male", default=0.5, lo=0.0, hi=1.0)

    w = t.table("weight")
    w.check_keys(
        (
            "ages_years",
            "median_male_kg",
            "median_female_kg",
            "sd_log_child",
            "sd_log_adult",
            "adult_from_years",
        ),
        required=("ages_years", "median_male_kg", "median_female_kg"),
    )
    ages = w.numbers("ages_years", lo=lo, hi=hi, increasing=True, unit="years")
    # plausible human body weights (the heaviest recorded adults are < 650 kg)
    mm = w.numbers("median_male_kg", lo=0.0, lo_open=True, hi=300.0, unit="kg")
    mf = w.numbers("median_female_kg", lo=0.0, lo_open=True, hi=300.0, unit="kg")
    for key, v in (("median_male_kg", mm), ("median_female_kg", mf)):
        if len(v) != len(ages):
            raise w.error(
                f"has {len(v)} values but ages_years has {len(ages)}",
                key=key,
                fix="give one median weight per age in ages_years",
            )
    weight = WeightForAge(
        tuple(ages),
        tuple(mm),
        tuple(mf),
        w.number("sd_log_child", default=0.15, lo=0.0, hi=2.0),
        w.number("sd_log_adult", default=0.18, lo=0.0, hi=2.0),
        w.number("adult_from_years", default=18.0, lo=lo, hi=hi),
    )

    c = t.table("cpep_baseline")
    c.check_keys(
        ("distribution", "age_breaks_years", "mean_nmol_L", "sd_nmol_L", "measured"),
        required=("mean_nmol_L", "sd_nmol_L"),
    )
    c.string("distribution", default="lognormal_by_age", choices=("lognormal_by_age",))
    breaks = c.numbers(
        "age_breaks_years", default=[], lo=lo, hi=hi, increasing=True, min_len=0, unit="years"
    )
    means = c.numbers("mean_nmol_L", lo=0.0, lo_open=True, hi=10.0, unit="nmol/L")
    sds = c.numbers("sd_nmol_L", lo=0.0, lo_open=True, hi=10.0, unit="nmol/L")
    for key, v in (("mean_nmol_L", means), ("sd_nmol_L", sds)):
        if len(v) != len(breaks) + 1:
            raise c.error(
                f"has {len(v)} values for {len(breaks) + 1} age groups",
                key=key,
                fix="give one value per age group (len(age_breaks_years) + 1)",
            )
    cpep = LogNormalByAge(
        tuple(breaks), tuple(means), tuple(sds), c.boolean("measured", default=True)
    )

    f = t.table("cpep_fasting", default={})
    f.check_keys(("ratio", "sd_log"))
    ratio = f.number("ratio", default=0.45, lo=0.0, lo_open=True, hi=10.0)
    f_sd = f.number("sd_log", default=0.3, lo=0.0, hi=3.0)

    a = t.table("aab_positive", default={})
    a.check_keys(("p",))
    p_aab = a.number("p", default=0.9, lo=0.0, hi=1.0)

    tb = (
        parse_scalar(t.table("t_baseline"), lo=0.0, hi=3650.0, unit="days")
        if t.has("t_baseline")
        else Fixed(0.0)
    )
    return CovariateModel(age, p_male, weight, cpep, ratio, f_sd, p_aab, tb)
