"""`tregsim calibrate CONFIG --out DIR` writes the shipped layout, and shipped posteriors are
current: their manifests' input hashes match the model, config and data as they are now.

The end-to-end run is the real pipeline (simulation bank → sbi training → posterior → SBC and
predictive diagnostics → manifest) on the shipped NPE configuration with a tiny budget.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tregsim.calibration import calibration_study, load_calibration, stale_inputs
from tregsim.cli import main
from tregsim.io import file_sha256
from tregsim.resources import project_root

ROOT = Path(__file__).resolve().parents[1]
POSTERIORS = ROOT / "calibration" / "posteriors"
SHARED = ROOT.parent / "shared" / "data"
TINY_METHOD = """[method]
kind = "npe"
density_estimator = "maf"
hidden_features = 10
num_transforms = 2
training_batch_size = 50
learning_rate = 1e-3
stop_after_epochs = 3
max_num_epochs = 8
n_posterior_draws = 100
n_sbc_datasets = 12
n_ensemble = 1
n_predictive_draws = 8

[budget]
n_simulations = 150
chunk_size = 50
"""


def _published() -> list[Path]:
    """Shipped posteriors in the published layout: NAME.nc beside NAME/manifest.json."""
    return sorted(
        p for p in POSTERIORS.glob("*.nc") if (p.with_suffix("") / "manifest.json").is_file()
    )


def test_natural_history_posterior_is_published():
    assert POSTERIORS / "natural_history.nc" in _published()


@pytest.mark.parametrize("posterior", _published(), ids=lambda p: p.stem)
def test_shipped_posterior_is_not_stale(posterior):
    """Fails when the model, the config or the data changed after the posterior was made:
    recalibrate with the command in the manifest (docs/calibration.md, "Reproducing a
    shipped posterior")."""
    man = json.loads((posterior.with_suffix("") / "manifest.json").read_text())
    if any(v["path"].startswith("../shared/") for v in man["inputs"].values()) and not (
        SHARED.is_dir()
    ):
        pytest.skip("the shared data beside the project is absent")
    assert stale_inputs(posterior) == [], man.get("command_line")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The shipped NPE config with a tiny budget, calibrated through the CLI."""
    d = tmp_path_factory.mktemp("tinycal")
    src = ROOT / "calibration" / "natural_history_npe.toml"
    text = src.read_text(encoding="utf-8")
    text = text[: text.index("[method]")] + TINY_METHOD
    (d / "tiny.toml").write_text(re.sub(r"(?m)^name = .*$", 'name = "tiny_nh"', text))
    shutil.copy(ROOT / "calibration" / "natural_history_summary.csv", d)
    out = d / "posteriors"
    cwd = os.getcwd()
    os.chdir(d)  # run from the folder as a user would: relative paths in the manifest
    try:
        rc = main(["calibrate", "tiny.toml", "--out", "posteriors", "--quiet"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    return d, out


def test_tiny_calibration_writes_the_shipped_layout(tiny):
    _, out = tiny
    post, folder = out / "tiny_nh.nc", out / "tiny_nh"
    assert post.is_file() and not (folder / "posterior.nc").exists()
    for name in (
        "manifest.json",
        "estimator.pt",
        "estimator.pt.json",
        "contraction.csv",
        "sbc_coverage.csv",
        "predictive_check.csv",
    ):
        assert (folder / name).is_file(), name
    cal = load_calibration(post)
    assert set(cal["posterior"]) == {
        "lambda_ref",
        "gamma_a",
        "omega_lambda",
        "q",
        "sigma",
        "s0",
        "k_re",
    }
    assert all(len(v) == 100 for v in cal["posterior"].values())


def test_tiny_calibration_manifest_names_inputs_outputs_and_commit(tiny):
    d, out = tiny
    man = json.loads((out / "tiny_nh" / "manifest.json").read_text())
    assert set(man["inputs"]) == {"config", "data", "model"}
    assert man["inputs"]["config"]["sha256"] == file_sha256(d / "tiny.toml")
    assert man["inputs"]["data"]["sha256"] == file_sha256(d / "natural_history_summary.csv")
    assert man["inputs"]["model"]["sha256"] == file_sha256(ROOT / "models" / "treg_t1d.toml")
    assert man["outputs"]["tiny_nh.nc"] == file_sha256(out / "tiny_nh.nc")
    assert man["outputs"]["tiny_nh/estimator.pt"] == file_sha256(out / "tiny_nh" / "estimator.pt")
    assert man["seed"] == 20261130
    assert {"torch", "sbi", "numpy"} <= set(man["versions"])
    if project_root() is not None and (ROOT / ".git").exists():
        assert man["git_commit"] and len(man["git_commit"].split("-")[0]) == 40
    text = json.dumps(man)
    assert str(d) not in text and str(ROOT) not in text and "/tmp" not in text


def test_stale_inputs_names_what_changed(tiny, tmp_path):
    d, _ = tiny
    copy = tmp_path / "c"
    shutil.copytree(d, copy)
    post = copy / "posteriors" / "tiny_nh.nc"
    # the manifest's paths are relative to the folder the command ran in
    assert stale_inputs(post, root=copy) == []
    with open(copy / "natural_history_summary.csv", "a", encoding="utf-8") as f:
        f.write("\n")
    (copy / "tiny.toml").write_text((copy / "tiny.toml").read_text() + "\n# edited\n")
    msgs = stale_inputs(post, root=copy)
    assert len(msgs) == 2
    assert any(m.startswith("config: tiny.toml changed") for m in msgs)
    assert any(m.startswith("data: natural_history_summary.csv changed") for m in msgs)
    post.write_bytes(post.read_bytes() + b"\0")
    assert any(
        "differs from the file the calibration wrote" in m for m in stale_inputs(post, root=copy)
    )
    os.remove(copy / "tiny.toml")
    assert any(m == "config: tiny.toml is missing" for m in stale_inputs(post, root=copy))


def test_calibration_study_refuses_a_name_that_is_not_a_file_name(tmp_path):
    from tregsim.errors import ArgumentError

    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "../escape"\n')
    with pytest.raises(ArgumentError, match="cannot name a file"):
        calibration_study(cfg, tmp_path / "o")


def test_a_rerun_reuses_the_trained_estimator(tiny, tmp_path, monkeypatch):
    """Nothing lost on a crash after training: rerunning the same command into the same folder
    loads ``estimator.pt`` (its sidecar's training key: the same bank and settings) instead of
    training again, and writes the same posterior draws."""
    import tregsim.calibrate.npe as npe

    d, _ = tiny
    copy = tmp_path / "again"
    shutil.copytree(d, copy)
    before = load_calibration(copy / "posteriors" / "tiny_nh.nc")["posterior"]

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(npe, "train_npe", no_training)
    cwd = os.getcwd()
    os.chdir(copy)
    try:
        rc = main(["calibrate", "tiny.toml", "--out", "posteriors", "--quiet"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    after = load_calibration(copy / "posteriors" / "tiny_nh.nc")["posterior"]
    assert after.keys() == before.keys()
    for k in before:  # the file differs only by its creation time
        np.testing.assert_array_equal(after[k], before[k])


def test_structure_file_is_the_shipped_posteriors_map():
    """calibration/natural_history_structure.json is written from the shipped natural-history
    posterior (benchmarks/structure_file_from_posterior.py): the same candidate as its config,
    its MAP to the file's 6 decimals, and the hash of the posterior it came from."""
    from tregsim.calibrate.config import load_config

    st = json.loads((ROOT / "calibration" / "natural_history_structure.json").read_text())
    man = json.loads((ROOT / "calibration/posteriors/natural_history/manifest.json").read_text())
    assert st["posterior_sha256"] == man["outputs"]["natural_history.nc"]
    for k, v in man["results"]["map"].items():
        assert st["theta"][k] == round(v, 6), k
    text = (ROOT / "calibration" / "placebo_records_structure.toml").read_text()
    assert f'candidate = "{st["candidate"]}"' in text
    if (ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv").is_file():
        cfg = load_config(ROOT / "calibration" / "placebo_records_structure.toml")
        assert cfg.candidate == st["candidate"]
