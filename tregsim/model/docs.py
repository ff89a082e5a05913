"""Markdown documentation generated from a model file (used for the README's model section).

    python -m tregsim.model.docs README.md      # rewrite the generated block in place
    python -m tregsim.model.docs --check README.md

The block sits between ``<!-- BEGIN GENERATED MODEL: <name> -->`` and ``<!-- END GENERATED
MODEL -->``; a test checks that the README matches the model file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tregsim.model.compile import CompiledModel, load_model

BEGIN = "<!-- BEGIN GENERATED MODEL: {name} -->"
END = "<!-- END GENERATED MODEL -->"


def model_markdown(model: CompiledModel) -> str:
    """States, equations (LaTeX) and parameters of a model as Markdown."""
    s = model.spec
    out = [
        f"**{s.name}** — {s.title}",
        "",
        "| state | meaning | unit | initial value |",
        "|---|---|---|---|",
    ]
    for st in s.states.values():
        out.append(f"| {st.name} | {st.description} | {st.unit} | `{st.initial_text}` |")
    out += [
        "",
        "```math",
        model.latex(),
        "```",
        "",
        "| parameter | meaning | value | unit | role | prior | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in s.parameters.values():
        prior = p.prior.describe() if p.prior else "–"
        out.append(
            f"| `{p.name}` | {p.description} | {p.value:.4g} | {p.unit} | {p.role} | "
            f"{prior} | {p.source} |"
        )
    for d in s.doses.values():
        clock = f"; resets the clock `{d.clock}` (days since the latest dose)" if d.clock else ""
        out.append("")
        out.append(f"Doses: bolus into `{d.state}` ({d.unit}){clock}.")
    for o in s.observables.values():
        out.append("")
        out.append(
            f"Observable `{o.name}` ({o.unit}): {o.description}; noise `{o.noise}` "
            f"(σ = `{o.sigma}`), left-censored below `{o.lloq}`."
        )
    return "\n".join(out)


def render_block(text: str, name: str = "treg_t1d") -> str:
    """``text`` with the generated block for model ``name`` replaced by a fresh one."""
    begin = BEGIN.format(name=name)
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(END), re.S)
    block = f"{begin}\n{model_markdown(load_model(name))}\n{END}"
    if not pat.search(text):
        raise ValueError(f"no generated block for {name} (markers {begin!r} … {END!r})")
    return pat.sub(lambda _: block, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"] or ["README.md"]
    stale = 0
    for p in map(Path, paths):
        text = p.read_text(encoding="utf-8")
        new = render_block(text)
        if new != text:
            if check:
                print(
                    f"{p}: generated model section is stale; run python -m tregsim.model.docs {p}"
                )
                stale += 1
            else:
                from tregsim.io import write_text

                write_text(p, new)
                print(f"{p}: model section regenerated")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
