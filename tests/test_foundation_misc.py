"""Fast start, chunk-invariant random streams, atomic writes, the simulate CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tregsim import rng as trng
from tregsim.io import atomic_path, build_manifest, identity, write_text


def test_import_and_help_do_not_import_heavy_packages():
    code = (
        "import sys, tregsim, tregsim.cli as c; c.build_parser();"
        "heavy=[m for m in ('torch','sbi','matplotlib','xarray','dask') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1024, 3000])
def test_draws_do_not_depend_on_chunking(chunk):
    def fn(g, n):
        return {"a": g.normal(size=n), "b": g.integers(0, 10, size=(n, 3))}

    whole = trng.draw(42, "test.stream", 0, 5000, fn)
    parts = [
        trng.draw(42, "test.stream", s, min(s + chunk, 5000), fn) for s in range(0, 5000, chunk)
    ]
    for k in ("a", "b"):
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    other = trng.draw(42, "other.stream", 0, 5000, fn)
    assert not np.array_equal(whole["a"], other["a"])
    assert trng.draw(42, "test.stream", 10, 10, fn)["a"].shape == (0,)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash while writing")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_text(target, "done")
    assert target.read_text() == "done"


def test_manifest_hashes_inputs(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text("x = 1\n")
    m = build_manifest(command="cohort", seed=3, inputs={"model": f}, settings={"n": 10})
    json.dumps(m)
    assert len(m["inputs"]["model"]["sha256"]) == 64
    assert "numpy" in m["versions"]
    # the machine, whose CPU shapes the last digits (docs/regression.md)
    import platform

    assert m["machine"]["machine"] == platform.machine()
    assert set(m["machine"]) == {"machine", "cpu", "simd", "libc"}
    f.write_text("x = 2\n")
    m2 = build_manifest(command="cohort", seed=3, inputs={"model": f}, settings={"n": 10})
    assert identity(m) != identity(m2)


def test_manifest_command_line_has_no_absolute_path(tmp_path):
    """A user-typed absolute --out (both spellings) and the program path are not recorded as
    absolute paths; every other word is kept as typed."""
    out = tmp_path / "runs" / "x"
    argv = [
        "/opt/venv/bin/tregsim",
        "run",
        "experiments/a.toml",
        "--quick",
        "--out",
        str(out),
        f"--posterior={out}.nc",
        "-n",
        "5",
    ]
    words = build_manifest(command="run", seed=1, argv=argv)["command_line"].split(" ")
    assert len(words) == len(argv)
    assert words[:5] == ["tregsim", "run", "experiments/a.toml", "--quick", "--out"]
    assert words[7:] == ["-n", "5"]
    assert not Path(words[5]).is_absolute() and words[5].endswith("x")
    assert words[6].startswith("--posterior=") and not Path(words[6][12:]).is_absolute()


def test_simulate_cli_writes_files_and_effect_grows_with_phi(tmp_path, capsys):
    from tregsim.cli import main

    assert main(["simulate", "--out", str(tmp_path / "a"), "--set", "phi=100"]) == 0
    for f in ("trajectories.nc", "cpeptide.csv", "cpeptide.png", "manifest.json"):
        assert (tmp_path / "a" / f).stat().st_size > 0
    rows = [
        r
        for r in (tmp_path / "a" / "cpeptide.csv").read_text().splitlines()
        if not r.startswith("#")
    ]
    header, data = rows[0].split(","), np.array([r.split(",") for r in rows[1:]], float)
    assert header[2] == "cpeptide_routine_care_nmol_l"
    delta = data[:, 4]
    assert (
        delta[0] == 0 and delta[-1] > 0.01
    )  # φ = 100: a visible benefit (docs/model_spec.md: ~+15 %)
    assert main(["simulate", "--out", str(tmp_path / "b"), "--dose-per-kg", "nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dose-per-kg" in err[0] and "fix:" in err[0]
    assert not (tmp_path / "b").exists()


def test_every_public_name_resolves():
    import importlib

    import tregsim

    # every public name is the object its home module defines (not a stand-in, not None)
    lazy = [n for n in tregsim.__all__ if n in tregsim._EXPORTS]
    assert len(lazy) >= len(tregsim.__all__) - 1  # all but __version__
    for name in lazy:
        home = importlib.import_module(tregsim._EXPORTS[name])
        assert getattr(tregsim, name) is getattr(home, name), name
