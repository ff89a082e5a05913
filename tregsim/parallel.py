"""One chunked executor for every long computation: in-process, local Dask cluster, or remote.

A long computation (cohort, power, sweep …) is written as a *chunk function*
``fn(start, stop, *args) -> dict[str, np.ndarray]`` that computes items ``[start, stop)``
(patients, trials, θ draws). :func:`run_chunks` calls it over consecutive chunks, in this
process, on a local ``dask.distributed`` cluster (``workers=N``) or on an existing one
(``scheduler="tcp://host:8786"``), shows a progress bar, checkpoints each finished chunk to
``out_dir`` and returns the results in item order.

Identical results everywhere: ``fn`` must draw its random numbers with
``tregsim.rng.draw(seed, stream, start, stop, ...)`` using the *absolute* item indices it
receives. Then item ``i`` gets the same numbers whatever the chunk size, the worker count or
the process, and concatenated results are bitwise identical in all modes and after a resume.
See ``docs/parallel.md``.

Nothing heavy is imported at module top (dask and tqdm load when a run starts), so CLI
modules may import :func:`add_parallel_arguments` cheaply.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tregsim.errors import ArgumentError, TregsimError

ChunkFn = Callable[..., Mapping[str, Any]]
Combine = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]

DEFAULT_CHUNK_SIZE = 1000
"""Items per chunk when a command does not choose: small enough to checkpoint often, large
enough that per-chunk overhead (dispatch, npz write; ~ms) is negligible beside the solver."""

CONNECT_TIMEOUT_S = 10


class ChunkError(RuntimeError):
    """The chunk function failed (or broke its contract) on items ``[start, stop)``.

    The original exception is chained as ``__cause__``. Chunks finished before the failure are
    kept in the checkpoint folder, so a rerun resumes after fixing the cause.
    """

    def __init__(self, message: str, start: int, stop: int):
        super().__init__(message)
        self.start = start
        self.stop = stop


def chunk_bounds(n_items: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of consecutive chunks covering ``[0, n_items)``.

    Chunk ``i`` is ``[i * chunk_size, min((i + 1) * chunk_size, n_items))``; the plan depends only
    on the two numbers, so a resumed run finds the same file names.
    """
    return [(s, min(s + chunk_size, n_items)) for s in range(0, n_items, chunk_size)]


def combine_sum(acc: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A ``combine`` hook adding per-chunk summaries key by key (counts, histograms, sums).

    Integer counts and histograms are exact, so their totals do not depend on the chunk size;
    floating-point sums depend on the order of additions, i.e. on the chunk size (but never on
    the worker count: chunks are always folded in item order).
    """
    if set(acc) != set(part):
        raise KeyError(f"chunk summaries have different keys: {sorted(acc)} vs {sorted(part)}")
    return {k: acc[k] + part[k] for k in acc}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parallel_arguments(
    parser: argparse.ArgumentParser, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> argparse._ArgumentGroup:
    """Add ``--workers``, ``--scheduler``, ``--chunk-size`` and ``--overwrite`` to ``parser``.

    Every long command calls this in its ``add_arguments`` and passes
    ``**parallel_options(args)`` to :func:`run_chunks` and ``args.overwrite`` to
    :func:`tregsim.checkpoint.prepare_output_dir`. ``chunk_size`` is the command's default.
    """
    group = parser.add_argument_group(
        "execution", "where and in what pieces the work runs (results do not depend on it)"
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="run chunks on a local Dask cluster of N worker processes (default: in this process)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run chunks on an existing Dask cluster, e.g. tcp://10.0.0.5:8786",
    )
    group.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=chunk_size,
        metavar="N",
        help="items per chunk, the unit of checkpointing and resume (default: %(default)s)",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="if --out holds results of a different run, discard them instead of refusing",
    )
    return group


def parallel_options(args: argparse.Namespace) -> dict[str, Any]:
    """``{"workers", "scheduler", "chunk_size"}`` from arguments added by
    :func:`add_parallel_arguments`, ready for ``run_chunks(..., **parallel_options(args))``."""
    return {"workers": args.workers, "scheduler": args.scheduler, "chunk_size": args.chunk_size}


class Executor:
    """Where chunks run: this process, a local Dask cluster, or an existing Dask scheduler.

    Use as a context manager to run several :func:`run_chunks` calls on one cluster (starting a
    local cluster costs seconds)::

        with Executor(workers=4) as ex:
            for n in sample_sizes:
                run_chunks(fn, n_trials, chunk_size=100, args=(n,), executor=ex)

    Parameters
    ----------
    workers : start a ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``.
    scheduler : address of a running scheduler (``tcp://host:8786``) to connect a client to.
        At most one of ``workers`` and ``scheduler``; neither means in-process.
    connect_timeout_s : seconds to wait for ``scheduler`` before giving up.
    """

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ):
        if workers is not None and scheduler is not None:
            raise ArgumentError(
                f"got both workers={workers} and scheduler={scheduler!r}",
                field="workers/scheduler",
                fix="give --workers to start a local cluster or --scheduler to use an existing "
                "one, not both",
            )
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1
        ):
            raise ArgumentError(
                f"workers must be a positive integer, got {workers!r}",
                field="workers",
                fix="pass --workers N with N ≥ 1, or omit it to run in this process",
            )
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise ArgumentError(
                f"scheduler must be an address string, got {scheduler!r}",
                field="scheduler",
                fix="pass the address printed by `dask scheduler`, e.g. tcp://10.0.0.5:8786",
            )
        self.workers = None if workers is None else int(workers)
        self.scheduler = scheduler
        self.connect_timeout_s = float(connect_timeout_s)
        self.client = None
        self._cluster = None

    @property
    def mode(self) -> str:
        """``"in-process"``, ``"local-cluster"`` or ``"scheduler"``."""
        if self.workers is not None:
            return "local-cluster"
        return "scheduler" if self.scheduler is not None else "in-process"

    def start(self) -> Executor:
        """Start the local cluster / connect to the scheduler (no-op in-process or if started)."""
        if self.client is not None or self.mode == "in-process":
            return self
        from distributed import Client, LocalCluster

        if self.workers is not None:
            import dask

            saved_environ = dict(os.environ)
            # Dask's default MALLOC_TRIM_THRESHOLD_=65536 freezes glibc's mmap threshold, so
            # every numpy temporary above 128 KiB is mmap'ed, page-faulted and unmapped again:
            # a CPU-bound numpy chunk ran 7x slower in the workers than in-process
            # (benchmarks/bench_parallel.py). None unsets it (distributed.nanny docs).
            try:
                with dask.config.set(
                    {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
                ):
                    self._cluster = LocalCluster(
                        n_workers=self.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",  # a free port: never clash with another cluster
                        silence_logs=logging.CRITICAL,  # chunk failures are re-raised here, once
                    )
            finally:
                # The nanny exports its worker environment into this process too; undo that
                # so later subprocesses (other commands, tests) do not inherit it.
                os.environ.clear()
                os.environ.update(saved_environ)
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(self.scheduler, timeout=f"{self.connect_timeout_s}s")
            except (OSError, ValueError, TypeError) as e:
                raise ArgumentError(
                    f"cannot connect to Dask scheduler {self.scheduler!r} within "
                    f"{self.connect_timeout_s:g} s ({type(e).__name__}: {e})",
                    field="scheduler",
                    fix="start it with `dask scheduler` and pass the address it prints, or "
                    "use --workers N for a local cluster",
                ) from e
        return self

    @property
    def address(self) -> str | None:
        """Scheduler address of the started cluster (``None`` in-process or before start)."""
        return None if self.client is None else self.client.scheduler.address

    @property
    def n_slots(self) -> int:
        """Chunks that can run at the same time (1 in-process; total worker threads otherwise)."""
        if self.client is None:
            return 1
        return max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this executor started it."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class _Task:
    """``fn`` and its extra arguments, shipped to every worker once (not once per chunk)."""

    def __init__(self, fn: ChunkFn, args: tuple):
        self.fn = fn
        self.args = args

    def __call__(self, start: int, stop: int) -> Mapping[str, Any]:
        return self.fn(start, stop, *self.args)


class _ShippedTregsimError(Exception):
    """A TregsimError on its way back from a worker, with its fields.

    ``TregsimError`` pickles through ``args`` only (the formatted message), so a plain copy
    arrives as ``"<input>: file: [field] …"``; this carrier rebuilds the original.
    """

    def rebuild(self) -> TregsimError:
        cls, problem, file, field, fix = self.args
        return cls(problem, file=file, field=field, fix=fix)


def _call(task: _Task, start: int, stop: int) -> Mapping[str, Any]:
    try:
        return task(start, stop)
    except TregsimError as e:
        raise _ShippedTregsimError(type(e), e.problem, e.file, e.field, e.fix) from None


def _fn_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _failure(exc: BaseException, fn: Callable, start: int, stop: int, n: int) -> BaseException:
    """The exception to raise for a failed chunk: same type for user-input errors, so the CLI
    still prints one line and exits 2; otherwise a ChunkError naming the range."""
    where = f"items [{start}, {stop}) of {n}"
    if isinstance(exc, TregsimError):
        exc.problem = f"{exc.problem} (in {where})"
        exc.args = (exc._format(),)
        return exc
    return ChunkError(
        f"{_fn_name(fn)} failed on {where}: {type(exc).__name__}: {exc}", start=start, stop=stop
    )


def _check_part(
    part: object, fn: Callable, start: int, stop: int, concat: bool, keys: list[str] | None
) -> dict[str, np.ndarray]:
    def bad(problem: str) -> ChunkError:
        return ChunkError(
            f"{_fn_name(fn)} on items [{start}, {stop}) {problem}", start=start, stop=stop
        )

    if not isinstance(part, Mapping) or not part:
        raise bad(f"returned {type(part).__name__}, expected a non-empty dict name -> array")
    out = {}
    for k, v in part.items():
        if not isinstance(k, str):
            raise bad(f"returned key {k!r}; keys must be strings")
        a = np.asarray(v)
        if a.dtype.hasobject:
            raise bad(f"returned {k!r} of dtype object; use numeric, bool or fixed-width str")
        if concat and (a.ndim == 0 or a.shape[0] != stop - start):
            raise bad(
                f"returned {k!r} of shape {a.shape}; its first axis must have "
                f"stop - start = {stop - start} items (or pass combine= for summaries)"
            )
        out[k] = a
    if keys is not None and sorted(out) != keys:
        raise bad(f"returned keys {sorted(out)}, but earlier chunks returned {keys}")
    return out


def run_chunks(
    fn: ChunkFn,
    n_items: int,
    *,
    chunk_size: int,
    args: Sequence = (),
    out_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Executor | None = None,
    combine: Combine | None = None,
    stage: str | None = None,
    progress: bool = True,
    desc: str = "chunks",
) -> dict[str, np.ndarray]:
    """Run ``fn(start, stop, *args)`` over consecutive chunks of ``[0, n_items)``.

    Main arguments
    --------------
    fn : chunk function; returns ``dict[str, np.ndarray]``. Without ``combine`` every array's
        first axis has ``stop - start`` items. Must be picklable (a module-level function or a
        picklable callable) when run on Dask, and must draw randomness with
        ``tregsim.rng.draw(seed, stream, start, stop, ...)`` so results do not depend on chunking.
    n_items : number of items (patients, trials, draws), ≥ 0.
    chunk_size : items per chunk (≥ 1); also the checkpoint granularity.
    args : extra positional arguments of ``fn``; shipped to each Dask worker once.
    out_dir : checkpoint folder, already prepared by
        :func:`tregsim.checkpoint.prepare_output_dir`. Each finished chunk is written
        atomically to ``out_dir/chunks[/stage]/<start>-<stop>.npz``; chunks already there are
        loaded instead of recomputed (resume). Files are written by this (the client) process,
        so a remote cluster needs no shared file system.
    workers, scheduler, executor : where to run: in this process (default), on a new local
        cluster of ``workers`` processes, on the scheduler at address ``scheduler``, or on an
        already started :class:`Executor` (give at most one).

    Other arguments
    ---------------
    combine : ``combine(acc, part) -> acc`` folds per-chunk summaries instead of concatenating
        (e.g. :func:`combine_sum` for counts/histograms/sums), so a 10⁶-patient cohort needs
        memory for one chunk plus the summaries. Folding is always in chunk order.
    stage : sub-folder of ``out_dir/chunks`` for commands that run several loops in one folder.
    progress : show a tqdm bar over chunks on stderr.
    desc : label of the progress bar.

    Returns
    -------
    Without ``combine``: each key concatenated over chunks in item order, first axis
    ``n_items``. With ``combine``: the folded summary. For ``n_items == 0``, ``fn(0, 0, *args)``.

    Raises
    ------
    ChunkError : ``fn`` raised (chained as ``__cause__``) or broke its contract; the message
        names the item range. A :class:`tregsim.errors.TregsimError` raised by ``fn`` keeps its
        type, with the range appended to its message.
    ArgumentError, OutputFolderError : invalid arguments; a checkpoint folder of another run or
        another chunk plan.
    """
    args = tuple(args)
    for name, value, low in (("n_items", n_items, 0), ("chunk_size", chunk_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ArgumentError(
                f"{name} must be an integer ≥ {low}, got {value!r}",
                field=name,
                fix=f"pass {name} as an integer ≥ {low}",
            )
    if executor is not None and (workers is not None or scheduler is not None):
        raise ArgumentError(
            "got an executor together with workers/scheduler",
            field="executor",
            fix="configure the Executor with workers/scheduler and pass only executor=",
        )
    if executor is not None and executor.mode != "in-process" and executor.client is None:
        raise ArgumentError(
            f"the {executor.mode} executor was not started (or is already closed)",
            field="executor",
            fix="use it as a context manager: `with Executor(...) as ex: run_chunks(..., "
            "executor=ex)`",
        )
    own = executor is None
    ex = Executor(workers=workers, scheduler=scheduler) if own else executor
    n_items, chunk_size = int(n_items), int(chunk_size)
    concat = combine is None

    if n_items == 0:
        try:
            part = fn(0, 0, *args)
        except Exception as exc:
            raise _failure(exc, fn, 0, 0, 0) from exc
        return _check_part(part, fn, 0, 0, concat, None)

    bounds = chunk_bounds(n_items, chunk_size)
    store = None
    if out_dir is not None:
        from tregsim.checkpoint import ChunkStore

        store = ChunkStore(out_dir, n_items, chunk_size, "concat" if concat else "combine", stage)

    state = _Collector(fn, bounds, concat, combine, store)
    todo = []
    for i, (s, e) in enumerate(bounds):
        saved = store.load(s, e) if store is not None else None
        if saved is None:
            todo.append(i)
        else:
            state.accept(i, saved, computed=False)

    if not todo:
        return state.result()
    from tqdm.auto import tqdm

    if own:
        ex.start()
    try:
        # The bar starts after the cluster is up, so its rate measures chunks, not start-up.
        with tqdm(
            total=len(bounds),
            initial=len(bounds) - len(todo),
            desc=desc,
            unit="chunk",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            if ex.client is None:
                _run_in_process(fn, args, bounds, todo, n_items, state, bar)
            else:
                _run_on_dask(ex, fn, args, bounds, todo, n_items, state, bar)
    finally:
        if own:
            ex.close()
    return state.result()


class _Collector:
    """Accepts chunk results in any order; concatenates or folds them in chunk order."""

    def __init__(self, fn, bounds, concat: bool, combine: Combine | None, store):
        self.fn, self.bounds, self.concat, self.combine, self.store = (
            fn,
            bounds,
            concat,
            combine,
            store,
        )
        self.keys: list[str] | None = None
        self.waiting: dict[int, dict[str, np.ndarray]] = {}
        self.parts: list[dict[str, np.ndarray]] = []
        self.acc: dict[str, np.ndarray] | None = None
        self.next = 0

    @property
    def n_buffered(self) -> int:
        """Results held out of order (combine mode keeps this bounded)."""
        return len(self.waiting)

    def accept(self, i: int, part: Mapping, computed: bool) -> None:
        s, e = self.bounds[i]
        checked = _check_part(part, self.fn, s, e, self.concat, self.keys)
        if self.keys is None:
            self.keys = sorted(checked)
        if computed and self.store is not None:
            self.store.save(s, e, checked)
        self.waiting[i] = checked
        while self.next in self.waiting:
            p = self.waiting.pop(self.next)
            if self.concat:
                self.parts.append(p)
            else:
                self.acc = p if self.acc is None else self.combine(self.acc, p)
            self.next += 1

    def result(self) -> dict[str, np.ndarray]:
        if self.next != len(self.bounds):
            raise RuntimeError(f"internal: {self.next} of {len(self.bounds)} chunks collected")
        if not self.concat:
            return self.acc
        if len(self.parts) == 1:
            return self.parts[0]
        return {k: np.concatenate([p[k] for p in self.parts]) for k in self.keys}


def _run_in_process(fn, args, bounds, todo, n_items, state: _Collector, bar) -> None:
    for i in todo:
        s, e = bounds[i]
        try:
            part = fn(s, e, *args)
        except Exception as exc:
            raise _failure(exc, fn, s, e, n_items) from exc
        state.accept(i, part, computed=True)
        bar.update(1)


def _run_on_dask(ex: Executor, fn, args, bounds, todo, n_items, state: _Collector, bar) -> None:
    from distributed import as_completed

    client = ex.client
    # A bounded window of submitted-but-unfolded chunks: keeps every worker busy while the
    # memory held on the client (combine mode) or on workers stays O(window × chunk).
    window = 2 * ex.n_slots + 1
    task = client.scatter(_Task(fn, args), broadcast=True, hash=False)
    pending = iter(todo)
    running: dict[Any, int] = {}
    completed = as_completed()

    def submit_more() -> None:
        buffered = 0 if state.concat else state.n_buffered
        while len(running) + buffered < window:
            i = next(pending, None)
            if i is None:
                return
            s, e = bounds[i]
            fut = client.submit(_call, task, s, e, pure=False)
            running[fut] = i
            completed.add(fut)

    try:
        submit_more()
        for fut in completed:
            i = running.pop(fut)
            if fut.status == "error":
                _raise_first_failure(fn, bounds, n_items, state, bar, running, {i: fut})
            if fut.status != "finished":
                s, e = bounds[i]
                raise ChunkError(
                    f"items [{s}, {e}) of {n_items} were {fut.status} by the Dask cluster "
                    "(scheduler or workers lost?); rerun the same command to resume from the "
                    "finished chunks",
                    start=s,
                    stop=e,
                )
            part = fut.result()
            fut.release()
            state.accept(i, part, computed=True)
            bar.update(1)
            submit_more()
    finally:
        if running:
            client.cancel(list(running))
        task.release()


def _raise_first_failure(fn, bounds, n_items, state: _Collector, bar, running, failed) -> None:
    """Settle the chunks before the failed one, then raise for the first failure in item order.

    Chunks are submitted in order, so this reports the same chunk as an in-process run would,
    and every earlier chunk that succeeds is still checkpointed for the resume.
    """
    from distributed import wait

    first = min(failed)
    earlier = [f for f, j in running.items() if j < first]
    wait(earlier)
    for f in earlier:
        j = running.pop(f)
        if f.status == "error":
            failed[j] = f
        else:
            state.accept(j, f.result(), computed=True)
            bar.update(1)
    first = min(failed)
    s, e = bounds[first]
    try:
        failed[first].result()
    except _ShippedTregsimError as shipped:
        exc = shipped.rebuild()
        raise _failure(exc, fn, s, e, n_items) from None
    except Exception as exc:
        raise _failure(exc, fn, s, e, n_items) from exc
    raise RuntimeError(f"internal: chunk [{s}, {e}) reported an error but raised none")
