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
    """Assurance over N per arm under the posterior (and the prior), with power at the
    posterior median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tregsim.io import atomic_path

    a = res.assurance
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(a["n_per_arm"], a["assurance_posterior"], "o-", label="assurance, posterior")
    ax.plot(a["n_per_arm"], a["assurance_prior"], "s--", color="0.5", label="assurance, prior of φ")
    ax.set_xscale("log")
    ax.set_xlabel("patients per arm")
    ax.set_ylabel("P(significant at 12 months)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{res.target}: assurance at 12 months", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
