"""Random streams that do not depend on chunking or worker count.

Every random draw in tregsim flows from one integer seed. Items (patients, trials, θ draws)
are grouped in fixed *blocks* of :data:`BLOCK` items; block ``b`` of stream ``name`` gets its
own generator from ``SeedSequence(seed, spawn_key=(hash(name), b))``. A chunk ``[start, stop)``
draws the blocks it overlaps and slices them, so item ``i`` always receives the same numbers
whatever the chunk boundaries or the process that computes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

BLOCK = 1024
"""Items per random block. Changing it changes every result: it is part of the seed contract."""


def stream_key(name: str) -> int:
    """A stable 32-bit integer for a stream name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def block_generator(seed: int, name: str, block: int) -> np.random.Generator:
    """The generator of block ``block`` of stream ``name`` under ``seed``."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(stream_key(name), int(block)))
    return np.random.Generator(np.random.PCG64(ss))


def draw(
    seed: int,
    name: str,
    start: int,
    stop: int,
    fn: Callable[[np.random.Generator, int], np.ndarray | dict],
) -> np.ndarray | dict:
    """Draw items ``[start, stop)`` of stream ``name``.

    ``fn(rng, n)`` must return an array whose first axis has length ``n`` (or a dict of such
    arrays) and must consume the generator in the same way for the same ``n``. It is always
    called with ``n = BLOCK``, so results are independent of ``start``/``stop`` boundaries.

    Returns
    -------
    Array (or dict of arrays) with first axis ``stop - start``.
    """
    if stop < start:
        raise ValueError(f"stop ({stop}) < start ({start})")
    if stop == start:
        out = fn(block_generator(seed, name, 0), BLOCK)
        return {k: v[:0] for k, v in out.items()} if isinstance(out, dict) else out[:0]
    pieces = []
    for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        out = fn(block_generator(seed, name, b), BLOCK)
        lo = max(start - b * BLOCK, 0)
        hi = min(stop - b * BLOCK, BLOCK)
        if isinstance(out, dict):
            pieces.append({k: v[lo:hi] for k, v in out.items()})
        else:
            pieces.append(out[lo:hi])
    if isinstance(pieces[0], dict):
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    return np.concatenate(pieces)
