"""The reported quantities' draws, thinned into a file small enough to commit.

``posterior.nc`` holds every group of a run (hundreds of MB) and is not committed;
``draws.nc`` holds what the report reports, for every model of unknown size, so a
reader can recompute any interval or probability of the pages, or one of their
own, without refitting:

- per model (``unknown_model``): total and active parameters (billions) and
  training tokens (trillions);
- per serving epoch of those models (``epoch``, with its model, provider and price
  date as coordinates): the chance of each serving precision (``bits``), of the
  newer accelerator, and the decode batch.

The draws are every ``k``-th of each chain, ``k`` the smallest step that keeps at
most :data:`MAX_DRAWS` in all, stored as float32 with zlib compression: the
default run's file is well under :data:`MAX_BYTES`. Thinning keeps the draws'
order, so each chain is still a chain (R-hat can be recomputed, with the ESS of
the thinned draws).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from llmsize.physics.design import Design

#: At most this many draws in all (chains times draws per chain).
MAX_DRAWS = 1000

#: The size the committed file must stay under (issue 14: at most 2 MB).
MAX_BYTES = 2_000_000

#: Per-model variables of the posterior and their units.
MODEL_VARIABLES = {
    "params_total_b": "billions of parameters",
    "params_active_b": "billions of parameters active per token",
    "tokens_t": "trillions of training tokens",
}

#: Per-epoch variables of the posterior and their units.
EPOCH_VARIABLES = {
    "p_bits": "probability of each serving precision",
    "p_hardware": "probability of each accelerator",
    "batch": "decode batch (sequences)",
}


def thinning_step(chains: int, draws: int, max_draws: int = MAX_DRAWS) -> int:
    """The smallest step ``k`` with ``chains * ceil(draws / k) <= max_draws`` (at least 1)."""
    if chains < 1 or draws < 1:
        raise ValueError("a posterior needs at least one chain and one draw")
    per_chain = max(1, max_draws // chains)
    return max(1, math.ceil(draws / per_chain))


def thinned_draws(tree: xr.DataTree, design: Design, max_draws: int = MAX_DRAWS) -> xr.Dataset:
    """The reported quantities of ``tree``'s posterior, thinned (see the module)."""
    post = tree["posterior"].to_dataset()
    step = thinning_step(post.sizes["chain"], post.sizes["draw"], max_draws)
    post = post.isel(draw=slice(None, None, step))
    unknown = list(design.unknown)
    rows = [i for i, m in enumerate(design.epochs["model"]) if m in set(unknown)]
    epoch_names = post["p_bits"].coords["epoch"].values[rows]
    out = xr.Dataset()
    for name, units in MODEL_VARIABLES.items():
        out[name] = post[name].sel(unknown_model=unknown).astype(np.float32)
        out[name].attrs = {"units": units}
    for name, units in EPOCH_VARIABLES.items():
        out[name] = post[name].sel(epoch=epoch_names).astype(np.float32)
        out[name].attrs = {"units": units}
    epochs = design.epochs.iloc[rows]
    out = out.assign_coords(
        epoch_model=("epoch", epochs["model"].astype(str).to_numpy()),
        epoch_provider=("epoch", epochs["provider"].astype(str).to_numpy()),
        epoch_date=("epoch", np.array([d.isoformat() for d in epochs["date"]])),
    )
    out.attrs = {
        "description": "Draws of the quantities the llmsize report reports, thinned from "
        "posterior.nc: every draw_step-th draw of each chain.",
        "draw_step": step,
    }
    return out


def write_draws(draws: xr.Dataset, path: Path, attrs: dict[str, str]) -> None:
    """Write ``draws`` to ``path`` as netCDF (h5netcdf, zlib level 6), with ``attrs``
    (the run's provenance) added to its own, all but the time of the run: the file is
    committed, and a rerun of the same commit and seed must leave it byte for byte.
    """
    draws = draws.copy()
    draws.attrs = {**{k: v for k, v in attrs.items() if k != "created_at"}, **draws.attrs}
    encoding = {name: {"zlib": True, "complevel": 6, "shuffle": True} for name in draws.data_vars}
    draws.to_netcdf(path, engine="h5netcdf", encoding=encoding)
