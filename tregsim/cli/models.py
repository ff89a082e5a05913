"""``tregsim models``: list every model file in models/ (name, state count, title)."""

from __future__ import annotations

HELP = "list the models in models/ (name, number of states, title)"


def add_arguments(parser) -> None:
    pass


def format_models() -> list[str]:
    """One line per model: ``name  <k> states  [variant of X]  title`` (or ``INVALID``)."""
    from tregsim.errors import TregsimError
    from tregsim.model import list_models, load_spec, resolve_model_path

    rows = []
    for name, title in list_models():
        try:
            spec = load_spec(resolve_model_path(name))
            k = f"{len(spec.states)} states"
            v = f"variant of {spec.variant_of}" if spec.variant_of else "core"
        except TregsimError:
            k, v = "?", "invalid"
        rows.append((name, k, v, title))
    if not rows:
        return []
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]


def run(args) -> int:
    lines = format_models()
    if not lines:
        print("no model files in models/")
        return 1
    print("\n".join(lines))
    return 0
