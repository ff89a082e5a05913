"""Figures of the treatment-effect synthesis (drawn from a TreatmentEffectResult; no computing)."""

from __future__ import annotations


def plot_phi_prior_posterior(res, path):
    """Densities of log10 φ: the model file's prior, the posterior predictive of a new trial's
    φ and each trial's φ posterior (precomputed histograms in ``res.phi_hist``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tregsim.io import atomic_path

    h = res.phi_hist
    fig, ax = plt.subplots(figsize=(7, 4))
    x = h["centres_log10_phi"]
    ax.fill_between(x, h["prior"], color="0.88", label="prior of φ in the model file, LN(2, 1.2)")
    ax.plot(
        x,
        h["new_trial_prior"],
        color="0.4",
        ls="--",
        label="prior predictive: a new trial's φ (hierarchy)",
    )
    ax.plot(x, h["new_trial"], color="k", lw=2, label="posterior predictive: a new trial's φ")
    for k, v in h.items():
        if k.startswith("trial:"):
            ax.plot(x, v, lw=1.2, label=f"posterior φ of {k[6:]}")
    ax.set_xlabel("log10 φ (potency × homing, 1)")
    ax.set_ylabel("density (per log10 unit)")
    ax.legend(fontsize=7)
    ax.set_title("φ: prior vs posterior from the treated-arm evidence", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_assurance(res, path):
    """Left: assurance over N per arm under the posterior and the prior. Right: the φ each N
    needs for the configured power (kinetics at their posterior medians) beside the posterior
    predictive of a new trial's φ (median and 90 % interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tregsim.io import atomic_path

    a = res.assurance
    n = a["n_per_arm"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(n, a["assurance_posterior"], "o-", label="assurance, posterior")
    ax.plot(n, a["assurance_prior"], "s--", color="0.5", label="assurance, prior (hierarchy)")
    ax.set_xscale("log")
    ax.set_xlabel("patients per arm")
    ax.set_ylabel(f"P(significant at {a.get('month', 12):g} months)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    need = np.array([np.inf if v is None else v for v in a["phi_needed"]], float)
    ok = np.isfinite(need)
    bx.plot(
        np.asarray(n)[ok],
        need[ok],
        "o-",
        color="C3",
        label=f"φ needed for {100 * a.get('power', 0.8):.0f} % power",
    )
    for x in np.asarray(n)[~ok]:
        bx.annotate("not reachable", (x, 5e3), rotation=90, fontsize=7, ha="center", va="top")
    row = next((r for r in res.posterior_summary if r["parameter"] == "phi_new"), None)
    if row:
        bx.axhspan(
            row["posterior_q05"],
            row["posterior_q95"],
            color="C0",
            alpha=0.15,
            label="new trial's φ, 90 % posterior",
        )
        bx.axhline(row["posterior_median"], color="C0", label="new trial's φ, posterior median")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_ylim(0.1, 1e4)
    bx.set_xlim(min(n) * 0.8, max(n) * 1.25)
    bx.set_xlabel("patients per arm")
    bx.set_ylabel("φ (potency × homing, 1)")
    bx.legend(fontsize=7)
    fig.suptitle(f"{res.target}: assurance and the φ each N needs", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_phi_draws(phi, path, experiment):
    """Histogram of the φ draws used for an experiment beside the model file's prior."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats

    from tregsim.io import atomic_path

    x = np.linspace(-3, 5, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(
        x,
        stats.norm.pdf(x, np.log10(2.0), 1.2 / np.log(10)),
        color="0.88",
        label="prior of φ in the model file, LN(2, 1.2)",
    )
    ax.hist(
        np.log10(phi),
        bins=40,
        range=(-3, 5),
        density=True,
        histtype="step",
        color="k",
        lw=2,
        label="posterior predictive: a new trial's φ",
    )
    ax.set_xlabel("log10 φ (potency × homing, 1)")
    ax.set_ylabel("density (per log10 unit)")
    ax.set_title(f"{experiment}: φ prior vs posterior", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
