"""Posterior draws as a product: netCDF files readable by ArviZ.

A posterior file is netCDF4 (HDF5) with a ``posterior`` group holding one variable per
parameter with dims ``(chain, draw)`` and a ``units`` attribute; the group's attributes carry
``data_sha256`` (hash of the calibration data), ``config`` (the calibration TOML text),
``model``, ``method`` and ``created_utc``. ``arviz.from_netcdf(path)`` returns an
InferenceData with that ``posterior`` group; tregsim itself reads it with xarray only.

The shipped natural-history posterior is ``calibration/posteriors/natural_history.nc``
(:data:`DEFAULT_POSTERIOR`).

This module is the one home of posteriors: :func:`save_posterior` writes them (calibration),
:func:`load_posterior` reads them (every command: cohort, natural-history check, power, sweep,
responders, the report), and :func:`posterior_rows` is the one rule by which a posterior is
used: **item i (patient, replicate) takes draw ``i mod n_draws``**, so the same index gets the
same draw everywhere and whatever the chunking. Overrides of an experiment
(``[parameters]``, :func:`tregsim.experiment.with_parameters`) win over the draws.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

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


def load_posterior(path=None, model=None) -> dict[str, np.ndarray]:
    """Posterior draws: name → ``(n_draws,)`` (chains concatenated). Default: the shipped one.

    Reads the ``posterior`` group (dims chain × draw) written by :func:`save_posterior`; a
    plain netCDF dataset (no group) whose variables hold draws along their dims is accepted
    too. With ``model``, only variables named after a population or fixed parameter of the
    model are kept (others, e.g. diagnostics, are ignored).

    Raises
    ------
    DataFileError : naming the file (and variable) when it is missing, unreadable, holds no
        (matching) parameter, or its variables have different numbers of draws.
    """
    import xarray as xr

    path = Path(DEFAULT_POSTERIOR if path is None else path)
    if not path.is_file():
        raise DataFileError(
            "posterior file not found",
            file=path,
            field="posterior",
            fix="give the posterior.nc written by `tregsim calibrate` (or omit it for the "
            "shipped calibration/posteriors/natural_history.nc)",
        )
    try:
        try:
            ds = xr.open_dataset(path, group=_GROUP, engine="h5netcdf")
        except OSError:
            ds = xr.open_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as e:
        raise DataFileError(
            f"cannot read posterior: {e}",
            file=path,
            fix="give a netCDF file written by tregsim.posterior.save_posterior",
        ) from e
    spec = None if model is None else model.spec.parameters
    out = {}
    with ds:
        for name, var in ds.data_vars.items():
            if spec is not None and not (
                name in spec and spec[name].role in ("population", "fixed")
            ):
                continue
            if {"chain", "draw"} <= set(var.dims):
                var = var.transpose("chain", "draw", ...)
            out[name] = np.asarray(var.values, dtype=float).reshape(-1)
    if not out:
        raise DataFileError(
            "no parameters in the posterior"
            + ("" if model is None else f" named after a parameter of model {model.name!r}"),
            file=path,
            fix="the file needs variables such as lambda_ref, q (tregsim calibrate writes them)",
        )
    sizes = {v.size for v in out.values()}
    if len(sizes) != 1:
        raise DataFileError(
            f"posterior variables have different numbers of draws {sorted(sizes)}",
            file=path,
            fix="store every parameter with the same draws",
        )
    return out


def load_posterior_draws(path, model) -> dict[str, np.ndarray]:
    """:func:`load_posterior` restricted to ``model``'s population / fixed parameters."""
    return load_posterior(path, model)


def posterior_rows(posterior: dict | None, start: int, stop: int) -> dict | None:
    """Population parameters of items ``[start, stop)``: item i takes draw ``i mod n_draws``.

    The one rule by which cohorts, sweeps, responders and power replicates share a posterior
    (so the same patient index gets the same draw everywhere). ``None`` without a posterior.
    """
    if not posterior:
        return None
    n_draws = len(next(iter(posterior.values())))
    pick = np.arange(start, stop) % n_draws
    return {k: np.asarray(v, dtype=float)[pick] for k, v in posterior.items()}
