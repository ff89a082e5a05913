"""Importance sampling on a prior bank, leave-one-trial-out weights and SBC.

The unknowns are few (mu, tau, four kinetic parameters, one eta per trial) and the likelihood
(emulators + closed forms) is cheap, so the posterior is computed by self-normalised importance
sampling from the prior: a bank of prior draws is evaluated once; a posterior is a weight
vector on it. This is exact up to Monte-Carlo error, which the effective sample size (ESS)
measures. Leaving a trial out is dropping its terms from the sum of log-likelihoods; SBC reuses
a second bank for every synthetic evidence set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tregsim import rng as trng
from tregsim.calibrate.treatment_effect.hierarchy import KINETICS

HYPER = ("mu", "tau", *KINETICS)


@dataclass
class Bank:
    """Prior draws (name → (n,)), emulated outputs and per-unit log-likelihoods."""

    params: dict
    pred: dict
    loglik: dict  # unit term → (n,)

    def weights(self, exclude_trials=(), terms_of=None) -> np.ndarray:
        """Normalised importance weights, optionally without some trials' terms."""
        ll = np.zeros(len(self.params["mu"]))
        for term, v in self.loglik.items():
            if terms_of and terms_of[term] in exclude_trials:
                continue
            ll = ll + v
        w = np.exp(ll - ll.max())
        return w / w.sum()


def ess(w) -> float:
    """Kish effective sample size of normalised weights."""
    return float(1.0 / np.sum(np.asarray(w) ** 2))


def make_bank(lik, prior, n: int, seed: int, stream: str) -> Bank:
    g = trng.block_generator(seed, stream, 0)
    params = prior.sample(g, n, lik.trials)
    pred = lik.predict(params)
    return Bank(params, pred, lik.loglik_terms(params, pred))


def resample(w, n: int, seed: int, stream: str) -> np.ndarray:
    """Systematic resampling: n indices with probabilities w."""
    g = trng.block_generator(seed, stream, 0)
    u = (g.random() + np.arange(n)) / n
    idx = np.searchsorted(np.cumsum(w), u)
    return np.minimum(idx, len(w) - 1)


def weighted_quantile(x, w, q):
    o = np.argsort(x)
    c = np.cumsum(w[o])
    c = c / c[-1]
    return np.interp(q, c, x[o])


def sbc(lik, prior, *, n_sets: int, n_bank: int, seed: int) -> dict:
    """Simulation-based calibration with importance sampling.

    n_sets true parameter vectors are drawn from the prior; each gives one evidence set
    summarised as the sources report it (:meth:`Likelihood.simulate`); its posterior is the
    reweighted second bank. Returns name → (n_sets,) posterior CDF at the truth (uniform if
    the inference is calibrated), plus ``ess`` (n_sets,).
    """
    g = trng.block_generator(seed, "treatment_effect.sbc.truth", 0)
    truth = prior.sample(g, n_sets, lik.trials)
    pred_t = lik.predict(truth)
    data = lik.simulate(truth, pred_t, trng.block_generator(seed, "treatment_effect.sbc.data", 0))
    g2 = trng.block_generator(seed, "treatment_effect.sbc.bank", 0)
    bank = prior.sample(g2, n_bank, lik.trials)
    pred_b = lik.predict(bank)
    names = list(HYPER) + [f"eta_{t}" for t in lik.trials]
    ranks = {k: np.empty(n_sets) for k in names}
    e = np.empty(n_sets)
    for i in range(n_sets):
        di = {k: v[i] for k, v in data.items()}
        ll = sum(lik.loglik_terms(bank, pred_b, di).values())
        w = np.exp(ll - ll.max())
        w /= w.sum()
        e[i] = ess(w)
        for k in names:
            ranks[k][i] = np.sum(w * (bank[k] < truth[k][i]))
    return {"ranks": ranks, "ess": e}


def coverage(ranks: np.ndarray, level: float) -> float:
    """Fraction of SBC sets whose truth lies in the central ``level`` posterior interval."""
    half = level / 2
    return float(np.mean(np.abs(ranks - 0.5) < half))
