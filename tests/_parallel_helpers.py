"""Reusable check that a chunk function gives bitwise-identical results in every mode.

Used by tests/test_parallel.py; other tests (cohort, power, sweep) import it the same way::

    from _parallel_helpers import assert_same_everywhere
    assert_same_everywhere(my_chunk_fn, 500, args=(exp, seed), chunk_sizes=(64, 200),
                           scheduler=dask_scheduler)   # the module-scope cluster fixture
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tregsim.parallel import run_chunks


def assert_bitwise_equal(a: dict, b: dict, what: str = "") -> None:
    """Same keys, dtypes, shapes and bytes (NaN payloads included)."""
    assert sorted(a) == sorted(b), f"{what}: keys {sorted(a)} vs {sorted(b)}"
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype, f"{what}: {k!r} dtype {x.dtype} vs {y.dtype}"
        assert x.shape == y.shape, f"{what}: {k!r} shape {x.shape} vs {y.shape}"
        if x.tobytes() != y.tobytes():
            diff = np.flatnonzero(x.reshape(-1) != y.reshape(-1))
            raise AssertionError(f"{what}: {k!r} differs at {diff.size} elements, first {diff[:5]}")


def assert_same_everywhere(
    fn: Callable,
    n_items: int,
    *,
    args: Sequence = (),
    chunk_sizes: Sequence[int] = (7, 300),
    scheduler: str | None = None,
    workers: int | None = None,
    combine: Callable | None = None,
    combine_chunk_invariant: bool = False,
) -> dict:
    """Run ``fn`` in one chunk in-process (the reference), then with each of ``chunk_sizes``
    in-process and, if given, on ``scheduler`` / a new local cluster of ``workers``; assert all
    results are bitwise identical to the reference. Returns the reference.

    With ``combine`` the fold depends on the chunk size for float sums, so the reference is the
    in-process run with ``chunk_sizes[0]`` and the other chunk sizes are not compared, unless
    ``combine_chunk_invariant`` (the caller's summaries are exact under rechunking, e.g. integer
    histograms and per-block rows, as in ``tregsim.cohort``).
    """
    kw = {"args": args, "combine": combine, "progress": False}
    if combine is None or combine_chunk_invariant:
        ref = run_chunks(fn, n_items, chunk_size=max(n_items, 1), **kw)
        for cs in chunk_sizes:
            assert_bitwise_equal(ref, run_chunks(fn, n_items, chunk_size=cs, **kw), f"chunk {cs}")
    else:
        ref = run_chunks(fn, n_items, chunk_size=chunk_sizes[0], **kw)
    cs = chunk_sizes[0]
    if scheduler is not None:
        got = run_chunks(fn, n_items, chunk_size=cs, scheduler=scheduler, **kw)
        assert_bitwise_equal(ref, got, f"scheduler, chunk {cs}")
    if workers is not None:
        got = run_chunks(fn, n_items, chunk_size=cs, workers=workers, **kw)
        assert_bitwise_equal(ref, got, f"{workers} local workers, chunk {cs}")
    return ref
