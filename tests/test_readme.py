"""The README stays true: its model section is generated from models/treg_t1d.toml, and the
test command in it is the one .ci/run runs."""

import re
from pathlib import Path

from tregsim.model.docs import render_block

ROOT = Path(__file__).resolve().parents[1]


def test_readme_model_section_matches_model_file():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_block(text) == text, "run: python -m tregsim.model.docs README.md"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_cmd = next(b.strip() for b in blocks if "pytest" in b)
    assert test_cmd in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
