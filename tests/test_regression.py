"""The quick run writes the same CSV files, byte for byte, as the stored hashes.

The hashes were made by ``python -m tests.regression.regenerate`` (docs/regression.md); a model
or solver change that moves numbers on purpose regenerates them in the same commit.
"""

from __future__ import annotations

import pytest
from regression.regenerate import HASHES, ROOT, quick_run_hashes, read_hashes

from tregsim.placebo import default_data_path


def test_quick_run_csvs_are_unchanged(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # CSV files name inputs relative to the working folder
    if default_data_path() is None:
        pytest.skip("../shared/data/placebo_cpeptide_by_age_month.csv is absent")
    got = quick_run_hashes(tmp_path / "run")
    capsys.readouterr()
    want = read_hashes(HASHES)
    assert sorted(got) == sorted(want)
    changed = [name for name in want if got[name] != want[name]]
    assert not changed, (
        f"{changed} differ from {HASHES.name}; if the change is intended, run "
        "`python -m tests.regression.regenerate` and commit the new hashes"
    )
