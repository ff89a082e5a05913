"""Long-format records: error messages."""

from __future__ import annotations

import pytest


def test_long_format_errors_show_the_value_as_written(tmp_path):
    """A bad cell is quoted as the user wrote it, not as numpy's repr (np.float64(...))."""
    from tregsim.errors import DataFileError
    from tregsim.long_format import read_long

    p = tmp_path / "visits.csv"
    p.write_text("id,day,cpeptide_nmol_l,age\nA,0,0.5,-3\n")
    with pytest.raises(DataFileError) as e:
        read_long(p)
    msg = str(e.value)
    assert "got -3.0" in msg and "np." not in msg and "line 2" in msg
