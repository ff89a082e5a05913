"""``tregsim run``: budgets from the experiment file, failure handling, and an end-to-end run."""

from __future__ import annotations

import base64
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tregsim import io
from tregsim.cli import main
from tregsim.report.html import png_size
from tregsim.report.run import (
    DEFAULT_BUDGET,
    QUICK_BUDGET,
    SECTION_ORDER,
    SectionSpec,
    plan_run,
    run_section,
)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "nct06708780.toml"


def _experiment_with_run(tmp_path: Path, run_table: str) -> Path:
    """A copy of the NCT06708780 experiment whose [run] tables are replaced by ``run_table``."""
    text = EXPERIMENT.read_text(encoding="utf-8")
    head = text.split("\n[run]", 1)[0]
    p = tmp_path / "exp.toml"
    p.write_text(head + "\n" + run_table, encoding="utf-8")
    return p


def _load(path):
    from tregsim.experiment import load_experiment

    return load_experiment(path)


def test_plan_reads_run_and_quick_tables():
    exp = _load(EXPERIMENT)
    raw = exp.sections
    full = plan_run(exp, "out", quick=False, seed=3)
    quick = plan_run(exp, "out", quick=True, seed=3)
    assert full.sections == tuple(s for s in SECTION_ORDER if s in raw["sections"])
    assert full.n_patients == raw["n_patients"] and full.n_trials == raw["n_trials"]
    assert full.n_per_arm == tuple(raw["n_per_arm"])
    assert full.sweep_doses == tuple(float(x) for x in raw["sweep_doses"])
    assert quick.sections == tuple(s for s in SECTION_ORDER if s in raw["quick"]["sections"])
    assert quick.n_patients == raw["quick"]["n_patients"]
    assert quick.sensitivity_n == raw["quick"]["sensitivity_n"]
    assert full.seed == quick.seed == 3


def test_plan_defaults_when_keys_absent(tmp_path):
    p = _experiment_with_run(tmp_path, '[run]\nsections = ["cohort", "power"]\nn_trials = 7\n')
    exp = _load(p)
    full = plan_run(exp, tmp_path / "o")
    quick = plan_run(exp, tmp_path / "o", quick=True)
    assert full.sections == ("cohort", "power")
    assert full.n_trials == 7
    assert full.n_patients == DEFAULT_BUDGET["n_patients"]
    # --quick never falls back to the full budget: a missing [run.quick] key takes the quick
    # default, only the section list is inherited from [run].
    assert quick.sections == ("cohort", "power")
    assert quick.n_trials == QUICK_BUDGET["n_trials"]
    assert quick.n_patients == QUICK_BUDGET["n_patients"]


def test_failing_section_is_reported_not_presented(tmp_path):
    from tregsim.errors import ArgumentError
    from tregsim.report.run import RunPlan

    plan = RunPlan(
        experiment=EXPERIMENT, out=tmp_path, seed=0, quick=True, sections=("cohort",),
        n_patients=1, n_trials=1, n_per_arm=(1,), sweep_doses=(1.0,), sweep_days=(1.0,),
        sensitivity_n=1,
    )  # fmt: skip

    def compute(plan, folder, exp):
        raise ArgumentError("n must be ≥ 1, got 0", field="n", fix="give a number ≥ 1")

    spec = SectionSpec(
        name="ghost",
        title="Ghost analysis",
        compute=compute,
        present=lambda plan, folder, exp, res: pytest.fail("present must not run"),
    )
    oc = run_section(spec, plan, exp=None)
    assert oc.status == "failed"
    assert oc.error == "<input>: [n] n must be ≥ 1, got 0; fix: give a number ≥ 1"
    assert oc.section.error == oc.error
    assert oc.summary[0].text.startswith("not available: this section failed")


def test_a_command_that_does_not_import_fails_loudly(monkeypatch):
    import tregsim.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "ghost", "tregsim.cli.no_such_command_xyz")
    with pytest.raises(ModuleNotFoundError, match="no_such_command_xyz"):
        cli.build_parser()


def test_no_run_module_imports_the_command_line():
    """The report composes library results: no import of tregsim.cli, no import_module."""
    for folder in ("report", "trial", "explore"):
        for path in (ROOT / "tregsim" / folder).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "tregsim.cli" not in text and "import_module" not in text, path
    for path in (ROOT / "tregsim").glob("cohort*.py"):
        text = path.read_text(encoding="utf-8")
        assert "tregsim.cli" not in text and "import_module" not in text, path


def test_refuses_folder_of_another_run(tmp_path, capsys):
    out = tmp_path / "out"
    other = io.build_manifest(command="power", seed=1, inputs={"experiment": EXPERIMENT})
    io.write_json(out / "manifest.json", other)
    before = sorted(p.name for p in out.iterdir())
    status = main(["run", str(EXPERIMENT), "--out", str(out), "--quick"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "tregsim run: error:" in err
    assert sorted(p.name for p in out.iterdir() if p.name != "chunks") == before
    assert not (out / "report.html").exists()


def test_negative_seed_is_an_argument_error(tmp_path, capsys):
    status = main(["run", str(EXPERIMENT), "--out", str(tmp_path / "o"), "--seed", "-1"])
    assert status == 2
    assert "--seed must be ≥ 0, got -1" in capsys.readouterr().err


def _default_posterior():
    """What `tregsim run` uses without --posterior: the shipped posterior, if present."""
    from tregsim.posterior import DEFAULT_POSTERIOR

    return str(DEFAULT_POSTERIOR) if DEFAULT_POSTERIOR.exists() else None


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        if "id" in a:
            self.ids.append(a["id"])


def _check_run_folder(out: Path, plan, status: int, err: str) -> str:
    """Every enabled section ran and is in the report with its own figures; returns the HTML."""
    from tregsim.report.sections import SUMMARY_ORDER, TITLES

    sections_json = json.loads((out / "sections.json").read_text())["sections"]
    assert status == 0, err[-3000:]
    assert [v["name"] for v in sections_json] == list(plan.sections)
    assert all(v["status"] == "ok" for v in sections_json)
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "run" and man["seed"] == plan.seed
    assert man["inputs"]["experiment"]["sha256"] == io.file_sha256(plan.experiment)
    assert {k: man["settings"][k] for k in plan.settings()} == plan.settings()
    # the run and every section say where population parameters came from
    assert man["settings"]["population_parameters"].startswith(
        "posterior draws" if plan.posterior else "model file values"
    )
    for name in plan.sections:
        sub = json.loads((out / name / "manifest.json").read_text())
        # a section's manifest records its own call, not the `tregsim run` command line
        assert sub["call"]["function"].startswith("tregsim.")
        assert "tregsim run" not in sub["command_line"]
        assert "/" + "work" not in json.dumps(sub["inputs"])  # no absolute path
    html_text = (out / "report.html").read_text(encoding="utf-8")
    # no absolute path of this machine (e.g. the posterior's) in the report or any CSV file
    for text in [html_text, *(f.read_text(encoding="utf-8") for f in out.rglob("*.csv"))]:
        assert str(ROOT) not in text
    p = _Imgs()
    p.feed(html_text)
    assert "This section failed" not in html_text
    for name in plan.sections:
        sub = out / name
        assert (sub / "manifest.json").is_file(), name
        assert list(sub.glob("*.csv")), f"{name}: no CSV"
        assert list(sub.glob("*.png")), f"{name}: no figure"
        anchor = "sec-" + re.sub(r"[^a-z0-9]+", "-", TITLES[name].lower()).strip("-")
        assert anchor in p.ids, name
    # every figure the sections drew is embedded, byte for byte
    pngs = sorted(out.glob("*/*.png"))
    assert len(p.srcs) == len(pngs)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in p.srcs}
    assert embedded == {f.read_bytes() for f in pngs}
    assert all(png_size(b)[0] > 0 for b in embedded)
    assert 'id="summary"' in html_text and 'id="ledger"' in html_text
    assert html_text.count("<dt>") == len(SUMMARY_ORDER) - (
        ("sweep" not in plan.sections) + ("natural_history" not in plan.sections)
    )
    assert io.file_sha256(plan.experiment)[:16] in html_text
    return html_text


TINY_RUN = """
[run]
sections = ["cohort", "natural_history", "power", "sweep", "sensitivity"]
n_patients = 40
n_trials = 10
n_per_arm = [5, 10]
sweep_doses = [1e6, 2e7]
sweep_days = [60.0]
sensitivity_n = 4
"""


def test_run_every_section_on_a_tiny_budget(tmp_path, capsys):
    from tregsim.placebo import default_data_path

    if default_data_path() is None:
        pytest.skip("../shared/data/placebo_cpeptide_by_age_month.csv is absent (natural history)")
    exp_path = _experiment_with_run(tmp_path, TINY_RUN)
    out = tmp_path / "run"
    status = main(["run", str(exp_path), "--out", str(out), "--seed", "2"])
    err = capsys.readouterr().err
    plan = plan_run(_load(exp_path), out, seed=2, posterior=_default_posterior())
    assert plan.sections == SECTION_ORDER
    html_text = _check_run_folder(out, plan, status, err)
    # the numbers in the summary are the ones in the sections' CSVs
    import pandas as pd

    cohort = pd.read_csv(out / "cohort" / "summary.csv")
    d12 = cohort[(cohort["arm"] == "treg") & (cohort["visit_month"] == 12)]
    assert f"{d12['diff_mean_nmol_L'].iloc[0]:+.3g} nmol/L" in html_text
    sweep = pd.read_csv(out / "sweep" / "sweep.csv", comment="#")
    assert f"{sweep['delta_cpeptide_12mo_median_nmol_L'].max():+.3g} nmol/L" in html_text
    # a rerun of the same run into the same folder is accepted (resume), a different seed not
    status = main(["run", str(exp_path), "--out", str(out), "--seed", "3"])
    assert status == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.slow
def test_run_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    status = main(["run", str(EXPERIMENT), "--out", str(out), "--quick", "--seed", "5"])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    with capsys.disabled():
        print(f"\ntregsim run --quick: {seconds:.1f} s, report {out / 'report.html'}")
    plan = plan_run(_load(EXPERIMENT), out, quick=True, seed=5, posterior=_default_posterior())
    _check_run_folder(out, plan, status, err)
