"""The part every calibration config shares: top-level table, schema version, sections and
model, validated before anything else (``tregsim.calibrate.config`` and
``tregsim.calibrate.structure_config`` build on it)."""

from __future__ import annotations

from pathlib import Path

from tregsim.errors import ConfigFileError


def config_sections(raw: dict, path: Path, schema: dict, check) -> tuple[dict, dict, object]:
    """Top level and sections checked by ``check(table, section)``; schema version; model."""
    from tregsim.model import load_model

    top = check(raw, "")
    if top["schema_version"] != 1:
        raise ConfigFileError(
            f"schema_version {top['schema_version']} is not supported",
            file=path,
            field="schema_version",
            fix="use schema_version = 1",
        )
    sec = {name: check(top[name], name) for name in schema if name}
    try:
        model = load_model(top["model"])
    except Exception as e:
        raise ConfigFileError(
            f"cannot load model {top['model']!r}: {e}",
            file=path,
            field="model",
            fix="name a model in models/ or a model file",
        ) from e
    return top, sec, model
