"""Prior distributions of model parameters, declared in model files as tables.

``prior = { dist = "lognormal", median = 1.7e-3, sdlog = 0.5 }`` and friends; see
:data:`DISTRIBUTIONS` for every distribution and its fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from tregsim.errors import ModelFileError


class _LogitNormal(stats.rv_continuous):
    """x in (0, 1) with logit(x) ~ N(mu, sigma): a fraction whose uncertainty is stated on the
    logit scale (e.g. a deceleration q near 0, where a beta with a < 1 has an unbounded
    density and a tail that samplers in logit coordinates do not reach)."""

    def _argcheck(self, mu, sigma):
        return np.isfinite(mu) & (sigma > 0)

    def _logpdf(self, x, mu, sigma):
        # scipy passes the closed support [0, 1]; x = expit(u) rounds to 1 for u > 37, where
        # the density's limit is 0 (log −inf), not inf − inf
        inside = (x > 0) & (x < 1)
        xs = np.where(inside, x, 0.5)
        z = (special.logit(xs) - mu) / sigma
        lp = -0.5 * z * z - np.log(sigma * np.sqrt(2 * np.pi)) - np.log(xs) - np.log1p(-xs)
        return np.where(inside, lp, -np.inf)

    def _pdf(self, x, mu, sigma):
        return np.exp(self._logpdf(x, mu, sigma))

    def _cdf(self, x, mu, sigma):
        return special.ndtr((special.logit(x) - mu) / sigma)

    def _ppf(self, q, mu, sigma):
        return special.expit(mu + sigma * special.ndtri(q))


logitnorm = _LogitNormal(a=0.0, b=1.0, name="logitnorm")

DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "lognormal": ("median", "sdlog"),
    "normal": ("mean", "sd"),  # optional lower / upper truncation
    "halfnormal": ("scale",),
    "beta": ("a", "b"),
    "uniform": ("lower", "upper"),
    "loguniform": ("lower", "upper"),
    "logitnormal": ("mu", "sigma"),  # logit(x) ~ N(mu, sigma), x in (0, 1)
}
_OPTIONAL = {"normal": ("lower", "upper"), "beta": ("lower", "upper")}


@dataclass(frozen=True)
class Prior:
    """A univariate prior. ``bounds`` is its support (lower, upper)."""

    dist: str
    args: dict[str, float] = field(default_factory=dict)

    def frozen(self):
        a = self.args
        if self.dist == "lognormal":
            return stats.lognorm(s=a["sdlog"], scale=a["median"])
        if self.dist == "normal":
            lo, hi = a.get("lower", -np.inf), a.get("upper", np.inf)
            if math.isinf(lo) and math.isinf(hi):
                return stats.norm(a["mean"], a["sd"])
            return stats.truncnorm(
                (lo - a["mean"]) / a["sd"], (hi - a["mean"]) / a["sd"], loc=a["mean"], scale=a["sd"]
            )
        if self.dist == "halfnormal":
            return stats.halfnorm(scale=a["scale"])
        if self.dist == "beta":
            lo, hi = a.get("lower", 0.0), a.get("upper", 1.0)
            return stats.beta(a["a"], a["b"], loc=lo, scale=hi - lo)
        if self.dist == "uniform":
            return stats.uniform(a["lower"], a["upper"] - a["lower"])
        if self.dist == "loguniform":
            return stats.loguniform(a["lower"], a["upper"])
        if self.dist == "logitnormal":
            return logitnorm(a["mu"], a["sigma"])
        raise AssertionError(self.dist)

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        """Draws of shape ``size`` (inverse-CDF, so one uniform per draw)."""
        return self.ppf(rng.random(size))

    def ppf(self, u):
        return self.frozen().ppf(u)

    def logpdf(self, x):
        return self.frozen().logpdf(x)

    def scalar_logpdf(self):
        """``x → logpdf(x)`` for one float, in closed form where there is one (lognormal,
        untruncated normal, halfnormal, logitnormal): a sampler calls it thousands of times per
        run, and scipy's frozen ``logpdf`` spends ≈ 40 µs per call checking its arguments.
        Other distributions fall back to scipy. Equal to :meth:`logpdf` to rounding (tested)."""
        a = self.args
        log_sqrt_2pi = 0.5 * math.log(2.0 * math.pi)
        if self.dist == "lognormal":
            s, log_med = a["sdlog"], math.log(a["median"])
            c = math.log(s) + log_sqrt_2pi

            def lognormal(x: float) -> float:
                if not x > 0:
                    return -math.inf
                lx = math.log(x)
                z = (lx - log_med) / s
                return -0.5 * z * z - c - lx

            return lognormal
        if self.dist == "normal" and "lower" not in a and "upper" not in a:
            m, sd = a["mean"], a["sd"]
            c = math.log(sd) + log_sqrt_2pi

            def normal(x: float) -> float:
                z = (x - m) / sd
                return -0.5 * z * z - c

            return normal
        if self.dist == "halfnormal":
            sc = a["scale"]
            c = math.log(sc) + log_sqrt_2pi - math.log(2.0)

            def halfnormal(x: float) -> float:
                if not x >= 0:
                    return -math.inf
                z = x / sc
                return -0.5 * z * z - c

            return halfnormal
        if self.dist == "logitnormal":
            mu, sg = a["mu"], a["sigma"]
            c = math.log(sg) + log_sqrt_2pi

            def logitnormal(x: float) -> float:
                if not 0 < x < 1:
                    return -math.inf
                lx, l1x = math.log(x), math.log1p(-x)
                z = (lx - l1x - mu) / sg
                return -0.5 * z * z - c - lx - l1x

            return logitnormal
        f = self.frozen()
        return lambda x: float(f.logpdf(x))

    @property
    def bounds(self) -> tuple[float, float]:
        lo, hi = self.frozen().support()
        return float(lo), float(hi)

    def describe(self) -> str:
        """Short text like ``LN(0.0017, 0.5)`` for tables and reports."""
        a = self.args
        if self.dist == "lognormal":
            return f"LN({a['median']:.4g}, {a['sdlog']:.3g})"
        if self.dist == "normal":
            s = f"N({a['mean']:.4g}, {a['sd']:.3g})"
            if "lower" in a or "upper" in a:
                s += f" in [{a.get('lower', '-inf')}, {a.get('upper', 'inf')}]"
            return s
        if self.dist == "halfnormal":
            return f"half-N({a['scale']:.3g})"
        if self.dist == "beta":
            return f"Beta({a['a']:.3g}, {a['b']:.3g})"
        if self.dist == "logitnormal":
            return f"logit-N({a['mu']:.4g}, {a['sigma']:.3g})"
        return f"{self.dist}({a['lower']:.4g}, {a['upper']:.4g})"


def parse_prior(table: object, *, file: object, key: str) -> Prior:
    """Validate a prior table from a model file."""
    if not isinstance(table, dict):
        raise ModelFileError(
            f"prior must be a table, got {table!r}",
            file=file,
            field=key,
            fix='write e.g. prior = { dist = "lognormal", median = 1, sdlog = 0.5 }',
        )
    dist = table.get("dist")
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise ModelFileError(
            f"unknown prior distribution {dist!r}",
            file=file,
            field=key + ".dist",
            fix=f"use one of {', '.join(DISTRIBUTIONS)}",
        )
    need = DISTRIBUTIONS[dist]
    allowed = set(need) | set(_OPTIONAL.get(dist, ())) | {"dist"}
    unknown = set(table) - allowed
    if unknown:
        raise ModelFileError(
            f"unknown field(s) {sorted(unknown)} for a {dist} prior",
            file=file,
            field=key,
            fix=f"valid fields: {', '.join(sorted(allowed))}",
        )
    args = {}
    for k in sorted(allowed - {"dist"}):
        if k not in table:
            if k in need:
                raise ModelFileError(
                    f"{dist} prior needs {k!r}", file=file, field=key, fix=f"add {k} = <number>"
                )
            continue
        v = table[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ModelFileError(
                f"{k} must be a finite number, got {v!r}",
                file=file,
                field=f"{key}.{k}",
                fix="write a number",
            )
        args[k] = float(v)
    positive = {"sdlog", "sd", "scale", "a", "b", "median", "sigma"}
    for k in positive & set(args):
        if args[k] <= 0:
            raise ModelFileError(
                f"{k} must be > 0, got {args[k]}",
                file=file,
                field=f"{key}.{k}",
                fix="use a positive number",
            )
    if "lower" in args and "upper" in args and not args["lower"] < args["upper"]:
        raise ModelFileError(
            f"lower ({args['lower']}) must be < upper ({args['upper']})",
            file=file,
            field=key,
            fix="swap or correct the bounds",
        )
    if dist == "loguniform" and args["lower"] <= 0:
        raise ModelFileError(
            "loguniform lower bound must be > 0",
            file=file,
            field=key + ".lower",
            fix="use a positive lower bound",
        )
    return Prior(dist, args)
