"""Files tregsim ships beside its code: models, experiments, calibration configs, data and the
default posterior.

In a source checkout or an editable install they live at the project root (``models/``,
``experiments/``, ``calibration/``), where users read and edit them. A wheel carries copies
under ``tregsim/_data/`` (``setup.py`` puts them there), so ``pip install .`` works too.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_ROOT = _PKG.parent
SHIPPED = ("models", "experiments", "calibration")
"""Project-root folders that a wheel carries under ``tregsim/_data/``."""


def _is_checkout(root: Path) -> bool:
    # site-packages could hold an unrelated top-level "models" folder: require our project
    return (root / "pyproject.toml").is_file() and (root / "tregsim" / "__init__.py").is_file()


def shipped_path(rel: str | Path) -> Path:
    """Path of a shipped file or folder, e.g. ``shipped_path("models")``.

    The source checkout wins over the wheel's copy; if neither exists the checkout location
    is returned, so error messages name the place a user would look.
    """
    bases = ([_ROOT] if _is_checkout(_ROOT) else []) + [_PKG / "_data"]
    for base in bases:
        p = base / rel
        if p.exists():
            return p
    return bases[0] / rel


def project_root() -> Path | None:
    """The source checkout's root folder (``pyproject.toml`` beside ``tregsim/``), or None in
    an installed wheel."""
    return _ROOT if _is_checkout(_ROOT) else None
