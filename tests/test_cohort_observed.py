"""cohort.nc carries `cpeptide_observed` (patient, arm, visit): one simulated measurement per
visit from the observation model, the same whatever the chunking (issue #14 item 5)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tregsim.cli import main


def _run(tmp_path, name, chunk):
    out = tmp_path / name
    rc = main(
        [
            "cohort", "experiments/nct06708780.toml", "--n", "1100", "--seed", "5",
            "--chunk-size", str(chunk), "--out", str(out),
        ]
    )  # fmt: skip
    assert rc in (0, None)
    return xr.open_dataset(out / "cohort.nc", engine="h5netcdf")


def test_cpeptide_observed_in_cohort_nc(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    a = _run(tmp_path, "a", 1024)
    b = _run(tmp_path, "b", 2048)
    obs = a["cpeptide_observed"]
    assert obs.dims == ("patient", "arm", "visit") and obs.attrs["units"] == "nmol/L"
    np.testing.assert_array_equal(obs.values, b["cpeptide_observed"].values)
    mean = a["cpeptide"].values
    ok = np.isfinite(mean) & (mean > 0.3)  # far above the LLOQ: no censoring
    r = np.log(obs.values[ok] / mean[ok])
    # default structure (records; the shipped posterior's draws, whose MAP the structure file
    # holds): sigma_bio = 0, a Student-t deviation of scale sigma_meas·(μ/0.6)^-kappa at
    # 0.3–2.5 nmol/L; its interquartile range is 2·scale·t_ν's upper quartile (the SD of a t
    # with ν ≈ 3 is too unstable a statistic to bound)
    import json

    from scipy import stats

    th = json.loads(Path("calibration/natural_history_structure.json").read_text())["theta"]
    assert th["sigma_bio"] == 0 and th["inv_nu"] > 0
    q = stats.t.ppf(0.75, 1.0 / th["inv_nu"])
    lo = th["sigma_meas"] * (2.5 / 0.6) ** -th["kappa"]
    hi = th["sigma_meas"] * (0.3 / 0.6) ** -th["kappa"]
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    assert 2 * lo * q < q75 - q25 < 2 * hi * q
    assert abs(q50) < 0.02
    assert not np.array_equal(obs.values[ok], mean[ok])


def test_one_posterior_draw_for_every_patient(tmp_path, monkeypatch):
    """``--posterior-draw K``: every patient's population parameters are the posterior's draw
    K (read back from the file itself), recorded in the manifest; without it patients take
    different draws; a K outside the draws is one error line and no output folder."""
    import json
    from pathlib import Path

    from tregsim.posterior import load_posterior

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    post = load_posterior("calibration/posteriors/natural_history.nc")
    k = 1234
    out = tmp_path / "one"
    argv = ["cohort", "experiments/nct06708780.toml", "--n", "300", "--seed", "5"]
    assert main([*argv, "--posterior-draw", str(k), "--out", str(out)]) in (0, None)
    ds = xr.open_dataset(out / "cohort.nc", engine="h5netcdf")
    for name in ("lambda_ref", "omega_lambda", "sigma_meas", "inv_nu", "kappa"):
        np.testing.assert_array_equal(ds[name].values, np.full(300, post[name][k]))
    man = json.loads((out / "manifest.json").read_text())
    assert man["settings"]["posterior_draw"] == k
    spread = _run(tmp_path, "spread", 4096)
    assert np.unique(spread["inv_nu"].values).size > 100

    bad = tmp_path / "bad"
    assert main([*argv, "--posterior-draw", str(len(post["inv_nu"])), "--out", str(bad)]) == 2
    assert not bad.exists()
