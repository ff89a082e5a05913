"""The leave-one-study-out benchmark on the placebo records (../shared/data; skipped if absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT.parent / "shared" / "data" / "placebo_cpeptide_individual.csv"


@pytest.mark.slow
@pytest.mark.skipif(not RECORDS.is_file(), reason="placebo records not in ../shared/data")
def test_loso_writes_only_aggregates_of_five_or_more(tmp_path):
    spec = importlib.util.spec_from_file_location("twin_loso", ROOT / "benchmarks" / "twin_loso.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(
        [
            "--out",
            str(tmp_path),
            "--draws",
            "64",
            "--steps",
            "30",
            "--walkers",
            "16",
            "--boot",
            "50",
            "--table",
            "41,11,10",
        ]
    )
    res = pd.read_csv(tmp_path / "twin_loso.csv")
    assert (res["n"] >= 5).all()
    assert set(res["held_out"]) >= {"ABATE", "START", "T1DAL", "TN02", "TN05"}
    # no participant-level column anywhere in the output
    ids = set(pd.read_csv(RECORDS)["participant_id"].astype(str))
    for f in tmp_path.iterdir():
        text = f.read_text()
        assert not any(i in text for i in ids), f
