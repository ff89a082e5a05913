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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tregsim.io import atomic_path, write_json


@dataclass
class Estimator:
    """A trained conditional density estimator q(z | x) with its metadata."""

    net: object  # sbi ConditionalDensityEstimator (torch module)
    meta: dict  # architecture, parameter names, feature names

    def posterior(self):
        import torch
        from sbi.inference import DirectPosterior

        d = len(self.meta["names"])
        prior = torch.distributions.MultivariateNormal(torch.zeros(d), torch.eye(d))
        return DirectPosterior(self.net, prior)

    def sample_z(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n draws of z | x (x: (n_features,)) → (n, d)."""
        import torch

        torch.manual_seed(int(seed))
        xt = torch.as_tensor(np.asarray(x, np.float32))[None, :]
        with torch.no_grad():
            z = self.posterior().sample((int(n),), x=xt, show_progress_bars=False)
        return z.numpy().astype(float)

    def sample_z_batched(self, xs: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n draws of z | x for each row of xs (m, n_features) → (m, n, d), one net call."""
        import torch

        torch.manual_seed(int(seed))
        xt = torch.as_tensor(np.asarray(xs, np.float32))
        with torch.no_grad():
            z = self.net.sample(torch.Size((int(n),)), condition=xt)  # (n, m, d)
        return np.moveaxis(z.numpy().astype(float), 0, 1)

    def log_prob_z(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            lp = self.posterior().log_prob(
                torch.as_tensor(np.asarray(z, np.float32)),
                x=torch.as_tensor(np.asarray(x, np.float32))[None],
            )
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

    Returns the estimator and a summary (epochs, best validation log-prob, n used).
    """
    import torch
    from sbi.inference import NPE

    ok = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(z), axis=1)
    # A small flow gains nothing from intra-op threads; on a busy 2-core machine two torch
    # threads were measured 25x slower per batch than one (oversubscription).
    torch.set_num_threads(1)
    torch.manual_seed(int(seed))
    d = z.shape[1]
    meta = {
        "density_estimator": method["density_estimator"],
        "hidden_features": int(method["hidden_features"]),
        "num_transforms": int(method["num_transforms"]),
        "names": list(names),
        "feature_names": list(feature_names),
        "space": "z = Phi^-1(F_prior(theta))",
    }
    prior = torch.distributions.MultivariateNormal(torch.zeros(d), torch.eye(d))
    inference = NPE(prior=prior, density_estimator=_builder(meta), show_progress_bars=progress)
    inference.append_simulations(
        torch.as_tensor(z[ok], dtype=torch.float32), torch.as_tensor(x[ok], dtype=torch.float32)
    )
    # sbi prints its epoch counter on stdout; progress belongs on stderr
    with contextlib.redirect_stdout(sys.stderr):
        net = inference.train(
            training_batch_size=int(method["training_batch_size"]),
            learning_rate=float(method["learning_rate"]),
            stop_after_epochs=int(method["stop_after_epochs"]),
            max_num_epochs=int(method["max_num_epochs"]),
            show_train_summary=False,
        )
    net.eval()
    s = inference.summary
    info = {
        "n_used": int(ok.sum()),
        "n_dropped_nonfinite": int((~ok).sum()),
        "epochs": int(s["epochs_trained"][-1]),
        "best_validation_log_prob": float(s["best_validation_loss"][-1]) * -1.0,
    }
    return Estimator(net=net, meta=meta), info


def save_estimator(est: Estimator, path) -> Path:
    """``<path>`` (torch state_dict) and ``<path>.json`` (architecture, names)."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(est.net.state_dict(), tmp)
    write_json(path.with_suffix(path.suffix + ".json"), est.meta)
    return path


def load_estimator(path) -> Estimator:
    """Rebuild the network from the JSON sidecar and load weights (``weights_only=True``)."""
    import torch

    path = Path(path)
    meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    d, f = len(meta["names"]), len(meta["feature_names"])
    g = torch.Generator().manual_seed(0)
    net = _builder(meta)(torch.randn(16, d, generator=g), torch.randn(16, f, generator=g))
    net.load_state_dict(torch.load(path, weights_only=True))
    net.eval()
    return Estimator(net=net, meta=meta)
