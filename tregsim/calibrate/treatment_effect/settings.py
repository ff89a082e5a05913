"""``calibration/treatment_effect.toml``: the treatment-effect calibration's configuration.

Validated completely before anything runs; every problem is one
:class:`~tregsim.errors.ConfigFileError` naming the file, the dotted field and the fix.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tregsim.errors import ConfigFileError
from tregsim.schema import Table


@dataclass(frozen=True)
class TreatmentEffectConfig:
    """The resolved configuration (paths absolute; see the shipped TOML for each key)."""

    path: Path
    text: str
    name: str
    model: str
    seed: int
    evidence: Path
    natural_history: Path | None
    target: Path
    target_months: tuple
    analysis: dict
    mu_mean: float
    mu_sd: float
    tau_scale: float
    bias_sd: float
    persistence_sd_log: float
    n_points: int
    n_holdout: int
    n_patients: int
    variability: str
    log_phi: tuple
    quantiles: tuple
    n_prior_draws: int
    n_posterior_draws: int
    n_sbc: int
    n_sbc_prior_draws: int
    n_per_arm: tuple
    alpha: float
    power: float
    extra: dict = field(default_factory=dict)


def load_config(path) -> TreatmentEffectConfig:
    """Read and validate a treatment-effect configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError("configuration file not found", file=path, fix="give the TOML's path")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"not valid TOML ({e})", file=path, fix="fix the TOML syntax") from e
    t = Table(data, path, "", ConfigFileError)
    t.check_keys(
        (
            "schema_version",
            "name",
            "description",
            "model",
            "seed",
            "data",
            "analysis",
            "hierarchy",
            "design",
            "inference",
            "assurance",
            "method",
        ),
        required=("schema_version", "data"),
    )
    if t.has("method"):
        mt = t.table("method")
        mt.check_keys(("kind",))
        mt.string("kind", choices=("treatment_effect",))
    if t.integer("schema_version") != 1:
        raise t.error(
            "schema_version must be 1", key="schema_version", fix="write schema_version = 1"
        )
    base = path.parent

    def rel(tab, key, required=True):
        if not tab.has(key) and not required:
            return None
        p = base / tab.string(key)
        if not p.is_file():
            raise tab.error(
                f"file {tab.string(key)!r} not found",
                key=key,
                fix="give a path relative to the configuration file",
            )
        return p

    d = t.table("data")
    d.check_keys(
        ("evidence", "natural_history", "target", "target_months"), required=("evidence", "target")
    )
    a = t.table("analysis", default={})
    for k in a.data:
        if a.string(k, choices=("ancova", "welch")) is None:
            pass
    h = t.table("hierarchy", default={})
    h.check_keys(("mu", "tau_scale", "nonrandomized_bias_sd", "persistence_sd_log"))
    mu = h.table("mu", default={"dist": "normal", "mean": 0.6931, "sd": 1.2})
    mu.check_keys(("dist", "mean", "sd"), required=("dist", "mean", "sd"))
    mu.string("dist", choices=("normal",))
    g = t.table("design", default={})
    g.check_keys(("n_points", "n_holdout", "n_patients", "log_phi", "quantiles", "variability"))
    i = t.table("inference", default={})
    i.check_keys(("n_prior_draws", "n_posterior_draws", "n_sbc", "n_sbc_prior_draws"))
    s = t.table("assurance", default={})
    s.check_keys(("n_per_arm", "alpha", "power"))
    log_phi = tuple(g.numbers("log_phi", default=[-4.0, 10.0], increasing=True, min_len=2))
    quant = tuple(
        g.numbers("quantiles", default=[0.005, 0.995], lo=0.0, hi=1.0, increasing=True, min_len=2)
    )
    if len(log_phi) != 2 or len(quant) != 2:
        raise g.error(
            "give two numbers [low, high]",
            key="log_phi" if len(log_phi) != 2 else "quantiles",
            fix="e.g. [-4.0, 10.0]",
        )
    return TreatmentEffectConfig(
        path=path,
        text=text,
        name=t.string("name", default=path.stem),
        model=t.string("model", default="treg_t1d"),
        seed=t.integer("seed", default=20261205, lo=0),
        evidence=rel(d, "evidence"),
        natural_history=rel(d, "natural_history", required=False),
        target=rel(d, "target"),
        target_months=tuple(
            d.numbers("target_months", default=[12.0, 24.0], lo=0.0, increasing=True)
        ),
        analysis={k: a.string(k, choices=("ancova", "welch")) for k in a.data},
        mu_mean=mu.number("mean"),
        mu_sd=mu.number("sd", lo=0.0, lo_open=True),
        tau_scale=h.number("tau_scale", default=1.0, lo=0.0, lo_open=True),
        bias_sd=h.number("nonrandomized_bias_sd", default=0.1, lo=0.0),
        persistence_sd_log=h.number("persistence_sd_log", default=0.5, lo=0.0, lo_open=True),
        n_points=g.integer("n_points", default=200, lo=20, hi=2000),
        n_holdout=g.integer("n_holdout", default=40, lo=5, hi=1000),
        n_patients=g.integer("n_patients", default=1000, lo=100, hi=100000),
        # docs/treatment_effect.md: the records-fitted structure of individual variability
        variability=g.string("variability", default="records", choices=("records", "lumped")),
        log_phi=log_phi,
        quantiles=quant,
        n_prior_draws=i.integer("n_prior_draws", default=200000, lo=1000),
        n_posterior_draws=i.integer("n_posterior_draws", default=4000, lo=100),
        n_sbc=i.integer("n_sbc", default=200, lo=0),
        n_sbc_prior_draws=i.integer("n_sbc_prior_draws", default=50000, lo=1000),
        n_per_arm=tuple(
            int(x)
            for x in s.numbers("n_per_arm", default=[5, 10, 20, 40, 80, 160], lo=2, increasing=True)
        ),
        alpha=s.number("alpha", default=0.05, lo=0.0, hi=1.0, lo_open=True),
        power=s.number("power", default=0.8, lo=0.0, hi=1.0, lo_open=True),
    )
