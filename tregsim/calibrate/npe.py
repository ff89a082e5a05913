"""Neural posterior estimation (sbi) in standard-normal prior coordinates.

Every calibrated parameter θ_j is mapped to z_j = Φ⁻¹(F_j(θ_j)) (F_j its prior CDF), so the
prior in z is N(0, I) whatever the priors' supports: the flow never puts mass outside a
bound, and θ = F⁻¹(Φ(z)) maps draws back. torch and sbi are imported only here.

Weights are saved as ``torch.save(state_dict)`` plus a JSON sidecar with the architecture;
:func:`load_estimator` rebuilds the network and loads with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tregsim.io import atomic_path, write_json

# ``[method] member_banks``: what an ensemble's members train on (docs/calibration.md,
# "Round 8: seed spread with disjoint banks")
MEMBER_BANKS = ("shared", "disjoint")


def bank_size(n_simulations: int, method: dict) -> int:
    """Simulations a run needs: ``n_simulations``, times ``n_ensemble`` with disjoint banks."""
    if method.get("member_banks", "shared") == "disjoint":
        return int(n_simulations) * int(method.get("n_ensemble", 1))
    return int(n_simulations)


def member_rows(n_rows: int, method: dict) -> list[slice]:
    """The bank rows each ensemble member trains on: all of them (shared), or member m's own
    contiguous m-th part (disjoint; banks are indexed streams, so part 0 is the shared bank of
    ``n_rows / n_ensemble`` simulations with the same seed)."""
    k = int(method.get("n_ensemble", 1))
    if method.get("member_banks", "shared") != "disjoint" or k == 1:
        return [slice(0, n_rows)] * k
    if n_rows % k:
        raise ValueError(
            f"a disjoint-bank ensemble of {k} needs a bank of k x n rows, got {n_rows}"
        )
    n = n_rows // k
    return [slice(m * n, (m + 1) * n) for m in range(k)]


@contextlib.contextmanager
def _quiet_nflows():
    """Silence nflows' ``torch.triangular_solve is deprecated`` (its LU transform, inside
    sbi's flows): nflows' to fix, and it would print on every run's first sampling call."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.triangular_solve is deprecated", category=UserWarning
        )
        yield


@dataclass
class Estimator:
    """A trained conditional density estimator q(z | x): one flow or an equal-weight ensemble.

    With several members (``[method] n_ensemble``, trained from different seeds on the same
    bank or, with ``member_banks = "disjoint"``, each on its own) q is their mixture:
    training-seed variability, which a single flow turns into a confident but shifted
    posterior, becomes posterior width instead (as sbi's
    ``NeuralPosteriorEnsemble``; Hermans et al. 2022 for why ensembles are more conservative).
    """

    nets: list  # sbi ConditionalDensityEstimator (torch modules)
    meta: dict  # architecture, parameter names, feature names

    @property
    def net(self):
        """The first member (the estimator itself when there is one)."""
        return self.nets[0]

    def _split(self, n: int, seed: int) -> tuple[list[int], np.random.Generator]:
        """Stratified mixture sampling: n // K draws per member, the remainder to the first."""
        k = len(self.nets)
        counts = [n // k + (1 if m < n % k else 0) for m in range(k)]
        return counts, np.random.default_rng([int(seed), 0x7E57])

    def sample_z(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n draws of z | x (x: (n_features,)) → (n, d)."""
        return self.sample_z_batched(np.asarray(x, float)[None, :], n, seed)[0]

    def sample_z_batched(self, xs: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n draws of z | x for each row of xs (m, n_features) → (m, n, d), one call per member.

        Draws are shuffled along the draw axis so any prefix is a mixture sample.
        """
        import torch

        torch.manual_seed(int(seed))
        xt = torch.as_tensor(np.asarray(xs, np.float32))
        counts, rng = self._split(int(n), seed)
        parts = []
        with torch.no_grad(), _quiet_nflows():
            for net, c in zip(self.nets, counts):
                if c:
                    parts.append(net.sample(torch.Size((c,)), condition=xt).numpy())  # (c, m, d)
        z = np.moveaxis(np.concatenate(parts, axis=0).astype(float), 0, 1)
        if len(self.nets) > 1:
            z = z[:, rng.permutation(z.shape[1])]
        return z

    def log_prob_z(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """log q(z | x) for draws z (n, d) at one x: the mixture density over members."""
        import torch

        zt = torch.as_tensor(np.asarray(z, np.float32))
        xt = torch.as_tensor(np.asarray(x, np.float32))[None]
        with torch.no_grad(), _quiet_nflows():
            lp = torch.stack([net.log_prob(zt[:, None], condition=xt)[:, 0] for net in self.nets])
        lp = torch.logsumexp(lp, dim=0) - np.log(len(self.nets))
        return lp.numpy().astype(float)


def _builder(meta: dict):
    from sbi.neural_nets import posterior_nn

    return posterior_nn(
        model=meta["density_estimator"],
        hidden_features=meta["hidden_features"],
        num_transforms=meta["num_transforms"],
    )


def train_npe(
    z: np.ndarray,
    x: np.ndarray,
    *,
    method: dict,
    seed: int,
    names,
    feature_names,
    progress: bool = True,
) -> tuple[Estimator, dict]:
    """Train NPE on (z, x) pairs (rows with non-finite x are dropped).

    z: (n, d) prior draws in standard-normal coordinates; x: (n, n_features) summaries. With
    ``method["member_banks"] == "disjoint"`` member m trains on rows :func:`member_rows` [m].

    Returns the estimator and a summary (epochs, best validation log-prob, n used).
    """
    import torch
    from sbi.inference import NPE

    ok_all = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(z), axis=1)
    # A small flow gains nothing from intra-op threads; on a busy 2-core machine two torch
    # threads were measured 25x slower per batch than one (oversubscription).
    torch.set_num_threads(1)
    d = z.shape[1]
    n_members = int(method.get("n_ensemble", 1))
    meta = {
        "density_estimator": method["density_estimator"],
        "hidden_features": int(method["hidden_features"]),
        "num_transforms": int(method["num_transforms"]),
        "n_members": n_members,
        "member_banks": str(method.get("member_banks", "shared")),
        "names": list(names),
        "feature_names": list(feature_names),
        "space": "z = Phi^-1(F_prior(theta))",
    }
    prior = torch.distributions.MultivariateNormal(torch.zeros(d), torch.eye(d))
    rows = member_rows(len(z), method)
    nets, members = [], []
    for m in range(n_members):
        keep = ok_all[rows[m]]
        zt = torch.as_tensor(z[rows[m]][keep], dtype=torch.float32)
        xt = torch.as_tensor(x[rows[m]][keep], dtype=torch.float32)
        # member m: seed + m for the initial weights, the validation split and the batches
        torch.manual_seed(int(seed) + m)
        inference = NPE(prior=prior, density_estimator=_builder(meta), show_progress_bars=progress)
        inference.append_simulations(zt, xt)
        if progress and n_members > 1:
            print(f"ensemble member {m + 1}/{n_members}", file=sys.stderr)
        # sbi prints its epoch counter on stdout; progress belongs on stderr
        with contextlib.redirect_stdout(sys.stderr), _quiet_nflows():
            net = inference.train(
                training_batch_size=int(method["training_batch_size"]),
                learning_rate=float(method["learning_rate"]),
                stop_after_epochs=int(method["stop_after_epochs"]),
                max_num_epochs=int(method["max_num_epochs"]),
                show_train_summary=False,
            )
        net.eval()
        nets.append(net)
        s = inference.summary
        members.append(
            {
                "epochs": int(s["epochs_trained"][-1]),
                "best_validation_log_prob": float(s["best_validation_loss"][-1]) * -1.0,
            }
        )
    vlp = [m["best_validation_log_prob"] for m in members]
    if n_members > 1 and max(vlp) - min(vlp) > 0.5:
        # a member stuck in a poor optimum widens (or shifts) the equal-weight mixture
        print(
            f"warning: ensemble members' best validation log-probabilities differ by "
            f"{max(vlp) - min(vlp):.2f} nats ({', '.join(f'{v:.2f}' for v in vlp)}); "
            "check the member posteriors or train with another seed",
            file=sys.stderr,
        )
    info = {
        "n_used": int(ok_all.sum()),
        "n_dropped_nonfinite": int((~ok_all).sum()),
        "n_members": n_members,
        "epochs": members[0]["epochs"] if n_members == 1 else [m["epochs"] for m in members],
        "best_validation_log_prob": members[0]["best_validation_log_prob"]
        if n_members == 1
        else [m["best_validation_log_prob"] for m in members],
    }
    return Estimator(nets=nets, meta=meta), info


def save_estimator(est: Estimator, path) -> Path:
    """``<path>`` (torch: a state_dict, or ``{"members": [state_dict, ...]}`` for an ensemble)
    and ``<path>.json`` (architecture, names)."""
    import torch

    path = Path(path)
    states = [net.state_dict() for net in est.nets]
    with atomic_path(path) as tmp:
        torch.save(states[0] if len(states) == 1 else {"members": states}, tmp)
    write_json(path.with_suffix(path.suffix + ".json"), est.meta)
    return path


def load_estimator(path) -> Estimator:
    """Rebuild the network(s) from the JSON sidecar and load weights (``weights_only=True``)."""
    import torch

    path = Path(path)
    meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    d, f = len(meta["names"]), len(meta["feature_names"])
    stored = torch.load(path, weights_only=True)
    states = stored["members"] if "members" in stored else [stored]
    nets = []
    for state in states:
        g = torch.Generator().manual_seed(0)
        net = _builder(meta)(torch.randn(16, d, generator=g), torch.randn(16, f, generator=g))
        net.load_state_dict(state)
        net.eval()
        nets.append(net)
    return Estimator(nets=nets, meta=meta)
