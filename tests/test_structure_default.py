"""The structure of individual variability is resolved in one place and reaches every consumer
(issue #14, round 4): a records-structure posterior gives per-draw hazard-covariate and
observation values; a lumped posterior under ``records`` takes the structure file's values
(s0, k_re from the posterior); ``lumped`` is the old path. Also the CLI flag and the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tregsim.experiment import load_experiment
from tregsim.population.structure import (
    STRUCTURE_OBSERVATION,
    STRUCTURE_POPULATION,
    records_structure,
    resolve_structure,
)
from tregsim.posterior import DEFAULT_POSTERIOR, load_posterior_draws, save_posterior
from tregsim.resources import shipped_path

# the shipped lumped posterior (the old NPE; the default is a records-structure posterior)
LUMPED = shipped_path("calibration/posteriors/natural_history_lumped.nc")

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "nct06708780.toml"


@pytest.fixture(scope="module")
def exp():
    return load_experiment(EXP)


def _records_posterior(path: Path, n_draws: int = 4) -> dict:
    """A records-structure posterior built from the structure file's point values: draw 0 has
    no observation noise (sigma_meas = kappa = 0), the others are jittered copies."""
    st = records_structure()
    base = {**st["population"], "sigma_meas": st["observation"]["sigma_meas"]}
    base["kappa"] = st["observation"]["kappa"]
    g = np.random.default_rng(11)
    draws = {k: v * np.exp(0.1 * g.standard_normal(n_draws)) for k, v in base.items()}
    draws["sigma_meas"][0] = 0.0
    draws["kappa"][0] = 0.0
    draws["s0"] = np.full(n_draws, 0.41)
    draws["k_re"] = np.full(n_draws, 0.02)
    draws["mu_c"] = np.full(n_draws, -0.49)  # a nuisance parameter: consumers ignore it
    units = dict.fromkeys(draws, "1")
    save_posterior(path, draws, units=units, attrs={"method": "test"})
    return draws


def test_records_posterior_gives_per_draw_values(tmp_path, exp):
    from tregsim.cohort import cohort_study

    post = tmp_path / "records.nc"
    want = _records_posterior(post)
    st = resolve_structure(None, load_posterior_draws(post, exp.model), post, exp.model)
    assert (st.variability, st.source, st.structure) == ("records", "posterior", None)
    np.testing.assert_array_equal(st.draws["sigma_bio"], 0.0)  # absent → 0 (contract)
    assert "mu_c" not in st.draws
    n = 24
    res = cohort_study(exp, n=n, seed=2, posterior=post, progress=False, chunk_size=4096)
    p = res.patients
    k = np.arange(n) % 4  # patient i uses draw i mod n_draws
    for name in (*STRUCTURE_POPULATION, "sigma_meas", "kappa", "s0"):
        np.testing.assert_allclose(p[f"theta_{name}"], want[name][k], rtol=1e-12)
    np.testing.assert_array_equal(p["theta_sigma_bio"], 0.0)
    # the hazard covariate acts: cpep_bl is each patient's baseline MMTT
    np.testing.assert_allclose(p["ind_f_lambda"] > 0, True)
    # the observation follows the patient's own draw: no noise for draw 0, noise otherwise
    obs, mu = p["cpeptide_observed"], p["cpeptide"]
    lloq = 0.017
    zero = (k == 0)[:, None, None] & (mu > lloq)
    np.testing.assert_allclose(obs[zero], mu[zero], rtol=1e-12)
    noisy = (k != 0)[:, None, None] & (mu > lloq)
    assert np.all(obs[noisy] != mu[noisy])
    man = res.manifest["variability_structure"]
    assert man["source"] == "posterior" and man["structure_sha256"] is None
    # lumped with a records posterior: no covariate, no structure observation model
    lump = resolve_structure("lumped", load_posterior_draws(post, exp.model), post, exp.model)
    assert not {"beta_c", "beta_lin", "sigma_meas", "kappa"} & set(lump.draws)
    np.testing.assert_array_equal(lump.draws["lambda_ref"], want["lambda_ref"])
    assert "not used" in lump.describe()


def test_lumped_posterior_under_records_takes_the_structure_file(exp):
    draws = load_posterior_draws(LUMPED, exp.model)
    assert "sigma_meas" not in draws  # a lumped posterior
    st = resolve_structure("records", draws, LUMPED, exp.model)
    rs = records_structure()
    assert st.source == "structure_file" and st.structure["sha256"] == rs["sha256"]
    for name, v in {**rs["population"], **rs["observation"]}.items():
        np.testing.assert_array_equal(st.draws[name], v)
        assert st.draws[name].shape == draws["s0"].shape
    np.testing.assert_array_equal(st.draws["s0"], draws["s0"])  # per draw from the posterior
    np.testing.assert_array_equal(st.draws["k_re"], draws["k_re"])
    text = st.describe()
    assert "natural_history_structure.json" in text and rs["sha256"][:12] in text
    # no posterior: the structure file's values alone (one draw)
    st0 = resolve_structure(None, None, None, exp.model)
    assert st0.source == "structure_file" and st0.draws["beta_lin"].shape == (1,)


def test_lumped_is_the_old_path(exp):
    from tregsim.cohort import run_cohort

    draws = load_posterior_draws(LUMPED, exp.model)
    st = resolve_structure("lumped", draws, LUMPED, exp.model)
    assert st.draws is draws and not st.observed
    old = run_cohort(exp, 20, 1, posterior=draws, progress=False, spaghetti_n=0)
    new = run_cohort(exp, 20, 1, posterior=st.draws, progress=False, spaghetti_n=0)
    np.testing.assert_array_equal(old.patients["cpeptide"], new.patients["cpeptide"])
    assert "theta_beta_c" not in new.patients


def test_model_without_the_structure_defaults_to_lumped():
    from tregsim.errors import ArgumentError

    exp = load_experiment(ROOT / "experiments" / "nct06708780_il2.toml")
    assert resolve_structure(None, None, None, exp.model).variability == "lumped"
    with pytest.raises(ArgumentError, match="cannot take the records"):
        resolve_structure("records", None, None, exp.model)
    with pytest.raises(ArgumentError, match="unknown variability"):
        resolve_structure("pooled", None, None, exp.model)


def test_cli_flag(tmp_path, monkeypatch, capsys):
    import xarray as xr

    from tregsim.cli import main

    monkeypatch.chdir(ROOT)
    base = ["cohort", str(EXP), "--n", "30", "--seed", "1"]
    assert main([*base, "--out", str(tmp_path / "r")]) in (0, None)
    assert main([*base, "--variability", "lumped", "--out", str(tmp_path / "l")]) in (0, None)
    man_r = json.loads((tmp_path / "r" / "manifest.json").read_text())
    man_l = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert man_r["variability_structure"]["variability"] == "records"
    assert man_r["settings"]["variability"] == "records"
    assert man_l["variability_structure"]["variability"] == "lumped"
    shipped = load_posterior_draws(DEFAULT_POSTERIOR, load_experiment(EXP).model)
    assert "sigma_meas" in shipped  # the default is a records-structure posterior: per draw
    with xr.open_dataset(tmp_path / "r" / "cohort.nc", engine="h5netcdf") as r:
        assert set(np.asarray(r["beta_lin"], float)) <= set(shipped["beta_lin"])
    with xr.open_dataset(tmp_path / "l" / "cohort.nc", engine="h5netcdf") as lump:
        assert "beta_lin" not in lump
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*base, "--variability", "pooled", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "--variability" in capsys.readouterr().err


def test_ledger_says_which_structure(tmp_path, exp):
    from tregsim.report.run import assumption_ledger

    def row(**kw):
        rows = assumption_ledger(exp, {}, **kw)
        (r,) = [r for r in rows if r.item == "structure of individual variability"]
        return f"{r.value} {r.basis}"

    text = row(posterior=LUMPED)
    assert "point values of the structure file" in text
    assert "natural_history_structure.json" in text and records_structure()["sha256"][:12] in text
    assert "s0 and k_re from the posterior" in text and "lumped" in text
    assert "--variability lumped" in row(posterior=LUMPED, variability="lumped")
    assert "per posterior draw" in row(posterior=DEFAULT_POSTERIOR)
    post = tmp_path / "records.nc"
    _records_posterior(post)
    text = row(posterior=post)
    assert "per posterior draw" in text and "records.nc" in text
    assert set(STRUCTURE_OBSERVATION) - {"sigma_bio", "tau_bio"} <= set(
        text.replace(",", " ").split()
    )


def test_run_table_sets_the_structure(tmp_path):
    """``[run] variability = "lumped"`` in the experiment file → the run plan's structure;
    the command line's value wins; an unknown value is one error naming the key."""
    from tregsim.errors import ExperimentFileError
    from tregsim.report.plan import plan_run

    text = EXP.read_text(encoding="utf-8")
    assert "\n[run]\n" in text
    p = tmp_path / "exp.toml"
    p.write_text(text.replace("\n[run]\n", '\n[run]\nvariability = "lumped"\n'), encoding="utf-8")
    exp = load_experiment(p)
    assert plan_run(exp, tmp_path / "o").variability == "lumped"
    assert plan_run(exp, tmp_path / "o", variability="records").variability == "records"
    assert plan_run(load_experiment(EXP), tmp_path / "o").variability is None  # = records
    p.write_text(text.replace("\n[run]\n", '\n[run]\nvariability = "pooled"\n'), encoding="utf-8")
    with pytest.raises(ExperimentFileError, match="variability"):
        load_experiment(p)
