"""Every command that writes files refuses an unwritable --out with one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tregsim.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
EXP = str(ROOT / "experiments" / "nct06708780.toml")
BAD = "/proc/tregsim-cannot-write-here"

# every command with an output, with the fewest arguments argparse needs
CALLS = {
    "run": ["run", EXP, "--quick", "--out", BAD],
    "simulate": ["simulate", "--out", BAD],
    "cohort": ["cohort", EXP, "--n", "5", "--out", BAD],
    "check": ["check", "natural-history", EXP, "--out", BAD],
    "calibrate": [
        "calibrate",
        str(ROOT / "calibration" / "natural_history_npe.toml"),
        "--out",
        BAD,
    ],
    "power": ["power", EXP, "--trials", "10", "--n-per-arm", "4", "--out", BAD],
    "power --synthetic": ["power", "--synthetic", "--trials", "10", "--out", BAD],
    "sweep": ["sweep", EXP, "--grid", "phi=1,2", "--n", "4", "--out", BAD],
    "sensitivity": ["sensitivity", EXP, "--n", "4", "--out", BAD],
    "responders": ["responders", EXP, "--n", "4", "--out", BAD],
    "compare": ["compare", "--n", "2", "--out", BAD],
    "export sbml": ["export", "sbml", "treg_t1d", "-o", BAD + "/m.xml"],
    "export petab": ["export", "petab", "treg_t1d", "--data", EXP, "-o", BAD + "/p"],
    "data import": ["data", "import", EXP, "-o", BAD + "/long.csv"],
    "data export": ["data", "export", EXP, "-o", BAD + "/nm.csv"],
    "twin": ["twin", EXP, "--experiment", EXP, "--out", BAD],
}
NO_OUTPUT = {"model", "models"}


def test_every_command_with_an_output_is_covered():
    assert {c.split()[0] for c in CALLS} | NO_OUTPUT == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_unwritable_out_is_one_line_exit_2(name, capsys):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc (an unwritable folder even for root)")
    status = main(CALLS[name])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot write into this folder" in err and "[--out]" in err, err


def test_calibrate_help_lists_every_shipped_config_and_its_kind(capsys):
    """`tregsim calibrate --help` names each kind a shipped config uses, with that config."""
    import tomllib

    from tregsim.resources import project_root

    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = capsys.readouterr().out
    configs = sorted((project_root() / "calibration").glob("*.toml"))
    assert configs
    for path in configs:
        kind = tomllib.loads(path.read_text())["method"].get("kind", "npe")
        assert f"\n  {kind} " in text, kind
        assert f"calibration/{path.name}" in text, path.name
