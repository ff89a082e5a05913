"""Posterior draws as a product: netCDF files readable by ArviZ.

A posterior file is netCDF4 (HDF5) with a ``posterior`` group holding one variable per
parameter with dims ``(chain, draw)`` and a ``units`` attribute; the group's attributes carry
``data_sha256`` (hash of the calibration data), ``config`` (the calibration TOML text),
``model``, ``method`` and ``created_utc``. ``arviz.from_netcdf(path)`` returns an
InferenceData with that ``posterior`` group; tregsim itself reads it with xarray only.

The shipped natural-history posterior is ``calibration/posteriors/natural_history.nc``
(:data:`DEFAULT_POSTERIOR`); cohorts and power analyses draw population parameters from it
with :func:`sample_theta` (``--posterior FILE`` on the command line).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tregsim import rng as trng
from tregsim.errors import DataFileError
from tregsim.io import atomic_path
from tregsim.resources import shipped_path

DEFAULT_POSTERIOR = shipped_path("calibration/posteriors/natural_history.nc")
"""The natural-history posterior shipped with tregsim (NPE on the placebo summaries)."""

_GROUP = "posterior"


def save_posterior(
    path,
    draws: dict[str, np.ndarray],
    *,
    units: dict[str, str],
    attrs: dict | None = None,
    posterior_predictive: dict[str, np.ndarray] | None = None,
    predictive_dims: dict[str, tuple[str, ...]] | None = None,
    predictive_coords: dict[str, np.ndarray] | None = None,
    predictive_units: dict[str, str] | None = None,
) -> Path:
    """Write posterior draws (and optionally posterior-predictive draws) atomically.

    The file is an ArviZ-readable netCDF: ``arviz.from_netcdf(path)`` gives an InferenceData
    with a ``posterior`` group (and a ``posterior_predictive`` group when given).

    Parameters
    ----------
    draws : name → (n_draws,) (one chain) or (n_chains, n_draws) array.
    units : name → unit string (every parameter needs one).
    attrs : extra group attributes (``data_sha256``, ``config``, ``model``, ``method`` …);
        values must be str, int or float.
    posterior_predictive : name → (n_chains, n_draws, *shape) simulated observables, e.g.
        ``cpeptide`` (nmol/L) at the visit months.
    predictive_dims : name → names of the trailing dims (default ``<name>_dim_<i>``).
    predictive_coords : dim name → coordinate values (e.g. ``month``).
    predictive_units : name → unit string.
    """
    import xarray as xr

    data_vars = {}
    for name, v in draws.items():
        v = np.asarray(v, float)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2:
            raise ValueError(f"draws[{name!r}] must be (n_draws,) or (n_chains, n_draws)")
        if name not in units:
            raise ValueError(f"no unit for {name!r}")
        data_vars[name] = (("chain", "draw"), v, {"units": units[name]})
    ds = xr.Dataset(data_vars)
    ds = ds.assign_coords(chain=np.arange(ds.sizes["chain"]), draw=np.arange(ds.sizes["draw"]))
    ds.attrs = {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "inference_library": "tregsim",
        **(attrs or {}),
    }
    pp = None
    if posterior_predictive:
        pvars = {}
        for name, v in posterior_predictive.items():
            v = np.asarray(v, float)
            if v.ndim < 2:
                raise ValueError(f"posterior_predictive[{name!r}] must be (chains, draws, ...)")
            extra = (predictive_dims or {}).get(name) or tuple(
                f"{name}_dim_{i}" for i in range(v.ndim - 2)
            )
            if len(extra) != v.ndim - 2:
                raise ValueError(f"predictive_dims[{name!r}] must name {v.ndim - 2} dims")
            unit = (predictive_units or {}).get(name, "")
            pvars[name] = (("chain", "draw", *extra), v, {"units": unit} if unit else {})
        pp = xr.Dataset(pvars)
        pp = pp.assign_coords(
            chain=np.arange(pp.sizes["chain"]),
            draw=np.arange(pp.sizes["draw"]),
            **{k: np.asarray(c) for k, c in (predictive_coords or {}).items() if k in pp.dims},
        )
        pp.attrs = {"created_utc": ds.attrs["created_utc"], "inference_library": "tregsim"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, group=_GROUP, engine="h5netcdf", mode="w")
        if pp is not None:
            pp.to_netcdf(tmp, group="posterior_predictive", engine="h5netcdf", mode="a")
    return Path(path)


def open_posterior(path):
    """The ``posterior`` group as an xarray Dataset (loaded into memory)."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise DataFileError(
            "posterior file not found",
            file=path,
            fix=f"give a posterior .nc file, e.g. {DEFAULT_POSTERIOR}",
        )
    try:
        with xr.open_dataset(path, group=_GROUP, engine="h5netcdf") as ds:
            return ds.load()
    except OSError as e:
        raise DataFileError(
            f"not a posterior netCDF file with a '{_GROUP}' group ({e})",
            file=path,
            fix="write it with tregsim.posterior.save_posterior",
        ) from e


def load_posterior(path=None) -> dict[str, np.ndarray]:
    """Posterior draws: name → (n_draws,) (chains concatenated). Default: the shipped one."""
    ds = open_posterior(DEFAULT_POSTERIOR if path is None else path)
    out = {}
    for name, var in ds.data_vars.items():
        if set(var.dims) != {"chain", "draw"}:
            raise DataFileError(
                f"variable {name!r} has dims {var.dims}",
                file=path,
                field=name,
                fix="variables must have dims (chain, draw)",
            )
        out[name] = var.transpose("chain", "draw").values.reshape(-1)
    if not out:
        raise DataFileError(
            "no parameters in the posterior group",
            file=path,
            fix="write it with tregsim.posterior.save_posterior",
        )
    return out


def sample_theta(
    posterior: dict[str, np.ndarray], n: int, seed: int, start: int = 0
) -> dict[str, np.ndarray]:
    """Joint draws (with replacement, keeping correlations) for items ``[start, start+n)``.

    Item i gets the same draw whatever the chunking (stream ``"posterior.theta"``).
    """
    names = list(posterior)
    n_draws = len(posterior[names[0]])
    idx = trng.draw(
        seed, "posterior.theta", start, start + n, lambda g, k: g.integers(0, n_draws, size=k)
    )
    return {k: np.asarray(v)[idx] for k, v in posterior.items()}
