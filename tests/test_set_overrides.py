"""``--set NAME=VALUE`` on cohort, power, sweep and run: the same results as editing the model
file, recorded in the manifest; bad values are one line naming the field, exit 2.

Needs ``tregsim.experiment.with_parameters`` (the "one home per concept" half of #13).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tregsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "nct06708780.toml"


def _edited_experiment(tmp_path: Path, phi: float) -> Path:
    """A copy of the experiment whose model file says φ = ``phi`` (the independent reference)."""
    model = (ROOT / "models" / "treg_t1d.toml").read_text(encoding="utf-8")
    edited, n = re.subn(r"(\[parameters\.phi\]\nvalue = )[0-9.]+", rf"\g<1>{phi!r}", model, count=1)
    assert n == 1
    mpath = tmp_path / "treg_t1d_edited.toml"
    mpath.write_text(edited, encoding="utf-8")
    text = EXP.read_text(encoding="utf-8").replace('model = "treg_t1d"', f'model = "{mpath}"', 1)
    epath = tmp_path / "edited.toml"
    epath.write_text(text, encoding="utf-8")
    return epath


@pytest.mark.parametrize(
    "command",
    [
        ["cohort", "--n", "16"],
        ["power", "--trials", "10", "--n-per-arm", "4", "--no-assurance", "--posterior", "none"],
        ["sweep", "--grid", "dose_per_kg=1e6,2e7", "--n", "8"],
    ],
    ids=["cohort", "power", "sweep"],
)
def test_set_equals_editing_the_model_file(tmp_path, command, capsys):
    name, *opts = command
    a, b = tmp_path / "set", tmp_path / "edited"
    assert main([name, str(EXP), *opts, "--set", "phi=20", "--out", str(a)]) == 0
    assert main([name, str(_edited_experiment(tmp_path, 20.0)), *opts, "--out", str(b)]) == 0
    capsys.readouterr()
    import pandas as pd

    csvs = sorted(p.name for p in a.glob("*.csv"))
    assert csvs
    for f in csvs:  # every number and text column equal; '#' ledger lines name the override
        pd.testing.assert_frame_equal(
            pd.read_csv(a / f, comment="#"), pd.read_csv(b / f, comment="#"), check_exact=True
        )
    man = json.loads((a / "manifest.json").read_text(encoding="utf-8"))
    assert man["settings"]["parameter_overrides"] == {"phi": 20.0}


def test_set_changes_the_treatment_effect(tmp_path, capsys):
    import pandas as pd

    outs = {}
    for phi in ("2", "200"):
        out = tmp_path / phi
        assert (
            main(["cohort", str(EXP), "--n", "16", "--set", f"phi={phi}", "--out", str(out)]) == 0
        )
        df = pd.read_csv(out / "summary.csv")
        outs[phi] = df[(df.arm == "treg") & (df.visit_month == 12)]["diff_mean_nmol_L"].iloc[0]
    capsys.readouterr()
    assert outs["200"] > outs["2"] > 0  # more potent infused cells preserve more C-peptide


@pytest.mark.parametrize(
    "value, what",
    [("nope=1", "nope"), ("phi=abc", "phi"), ("phi=-1", "phi")],
    ids=["unknown name", "not a number", "outside the prior's support"],
)
@pytest.mark.parametrize("command", ["cohort", "power", "sweep", "run"])
def test_bad_set_is_one_line_exit_2(tmp_path, command, value, what, capsys):
    extra = {"cohort": ["--n", "4"], "sweep": ["--grid", "phi=1"], "power": [], "run": []}
    status = main([command, str(EXP), *extra[command], "--set", value, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert what in err and "fix:" in err
