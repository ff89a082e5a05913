"""The chunked executor: identical bits in-process, on a real Dask cluster and for any chunking."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _chunk_toy import (
    STREAM,
    combine_in_order,
    toy_chunk,
    toy_draws,
    toy_summary,
    toy_transform,
)
from _parallel_helpers import assert_bitwise_equal, assert_same_everywhere

from tregsim import io, rng
from tregsim.checkpoint import prepare_output_dir
from tregsim.errors import ArgumentError, DataFileError
from tregsim.parallel import (
    ChunkError,
    Executor,
    add_parallel_arguments,
    chunk_bounds,
    combine_sum,
    parallel_options,
    run_chunks,
)

SEED = 20260611
N = 2500  # spans three random blocks of 1024 items


@pytest.fixture(scope="module")
def cluster():
    """One real 2-process LocalCluster for the whole module (start-up costs seconds)."""
    before = dict(os.environ)
    with Executor(workers=2) as ex:
        yield SimpleNamespace(
            address=ex.address, client=ex.client, environ_before=before, environ=dict(os.environ)
        )


@pytest.fixture(scope="module")
def dask_scheduler(cluster):
    """Address of the module's cluster, for ``run_chunks(..., scheduler=...)``."""
    return cluster.address


def _reference(n: int, seed: int) -> dict[str, np.ndarray]:
    """Independent of run_chunks and rng.draw: walk the blocks of the stream by hand."""
    zs, us = [], []
    for b in range(-(-n // rng.BLOCK)):
        d = toy_draws(rng.block_generator(seed, STREAM, b), rng.BLOCK)
        zs.append(d["z"])
        us.append(d["u"])
    z, u = np.concatenate(zs)[:n], np.concatenate(us)[:n]
    return toy_transform(z, u, np.arange(n))


def test_chunk_bounds_cover_items_once():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(8, 4) == [(0, 4), (4, 8)]
    assert chunk_bounds(3, 100) == [(0, 3)]
    assert chunk_bounds(0, 5) == []


def test_in_process_matches_hand_built_reference():
    got = run_chunks(toy_chunk, N, chunk_size=300, args=(SEED,), progress=False)
    assert_bitwise_equal(_reference(N, SEED), got, "vs reference")
    # and the seed matters
    other = run_chunks(toy_chunk, N, chunk_size=300, args=(SEED + 1,), progress=False)
    assert not np.array_equal(got["p"], other["p"])


def test_chunk_size_one_and_block_sized_chunks():
    ref = _reference(40, SEED)
    for cs in (1, 3, 40, 1024):
        got = run_chunks(toy_chunk, 40, chunk_size=cs, args=(SEED,), progress=False)
        assert_bitwise_equal(ref, got, f"chunk {cs}")


def test_same_everywhere_on_real_cluster(dask_scheduler):
    # slow_first_s makes the first chunk finish last on the cluster: output order must not
    # follow completion order.
    ref = assert_same_everywhere(
        toy_chunk,
        N,
        args=(SEED, 0.0, None, 0.5),
        chunk_sizes=(300, 97, 1024, 5000),
        scheduler=dask_scheduler,
    )
    assert_bitwise_equal(_reference(N, SEED), ref, "vs reference")
    np.testing.assert_array_equal(ref["index"], np.arange(N))


def test_local_cluster_workers_mode():
    """The ``--workers 2`` path starts and stops its own cluster."""
    assert_same_everywhere(toy_chunk, 600, args=(SEED,), chunk_sizes=(128,), workers=2)


def test_combine_folds_in_chunk_order_everywhere(dask_scheduler):
    ref = assert_same_everywhere(
        toy_summary,
        N,
        args=(SEED, 0.5),
        chunk_sizes=(250,),
        scheduler=dask_scheduler,
        combine=combine_in_order,
    )
    np.testing.assert_array_equal(ref["starts"], np.arange(0, N, 250))
    full = _reference(N, SEED)["g"]
    assert int(ref["n"]) == N
    # exact integer histogram whatever the chunking; the float sum to rounding
    np.testing.assert_array_equal(ref["hist"], np.histogram(full, np.linspace(0.0, 10.0, 21))[0])
    np.testing.assert_allclose(ref["sum_g"], full.sum(), rtol=1e-12)


def test_combine_sum_hist_independent_of_chunk_size():
    def hist_only(start, stop, seed):
        return {"hist": toy_summary(start, stop, seed)["hist"]}

    a = run_chunks(hist_only, N, chunk_size=100, args=(SEED,), combine=combine_sum, progress=False)
    b = run_chunks(hist_only, N, chunk_size=999, args=(SEED,), combine=combine_sum, progress=False)
    assert_bitwise_equal(a, b, "histogram")
    assert a["hist"].sum() == np.sum(_reference(N, SEED)["g"] < 10.0)


def test_exception_names_chunk_range_in_process_and_on_cluster(dask_scheduler):
    # on the cluster several chunks fail; the first in item order is reported, as in-process
    for kw in ({}, {"scheduler": dask_scheduler}):
        with pytest.raises(
            ChunkError,
            match=r"toy_chunk failed on items \[1200, 1500\) of 2500: "
            r"ValueError: deliberate failure at item 1234",
        ) as info:
            run_chunks(toy_chunk, N, chunk_size=300, args=(SEED, 0.0, 1234), progress=False, **kw)
        assert (info.value.start, info.value.stop) == (1200, 1500)
        assert isinstance(info.value.__cause__, ValueError)


def _bad_input(start, stop):
    raise DataFileError("column 'age' missing", file="x.csv", field="age", fix="add it")


def test_tregsim_error_keeps_type_and_gains_range(dask_scheduler):
    expected = r"^x\.csv: \[age\] column 'age' missing \(in items \[0, 5\) of 10\); fix: add it$"
    for kw in ({}, {"scheduler": dask_scheduler}):
        with pytest.raises(DataFileError, match=expected) as info:
            run_chunks(_bad_input, 10, chunk_size=5, progress=False, **kw)
        assert (info.value.file, info.value.field) == ("x.csv", "age")


def test_contract_violations_are_reported():
    with pytest.raises(
        ChunkError,
        match=r"returned 'x' of shape \(3,\); its first axis must "
        r"have stop - start = 2 items",
    ):
        run_chunks(lambda s, e: {"x": np.zeros(3)}, 4, chunk_size=2, progress=False)
    with pytest.raises(ChunkError, match="dtype object"):
        run_chunks(lambda s, e: {"x": np.array([None] * (e - s))}, 4, chunk_size=2, progress=False)
    with pytest.raises(ChunkError, match="expected a non-empty dict"):
        run_chunks(lambda s, e: np.zeros(e - s), 4, chunk_size=2, progress=False)
    with pytest.raises(ChunkError, match=r"earlier chunks returned \['a'\]"):
        run_chunks(
            lambda s, e: {"a" if s == 0 else "b": np.zeros(e - s)}, 4, chunk_size=2, progress=False
        )


def test_zero_items_returns_empty_arrays_with_dtypes():
    got = run_chunks(toy_chunk, 0, chunk_size=10, args=(SEED,), progress=False)
    assert got["p"].shape == (0, 3) and got["p"].dtype == np.float64
    assert got["index"].shape == (0,)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"chunk_size": 0}, r"\[chunk_size\] chunk_size must be an integer ≥ 1, got 0"),
        ({"chunk_size": 2.5}, r"chunk_size must be an integer ≥ 1, got 2.5"),
        ({"chunk_size": 5, "workers": 0}, r"\[workers\] workers must be a positive integer"),
        ({"chunk_size": 5, "workers": 2, "scheduler": "tcp://x:1"}, "not both"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ArgumentError, match=match):
        run_chunks(toy_chunk, 10, args=(SEED,), progress=False, **kw)


def test_unreachable_scheduler_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ArgumentError, match=r"cannot connect to Dask scheduler 'tcp://127.0.0.1"):
        Executor(scheduler=f"tcp://127.0.0.1:{port}", connect_timeout_s=1).start()


def test_executor_reused_across_calls_and_resume_across_modes(tmp_path, dask_scheduler):
    """A run that failed in-process part-way resumes on the cluster to the same bits."""
    man = io.build_manifest(command="toy", seed=SEED, settings={"n": N}, argv=["t"])
    out = prepare_output_dir(tmp_path / "out", man)
    with pytest.raises(ChunkError):
        run_chunks(
            toy_chunk, N, chunk_size=300, args=(SEED, 0.0, 1000), out_dir=out, progress=False
        )
    assert len(list((out / "chunks").glob("*.npz"))) == 3
    with Executor(scheduler=dask_scheduler) as ex:
        assert ex.n_slots == 2
        got = run_chunks(
            toy_chunk, N, chunk_size=300, args=(SEED,), out_dir=out, executor=ex, progress=False
        )
        again = run_chunks(toy_chunk, N, chunk_size=300, args=(SEED,), executor=ex, progress=False)
    assert_bitwise_equal(_reference(N, SEED), got, "resumed on cluster")
    assert_bitwise_equal(got, again, "second call on the same executor")


def test_unstarted_executor_refused():
    with pytest.raises(ArgumentError, match="local-cluster executor was not started"):
        run_chunks(toy_chunk, 10, chunk_size=5, args=(SEED,), executor=Executor(workers=2))
    # an in-process Executor needs no start
    got = run_chunks(toy_chunk, 10, chunk_size=5, args=(SEED,), executor=Executor(), progress=False)
    assert_bitwise_equal(_reference(10, SEED), got, "in-process executor")


def test_cli_options_helper():
    p = argparse.ArgumentParser(prog="tregsim cohort")
    add_parallel_arguments(p, chunk_size=250)
    args = p.parse_args([])
    assert parallel_options(args) == {"workers": None, "scheduler": None, "chunk_size": 250}
    assert args.overwrite is False
    args = p.parse_args(["--workers", "4", "--chunk-size", "64", "--overwrite"])
    assert parallel_options(args) == {"workers": 4, "scheduler": None, "chunk_size": 64}
    assert args.overwrite is True
    assert p.parse_args(["--scheduler", "tcp://h:8786"]).scheduler == "tcp://h:8786"
    for bad in (["--workers", "0"], ["--chunk-size", "x"], ["--workers", "2", "--scheduler", "a"]):
        with pytest.raises(SystemExit) as info:
            p.parse_args(bad)
        assert info.value.code == 2


def test_import_is_light():
    """CLI modules import add_parallel_arguments at --help time: no dask/tqdm/heavy libs."""
    import subprocess
    import sys

    code = (
        "import sys, tregsim.parallel, tregsim.checkpoint; "
        "heavy = [m for m in ('dask', 'distributed', 'tqdm', 'torch', 'sbi', 'matplotlib', "
        "'xarray') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_cluster_leaves_environment_alone_and_workers_fast(cluster):
    """Starting a cluster must not leak Dask's worker environment into this process, and the
    workers must not run with Dask's MALLOC_TRIM_THRESHOLD_ (7x slower numpy temporaries)."""
    assert cluster.environ == cluster.environ_before
    envs = cluster.client.run(lambda: dict(os.environ))
    assert len(envs) == 2
    for env in envs.values():
        assert "MALLOC_TRIM_THRESHOLD_" not in env
        assert env.get("OMP_NUM_THREADS") == "1"  # the rest of Dask's settings still apply


@pytest.mark.slow
def test_cohort_chunks_same_everywhere(dask_scheduler):
    """tregsim.cohort's chunk function: bitwise identical in-process, on the cluster and for
    chunk sizes 1024 / 2048 (its summaries are exact under rechunking by design)."""
    from pathlib import Path

    import tregsim.cohort as cohort
    from tregsim.experiment import load_experiment

    path = Path(__file__).parents[1] / "experiments" / "nct06708780.toml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    exp = load_experiment(path)
    ref = assert_same_everywhere(
        cohort.cohort_chunk,
        1100,
        args=(exp, 5, None, None),
        chunk_sizes=(1024, 2048),
        scheduler=dask_scheduler,
        combine=cohort.combine_cohort,
        combine_chunk_invariant=True,
    )
    assert ref["keep_cpeptide"].shape[0] == 1100
    np.testing.assert_array_equal(ref["keep_patient"], np.arange(1100))


def _csv_body(path):
    return "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("# created")
    )


@pytest.mark.parametrize(
    ("command", "args", "out_file", "chunks"),
    [
        (
            "power",
            ["--n-per-arm", "4,8", "--trials", "24", "--effect-phi", "50", "--seed", "3"],
            "power.csv",
            ("5", "7"),
        ),
        (
            "sweep",
            [
                "--grid",
                "dose_per_kg=1e6,1e8",
                "--grid",
                "infusion_day=30,90",
                "--n",
                "40",
                "--seed",
                "3",
            ],
            "sweep.csv",
            ("64", "37"),
        ),
    ],
)
def test_power_and_sweep_same_on_cluster_and_any_chunk_size(
    tmp_path, dask_scheduler, command, args, out_file, chunks
):
    """A power run and a sweep give identical files in-process (two chunk sizes) and on a real
    dask.distributed LocalCluster."""
    from tregsim.cli import main

    exp = str(Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml")
    runs = {
        "a": [*args, "--chunk-size", chunks[0]],
        "b": [*args, "--chunk-size", chunks[1]],
        "cluster": [*args, "--chunk-size", chunks[1], "--scheduler", dask_scheduler],
    }
    bodies = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main([command, exp, *extra, "--out", str(out)]) == 0
        bodies[name] = _csv_body(out / out_file)
    assert bodies["a"] == bodies["b"] == bodies["cluster"]
