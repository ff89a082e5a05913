"""`tregsim power`: files, manifest, units in columns, one-line errors, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tregsim.cli import main
from tregsim.trial import closed_form as cf

EXP = Path(__file__).resolve().parents[1] / "experiments" / "nct06708780.toml"


def test_synthetic_power_run_writes_csv_figures_manifest(tmp_path, capsys):
    out = tmp_path / "p"
    argv = [
        "power",
        "--synthetic",
        "--n-per-arm",
        "10:40:10",
        "--trials",
        "400",
        "--seed",
        "3",
        "--effect",
        "0.15",
        "--effect-sd",
        "0.05",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    for f in (
        "power.csv",
        "power_curve.png",
        "effect_distribution.png",
        "effect_draws.csv",
        "manifest.json",
    ):
        assert (out / f).stat().st_size > 0, f
    df = pd.read_csv(out / "power.csv")
    assert set(df["curve"]) == {"fixed", "assurance"}
    for col in (
        "n_per_arm",
        "power_ancova",
        "power_ancova_mc_low",
        "power_ancova_mc_high",
        "mean_true_effect_ln_auc_plus_1",
        "effect_assumption",
        "allocation",
        "alpha",
    ):
        assert col in df.columns, col
    fixed = df[df.curve == "fixed"]
    np.testing.assert_array_equal(fixed.n_per_arm, [10, 20, 30, 40])
    # nested sub-samples with common random numbers: the fixed-effect curve rises with N
    assert np.all(np.diff(fixed.power_ancova.to_numpy()) > 0)
    assert np.all(fixed.power_ancova_mc_low <= fixed.power_ancova)
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "power" and man["seed"] == 3
    assert man["settings"]["n_per_arm"] == [10, 20, 30, 40]
    draws = pd.read_csv(out / "effect_draws.csv")
    assert len(draws) == 800
    np.testing.assert_allclose(
        draws[draws.curve == "assurance"].true_effect_ln_auc_plus_1.std(), 0.05, rtol=0.15
    )
    # same seed → identical table; the run is resumable into the same folder
    first = (out / "power.csv").read_text()
    assert main(argv) == 0
    assert (out / "power.csv").read_text() == first
    assert "N per arm for 80%" in capsys.readouterr().err


def test_cli_power_agrees_with_closed_form_t_test(tmp_path):
    # Welch on ln(AUC+1) vs the noncentral-t formula with the synthetic model's marginal SD.
    out = tmp_path / "q"
    assert (
        main(
            [
                "power",
                "--synthetic",
                "--n-per-arm",
                "20",
                "--trials",
                "3000",
                "--effect",
                "0.2",
                "--effect-sd",
                "0",
                "--tests",
                "pooled_t",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "power.csv")
    sd = np.sqrt(0.964**2 * 0.193**2 + 0.165**2)
    exact = float(cf.power_t_test(20, 20, 0.2, sd))
    # the floor at 0 nmol/L and the clip of ln(c0+1) at 0 barely matter at these values
    assert abs(df.power_pooled_t.iloc[0] - exact) < 3 * np.sqrt(exact * (1 - exact) / 3000) + 0.01


def test_cli_power_runs_the_huber_ancova_beside_the_ols_one(tmp_path):
    """``--tests ancova,ancova_huber``: both power columns and the curve. The synthetic model's
    deviations are normal, where Huber's efficiency is 95 % (≈ 2 points of power at most
    here), and both tests see the same trials: the powers within 0.06 at every N."""
    out = tmp_path / "h"
    argv = ["power", "--synthetic", "--n-per-arm", "10:60:10", "--trials", "1000"]
    argv += ["--effect", "0.15", "--effect-sd", "0", "--tests", "ancova,ancova_huber"]
    assert main([*argv, "--no-assurance", "--out", str(out)]) == 0
    df = pd.read_csv(out / "power.csv")
    assert {"power_ancova", "power_ancova_huber", "power_ancova_huber_mc_low"} <= set(df.columns)
    assert np.max(np.abs(df.power_ancova_huber - df.power_ancova)) < 0.06
    assert (out / "power_curve.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--synthetic", "--n-per-arm", "5:x"], "[--n-per-arm]"),
        (["--synthetic", "--tests", "anova"], "[--tests]"),
        (["--synthetic", "--dropout", "1.5"], "[--dropout]"),
        (["--synthetic", "--variability", "records"], "[--variability]"),
        ([], "[experiment]"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, msg):
    out = tmp_path / "bad"
    assert main(["power", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and "fix:" in err[0]
    assert not (out / "power.csv").exists()


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, tregsim.cli.power as p, argparse; p.add_arguments(argparse.ArgumentParser());"
        "bad = [m for m in ('torch', 'sbi', 'matplotlib', 'xarray') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_based_power_run(tmp_path):
    import tregsim.cohort  # noqa: F401  (a broken import must fail, not skip)

    out = tmp_path / "m"
    assert (
        main(
            [
                "power",
                str(EXP),
                "--n-per-arm",
                "4,8",
                "--trials",
                "12",
                "--seed",
                "2",
                "--effect-phi",
                "100",
                "--allocation",
                "randomized",
                "--posterior",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "power.csv")
    assert set(df.curve) == {"fixed", "assurance"}
    # default records structure without a posterior: the structure file's values
    assert df.effect_assumption.iloc[0].startswith(
        "model file values (phi = 100); variability: records"
    )
    assert "natural_history_structure.json" in df.variability.iloc[0]
    draws = pd.read_csv(out / "effect_draws.csv")
    fixed = draws[draws.curve == "fixed"]
    np.testing.assert_allclose(fixed.phi, 100.0)
    assert (fixed.true_effect_ln_auc_plus_1 > 0).all()
    man = json.loads((out / "manifest.json").read_text())
    assert "experiment" in man["inputs"] and man["summary"]["fixed"]["n_failed_solves"] == 0


def test_posterior_assurance_uses_one_draw_per_trial(tmp_path):
    import xarray as xr

    import tregsim.cohort  # noqa: F401  (a broken import must fail, not skip)

    g = np.random.default_rng(0)
    phi = g.lognormal(np.log(50), 0.5, (2, 5))
    post = tmp_path / "posterior.nc"
    xr.Dataset({"phi": (("chain", "draw"), phi)}).to_netcdf(
        post, group="posterior", engine="h5netcdf"
    )
    out = tmp_path / "pp"
    assert (
        main(
            [
                "power",
                str(EXP),
                "--posterior",
                str(post),
                "--n-per-arm",
                "3",
                "--trials",
                "12",
                "--allocation",
                "randomized",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    draws = pd.read_csv(out / "effect_draws.csv")
    a = draws[draws.curve == "assurance"]
    # replicate r uses draw r mod 10 (chain-major order)
    np.testing.assert_allclose(a.phi.to_numpy(), phi.ravel()[np.arange(12) % 10], rtol=1e-9)
    np.testing.assert_allclose(draws[draws.curve == "fixed"].phi, np.median(phi))
    assert "posterior medians (phi = " in pd.read_csv(out / "power.csv").effect_assumption[0]


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--endpoint-month", "7"], "[--endpoint-month]"),
        (["--effect-phi", "-1"], "[--effect-phi]"),
        (["--relative-effect", "-2"], "[--relative-effect]"),
        (["--relative-effect", "0.3", "--effect-phi", "3"], "[--relative-effect]"),
    ],
)
def test_model_mode_validates_before_writing(tmp_path, capsys, args, msg):
    if not EXP.exists():
        pytest.skip(f"{EXP} not found")
    out = tmp_path / "bad"
    assert main(["power", str(EXP), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and "fix:" in err[0]
    assert not out.exists()


def test_effect_histogram_of_one_value_is_one_bar():
    """A fixed effect on the analysis scale gives every trial the same true effect: the
    histogram is one bar of all R trials at that effect (it used to raise in matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    from tregsim.plots.trial import plot_effect_distribution_lowlevel

    eff = np.full(200, np.log(1.0854)) + np.r_[0.0, 1e-17 * np.ones(199)]
    ax = plot_effect_distribution_lowlevel(eff)
    heights = [p.get_height() for p in ax.patches]
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    assert heights == [200] and centres[0] == pytest.approx(8.54)
