"""Treg product kinetics: rejection ABC of FX, T_max, alpha_X, F_M, beta_M on persistence figures.

C-peptide cannot identify the infused-cell kinetics (docs/calibration.md). What is known are
persistence statements (``calibration/treg_persistence.csv``): most infused cells are gone at
3 months (Dong 2021) and up to 25 % of the peak remains at 1 year (Bluestone 2015). Prior
draws of the five kinetic parameters are pushed through the model's infused-cell block (one
batched ``simulate_arrays`` call, a bolus into X at day 0) and kept when the curve
(X + M as a fraction of its peak) satisfies every bound. φ (potency × homing) does not enter
X + M at all, so it stays prior-driven.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim import rng as trng
from tregsim.errors import DataFileError

KINETIC_NAMES = ("FX", "T_max", "alpha_X", "F_M", "beta_M")
DOSE_CELLS_PER_KG = 1e7


@dataclass
class KineticsABC:
    names: tuple[str, ...]
    prior_draws: np.ndarray  # (n, 5)
    accepted: np.ndarray  # (n,) bool
    days: np.ndarray
    frac_of_peak: np.ndarray  # (n, n_days)
    targets: pd.DataFrame

    @property
    def acceptance_rate(self) -> float:
        return float(self.accepted.mean())

    def table(self) -> pd.DataFrame:
        rows = []
        for j, n in enumerate(self.names):
            pr, po = self.prior_draws[:, j], self.prior_draws[self.accepted, j]
            rows.append(
                {
                    "parameter": n,
                    "prior_q05": np.quantile(pr, 0.05),
                    "prior_q50": np.quantile(pr, 0.5),
                    "prior_q95": np.quantile(pr, 0.95),
                    "abc_q05": np.quantile(po, 0.05),
                    "abc_q50": np.quantile(po, 0.5),
                    "abc_q95": np.quantile(po, 0.95),
                    "sd_ratio_abc_over_prior": po.std() / pr.std(),
                }
            )
        return pd.DataFrame(rows)


def load_targets(path) -> pd.DataFrame:
    path = Path(path)
    df = pd.read_csv(path)
    need = {"quantity", "day_after_infusion", "bound", "value", "source"}
    if not need <= set(df.columns):
        raise DataFileError(
            f"missing columns {sorted(need - set(df.columns))}",
            file=path,
            fix="see calibration/treg_persistence.csv",
        )
    bad = df[(df["quantity"] != "fraction_of_peak") | ~df["bound"].isin(["upper", "lower"])]
    if len(bad):
        raise DataFileError(
            f"unsupported row {bad.index[0]}",
            file=path,
            field="quantity",
            fix="quantity = fraction_of_peak, bound = upper|lower",
        )
    return df


def treg_kinetics_abc(model, targets: pd.DataFrame, n: int, seed: int) -> KineticsABC:
    """Rejection ABC with n prior draws (stream ``"calibrate.kinetics"``)."""
    from tregsim.solve import Doses, simulate_arrays

    priors = [model.spec.parameters[k].prior for k in KINETIC_NAMES]
    u = trng.draw(seed, "calibrate.kinetics", 0, n, lambda g, m: g.random((m, len(priors))))
    th = np.stack([p.ppf(u[:, j]) for j, p in enumerate(priors)], axis=1)
    days = np.unique(
        np.r_[
            np.arange(0.0, 60.0, 0.25),
            np.arange(60.0, 400.0, 1.0),
            targets["day_after_infusion"].to_numpy(float),
        ]
    )
    P = model.parameters(n, **{k: th[:, j] for j, k in enumerate(KINETIC_NAMES)})
    res = simulate_arrays(
        model,
        P,
        doses=Doses(time=[0.0], amount=[DOSE_CELLS_PER_KG]),
        times=days,
        rtol=1e-6,
        atol=1e-9,
    )
    ix = [model.state_names.index("X"), model.state_names.index("M")]
    cells = res.states[ix[0]] + res.states[ix[1]]  # (n, n_days)
    frac = cells / np.max(cells, axis=1, keepdims=True)
    ok = np.asarray(res.status) == 0
    for _, r in targets.iterrows():
        f = frac[:, np.searchsorted(days, float(r["day_after_infusion"]))]
        ok &= (f <= r["value"]) if r["bound"] == "upper" else (f >= r["value"])
    return KineticsABC(
        names=KINETIC_NAMES,
        prior_draws=th,
        accepted=ok,
        days=days,
        frac_of_peak=frac,
        targets=targets,
    )


def run_kinetics_abc(
    out, *, n: int = 4000, seed: int = 20261130, model="treg_t1d", targets_path=None
) -> KineticsABC:
    """Run the ABC and write ``treg_kinetics.nc`` (accepted draws), ``treg_kinetics.csv``,
    ``figures/treg_persistence.png`` and ``manifest.json`` into folder ``out``."""
    from tregsim.io import atomic_path, build_manifest, file_sha256, write_json
    from tregsim.model import load_model
    from tregsim.plots.calibration import treg_persistence
    from tregsim.posterior import save_posterior
    from tregsim.resources import shipped_path

    targets_path = Path(targets_path or shipped_path("calibration/treg_persistence.csv"))
    out = Path(out)
    m = load_model(model)
    tg = load_targets(targets_path)
    res = treg_kinetics_abc(m, tg, n, seed)
    acc = res.prior_draws[res.accepted]
    save_posterior(
        out / "treg_kinetics.nc",
        {k: acc[:, j] for j, k in enumerate(res.names)},
        units={k: m.spec.parameters[k].unit for k in res.names},
        attrs={
            "method": "rejection ABC on persistence bounds",
            "model": m.spec.name,
            "data_sha256": file_sha256(targets_path),
            "seed": seed,
            "n_prior_draws": n,
            "acceptance_rate": res.acceptance_rate,
        },
    )
    with atomic_path(out / "treg_kinetics.csv") as tmp:
        res.table().to_csv(tmp, index=False)
    targets = [
        (float(r["day_after_infusion"]), float(r["value"]), f"{r['bound']} bound")
        for _, r in tg.iterrows()
    ]
    treg_persistence(
        res.days,
        res.frac_of_peak,
        res.frac_of_peak[res.accepted],
        out / "figures" / "treg_persistence.png",
        targets=targets,
    )
    write_json(
        out / "manifest.json",
        build_manifest(
            command="calibrate.kinetics",
            seed=seed,
            inputs={"targets": targets_path},
            settings={"n": n, "model": model},
        ),
    )
    return res
