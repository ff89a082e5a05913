"""Checkpoint folders: kill -9 and resume to the same bits; foreign folders refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _chunk_toy import toy_chunk
from _parallel_helpers import assert_bitwise_equal

from tregsim import io
from tregsim.checkpoint import ChunkStore, describe_difference, prepare_output_dir
from tregsim.errors import ArgumentError, OutputFolderError
from tregsim.parallel import run_chunks

SCRIPT = Path(__file__).with_name("_chunk_toy.py")
SEED = 11


def _manifest(seed=SEED, n=1200, command="toy", settings=None):
    return io.build_manifest(
        command=command, seed=seed, settings=settings or {"n": n}, argv=["test"]
    )


def _chunk_files(out: Path) -> list[Path]:
    """Finished chunk files (not the temporary files of a write in progress)."""
    return sorted(
        p for p in (out / "chunks").glob("*.npz") if re.fullmatch(r"\d+-\d+\.npz", p.name)
    )


def _assert_clean(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"
    for p in _chunk_files(out):
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                z[k]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX-only")
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    n, cs = 1200, 100  # 12 chunks
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(out),
        "--n",
        str(n),
        "--chunk-size",
        str(cs),
        "--seed",
        str(SEED),
    ]
    proc = subprocess.Popen([*cmd, "--delay-s", "0.25"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(_chunk_files(out)) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "script made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in _chunk_files(out)}
    assert 3 <= len(before) < 12, f"kill came too late to test anything: {sorted(before)}"
    assert not (out / "result.npz").exists()
    # What a kill during a chunk write leaves behind (the name pattern of io.atomic_path).
    (out / "chunks" / ".1100-1200.npz.k1ll3d.tmp.npz").write_bytes(b"PK\x03\x04trunc")

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    assert len(_chunk_files(out)) == 12
    # finished chunks were kept, not recomputed
    assert {p.name: p.stat().st_mtime_ns for p in _chunk_files(out) if p.name in before} == before
    _assert_clean(out)
    with np.load(out / "result.npz", allow_pickle=False) as z:
        resumed = {k: z[k] for k in z.files}
    uninterrupted = run_chunks(toy_chunk, n, chunk_size=cs, args=(SEED,), progress=False)
    assert_bitwise_equal(uninterrupted, resumed, "resumed vs uninterrupted")
    assert json.loads((out / "manifest.json").read_text())["seed"] == SEED


def test_rerun_of_finished_folder_recomputes_nothing(tmp_path):
    out = prepare_output_dir(tmp_path, _manifest())
    first = run_chunks(toy_chunk, 1200, chunk_size=100, args=(SEED,), out_dir=out, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in _chunk_files(out)}

    def must_not_run(start, stop, seed):
        raise AssertionError(f"recomputed [{start}, {stop})")

    prepare_output_dir(tmp_path, _manifest())
    again = run_chunks(
        must_not_run, 1200, chunk_size=100, args=(SEED,), out_dir=out, progress=False
    )
    assert_bitwise_equal(first, again, "rerun")
    assert {p: p.stat().st_mtime_ns for p in _chunk_files(out)} == stamps


def test_different_seed_refused_then_overwrite_works(tmp_path):
    out = prepare_output_dir(tmp_path, _manifest(seed=1))
    run_chunks(toy_chunk, 1200, chunk_size=100, args=(1,), out_dir=out, progress=False)
    with pytest.raises(
        OutputFolderError,
        match=rf"^{re.escape(str(tmp_path))}: was written by a different run \(seed 1 vs 2\); "
        r"fix: use --overwrite to discard it, or choose another --out folder$",
    ):
        prepare_output_dir(tmp_path, _manifest(seed=2))
    assert len(_chunk_files(out)) == 12  # the refused call changed nothing

    prepare_output_dir(tmp_path, _manifest(seed=2), overwrite=True)
    assert _chunk_files(out) == []
    got = run_chunks(toy_chunk, 1200, chunk_size=100, args=(2,), out_dir=out, progress=False)
    fresh = run_chunks(toy_chunk, 1200, chunk_size=100, args=(2,), progress=False)
    assert_bitwise_equal(fresh, got, "after overwrite")
    stored = json.loads((out / "chunks" / "identity.json").read_text())
    assert stored["identity"]["seed"] == 2


def test_difference_names_settings_inputs_and_command(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text("a = 1\n")
    m1 = io.build_manifest(
        command="cohort",
        seed=1,
        inputs={"model": model},
        settings={"n_patients": 100, "arm": "treg"},
    )
    model.write_text("a = 2\n")
    m2 = io.build_manifest(
        command="power",
        seed=1,
        inputs={"model": model},
        settings={"n_patients": 200, "arm": "treg"},
    )
    msg = describe_difference(io.identity(m1), io.identity(m2))
    assert msg.startswith('command "cohort" vs "power"')
    assert "inputs.model" in msg and "settings.n_patients 100 vs 200" in msg
    assert "arm" not in msg


def test_finished_manifest_of_other_run_refused(tmp_path):
    io.write_json(tmp_path / "manifest.json", _manifest(command="power"))
    with pytest.raises(OutputFolderError, match=r'command "power" vs "toy"'):
        prepare_output_dir(tmp_path, _manifest())
    prepare_output_dir(tmp_path, _manifest(), overwrite=True)
    assert not (tmp_path / "manifest.json").exists()


def test_other_chunk_size_refused_with_fix(tmp_path):
    out = prepare_output_dir(tmp_path, _manifest())
    run_chunks(toy_chunk, 1200, chunk_size=100, args=(SEED,), out_dir=out, progress=False)
    with pytest.raises(
        OutputFolderError,
        match=r"chunk_size 100 vs 50.*rerun with --chunk-size "
        r"100 to resume",
    ):
        run_chunks(toy_chunk, 1200, chunk_size=50, args=(SEED,), out_dir=out, progress=False)


def test_unprepared_folder_refused(tmp_path):
    with pytest.raises(ArgumentError, match=r"call tregsim\.checkpoint\.prepare_output_dir"):
        run_chunks(toy_chunk, 10, chunk_size=5, args=(SEED,), out_dir=tmp_path, progress=False)


def test_folder_that_is_a_file_refused(tmp_path):
    f = tmp_path / "x"
    f.write_text("")
    with pytest.raises(OutputFolderError, match="is not a folder"):
        prepare_output_dir(f, _manifest())


def test_damaged_chunk_is_recomputed_with_warning(tmp_path):
    out = prepare_output_dir(tmp_path, _manifest())
    ref = run_chunks(toy_chunk, 500, chunk_size=100, args=(SEED,), out_dir=out, progress=False)
    damaged = out / "chunks" / "200-300.npz"
    damaged.write_bytes(damaged.read_bytes()[:50])  # e.g. a disk filled by another program
    with pytest.warns(UserWarning, match=r"200-300.npz: unreadable checkpoint chunk"):
        got = run_chunks(toy_chunk, 500, chunk_size=100, args=(SEED,), out_dir=out, progress=False)
    assert_bitwise_equal(ref, got, "after repair")
    _assert_clean(out)


def test_stages_keep_separate_chunks(tmp_path):
    out = prepare_output_dir(tmp_path, _manifest())
    a = run_chunks(
        toy_chunk, 300, chunk_size=100, args=(SEED,), out_dir=out, stage="n20", progress=False
    )
    b = run_chunks(
        toy_chunk, 500, chunk_size=250, args=(SEED,), out_dir=out, stage="n40", progress=False
    )
    assert sorted(p.name for p in (out / "chunks" / "n20").glob("*.npz")) == [
        "0-100.npz",
        "100-200.npz",
        "200-300.npz",
    ]
    assert_bitwise_equal(a, {k: v[:300] for k, v in b.items()}, "prefix of the same stream")
    with pytest.raises(ArgumentError, match="stage must be a plain folder name"):
        ChunkStore(out, 10, 5, "concat", stage="../x")


def _children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    kids = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            kids.update(int(k) for k in f.read().split())
    return kids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_on_local_cluster_stops_workers_and_resumes(tmp_path):
    n, cs = 1200, 100
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(SCRIPT),
        str(out),
        "--n",
        str(n),
        "--chunk-size",
        str(cs),
        "--seed",
        str(SEED),
        "--workers",
        "2",
    ]
    # 2 s per chunk: the 12 chunks take ≥ 12 s, so a loaded machine cannot finish the run
    # between the second chunk file and the SIGINT (at 0.5 s it did once, rc 0; round 19)
    proc = subprocess.Popen([*cmd, "--delay-s", "2.0"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_chunk_files(out)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "script made no progress"
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers  # the two worker processes (plus a resource tracker)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert 2 <= len(_chunk_files(out)) < 12
    time.sleep(2)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists()
        and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()
    ]
    assert not alive, f"worker processes left running: {alive}"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    _assert_clean(out)
    with np.load(out / "result.npz", allow_pickle=False) as z:
        resumed = {k: z[k] for k in z.files}
    uninterrupted = run_chunks(toy_chunk, n, chunk_size=cs, args=(SEED,), progress=False)
    assert_bitwise_equal(uninterrupted, resumed, "resumed on cluster vs uninterrupted")
