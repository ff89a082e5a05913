"""Ensemble slice sampling (Karamanis & Beutler 2021, Statistics and Computing 31:61).

Each walker of one half of the ensemble takes a one-dimensional slice-sampling step
(Neal 2003: stepping out, then shrinkage) along the difference of two walkers of the other
half, scaled by μ. Slice sampling accepts every step and its moves adapt to the local width
of the posterior along the direction, so the ensemble follows curved ridges and long
one-sided tails where an independence proposal built at the MAP is rarely accepted
(docs/calibration.md, "Round 24: ensemble slice sampling for the hard SBC datasets").

μ is tuned during the burn-in only (the expansions-to-contractions rule of Karamanis &
Beutler, as in their zeus package: μ ← 2μ·n_exp/(n_exp + n_con)); after it the kernel is
fixed. Implemented here rather than taken from zeus because zeus draws from numpy's global
random state and replaces the root logger's handlers; this one takes a
:class:`numpy.random.Generator`, so one seed gives one chain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_STEPS_OUT = 10_000
"""Stepping-out limit per side and step (Neal 2003's m; never reached on a proper posterior)."""
MAX_SHRINK = 1_000
"""Shrinkage limit per step; reaching it means the log density is not finite at the walker."""


class SliceEnsemble:
    """An ensemble of ``x0.shape[0]`` walkers (even, at least 2 × dimension) on ``log_prob``.

    ``log_prob``: (d,) → float, −inf outside the support. ``rng``: the only source of
    randomness. ``mu``: the initial scale of the differential direction."""

    def __init__(
        self,
        log_prob: Callable[[np.ndarray], float],
        x0: np.ndarray,
        rng: np.random.Generator,
        mu: float = 1.0,
    ):
        x0 = np.array(x0, float)
        n, d = x0.shape
        if n % 2 or n < 2 * d:
            raise ValueError(
                f"ensemble slice sampling needs an even number ≥ {2 * d} of walkers, got {n}"
            )
        self.log_prob, self.rng, self.mu = log_prob, rng, float(mu)
        self.x = x0
        self.lp = np.array([log_prob(p) for p in x0], float)
        if not np.all(np.isfinite(self.lp)):
            raise ValueError("every starting walker needs a finite log density")
        self.n_evals = 0
        self.chain: list[np.ndarray] = []

    def _slice(self, i: int, direction: np.ndarray) -> tuple[int, int]:
        """One slice step of walker i along ``direction``; (expansions, contractions)."""
        g, f = self.rng, self.log_prob
        x, z = self.x[i], self.lp[i] - g.exponential()
        left = -g.uniform()
        right = left + 1.0
        j = int(np.floor(MAX_STEPS_OUT * g.uniform()))
        k = MAX_STEPS_OUT - 1 - j
        n_exp = n_con = 0
        while j > 0 and f(x + left * direction) > z:
            left -= 1.0
            j -= 1
            n_exp += 1
        while k > 0 and f(x + right * direction) > z:
            right += 1.0
            k -= 1
            n_exp += 1
        self.n_evals += n_exp + 2
        for _ in range(MAX_SHRINK):
            t = g.uniform(left, right)
            y = x + t * direction
            ly = f(y)
            self.n_evals += 1
            if ly > z:
                self.x[i], self.lp[i] = y, ly
                return n_exp, n_con
            if t < 0:
                left = t
            else:
                right = t
            n_con += 1
        raise RuntimeError(
            "slice shrinkage did not find a point above the slice: the log density is "
            "not finite or not defined at a walker"
        )

    def run(self, n_steps: int, tune: bool = False) -> None:
        """``n_steps`` steps; every walker moves once per step (half against half).
        ``tune``: adapt μ after each step (burn-in only)."""
        n = self.x.shape[0]
        for _ in range(int(n_steps)):
            order = self.rng.permutation(n)
            halves = (order[: n // 2], order[n // 2 :])
            n_exp = n_con = 0
            for h in (0, 1):
                active, other = halves[h], halves[1 - h]
                for i in active:
                    a, b = self.rng.choice(other, 2, replace=False)
                    e, c = self._slice(i, self.mu * (self.x[a] - self.x[b]))
                    n_exp += e
                    n_con += c
            if tune and n_exp + n_con > 0:
                self.mu *= 2.0 * max(n_exp, 1) / (n_exp + n_con)
            self.chain.append(self.x.copy())

    def get_chain(self) -> np.ndarray:
        """(steps, walkers, d)."""
        return np.array(self.chain)
