"""Gaussian-process emulators of the trials' simulated outputs over (φ, kinetics).

Inputs are the design coordinates on the log scale, with log φ replaced by log(φ·FX): after
the expansion phase the infused pool scales with FX, so the effect depends on φ and FX mostly
through their product, and the GP sees one dominant direction. Inputs are scaled to the design
box, outputs standardised. Kernel: squared exponential with one length scale per input plus a
nugget (the outputs carry Monte-Carlo noise from finite virtual cohorts); hyperparameters by
maximum marginal likelihood (L-BFGS-B, a few starts). Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

TRANSFORMS = {
    "d": (lambda y: y, lambda u: u),
    "se": (np.log, np.exp),
    "nodecline": (lambda y: np.log(y / (1 - y)), lambda u: 1 / (1 + np.exp(-u))),
    "r_dose": (np.arctanh, np.tanh),
    "pct": (lambda y: np.log1p(y / 100.0), lambda u: 100.0 * np.expm1(u)),
}
"""Output kind → (to the emulated scale, back): the last part of an output name."""


def features(thetas: np.ndarray) -> np.ndarray:
    """(n, 5) natural-scale (φ, FX, F_M, α_X, β_M) → (n, 5) log(φ·FX), log FX, log F_M,
    log α_X, log β_M."""
    t = np.log(np.asarray(thetas, float))
    return np.column_stack([t[:, 0] + t[:, 1], t[:, 1], t[:, 2], t[:, 3], t[:, 4]])


@dataclass
class GP:
    """A fitted GP on standardised inputs/outputs (see the module docstring)."""

    x: np.ndarray
    lo: np.ndarray
    span: np.ndarray
    y_mean: float
    y_sd: float
    log_ell: np.ndarray
    log_sf: float
    log_sn: float
    alpha: np.ndarray
    kind: str

    def _k(self, a, b):
        ell = np.exp(self.log_ell)
        d2 = (((a[:, None, :] - b[None, :, :]) / ell) ** 2).sum(-1)
        return np.exp(2 * self.log_sf - 0.5 * d2)

    def predict(self, feats: np.ndarray, chunk: int = 20000) -> np.ndarray:
        """Emulated output at (n, 5) features, on the output's natural scale, (n,)."""
        u = (np.asarray(feats, float) - self.lo) / self.span
        out = np.empty(len(u))
        for s in range(0, len(u), chunk):
            out[s : s + chunk] = self._k(u[s : s + chunk], self.x) @ self.alpha
        return TRANSFORMS[self.kind][1](self.y_mean + self.y_sd * out)


def _nll(p, x, y):
    d = x.shape[1]
    ell, sf, sn = np.exp(p[:d]), np.exp(p[d]), np.exp(p[d + 1])
    d2 = (((x[:, None, :] - x[None, :, :]) / ell) ** 2).sum(-1)
    K = sf**2 * np.exp(-0.5 * d2) + (sn**2 + 1e-8) * np.eye(len(x))
    try:
        c = linalg.cho_factor(K, lower=True)
    except linalg.LinAlgError:
        return 1e10
    a = linalg.cho_solve(c, y)
    return 0.5 * y @ a + np.log(np.diag(c[0])).sum()


def fit_gp(feats: np.ndarray, y: np.ndarray, kind: str, *, seed: int = 0, n_starts: int = 3) -> GP:
    """Fit a GP to (n, 5) features and (n,) outputs of kind ``kind`` (see TRANSFORMS)."""
    fwd = TRANSFORMS[kind][0]
    yt = fwd(np.asarray(y, float))
    ok = np.isfinite(yt)
    x, yt = np.asarray(feats, float)[ok], yt[ok]
    lo, span = x.min(0), np.ptp(x, 0) + 1e-12
    u = (x - lo) / span
    ym, ys = yt.mean(), yt.std() + 1e-12
    ys_ = (yt - ym) / ys
    rng = np.random.default_rng(seed)
    best = None
    d = u.shape[1]
    for k in range(n_starts):
        p0 = np.r_[np.log(rng.uniform(0.2, 1.0, d)) if k else np.log(np.full(d, 0.5)), 0.0, -3.0]
        bounds = [(-4.0, 3.0)] * d + [(-3.0, 3.0), (-9.0, 0.0)]
        r = optimize.minimize(_nll, p0, args=(u, ys_), method="L-BFGS-B", bounds=bounds)
        if best is None or r.fun < best.fun:
            best = r
    p = best.x
    ell, sf, sn = np.exp(p[:d]), np.exp(p[d]), np.exp(p[d + 1])
    d2 = (((u[:, None, :] - u[None, :, :]) / ell) ** 2).sum(-1)
    K = sf**2 * np.exp(-0.5 * d2) + (sn**2 + 1e-8) * np.eye(len(u))
    alpha = linalg.cho_solve(linalg.cho_factor(K, lower=True), ys_)
    return GP(u, lo, span, ym, ys, p[:d], p[d], p[d + 1], alpha, kind)


def fit_emulators(thetas, outputs: dict, names, *, seed: int = 0) -> dict[str, GP]:
    """One GP per output name (``<trial>.m<month>.<kind>``)."""
    f = features(thetas)
    return {n: fit_gp(f, outputs[n], n.rsplit(".", 1)[1], seed=seed) for n in names}


def holdout_errors(emulators: dict, thetas, outputs: dict) -> dict[str, dict]:
    """Per output: RMSE and max |error| of the emulator at held-out points (natural scale)."""
    f = features(thetas)
    res = {}
    for n, gp in emulators.items():
        pred = gp.predict(f)
        e = pred - outputs[n]
        ok = np.isfinite(e)
        res[n] = {
            "rmse": float(np.sqrt(np.mean(e[ok] ** 2))),
            "max_abs": float(np.max(np.abs(e[ok]))),
            "sd_of_output": float(np.std(outputs[n][ok])),
        }
    return res
