"""Build hook: a wheel carries the project-root folders tregsim reads by name (models,
experiments, calibration configs, data and the shipped posterior) under ``tregsim/_data/``.
Everything else is configured in pyproject.toml. Editable installs read the checkout itself.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("models", "experiments", "calibration")
SKIP = shutil.ignore_patterns("__pycache__", "*.tmp", "bank.npz", "sbc_bank.npz")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "tregsim" / "_data"
        for name in SHIPPED:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target / name, ignore=SKIP, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithData})
