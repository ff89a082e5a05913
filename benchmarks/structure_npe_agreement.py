"""Issue #14 item 3: do the NPE and the records likelihood agree on the structure's posterior?

Per parameter: NPE and likelihood medians and 90 % intervals, and the difference of the
medians in units of the pooled posterior SD, sqrt((SD_npe² + SD_lik²) / 2). And the nested
test (:func:`tregsim.calibrate.diagnostics.nested_agreement`, round 8): the NPE conditions on
summaries of the records, the likelihood on all of them, so when both are correct the
likelihood's mean differs from the NPE's by N(0, Σ_npe − Σ_lik); D² over all parameters (in
the sampler's log / logit coordinates) is then ≈ χ²_d, and z_nested is each parameter's share. Without a
likelihood posterior (``--likelihood`` missing), the NPE is compared with the structure's MAP
(calibration/natural_history_structure.json) in units of the NPE posterior SD.

    python benchmarks/structure_npe_agreement.py runs/s30k/posterior.nc \\
        --likelihood /work/notes/lik4_posterior.nc --out runs/s30k/diagnostics/agreement.csv

Numbers in docs/calibration.md, "NPE on within-patient statistics".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tregsim.calibrate.structure_config import structure_names

# every structure's parameters: "lincovariate+power"'s, γ_β of the age form, 1/ν of the t form
NAMES = tuple(
    dict.fromkeys(
        (*structure_names("lincovariate+age+power"), *structure_names("lincovariate+power+t"))
    )
)

MAP = Path(__file__).resolve().parents[1] / "calibration" / "natural_history_structure.json"


def _summary(d: np.ndarray) -> dict:
    q05, q50, q95 = np.quantile(d, [0.05, 0.5, 0.95])
    return {"median": q50, "q05": q05, "q95": q95, "sd": d.std()}


def columns(draws: dict, names, in_u: bool) -> np.ndarray:
    """Draws (n, d) of ``names`` on the natural scale, or in the sampler's log / logit
    coordinates (``variability.PARAMS``) with ``in_u``."""
    from tregsim.calibrate import variability as V

    return np.column_stack(
        [V._to_u(n, np.asarray(draws[n], float)) if in_u else draws[n] for n in names]
    )


def agreement(npe: dict, lik: dict | None, map_theta: dict | None) -> pd.DataFrame:
    rows = []
    for n in NAMES:
        if n not in npe:
            continue
        a = _summary(npe[n])
        r = {"parameter": n} | {f"npe_{k}": v for k, v in a.items()}
        if lik is not None and n in lik:
            b = _summary(lik[n])
            pooled = np.sqrt((a["sd"] ** 2 + b["sd"] ** 2) / 2)
            r |= {f"lik_{k}": v for k, v in b.items()}
            r["pooled_sd"] = pooled
            r["median_diff_over_pooled_sd"] = (a["median"] - b["median"]) / pooled
            r["npe_median_in_lik_90"] = bool(b["q05"] <= a["median"] <= b["q95"])
            r["lik_median_in_npe_90"] = bool(a["q05"] <= b["median"] <= a["q95"])
        elif map_theta is not None and n in map_theta:
            r["map"] = map_theta[n]
            r["median_minus_map_over_npe_sd"] = (a["median"] - map_theta[n]) / a["sd"]
            r["map_in_npe_90"] = bool(a["q05"] <= map_theta[n] <= a["q95"])
        rows.append(r)
    return pd.DataFrame(rows)


def main() -> None:
    from tregsim.posterior import load_posterior

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npe")
    ap.add_argument("--likelihood", default=None)
    ap.add_argument(
        "--seed-spread",
        default=None,
        help="seed_spread_by_k.csv of structure_npe_seed_banks.py: the variance of the NPE "
        "posterior means between training seeds joins the nested test (diagonal)",
    )
    ap.add_argument("--n-flows", type=int, default=None, help="with --seed-spread: its n_flows")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    npe = load_posterior(a.npe)
    lik = None
    if a.likelihood and Path(a.likelihood).is_file():
        lik = load_posterior(a.likelihood)
    else:
        print(f"no likelihood posterior at {a.likelihood}: comparing with the MAP of {MAP.name}")
    tab = agreement(npe, lik, json.loads(MAP.read_text())["theta"])
    if lik is not None:
        from tregsim.calibrate import variability as V
        from tregsim.calibrate.diagnostics import nested_agreement

        names = [n for n in tab.parameter if n in lik]
        seed_var = None
        if a.seed_spread:
            sp = pd.read_csv(a.seed_spread)
            sp = sp[sp.n_flows == (a.n_flows or sp.n_flows.max())].set_index("parameter")
            means = sp[[c for c in sp.columns if c.startswith("mean_seed")]]
            seed_var = means.loc[names].var(axis=1, ddof=1).to_numpy()  # natural scale
        for label, in_u in (("natural", False), ("log/logit", True)):
            extra = None
            if seed_var is not None:
                # delta method in u: Var(u) = Var(θ)·(du/dθ)², du/dθ = exp(−log|dθ/du|)
                jac2 = [
                    np.exp(-2 * V._log_jac(n, V._to_u(n, float(np.mean(npe[n]))))) if in_u else 1.0
                    for n in names
                ]
                extra = np.diag(seed_var * np.asarray(jac2))
            res = nested_agreement(
                columns(npe, names, in_u), columns(lik, names, in_u), extra_cov=extra
            )
            tab.loc[tab.parameter.isin(names), f"z_nested_{label.split('/')[0]}"] = res["z"]
            print(
                f"nested agreement ({label} coordinates"
                + (", with the seed spread" if extra is not None else "")
                + f"): D2 = {res['d2']:.2f} on {res['df']} df, p = {res['p_value']:.3f}; "
                f"directions where the likelihood is wider than the NPE: {res['n_nonpositive']}"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tab.to_csv(a.out, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(tab.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
