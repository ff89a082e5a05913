"""A wheel install (not editable) finds the shipped models, experiments and posterior."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, tregsim
from tregsim.posterior import DEFAULT_POSTERIOR
from tregsim.model.compile import list_models
assert tregsim.__file__.startswith(sys.argv[1]), tregsim.__file__
m = tregsim.load_model("treg_t1d")
e = tregsim.load_experiment("nct06708780")
print(len(list_models()), DEFAULT_POSTERIOR.is_file(), str(DEFAULT_POSTERIOR).startswith(sys.argv[1]))
r = tregsim.simulate_arrays(m, m.parameters(2), times=[0.0, 365.0])
print(bool((r.status == 0).all()))
"""


def test_wheel_carries_models_experiments_and_posterior(tmp_path):
    subprocess.run(
        # build isolation, as `pip install` does (the venv's own setuptools may be older)
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("tregsim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for rel in (
        "tregsim/_data/models/treg_t1d.toml",
        "tregsim/_data/experiments/nct06708780.toml",
        "tregsim/_data/calibration/posteriors/natural_history.nc",
        "tregsim/_data/calibration/natural_history_summary.csv",
        "tregsim/py.typed",
    ):
        assert rel in names, rel
    assert not any(n.endswith("bank.npz") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel: extracting is installing
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(site)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # away from the checkout
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert out.stdout.split() == ["3", "True", "True", "True"], out.stdout + out.stderr
