"""The quick run writes the same CSV files, byte for byte, as the stored hashes, and the same
values (to 1e-9) in the two files whose last digits follow the CPU.

The hashes and values were made by ``python -m tests.regression.regenerate``
(docs/regression.md); a model or solver change that moves numbers on purpose regenerates them
in the same commit.
"""

from __future__ import annotations

import pytest
from regression.regenerate import HASHES, ROOT, compare_values, quick_run_hashes, read_hashes

from tregsim.placebo import default_data_path


def test_quick_run_csvs_are_unchanged(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # CSV files name inputs relative to the working folder
    if default_data_path() is None:
        pytest.skip("../shared/data/placebo_cpeptide_by_age_month.csv is absent")
    got = quick_run_hashes(tmp_path / "run")
    capsys.readouterr()
    moved = compare_values(tmp_path / "run")
    assert not moved, (
        f"{moved} differ from tests/regression/quick_run_seed0/; if the change is intended, run "
        "`python -m tests.regression.regenerate` and commit the new values"
    )
    want = read_hashes(HASHES)
    assert sorted(got) == sorted(want)
    changed = [name for name in want if got[name] != want[name]]
    assert not changed, (
        f"{changed} differ from {HASHES.name}; if the change is intended, run "
        "`python -m tests.regression.regenerate` and commit the new hashes"
    )


def test_by_value_comparison_sees_a_change_a_user_could_read(tmp_path):
    """The stored values pass against themselves, and a change of one number by 10⁻⁶ relative
    (well below the 4 digits a user reads, far above the CPU's last-digit differences of
    ≤ 1.3·10⁻¹⁴) or of one label is reported by file and column."""
    import pandas as pd
    from regression.regenerate import BY_VALUE, _value_file

    out = tmp_path / "run"
    for name in BY_VALUE:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(_value_file(name).read_bytes())
    assert compare_values(out) == []
    name = "cohort/summary.csv"
    df = pd.read_csv(out / name)
    df.loc[3, "mean_nmol_L"] *= 1 + 1e-6
    df.loc[0, "arm"] = "other"
    df.to_csv(out / name, index=False, float_format="%.17g")
    assert compare_values(out) == [f"{name}: column arm", f"{name}: column mean_nmol_L"]
